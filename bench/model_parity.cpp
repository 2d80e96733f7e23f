// Our half of the PyTorch parity check (tests/reference/model_parity.py drives it and runs the
// PyTorch half, tests/reference/torch_gpt.py, on the same weights and tokens):
//   model_parity tokens --data PREFIX --count N --out FILE.npy
//       the first N tokens of a Megatron .bin/.idx dataset, documents in order, as int32 [N].
//   model_parity model --model PRESET [--set key=value ...] --seed S --device D --dtype DT
//       [--save-weights W.safetensors] [--forward-tokens F.npy --forward-out O.safetensors]
//       [--train-tokens X.npy --train-out LOSSES.csv <hyperparameters>]
//       builds GptModel from the preset (overrides: integer TransformerConfig fields by their
//       names), writes its initial parameters (each in the model's dtype, under our
//       parameter names, the resolved config in the metadata), the logits and mean loss of the
//       batch F [B, T + 1] (inputs F[:, :-1], labels F[:, 1:]), then trains on X [S, B, T + 1],
//       one micro-batch per step, the way launcher/trainer.cpp does (f32 main grads, token-mean
//       loss, global-norm clipping, AdamW with f32 master weights, Megatron's LR schedule), and
//       writes step,loss,lr,grad_norm,seconds per step.
// Safetensors files are written by launcher/safetensors.h.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "data/indexed_dataset.h"
#include "data/npy_array.h"
#include "launcher/safetensors.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"

namespace tessera {
namespace {

using Clock = std::chrono::steady_clock;

std::string config_json(const TransformerConfig& c) {
  nlohmann::ordered_json j = {
      {"name", c.name},
      {"num_layers", c.num_layers},
      {"hidden_size", c.hidden_size},
      {"num_attention_heads", c.num_attention_heads},
      {"num_query_groups", c.num_query_groups},
      {"ffn_hidden_size", c.ffn_hidden_size},
      {"vocab_size", c.vocab_size},
      {"padded_vocab_size", c.padded_vocab_size()},
      {"max_position_embeddings", c.max_position_embeddings},
      {"normalization", c.normalization == Normalization::LayerNorm ? "LayerNorm" : "RMSNorm"},
      {"norm_epsilon", c.norm_epsilon},
      {"activation", c.activation == Activation::Gelu ? "gelu" : "swiglu"},
      {"position_embedding", c.position_embedding == PositionEmbedding::Learned ? "learned" : "rope"},
      {"rotary_base", c.rotary_base},
      {"rope_scaling_factor", c.rope_scaling.factor},
      {"rope_low_freq_factor", c.rope_scaling.low_freq_factor},
      {"rope_high_freq_factor", c.rope_scaling.high_freq_factor},
      {"rope_original_max_position", c.rope_scaling.original_max_position},
      {"add_bias_linear", c.add_bias_linear},
      {"tie_word_embeddings", c.tie_word_embeddings},
  };
  return j.dump();
}

void apply_override(TransformerConfig& c, const std::string& assignment) {
  size_t eq = assignment.find('=');
  TS_CHECK(eq != std::string::npos, "--set wants key=value, got '", assignment, "'");
  std::string key = assignment.substr(0, eq);
  std::map<std::string, int64_t*> fields = {{"num_layers", &c.num_layers},
                                            {"hidden_size", &c.hidden_size},
                                            {"num_attention_heads", &c.num_attention_heads},
                                            {"num_query_groups", &c.num_query_groups},
                                            {"ffn_hidden_size", &c.ffn_hidden_size},
                                            {"vocab_size", &c.vocab_size},
                                            {"make_vocab_size_divisible_by", &c.make_vocab_size_divisible_by},
                                            {"max_position_embeddings", &c.max_position_embeddings}};
  auto it = fields.find(key);
  TS_CHECK(it != fields.end(), "--set ", key, " is not an integer TransformerConfig field this tool sets");
  std::string value = assignment.substr(eq + 1);
  auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), *it->second);
  TS_CHECK(error == std::errc() && end == value.data() + value.size(), "--set ", key, " wants an integer, got '", value,
           "'");
}

// Rows [first, first + count) of a token file [..., T + 1]: inputs without the last column,
// labels without the first.
LmBatch batch_from(const NpyArray& tokens, int64_t first, int64_t count, Device device) {
  int64_t width = tokens.shape().back();
  std::vector<int64_t> inputs, labels;
  for (int64_t r = first; r < first + count; ++r) {
    for (int64_t t = 0; t + 1 < width; ++t) {
      inputs.push_back(tokens[r * width + t]);
      labels.push_back(tokens[r * width + t + 1]);
    }
  }
  Shape shape{count, width - 1};
  return {Tensor::from_vector(inputs, shape).to(device), Tensor::from_vector(labels, shape).to(device), Tensor()};
}

void run_forward(const GptModel& model, const std::string& tokens_path, const std::string& out_path, Device device) {
  NpyArray tokens(tokens_path);
  TS_CHECK(tokens.shape().size() == 2, tokens_path, ": expected [B, T + 1] tokens, got ", tokens.shape().size(),
           " dims");
  NoGradGuard no_grad;
  LmBatch batch = batch_from(tokens, 0, tokens.shape()[0], device);
  Tensor logits = model.forward(batch.tokens);
  Tensor loss = cross_entropy(logits, batch.labels);
  write_safetensors(out_path, {{"logits", logits}, {"loss", loss.to(DType::F32).reshape({1})}}, {});
  fmt::print("forward: {} tokens, loss {:.6f} -> {}\n", batch.tokens.numel(), loss.item(), out_path);
}

struct TrainOptions {
  AdamWOptions adamw{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};  // lr: the schedule's
  LrScheduleOptions schedule{.peak_lr = 3e-4, .min_lr = 3e-5, .warmup_steps = 50, .decay_steps = 200};
  double clip_grad = 1.0;
};

// The step of launcher/trainer.cpp with one micro-batch per step.
void run_training(GptModel& model, const std::string& tokens_path, const std::string& out_path,
                  const TrainOptions& options, Device device) {
  NpyArray tokens(tokens_path);
  TS_CHECK(tokens.shape().size() == 3, tokens_path, ": expected [steps, B, T + 1] tokens, got ", tokens.shape().size(),
           " dims");
  int64_t steps = tokens.shape()[0], rows = tokens.shape()[1];
  std::vector<Tensor> parameters = model.parameters();
  for (const Tensor& p : parameters) {
    if (p.dtype() != DType::F32) p.set_grad(Tensor::zeros(p.shape(), DType::F32, p.device()));
  }
  AdamW optimizer(parameters, options.adamw);
  LrSchedule schedule(options.schedule);
  std::FILE* out = std::fopen(out_path.c_str(), "w");
  TS_CHECK(out != nullptr, "cannot write ", out_path);
  std::fprintf(out, "step,loss,lr,grad_norm,seconds\n");
  model.train();
  for (int64_t step = 1; step <= steps; ++step) {
    auto start = Clock::now();
    {
      NoGradGuard no_grad;
      for (const Tensor& p : parameters) {
        Tensor g = p.grad();
        if (g.defined()) g.zero_();
      }
    }
    LmBatch batch = batch_from(tokens, (step - 1) * rows, rows, device);
    double inv_tokens = 1.0 / double(batch.tokens.numel());
    Tensor loss = model.loss(batch, LossReduction::Sum);
    scale(loss, inv_tokens).backward();
    double loss_value = loss.item() * inv_tokens;
    double grad_norm = std::sqrt(grad_norm_squared(parameters));
    double lr = schedule.at(step);
    optimizer.set_learning_rate(lr);
    optimizer.step(options.clip_grad > 0.0 ? clip_factor(grad_norm, options.clip_grad) : 1.0);
    // The update runs on while the next step's first host read waits for it: per-step times
    // are right from the second step on.
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(out, "%lld,%.8f,%.17g,%.6f,%.6f\n", static_cast<long long>(step), loss_value, lr, grad_norm, seconds);
    if (step == 1 || step % 20 == 0 || step == steps)
      fmt::print("step {:4d}/{} loss {:.4f} lr {:.3e} grad norm {:.3f} {:.3f}s\n", step, steps, loss_value, lr,
                 grad_norm, seconds);
  }
  std::fclose(out);
}

void export_tokens(const std::string& prefix, int64_t count, const std::string& out_path) {
  IndexedDataset dataset(prefix);
  TS_CHECK(count > 0 && count <= dataset.token_count(), "tokens --count ", count, " must be in [1, ",
           dataset.token_count(), "] (the tokens of ", prefix, ")");
  std::vector<int64_t> tokens;
  for (int64_t s = 0; s < dataset.sequence_count() && int64_t(tokens.size()) < count; ++s) {
    int64_t take = std::min<int64_t>(dataset.sequence_length(s), count - int64_t(tokens.size()));
    dataset.append_tokens(s, 0, take, tokens);
  }
  std::vector<int32_t> narrow(tokens.begin(), tokens.end());
  write_npy<int32_t>(out_path, narrow, {count});
  fmt::print("tokens: {} of {} -> {}\n", count, dataset.token_count(), out_path);
}

struct ModelCommand {
  std::string preset = "gpt2-124m";
  std::vector<std::string> overrides;
  uint64_t seed = 1234;
  std::string device = "cuda";
  std::string dtype = "bf16";
  std::string save_weights, forward_tokens, forward_out, train_tokens, train_out;
  TrainOptions train;
};

void run_model(const ModelCommand& cmd) {
  TransformerConfig config = transformer_preset(cmd.preset);
  for (const std::string& assignment : cmd.overrides) apply_override(config, assignment);
  Device device = Device::parse(cmd.device);
  GptModel model(config, cmd.seed, ParamOptions{dtype_from_name(cmd.dtype), device});
  fmt::print("model {} ({:.1f}M parameters, {} layers) on {} in {}\n", config.name,
             double(config.parameter_count()) / 1e6, config.num_layers, device.str(), cmd.dtype);
  if (!cmd.save_weights.empty()) {
    write_safetensors(cmd.save_weights, model.named_parameters(), {{"config", config_json(config)}});
  }
  if (!cmd.forward_tokens.empty()) run_forward(model, cmd.forward_tokens, cmd.forward_out, device);
  if (!cmd.train_tokens.empty()) run_training(model, cmd.train_tokens, cmd.train_out, cmd.train, device);
}

void add_model_options(CLI::App& app, ModelCommand& cmd) {
  app.add_option("--model", cmd.preset, "preset name (models/transformer_config.h)");
  app.add_option("--set", cmd.overrides, "integer config override key=value (num_layers=4, ...)");
  app.add_option("--seed", cmd.seed, "initialisation seed");
  app.add_option("--device", cmd.device, "cpu, cuda, cuda:N");
  app.add_option("--dtype", cmd.dtype, "parameter dtype: f32, bf16");
  app.add_option("--save-weights", cmd.save_weights, "write the initial parameters (safetensors)");
  app.add_option("--forward-tokens", cmd.forward_tokens, "token rows [B, T + 1] (.npy) for one forward pass");
  app.add_option("--forward-out", cmd.forward_out, "logits and loss of that pass (safetensors)");
  app.add_option("--train-tokens", cmd.train_tokens, "token rows [steps, B, T + 1] (.npy), one batch per step");
  app.add_option("--train-out", cmd.train_out, "per-step CSV: step,loss,lr,grad_norm,seconds");
  TrainOptions& t = cmd.train;
  app.add_option("--lr", t.schedule.peak_lr, "peak learning rate");
  app.add_option("--min-lr", t.schedule.min_lr, "learning rate at the end of the decay");
  app.add_option("--warmup-steps", t.schedule.warmup_steps, "linear warmup steps");
  app.add_option("--decay-steps", t.schedule.decay_steps, "cosine decay ends at this step");
  app.add_option("--weight-decay", t.adamw.weight_decay, "AdamW weight decay (2-D parameters)");
  app.add_option("--beta1", t.adamw.beta1);
  app.add_option("--beta2", t.adamw.beta2);
  app.add_option("--eps", t.adamw.eps);
  app.add_option("--clip-grad", t.clip_grad, "global gradient-norm clip (0: off)");
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  CLI::App app{"Tessera's side of the PyTorch model parity check (tests/reference/model_parity.py)"};
  app.require_subcommand(1);
  std::string prefix, tokens_out;
  int64_t count = 0;
  CLI::App* tokens = app.add_subcommand("tokens", "export the first tokens of a .bin/.idx dataset as int32 .npy");
  tokens->add_option("--data", prefix, "dataset prefix (PREFIX.bin, PREFIX.idx)")->required();
  tokens->add_option("--count", count, "number of tokens")->required();
  tokens->add_option("--out", tokens_out, "output .npy")->required();
  tessera::ModelCommand model;
  CLI::App* model_app = app.add_subcommand("model", "build a model; dump weights, run a forward pass, train");
  tessera::add_model_options(*model_app, model);
  CLI11_PARSE(app, argc, argv);
  try {
    if (*tokens) tessera::export_tokens(prefix, count, tokens_out);
    if (*model_app) tessera::run_model(model);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
