// A rank's pieces of the global tensors, captured and restored (see checkpoint_sharding.h).
#include "launcher/checkpoint_sharding.h"

#include <algorithm>

#include "core/autograd/grad_mode.h"
#include "core/check.h"

namespace tessera {

namespace {

// This rank's parameter in the single-rank model's tensor: its boxes, whose row-major elements
// one after the other are the local tensor's flat order (blocks split along dim 0).
struct LocalLayout {
  std::string name;
  DType dtype = DType::F32;
  Shape global_shape;
  std::vector<TensorBox> boxes;
  bool vocab_padded = false;
  bool whole = true;        // every tp rank holds it whole
  bool shared_copy = false;  // the last stage's copy of a tied embedding table
};

struct TensorParallelSplit {
  int64_t dim = -1;  // -1: not split
  int64_t blocks = 1;
  bool vocab = false;
};

// Megatron's split of a GptModel parameter (models/gpt_model.h, parallel/tensor_parallel_linear.h).
TensorParallelSplit tensor_parallel_split(const std::string& name, const TransformerConfig& config) {
  auto ends = [&](const char* suffix) { return name.ends_with(suffix); };
  if (name == "embedding.word_embeddings.weight" || name == "output_layer.weight") return {0, 1, true};
  if (ends(".linear_qkv.weight") || ends(".linear_qkv.bias")) return {0, 1, false};
  if (ends(".linear_fc1.weight") || ends(".linear_fc1.bias"))
    return {0, config.activation == Activation::SwiGLU ? 2 : 1, false};
  if (ends(".linear_proj.weight") || ends(".linear_fc2.weight")) return {1, 1, false};
  return {};
}

// Aligned with model.named_parameters().
std::vector<LocalLayout> local_layouts(const ModelPiece& model) {
  std::vector<LocalLayout> layouts;
  for (const GptModel* chunk : model.chunks()) {
    const StateDict named = chunk->named_parameters();
    const std::vector<bool> sharded = chunk->parameter_is_tensor_parallel_sharded();
    const std::vector<bool> shared = chunk->parameter_is_shared_copy();
    const int64_t tp = chunk->parallelism().tp_size(), rank = chunk->parallelism().tp_rank();
    for (size_t i = 0; i < named.size(); ++i) {
      const auto& [name, parameter] = named[i];
      const TensorParallelSplit split = tensor_parallel_split(name, chunk->config());
      LocalLayout layout{name, parameter.dtype(), parameter.shape(), {}, split.vocab, true, shared[i]};
      TS_CHECK(tp == 1 || sharded[i] == (split.dim >= 0), "checkpoint: parameter ", name, " is ",
               sharded[i] ? "" : "not ", "split over tensor-parallel ranks, unlike what checkpoints expect");
      if (tp == 1 || split.dim < 0 || parameter.dim() == 0) {
        layout.boxes.push_back({Shape(size_t(parameter.dim()), 0), parameter.shape()});
      } else {
        layout.whole = false;
        const size_t dim = size_t(split.dim);
        layout.global_shape[dim] *= tp;
        const int64_t block = layout.global_shape[dim] / split.blocks, slice = block / tp;
        for (int64_t b = 0; b < split.blocks; ++b) {
          TensorBox box{Shape(size_t(parameter.dim()), 0), parameter.shape()};
          box.offsets[dim] = b * block + rank * slice;
          box.extent[dim] = slice;
          layout.boxes.push_back(box);
        }
      }
      layouts.push_back(std::move(layout));
    }
  }
  return layouts;
}

int64_t box_numel(const TensorBox& box) { return shape_numel(box.extent); }

// Calls f(box, begin, end within the box, position in the local flat order) for the parts of the
// local flat range [a, b) in each box.
template <typename F>
void for_each_box_part(const LocalLayout& layout, int64_t a, int64_t b, F&& f) {
  int64_t base = 0;
  for (const TensorBox& box : layout.boxes) {
    const int64_t n = box_numel(box), lo = std::max(a, base), hi = std::min(b, base + n);
    if (lo < hi) f(box, lo - base, hi - base, lo);
    base += n;
  }
}

Tensor host_flat(const Tensor& t) { return t.detach().to(Device::cpu()).to(DType::F32).contiguous().reshape({-1}); }

// Adds the pieces of local flat range [a, b) of tensor `tensor`, whose values sit in `source`
// (host f32, 1-D) from `source_offset` on.
void add_pieces(RankCheckpoint& out, const std::string& tensor, const LocalLayout& layout, const Tensor& source,
                int64_t a, int64_t b, int64_t source_offset) {
  for_each_box_part(layout, a, b, [&](const TensorBox& box, int64_t begin, int64_t end, int64_t local) {
    out.pieces.push_back({tensor, layout.dtype, layout.global_shape, layout.vocab_padded, box, begin, end,
                          source.narrow(0, source_offset + (local - a), end - begin).clone()});
  });
}

// Reads local flat range [a, b) of global tensor `tensor` into out[0, b - a).
void read_local(CheckpointReader& reader, const std::string& tensor, const LocalLayout& layout, int64_t a, int64_t b,
                float* out) {
  for_each_box_part(layout, a, b, [&](const TensorBox& box, int64_t begin, int64_t end, int64_t local) {
    reader.read(tensor, layout.global_shape, box, begin, end, out + (local - a));
  });
}

// This rank writes the model (or the optimizer state) of a parameter at all.
bool writes(const LocalLayout& layout, const CheckpointRank& at) {
  return !layout.shared_copy && (!layout.whole || at.tp_rank == 0) && at.cp_rank == 0;
}

std::string model_name(const std::string& p) { return "model/" + p; }
std::string state_name(const char* what, const std::string& p) { return std::string("optimizer/") + what + "/" + p; }

void capture_model(const ModelPiece& model, const std::vector<LocalLayout>& layouts, const CheckpointRank& at,
                   RankCheckpoint& out) {
  out.rank = at.rank;
  out.world_size = at.world_size;
  if (at.dp_rank != 0 || at.cp_rank != 0) return;
  const StateDict parameters = model.named_parameters();
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (!writes(layouts[i], at)) continue;
    const Tensor& p = parameters[i].second;
    add_pieces(out, model_name(layouts[i].name), layouts[i], host_flat(p), 0, p.numel(), 0);
  }
  const std::vector<const GptModel*>& chunks = model.chunks();
  for (size_t c = 0; c < chunks.size(); ++c) {
    RngRecord record{at.tp_rank, at.pp_rank, int(c), chunks[c]->dropout_generator().state(), std::nullopt};
    if (chunks[c]->parallelism().tp_size() > 1) record.model_parallel = chunks[c]->rng_tracker().fork().state();
    out.rng.push_back(record);
  }
}

// ZeRO: this rank's flat slices of the optimizer state (master only where it is not the parameter).
void capture_slices(const std::vector<LocalLayout>& layouts, const std::vector<ShardPiece>& pieces,
                    const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq, const CheckpointRank& at,
                    RankCheckpoint& out) {
  const Tensor m = host_flat(master), a = host_flat(exp_avg), s = host_flat(exp_avg_sq);
  for (const ShardPiece& piece : pieces) {
    const LocalLayout& layout = layouts[piece.parameter];
    if (!writes(layout, at)) continue;
    const int64_t begin = piece.param_offset, end = piece.param_offset + piece.numel;
    add_pieces(out, state_name("exp_avg", layout.name), layout, a, begin, end, piece.shard_offset);
    add_pieces(out, state_name("exp_avg_sq", layout.name), layout, s, begin, end, piece.shard_offset);
    if (layout.dtype != DType::F32)
      add_pieces(out, state_name("master", layout.name), layout, m, begin, end, piece.shard_offset);
  }
}

// Local flat range [a, b) of a global tensor, starting from `current`'s values (kept where a
// vocab-padded checkpoint has fewer rows).
Tensor read_range(CheckpointReader& reader, const std::string& tensor, const LocalLayout& layout, int64_t a, int64_t b,
                  const Tensor& current) {
  Tensor values = host_flat(current).clone();
  TS_CHECK(values.numel() == b - a, "checkpoint: reading ", b - a, " elements of ", tensor, " into ", values.numel());
  read_local(reader, tensor, layout, a, b, values.data<float>());
  return values;
}

std::string master_source(const CheckpointReader& reader, const LocalLayout& layout) {
  const std::string master = state_name("master", layout.name);
  return reader.has(master) ? master : model_name(layout.name);
}

void restore_parameters(CheckpointReader& reader, const std::vector<LocalLayout>& layouts, const StateDict& parameters) {
  NoGradGuard no_grad;
  for (size_t i = 0; i < parameters.size(); ++i) {
    Tensor p = parameters[i].second;
    Tensor values = read_range(reader, model_name(layouts[i].name), layouts[i], 0, p.numel(), p);
    p.copy_(values.view(p.shape()));
  }
}

// ZeRO: this rank's slices of the flat state, read from whatever pieces hold them.
void restore_slices(CheckpointReader& reader, const std::vector<LocalLayout>& layouts,
                    const std::vector<ShardPiece>& pieces, const Tensor& master, const Tensor& exp_avg,
                    const Tensor& exp_avg_sq) {
  NoGradGuard no_grad;
  for (const ShardPiece& piece : pieces) {
    const LocalLayout& layout = layouts[piece.parameter];
    const int64_t begin = piece.param_offset, end = begin + piece.numel;
    auto load = [&](const std::string& tensor, const Tensor& into) {
      Tensor slice = into.narrow(0, piece.shard_offset, piece.numel);
      slice.copy_(read_range(reader, tensor, layout, begin, end, slice));
    };
    load(master_source(reader, layout), master);
    load(state_name("exp_avg", layout.name), exp_avg);
    load(state_name("exp_avg_sq", layout.name), exp_avg_sq);
  }
}

// Every FSDP unit gathered while alive (collective over dp on both ends).
class GatheredParameters {
 public:
  explicit GatheredParameters(FullyShardedDataParallel& fsdp) : fsdp_(fsdp) { fsdp_.gather_full_parameters(); }
  ~GatheredParameters() { fsdp_.release_full_parameters(); }
  GatheredParameters(const GatheredParameters&) = delete;
  GatheredParameters& operator=(const GatheredParameters&) = delete;

 private:
  FullyShardedDataParallel& fsdp_;
};

// Index in the piece's parameters of each optimizer parameter (the optimizer's order).
std::vector<size_t> optimizer_order(const StateDict& parameters, const std::vector<Tensor>& optimized) {
  TS_CHECK(parameters.size() == optimized.size(), "checkpoint: the optimizer holds ", optimized.size(),
           " parameters but the model ", parameters.size());
  std::vector<size_t> order;
  for (const Tensor& t : optimized) {
    size_t i = 0;
    while (i < parameters.size() && !parameters[i].second.is_same(t)) ++i;
    TS_CHECK(i < parameters.size(), "checkpoint: an optimizer parameter is not one of the model's parameters");
    order.push_back(i);
  }
  return order;
}

// Layouts in the optimizer's order (ShardPiece::parameter indexes the optimizer's parameters).
std::vector<LocalLayout> in_optimizer_order(const std::vector<LocalLayout>& layouts, const std::vector<size_t>& order) {
  std::vector<LocalLayout> ordered;
  for (size_t i : order) ordered.push_back(layouts[i]);
  return ordered;
}

}  // namespace

RankCheckpoint capture_rank_checkpoint(const ModelPiece& model, const AdamW& optimizer, const CheckpointRank& at) {
  NoGradGuard no_grad;
  const std::vector<LocalLayout> layouts = local_layouts(model);
  const std::vector<size_t> order = optimizer_order(model.named_parameters(), optimizer.parameters());
  RankCheckpoint out;
  capture_model(model, layouts, at, out);
  if (at.dp_rank != 0) return out;
  for (size_t i = 0; i < order.size(); ++i) {
    const LocalLayout& layout = layouts[order[i]];
    if (!writes(layout, at)) continue;
    const int64_t n = optimizer.exp_avg(i).numel();
    add_pieces(out, state_name("exp_avg", layout.name), layout, host_flat(optimizer.exp_avg(i)), 0, n, 0);
    add_pieces(out, state_name("exp_avg_sq", layout.name), layout, host_flat(optimizer.exp_avg_sq(i)), 0, n, 0);
    if (layout.dtype != DType::F32)
      add_pieces(out, state_name("master", layout.name), layout, host_flat(optimizer.master_weight(i)), 0, n, 0);
  }
  return out;
}

RankCheckpoint capture_rank_checkpoint(const ModelPiece& model, const DistributedOptimizer& optimizer,
                                       const CheckpointRank& at) {
  NoGradGuard no_grad;
  const std::vector<LocalLayout> layouts = local_layouts(model);
  const std::vector<size_t> order = optimizer_order(model.named_parameters(), optimizer.parameters());
  RankCheckpoint out;
  capture_model(model, layouts, at, out);
  capture_slices(in_optimizer_order(layouts, order), optimizer.pieces(), optimizer.master(), optimizer.exp_avg(),
                 optimizer.exp_avg_sq(), at, out);
  return out;
}

RankCheckpoint capture_rank_checkpoint(const ModelPiece& model, const FsdpOptimizer& optimizer,
                                       const CheckpointRank& at) {
  NoGradGuard no_grad;
  const std::vector<LocalLayout> layouts = local_layouts(model);
  const std::vector<size_t> order = optimizer_order(model.named_parameters(), optimizer.parameters());
  RankCheckpoint out;
  {
    GatheredParameters gathered(optimizer.fsdp());
    capture_model(model, layouts, at, out);  // host copies: they outlive the gathered buffers
  }
  capture_slices(in_optimizer_order(layouts, order), optimizer.pieces(), optimizer.master(), optimizer.exp_avg(),
                 optimizer.exp_avg_sq(), at, out);
  return out;
}

void restore_rank_checkpoint(CheckpointReader& reader, const ModelPiece& model, AdamW& optimizer) {
  NoGradGuard no_grad;
  const std::vector<LocalLayout> layouts = local_layouts(model);
  const StateDict parameters = model.named_parameters();
  const std::vector<size_t> order = optimizer_order(parameters, optimizer.parameters());
  restore_parameters(reader, layouts, parameters);
  for (size_t i = 0; i < order.size(); ++i) {
    const LocalLayout& layout = layouts[order[i]];
    const Tensor& p = parameters[order[i]].second;
    const int64_t n = p.numel();
    Tensor master = read_range(reader, master_source(reader, layout), layout, 0, n, p).view(p.shape());
    Tensor exp_avg = read_range(reader, state_name("exp_avg", layout.name), layout, 0, n, optimizer.exp_avg(i));
    Tensor exp_avg_sq =
        read_range(reader, state_name("exp_avg_sq", layout.name), layout, 0, n, optimizer.exp_avg_sq(i));
    optimizer.load_state(i, master, exp_avg.view(p.shape()), exp_avg_sq.view(p.shape()));
  }
  optimizer.set_steps_taken(reader.metadata().optimizer_steps_taken);
}

void restore_rank_checkpoint(CheckpointReader& reader, const ModelPiece& model, DistributedOptimizer& optimizer) {
  const std::vector<LocalLayout> layouts = local_layouts(model);
  const StateDict parameters = model.named_parameters();
  const std::vector<size_t> order = optimizer_order(parameters, optimizer.parameters());
  restore_parameters(reader, layouts, parameters);
  restore_slices(reader, in_optimizer_order(layouts, order), optimizer.pieces(), optimizer.master(),
                 optimizer.exp_avg(), optimizer.exp_avg_sq());
  optimizer.set_steps_taken(reader.metadata().optimizer_steps_taken);
}

void restore_rank_checkpoint(CheckpointReader& reader, const ModelPiece& model, FsdpOptimizer& optimizer) {
  NoGradGuard no_grad;
  const StateDict parameters = model.named_parameters();
  const std::vector<size_t> order = optimizer_order(parameters, optimizer.parameters());
  const std::vector<LocalLayout> layouts = in_optimizer_order(local_layouts(model), order);
  // Each piece of the saved weights goes into the unit's parameter shard; the padding stays zero.
  for (const ShardPiece& piece : optimizer.pieces()) {
    const LocalLayout& layout = layouts[piece.parameter];
    Tensor shard = optimizer.fsdp().parameter_shard(piece.bucket);
    Tensor slice = shard.narrow(0, piece.shard_offset - optimizer.unit_offset(piece.bucket), piece.numel);
    slice.copy_(
        read_range(reader, model_name(layout.name), layout, piece.param_offset, piece.param_offset + piece.numel, slice));
  }
  restore_slices(reader, layouts, optimizer.pieces(), optimizer.master(), optimizer.exp_avg(), optimizer.exp_avg_sq());
  optimizer.set_steps_taken(reader.metadata().optimizer_steps_taken);
}

bool restore_rank_rng(const CheckpointReader& reader, const ModelPiece& model, const CheckpointRank& at) {
  const std::vector<const GptModel*>& chunks = model.chunks();
  const CheckpointMetadata& saved = reader.metadata();
  if (saved.layout.tp != at.tp || saved.layout.pp != at.pp || saved.layout.vpp != int(chunks.size())) return false;
  for (size_t c = 0; c < chunks.size(); ++c) {
    auto found = std::find_if(saved.rng.begin(), saved.rng.end(), [&](const RngRecord& r) {
      return r.tp_rank == at.tp_rank && r.pp_rank == at.pp_rank && r.chunk == int(c);
    });
    TS_CHECK(found != saved.rng.end(), reader.folder(), "/metadata.json: no random streams of tp rank ", at.tp_rank,
             ", pp rank ", at.pp_rank, ", chunk ", c, "; the checkpoint is damaged");
    chunks[c]->dropout_generator().set_state(found->dropout);
    if (found->model_parallel) chunks[c]->rng_tracker().fork().set_state(*found->model_parallel);
  }
  return true;
}

std::map<std::string, SavedParameter> assemble_model(CheckpointReader& reader) {
  std::map<std::string, SavedParameter> model;
  for (const auto& [name, tensor] : reader.metadata().tensors) {
    if (!name.starts_with("model/")) continue;
    model[name.substr(6)] = {reader.read_full(name), tensor.dtype};
  }
  return model;
}

}  // namespace tessera
