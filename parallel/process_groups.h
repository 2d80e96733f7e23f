// Parallel layout and process groups. A rank's coordinates follow Megatron-core's default
// RankGenerator order "tp-cp-ep-dp-pp" (tp varies fastest, pp slowest; expert parallelism is
// not split out yet, so ep = 1):
//   rank = tp_rank + tp * (cp_rank + cp * (dp_rank + dp * pp_rank))
// ProcessGroups holds this rank's tp, cp, dp and pp communicators (group rank = coordinate)
// and is passed explicitly to whatever needs it; there is no global state. With pp > 1 it also
// holds Megatron's embedding group: the first and the last pp rank of each (tp, cp, dp)
// coordinate (group rank 0 = pp rank 0), which hold the two copies of tied word embeddings and
// sum their gradients. Ranks of the middle stages are not members.
#pragma once

#include <cstdint>
#include <memory>

#include "parallel/communicator.h"

namespace tessera {

struct ParallelLayout {
  int tp = 1;  // tensor parallel
  int pp = 1;  // pipeline parallel
  int dp = 1;  // data parallel
  int cp = 1;  // context parallel
  int64_t product() const { return int64_t{tp} * pp * dp * cp; }
};

// Every size >= 1 and world_size == tp x pp x dp x cp; throws a one-line reason otherwise.
void validate_layout(const ParallelLayout& layout, int world_size);
// Attention heads and kv heads divisible by tp; throws a one-line reason otherwise.
void validate_layout_for_model(const ParallelLayout& layout, int64_t num_heads, int64_t num_kv_heads);
// The vocabulary size rounded up to a multiple of 128 x tp (Megatron's padding), so every tp
// rank holds an equal, aligned vocabulary shard. The model pads its embedding to this.
int64_t padded_vocab_size(int64_t vocab_size, int tp);

struct ParallelCoords {
  int tp = 0;
  int cp = 0;
  int dp = 0;
  int pp = 0;
  bool operator==(const ParallelCoords&) const = default;
};

ParallelCoords coords_of_rank(const ParallelLayout& layout, int rank);
int rank_of_coords(const ParallelLayout& layout, const ParallelCoords& coords);

class ProcessGroups {
 public:
  // Validates the layout against world.size() (before any communication), then splits world
  // into this rank's groups; collective over world.
  ProcessGroups(const Communicator& world, const ParallelLayout& layout);

  const ParallelLayout& layout() const { return layout_; }
  const ParallelCoords& coords() const { return coords_; }
  Communicator& tp() const { return *tp_; }
  Communicator& cp() const { return *cp_; }
  Communicator& dp() const { return *dp_; }
  Communicator& pp() const { return *pp_; }
  // The embedding group, or null: on ranks of the middle stages and whenever pp == 1.
  Communicator* embedding() const { return embedding_.get(); }

 private:
  ParallelLayout layout_;
  ParallelCoords coords_;
  std::unique_ptr<Communicator> tp_, cp_, dp_, pp_, embedding_;
};

}  // namespace tessera
