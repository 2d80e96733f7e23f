// Greedy decoding with and without the KV cache: tokens per second, whether both paths choose
// the same tokens, and how far the cached logits are from one full forward pass over the same
// sequence (max |difference| over the largest |logit|). Randomly initialised models; a batch of
// prompts of different lengths. Prints one row per (model, batch).
//   generation [--device auto|cpu|cuda] [--preset NAME ...] [--prompt-tokens 128] [--new-tokens 64]
// On a GPU the models run in bf16 (cuDNN attention), on the CPU in f32. "cold" is the first
// cached run (on a GPU it finalizes a cuDNN plan per new key length), "warm" the second.
#include "models/generation.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/autograd/grad_mode.h"
#include "core/cuda/runtime.h"
#include "core/ops/ops.h"

namespace {

using namespace tessera;
using Clock = std::chrono::steady_clock;

std::vector<std::vector<int32_t>> random_prompts(int64_t batch, int64_t length, int64_t vocab) {
  std::mt19937 engine(17);
  std::vector<std::vector<int32_t>> prompts;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int32_t> prompt(static_cast<size_t>(std::max<int64_t>(1, length - 7 * b)));
    for (int32_t& token : prompt) token = static_cast<int32_t>(engine() % static_cast<uint32_t>(vocab));
    prompts.push_back(prompt);
  }
  return prompts;
}

// Seconds and tokens of one greedy generate() call.
std::pair<double, std::vector<std::vector<int32_t>>> timed(const GptModel& model,
                                                           const std::vector<std::vector<int32_t>>& prompts,
                                                           int64_t new_tokens, bool use_cache) {
  GenerationOptions options;
  options.max_new_tokens = new_tokens;
  options.sampling.temperature = 0.0;
  options.use_cache = use_cache;
  Generator generator(1);
  const auto start = Clock::now();
  auto out = generate(model, prompts, options, generator);
  return {std::chrono::duration<double>(Clock::now() - start).count(), out};
}

// Row 0's sequence fed one token at a time through the cache, against one forward pass.
double cached_logit_error(const GptModel& model, const std::vector<int32_t>& sequence, Device device) {
  NoGradGuard no_grad;
  const auto length = static_cast<int64_t>(sequence.size());
  Tensor tokens = Tensor::from_vector(std::vector<int64_t>(sequence.begin(), sequence.end()), {1, length}).to(device);
  const std::vector<float> full = model.forward(tokens).to_vector<float>();
  KvCache cache = model.new_kv_cache(1, length);
  std::vector<Tensor> steps;
  for (int64_t t = 0; t < length; ++t) steps.push_back(model.forward(tokens.narrow(1, t, 1).contiguous(), cache));
  const std::vector<float> cached = cat(steps, 1).to_vector<float>();
  double worst = 0.0, largest = 0.0;
  for (size_t i = 0; i < full.size(); ++i) {
    worst = std::max(worst, std::fabs(double(cached[i]) - double(full[i])));
    largest = std::max(largest, std::fabs(double(full[i])));
  }
  return worst / largest;
}

size_t first_difference(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  return static_cast<size_t>(std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"KV-cache decoding speed and agreement"};
  std::string device_name = "auto";
  std::vector<std::string> presets;
  int64_t prompt_tokens = 128, new_tokens = 64;
  app.add_option("--device", device_name, "auto, cpu or cuda");
  app.add_option("--preset", presets, "model presets (default: gpt2-124m and llama3-1b on a GPU, llama-tiny on CPU)");
  app.add_option("--prompt-tokens", prompt_tokens, "longest prompt");
  app.add_option("--new-tokens", new_tokens, "tokens generated per prompt");
  CLI11_PARSE(app, argc, argv);
  try {
    const bool gpu = device_name != "cpu" && cuda_device_count() > 0;
    const Device device = gpu ? Device::cuda(0) : Device::cpu();
    if (presets.empty())
      presets = gpu ? std::vector<std::string>{"gpt2-124m", "llama3-1b"} : std::vector<std::string>{"llama-tiny"};
    fmt::print("greedy decoding on {} ({}), prompts of up to {} tokens, {} new tokens each\n", device.str(),
               gpu ? "bf16" : "f32", prompt_tokens, new_tokens);
    fmt::print("{:<12} {:>5} {:>14} {:>14} {:>14} {:>12} {:>16}\n", "model", "batch", "cold tok/s", "warm tok/s",
               "uncached tok/s", "same tokens", "cached logit err");
    for (const std::string& preset : presets) {
      TransformerConfig config = transformer_preset(preset);
      GptModel model(config, 3, ParamOptions{gpu ? DType::BF16 : DType::F32, device});
      model.eval();
      for (int64_t batch : {1, 4}) {
        const auto prompts = random_prompts(batch, prompt_tokens, config.vocab_size);
        const auto cold = timed(model, prompts, new_tokens, true);
        const auto warm = timed(model, prompts, new_tokens, true);
        const auto uncached = timed(model, prompts, new_tokens, false);
        size_t same = 0, total = 0;
        for (size_t b = 0; b < prompts.size(); ++b) {
          same += first_difference(warm.second[b], uncached.second[b]);
          total += warm.second[b].size();
        }
        std::vector<int32_t> sequence = prompts[0];
        sequence.insert(sequence.end(), warm.second[0].begin(), warm.second[0].end());
        const double tokens = double(total);
        fmt::print("{:<12} {:>5} {:>14.1f} {:>14.1f} {:>14.1f} {:>5}/{:<6} {:>16.2e}\n", preset, batch,
                   tokens / cold.first, tokens / warm.first, tokens / uncached.first, same, total,
                   cached_logit_error(model, sequence, device));
        std::fflush(stdout);
      }
    }
  } catch (const Error& e) {
    fmt::print(stderr, "generation: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
