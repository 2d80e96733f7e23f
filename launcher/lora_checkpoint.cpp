#include "launcher/lora_checkpoint.h"

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/ops.h"

namespace tessera {

namespace {

bool is_adapter(const std::string& name) { return name.find(".adapter.") != std::string::npos; }

// One adapter tensor of this rank: its name and where its local values sit in the whole tensor.
struct AdapterLayout {
  std::string name;
  Tensor parameter;
  Shape global_shape;
  std::vector<TensorBox> boxes;  // in local flat order
  bool whole = true;             // every tp rank holds it whole
};

// A tp-split adapter factor is split like its layer's weight: column-parallel targets
// (linear_qkv, linear_fc1) split B (linear_out) by rows, SwiGLU's fc1 in gate and up blocks;
// row-parallel targets (linear_proj, linear_fc2) split A (linear_in) by columns.
std::vector<AdapterLayout> adapter_layouts(const GptModel& model) {
  const StateDict named = model.named_parameters();
  const std::vector<bool> sharded = model.parameter_is_tensor_parallel_sharded();
  const int64_t tp = model.parallelism().tp_size(), rank = model.parallelism().tp_rank();
  std::vector<AdapterLayout> layouts;
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& [name, parameter] = named[i];
    if (!is_adapter(name)) continue;
    AdapterLayout layout{name, parameter, parameter.shape(), {}, true};
    if (tp == 1 || !sharded[i]) {
      layout.boxes.push_back({Shape(size_t(parameter.dim()), 0), parameter.shape()});
      layouts.push_back(std::move(layout));
      continue;
    }
    const bool column = name.find(".linear_qkv.adapter.") != std::string::npos ||
                        name.find(".linear_fc1.adapter.") != std::string::npos;
    const size_t dim = column ? 0 : 1;
    const int64_t blocks =
        name.find(".linear_fc1.adapter.") != std::string::npos && model.config().activation == Activation::SwiGLU ? 2
                                                                                                                  : 1;
    layout.whole = false;
    layout.global_shape[dim] *= tp;
    const int64_t block = layout.global_shape[dim] / blocks, slice = block / tp;
    for (int64_t b = 0; b < blocks; ++b) {
      TensorBox box{Shape(size_t(parameter.dim()), 0), parameter.shape()};
      box.offsets[dim] = b * block + rank * slice;
      box.extent[dim] = slice;
      layout.boxes.push_back(box);
    }
    layouts.push_back(std::move(layout));
  }
  return layouts;
}

Tensor host_flat(const Tensor& t) { return t.detach().to(Device::cpu()).to(DType::F32).contiguous().reshape({-1}); }

// One RankPiece per box of `layout`, the values from `local` (the parameter or its state).
void add_pieces(RankCheckpoint& out, const std::string& tensor, const AdapterLayout& layout, const Tensor& local) {
  const Tensor flat = host_flat(local);
  int64_t at = 0;
  for (const TensorBox& box : layout.boxes) {
    const int64_t n = shape_numel(box.extent);
    out.pieces.push_back(
        {tensor, layout.parameter.dtype(), layout.global_shape, false, box, 0, n, flat.narrow(0, at, n).clone()});
    at += n;
  }
}

// This rank's values of global tensor `tensor` (f32, host, the parameter's local shape).
Tensor read_local(CheckpointReader& reader, const std::string& tensor, const AdapterLayout& layout) {
  TS_CHECK(reader.has(tensor), "checkpoint ", reader.folder(), " has no ", tensor,
           ": it is not a LoRA checkpoint of this model (a LoRA run resumes from its own adapter checkpoints; "
           "start from a plain model's checkpoint with lora.base)");
  Tensor out = Tensor::zeros({layout.parameter.numel()}, DType::F32, Device::cpu());
  float* data = out.data<float>();
  for (const TensorBox& box : layout.boxes) {
    const int64_t n = shape_numel(box.extent);
    reader.read(tensor, layout.global_shape, box, 0, n, data);
    data += n;
  }
  return out.view(layout.parameter.shape());
}

std::string model_name(const std::string& p) { return "model/" + p; }
std::string state_name(const char* what, const std::string& p) { return std::string("optimizer/") + what + "/" + p; }

// The optimizer's index of each layout's parameter.
std::vector<size_t> optimizer_indices(const std::vector<AdapterLayout>& layouts, const AdamW& optimizer) {
  const std::vector<Tensor>& optimized = optimizer.parameters();
  TS_CHECK(optimized.size() == layouts.size(), "LoRA checkpoint: the optimizer holds ", optimized.size(),
           " parameters but the model has ", layouts.size(), " adapter tensors");
  std::vector<size_t> indices;
  for (const AdapterLayout& layout : layouts) {
    size_t i = 0;
    while (i < optimized.size() && !optimized[i].is_same(layout.parameter)) ++i;
    TS_CHECK(i < optimized.size(), "LoRA checkpoint: adapter ", layout.name, " is not in the optimizer");
    indices.push_back(i);
  }
  return indices;
}

}  // namespace

RankCheckpoint capture_lora_checkpoint(const GptModel& model, const AdamW& optimizer, const CheckpointRank& at) {
  NoGradGuard no_grad;
  const std::vector<AdapterLayout> layouts = adapter_layouts(model);
  const std::vector<size_t> indices = optimizer_indices(layouts, optimizer);
  RankCheckpoint out;
  out.rank = at.rank;
  out.world_size = at.world_size;
  if (at.dp_rank != 0 || at.cp_rank != 0) return out;
  for (size_t l = 0; l < layouts.size(); ++l) {
    const AdapterLayout& layout = layouts[l];
    if (layout.whole && at.tp_rank != 0) continue;
    const size_t i = indices[l];
    add_pieces(out, model_name(layout.name), layout, layout.parameter);
    add_pieces(out, state_name("exp_avg", layout.name), layout, optimizer.exp_avg(i));
    add_pieces(out, state_name("exp_avg_sq", layout.name), layout, optimizer.exp_avg_sq(i));
    if (optimizer.has_separate_master(i))
      add_pieces(out, state_name("master", layout.name), layout, optimizer.master_weight(i));
  }
  RngRecord record{at.tp_rank, at.pp_rank, 0, model.dropout_generator().state(), std::nullopt};
  if (model.parallelism().tp_size() > 1) record.model_parallel = model.rng_tracker().fork().state();
  out.rng.push_back(record);
  return out;
}

void restore_lora_checkpoint(CheckpointReader& reader, const GptModel& model, AdamW& optimizer) {
  NoGradGuard no_grad;
  const std::vector<AdapterLayout> layouts = adapter_layouts(model);
  const std::vector<size_t> indices = optimizer_indices(layouts, optimizer);
  for (size_t l = 0; l < layouts.size(); ++l) {
    const AdapterLayout& layout = layouts[l];
    // The master is the parameter's own f32 value unless the run kept a separate one (16-bit).
    const std::string master =
        reader.has(state_name("master", layout.name)) ? state_name("master", layout.name) : model_name(layout.name);
    optimizer.load_state(indices[l], read_local(reader, master, layout),
                         read_local(reader, state_name("exp_avg", layout.name), layout),
                         read_local(reader, state_name("exp_avg_sq", layout.name), layout));
    // load_state writes the master and its rounding; an f32 parameter is its own master.
    Tensor parameter = layout.parameter;
    parameter.copy_(read_local(reader, model_name(layout.name), layout));
  }
  optimizer.set_steps_taken(reader.metadata().optimizer_steps_taken);
}

void merge_lora_tensors(std::map<std::string, Tensor>& parameters, const LoraConfig& lora) {
  NoGradGuard no_grad;
  const std::string in_suffix = ".adapter.linear_in.weight", out_suffix = ".adapter.linear_out.weight";
  std::vector<std::string> adapters;
  for (const auto& [name, value] : parameters) {
    if (!name.ends_with(in_suffix)) continue;
    const std::string layer = name.substr(0, name.size() - in_suffix.size());
    auto b = parameters.find(layer + out_suffix);
    auto w = parameters.find(layer + ".weight");
    TS_CHECK(b != parameters.end(), "merging LoRA: ", name, " has no ", layer + out_suffix);
    TS_CHECK(w != parameters.end(), "merging LoRA: the base has no ", layer + ".weight", " for adapter ", name);
    const Tensor delta = scale(matmul(b->second, value), lora.alpha / double(lora.rank));
    w->second = add(w->second, delta);
    adapters.push_back(name);
    adapters.push_back(b->first);
  }
  for (const std::string& name : adapters) parameters.erase(name);
  for (const auto& entry : parameters)
    TS_CHECK(!is_adapter(entry.first), "merging LoRA: ", entry.first, " has no matching ", in_suffix);
}

}  // namespace tessera
