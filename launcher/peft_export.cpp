#include "launcher/peft_export.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <fstream>

#include "core/check.h"
#include "core/ops/ops.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/hf_format.h"
#include "launcher/train_config.h"

namespace tessera {

namespace {

class Adapters {
 public:
  Adapters(const std::map<std::string, Tensor>& tensors, int64_t rank) : tensors_(tensors), rank_(rank) {}
  // A [rank, in] and B [out, rank] of our layer `layer` (".../linear_qkv").
  std::pair<Tensor, Tensor> get(const std::string& layer, int64_t in, int64_t out) const {
    return {fetch(layer + ".adapter.linear_in.weight", {rank_, in}),
            fetch(layer + ".adapter.linear_out.weight", {out, rank_})};
  }

 private:
  Tensor fetch(const std::string& name, const Shape& shape) const {
    auto it = tensors_.find(name);
    TS_CHECK(it != tensors_.end(), "export --format peft: the checkpoint has no adapter tensor ", name);
    TS_CHECK(it->second.shape() == shape, "export --format peft: ", name, " has shape ", shape_str(it->second.shape()),
             ", expected ", shape_str(shape), " (lora.rank ", rank_, ")");
    return it->second.contiguous();
  }
  const std::map<std::string, Tensor>& tensors_;
  int64_t rank_;
};

bool targets(const TransformerConfig& c, const std::string& target) {
  return std::find(c.lora.targets.begin(), c.lora.targets.end(), target) != c.lora.targets.end();
}

}  // namespace

NamedTensors to_peft_tensors(const TransformerConfig& c, const std::map<std::string, Tensor>& adapters) {
  const HfArchitecture architecture = hf_architecture(c);
  const Adapters ours(adapters, c.lora.rank);
  const int64_t C = c.hidden_size, H = c.num_attention_heads, KV = c.num_query_groups, D = c.head_dim(),
                F = c.ffn_hidden_size;
  const bool swiglu = c.activation == Activation::SwiGLU;
  NamedTensors out;
  auto emit = [&](const std::string& module, const Tensor& a, const Tensor& b) {
    out.emplace_back("base_model.model." + module + ".lora_A.weight", a);
    out.emplace_back("base_model.model." + module + ".lora_B.weight", b.contiguous());
  };
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("decoder.layers.{}.", l);
    const std::string h =
        architecture == HfArchitecture::Gpt2 ? fmt::format("transformer.h.{}.", l) : fmt::format("model.layers.{}.", l);
    if (targets(c, "linear_qkv")) {
      auto [a, b] = ours.get(p + "self_attention.linear_qkv", C, (H + 2 * KV) * D);
      auto [q, k, v] = split_grouped_qkv(c, b);
      if (architecture == HfArchitecture::Gpt2) {
        emit(h + "attn.c_attn", a, cat({q, k, v}, 0));
      } else {
        emit(h + "self_attn.q_proj", a, q);
        emit(h + "self_attn.k_proj", a, k);
        emit(h + "self_attn.v_proj", a, v);
      }
    }
    if (targets(c, "linear_proj")) {
      auto [a, b] = ours.get(p + "self_attention.linear_proj", H * D, C);
      emit(h + (architecture == HfArchitecture::Gpt2 ? "attn.c_proj" : "self_attn.o_proj"), a, b);
    }
    if (targets(c, "linear_fc1")) {
      auto [a, b] = ours.get(p + "mlp.linear_fc1", C, swiglu ? 2 * F : F);
      if (swiglu) {
        emit(h + "mlp.gate_proj", a, b.narrow(0, 0, F));
        emit(h + "mlp.up_proj", a, b.narrow(0, F, F));
      } else {
        emit(h + "mlp.c_fc", a, b);
      }
    }
    if (targets(c, "linear_fc2")) {
      auto [a, b] = ours.get(p + "mlp.linear_fc2", F, C);
      emit(h + (architecture == HfArchitecture::Gpt2 ? "mlp.c_proj" : "mlp.down_proj"), a, b);
    }
  }
  return out;
}

nlohmann::ordered_json peft_adapter_config(const TransformerConfig& c) {
  const bool gpt2 = hf_architecture(c) == HfArchitecture::Gpt2;
  std::vector<std::string> modules;
  for (const std::string& target : c.lora.targets) {
    if (target == "linear_qkv") {
      if (gpt2)
        modules.push_back("c_attn");
      else
        modules.insert(modules.end(), {"q_proj", "k_proj", "v_proj"});
    } else if (target == "linear_proj") {
      modules.push_back(gpt2 ? "attn.c_proj" : "o_proj");
    } else if (target == "linear_fc1") {
      if (gpt2)
        modules.push_back("c_fc");
      else
        modules.insert(modules.end(), {"gate_proj", "up_proj"});
    } else if (target == "linear_fc2") {
      modules.push_back(gpt2 ? "mlp.c_proj" : "down_proj");
    }
  }
  nlohmann::ordered_json config;
  config["peft_type"] = "LORA";
  config["task_type"] = "CAUSAL_LM";
  config["base_model_name_or_path"] = nullptr;
  config["r"] = c.lora.rank;
  config["lora_alpha"] = c.lora.alpha;
  config["lora_dropout"] = c.lora.dropout;
  config["target_modules"] = modules;
  config["fan_in_fan_out"] = gpt2;  // GPT-2's Conv1D stores weight^T
  config["bias"] = "none";
  config["inference_mode"] = true;
  config["modules_to_save"] = nullptr;
  return config;
}

void export_peft(const std::string& checkpoint, const std::filesystem::path& output, DType dtype) {
  LoadedCheckpoint loaded = load_checkpoint_argument(checkpoint, "export");
  const Recipe recipe = Recipe::parse(loaded.checkpoint.config_yaml, loaded.path + " (saved configuration)");
  const TransformerConfig config = model_config_from_recipe(recipe);
  TS_CHECK(config.lora.enabled(), "export --format peft: ", loaded.path,
           " is not a LoRA run's checkpoint (its recipe has lora.rank 0); export it with --format hf");
  std::map<std::string, Tensor> adapters;
  for (auto& [name, saved] : loaded.checkpoint.model) adapters[name] = saved.value;
  NamedTensors tensors = to_peft_tensors(config, adapters);
  for (auto& entry : tensors) entry.second = entry.second.to(dtype);
  std::filesystem::create_directories(output);
  write_safetensors((output / "adapter_model.safetensors").string(), tensors, {{"format", "pt"}});
  std::ofstream(output / "adapter_config.json") << peft_adapter_config(config).dump(2) << "\n";
}

}  // namespace tessera
