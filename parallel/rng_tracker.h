// Tensor-parallel-aware random streams (Megatron's CudaRNGStatesTracker on our counter-based
// Philox Generator, core/random.h). Megatron's model_parallel_cuda_manual_seed(seed) gives:
//   the default stream          seed                      identical on every tp rank
//   "model-parallel-rng"        seed + 2718 + tp_rank     different on every tp rank
// Megatron draws from the model-parallel stream where the activations are split across tp
// ranks (attention dropout inside the tp region; with sequence parallelism, the hidden
// dropout of the sequence-sharded regions), so each rank masks its own elements
// independently; and from the default stream where the activations are replicated, so every
// rank drops the same elements and the replicas stay equal. Streams are Generators handed out
// by name (fork); a draw advances only the stream it came from. Checkpoints save states().
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/random.h"

namespace tessera {

class RngTracker {
 public:
  static constexpr const char* kModelParallel = "model-parallel-rng";
  static constexpr uint64_t kModelParallelSeedOffset = 2718;  // Megatron's

  RngTracker(uint64_t seed, int tp_rank);

  Generator& default_generator() { return default_; }
  // Registers a stream; a name or seed already in use is refused (Megatron's checks: two
  // streams with one seed would draw the same numbers).
  void add(const std::string& name, uint64_t seed);
  // The named stream; an unknown name is refused, naming the known ones.
  Generator& fork(const std::string& name = kModelParallel);

  // Every stream's state, the default one under "default"; set_states needs exactly these names.
  std::map<std::string, PhiloxState> states() const;
  void set_states(const std::map<std::string, PhiloxState>& states);

 private:
  Generator default_;
  std::map<std::string, Generator> streams_;
};

}  // namespace tessera
