#include "launcher/lora_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "launcher/checkpoint_argument.h"
#include "models/lora.h"

namespace tessera {

namespace {

bool is_adapter(const std::string& name) { return name.find(".adapter.") != std::string::npos; }

// Blocks of a tensor-parallel split along one dim: SwiGLU's fc1 holds the gate and up blocks, each
// split over tp on its own (launcher/checkpoint_sharding.cpp splits them the same way).
int64_t split_blocks(const std::string& name, const TransformerConfig& config) {
  const bool fc1 = name.ends_with(".linear_fc1.weight") || name.ends_with(".linear_fc1.bias");
  return fc1 && config.activation == Activation::SwiGLU ? 2 : 1;
}

// A vocabulary table with the rows this model pads it to (make_vocab_size_divisible_by x tp):
// the rows past the vocabulary are padding, so a checkpoint padded for another tp size gains zero
// rows or loses padding ones.
Tensor repad_vocab(const std::string& name, const Tensor& global, int64_t rows) {
  const bool vocab = name == "embedding.word_embeddings.weight" || name == "output_layer.weight";
  if (!vocab || global.dim() != 2 || global.size(0) == rows) return global;
  Tensor padded = Tensor::zeros({rows, global.size(1)}, global.dtype(), global.device());
  const int64_t kept = std::min(rows, global.size(0));
  padded.narrow(0, 0, kept).copy_(global.narrow(0, 0, kept));
  return padded;
}

// Copies this rank's shard of the whole tensor `saved` into `local`: equal shapes copy whole,
// otherwise the one dim that differs must be tp times larger and is cut into blocks x tp slices.
void copy_shard(const std::string& name, const Tensor& saved, Tensor& local, const GptModel& model,
                const std::string& source) {
  const int64_t tp = model.parallelism().tp_size(), rank = model.parallelism().tp_rank();
  const Tensor global = repad_vocab(name, saved, local.dim() == 2 ? local.size(0) * tp : 0);
  TS_CHECK(global.dim() == local.dim(), "lora.base ", source, ": ", name, " has shape ", shape_str(global.shape()),
           ", the model's is ", shape_str(local.shape()), "; the base checkpoint must be of this model.");
  int64_t split_dim = -1;
  for (int64_t d = 0; d < local.dim(); ++d)
    if (global.shape()[size_t(d)] != local.shape()[size_t(d)]) split_dim = d;
  if (split_dim < 0) {
    local.copy_(global);
    return;
  }
  const int64_t global_size = global.shape()[size_t(split_dim)], local_size = local.shape()[size_t(split_dim)];
  TS_CHECK(global_size == local_size * tp, "lora.base ", source, ": ", name, " has shape ", shape_str(global.shape()),
           ", which does not split into this model's ", shape_str(local.shape()), " over ", tp,
           " tensor-parallel rank(s); the base checkpoint must be of this model (model section, vocabulary padding)");
  const int64_t blocks = split_blocks(name, model.config()), block = global_size / blocks, slice = local_size / blocks;
  for (int64_t b = 0; b < blocks; ++b)
    local.narrow(split_dim, b * slice, slice).copy_(global.narrow(split_dim, b * block + rank * slice, slice));
}

size_t bytes_of(const Tensor& t) { return t.defined() ? size_t(t.numel()) * dtype_size(t.dtype()) : 0; }

std::string mib(size_t bytes) { return fmt::format("{:.2f} MiB", double(bytes) / double(1 << 20)); }

}  // namespace

void load_lora_base(const std::string& source, GptModel& model) {
  load_lora_base(load_checkpoint_argument(source, "lora.base").checkpoint.model, source, model);
}

void load_lora_base(const std::map<std::string, SavedParameter>& saved, const std::string& source, GptModel& model) {
  NoGradGuard no_grad;
  size_t used = 0;
  for (auto& [name, parameter] : model.named_parameters()) {
    if (is_adapter(name)) continue;
    auto it = saved.find(name);
    TS_CHECK(it != saved.end(), "lora.base ", source, " has no tensor ", name,
             "; the base checkpoint must be of this model (same model section, without LoRA)");
    copy_shard(name, it->second.value, parameter, model, source);
    ++used;
  }
  if (used == saved.size()) return;
  for (const auto& entry : saved) {
    const std::string& name = entry.first;
    bool known = false;
    for (const auto& named : model.named_parameters()) known = known || named.first == name;
    TS_CHECK(known, "lora.base ", source, " holds ", name, ", which this model does not have",
             is_adapter(name) ? " (it is a LoRA checkpoint; give the plain base model's)" : "",
             "; the base checkpoint must be of this model");
  }
}

std::unique_ptr<GptModel> load_lora_policy(const TransformerConfig& config, uint64_t seed, const ParamOptions& options,
                                           const std::map<std::string, SavedParameter>& saved,
                                           const std::string& source) {
  TS_CHECK(config.lora.enabled(), "load_lora_policy: the model has no LoRA section (lora.rank 0)");
  auto model = std::make_unique<GptModel>(config, seed, options);
  load_lora_base(saved, source, *model);
  return model;
}

size_t adamw_state_bytes(const AdamW& optimizer) {
  size_t bytes = 0;
  for (size_t i = 0; i < optimizer.parameters().size(); ++i) {
    bytes += bytes_of(optimizer.exp_avg(i)) + bytes_of(optimizer.exp_avg_sq(i));
    if (optimizer.has_separate_master(i)) bytes += bytes_of(optimizer.master_weight(i));
  }
  return bytes;
}

LoraMemory measure_lora_memory(const Module& model, const std::vector<Tensor>& optimized, size_t optimizer_state_bytes,
                               size_t grad_buffer_bytes) {
  LoraMemory m;
  m.optimizer_state_bytes = optimizer_state_bytes;
  size_t trainable_grads = 0;
  for (const Tensor& p : model.parameters()) {
    const size_t weight = bytes_of(p);
    if (p.requires_grad()) {
      m.trainable_parameters += p.numel();
      m.trainable_weight_bytes += weight;
      // Not yet allocated (f32 parameters without DDP): what the first backward allocates.
      trainable_grads += p.grad().defined() ? bytes_of(p.grad()) : weight;
      continue;
    }
    m.frozen_parameters += p.numel();
    m.frozen_weight_bytes += weight;
    m.frozen_grad_bytes += bytes_of(p.grad());
    for (const Tensor& o : optimized)
      if (o.is_same(p)) m.frozen_optimizer_bytes += weight;  // an optimizer that holds a frozen parameter
  }
  m.trainable_grad_bytes = grad_buffer_bytes > 0 ? grad_buffer_bytes : trainable_grads;
  return m;
}

std::string LoraMemory::describe() const {
  const double total = double(trainable_parameters + frozen_parameters);
  return fmt::format(
      "LoRA: trainable {} parameters ({:.2f}% of {}): weights {}, gradients {}, optimizer state {}; frozen base {} "
      "parameters: weights {}, gradients {}, optimizer state {}",
      trainable_parameters, 100.0 * double(trainable_parameters) / total, int64_t(total), mib(trainable_weight_bytes),
      mib(trainable_grad_bytes), mib(optimizer_state_bytes), frozen_parameters, mib(frozen_weight_bytes),
      fmt::format("{} B", frozen_grad_bytes), fmt::format("{} B", frozen_optimizer_bytes));
}

std::string LoraMemory::describe_reference() const {
  return fmt::format(
      "LoRA: reference: the base with adapters off, 0 B extra (a frozen copy of the model would hold {})",
      mib(frozen_weight_bytes));
}

}  // namespace tessera
