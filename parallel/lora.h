// LoRA adapter (Hu et al. 2021) on a Column- or RowParallelLinear, tensor-parallel as NeMo
// places it. The layer computes y = base(x) + (alpha / rank) * B A dropout(x), with
// A [rank, in] and B [out, rank]:
//   on a ColumnParallelLinear (weight [out/tp, in]): A replicated, B split like the weight's
//     rows (its output columns), B_r [out/tp, rank], block by block with output_blocks. The
//     low-rank activation h = A dropout(x) is computed on the layer's input before it enters
//     the tp region and enters it the way the input does (copy_to, or the sequence all-gather):
//     the conjugate collective then sums A's gradient over the ranks inside the graph.
//   on a RowParallelLinear (weight [out, in/tp]): A split like the weight's columns (its input
//     rows), A_r [rank, in/tp]; B replicated. The partial h_r = A_r x_r is all-reduced (or
//     reduce-scattered along the sequence) on its own, a [.., rank] collective, before B.
// So without sequence parallelism every rank's gradient of a replicated factor (column A, row
// B) is the whole gradient; with it each rank saw only its tokens and the caller sums that
// gradient over tp (replicated_parameters(), as for norm weights and row biases).
// Initialisation: every rank draws the full A from `init` as PEFT does (uniform in
// +-1/sqrt(in), one draw) and keeps its slice; B starts at zero, so the adapted layer starts
// equal to the base. Dropout (p = options.dropout) draws from `dropout_generator` in training
// mode only; the caller picks the stream (identical over tp where x is replicated).
// Switches, none of which copies a weight: set_enabled(false) drops the adapter's term (the
// frozen reference of DPO/PPO/GRPO is the base); merge() adds scale * B_r A_r into this rank's
// base weight shard in place and stops adding the term (the forward is then the merged layer);
// unmerge() subtracts it again (equal up to rounding). Parameters: linear_in.weight (A) and
// linear_out.weight (B), NeMo's names, under the layer's "adapter." prefix.
#pragma once

#include <cstdint>
#include <vector>

#include "core/nn/module.h"
#include "core/random.h"

namespace tessera {

class Communicator;  // parallel/communicator.h

enum class LoraPlacement : uint8_t { ColumnParallel, RowParallel };

struct LoraAdapterOptions {
  int64_t rank = 8;
  double alpha = 16.0;   // the term is scaled by alpha / rank
  double dropout = 0.0;  // on the adapter's input, in [0, 1)
};

class LoraAdapter : public Module {
 public:
  // `base_weight`: the layer's weight shard (column [out/tp, in], row [out, in/tp]); the adapter
  // keeps a handle to it for merge/unmerge. tp, sequence_parallel and sequence_dim as the layer's.
  // dropout_generator: required when options.dropout > 0; must outlive the adapter.
  LoraAdapter(LoraPlacement placement, const Tensor& base_weight, Communicator* tp, bool sequence_parallel,
              int64_t sequence_dim, Generator& init, Generator* dropout_generator, LoraAdapterOptions options);

  // The term to add to the layer's output, in its layout (column: this rank's [..., out/tp]
  // for the whole sequence; row: [..., out] reduced, or this rank's sequence shard). x: what the
  // layer got (column: replicated or the sequence shard; row: this rank's input columns).
  Tensor forward(const Tensor& x) const;
  // Whether forward's term counts: enabled and not merged.
  bool active() const { return enabled_ && !merged_; }
  bool enabled() const { return enabled_; }
  bool merged() const { return merged_; }
  void set_enabled(bool enabled);
  void merge();
  void unmerge();

  LoraPlacement placement() const { return placement_; }
  double scale() const { return options_.alpha / double(options_.rank); }
  const Tensor& a() const { return a_; }  // this rank's A: column [rank, in], row [rank, in/tp]
  const Tensor& b() const { return b_; }  // this rank's B: column [out/tp, rank], row [out, rank]
  // The factor every tp rank holds whole (column: A, row: B); empty without tp.
  std::vector<Tensor> replicated_parameters() const;

 private:
  LoraPlacement placement_;
  Tensor base_weight_;
  Communicator* tp_;
  bool sequence_parallel_;
  int64_t sequence_dim_;
  Generator* dropout_generator_;
  LoraAdapterOptions options_;
  Tensor a_, b_;
  bool enabled_ = true;
  bool merged_ = false;
};

}  // namespace tessera
