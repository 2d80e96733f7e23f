// Shared by the DPO and reward model tests: arithmetic preference pairs (a correct sum against a
// wrong one), a tiny GPT-2 recipe that trains on them, and checkpoints of models drawn from a seed
// (what dpo.init_from / reward_model.init_from read), and the independent log-probability of an
// answer that the tests compare the trainer's with.
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "data/chat_template.h"
#include "data/data_test_util.h"
#include "data/tokenizer_test_util.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/preference_config.h"
#include "models/gpt_model.h"

namespace tessera::testing {

struct ArithmeticPair {
  std::string prompt, chosen, rejected;
};

// Every "What is a + b?" with a, b < max_operand, shuffled by seed: the correct sum is chosen, a
// sum too large by 10 or 100 rejected (make_arithmetic_chat.py --pairs also writes sums off by 1
// or 2; a model this small learns no addition in the seconds a test has, but it can learn that
// answers outside the range of correct sums are wrong, which carries over to unseen prompts).
inline std::vector<ArithmeticPair> arithmetic_pairs(int max_operand, uint32_t seed) {
  std::mt19937 engine(seed);
  std::vector<ArithmeticPair> pairs;
  for (int a = 0; a < max_operand; ++a) {
    for (int b = 0; b < max_operand; ++b) {
      const int wrong = a + b + (engine() % 2 == 0 ? 10 : 100);
      pairs.push_back({"What is " + std::to_string(a) + " + " + std::to_string(b) + "?", std::to_string(a + b),
                       std::to_string(wrong)});
    }
  }
  for (size_t i = pairs.size(); i > 1; --i) std::swap(pairs[i - 1], pairs[engine() % i]);
  return pairs;
}

inline void write_pairs(const std::string& path, const std::vector<ArithmeticPair>& pairs) {
  std::ofstream out(path);
  for (const ArithmeticPair& p : pairs) {
    out << "{\"prompt\": \"" << p.prompt << "\", \"chosen\": \"" << p.chosen << "\", \"rejected\": \"" << p.rejected
        << "\"}\n";
  }
}

// A two-layer GPT-2 (GPT-2 BPE of the test fixture) on CPU in f32; `section` is "dpo" or
// "reward_model", whose train_path / valid_path are the given files.
inline std::string preference_recipe(const std::string& section, const std::string& train, const std::string& valid,
                                     const std::string& run_dir, const std::string& extra = "") {
  const auto fixture = gpt2_fixture_dir();
  return "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 64\n  num_attention_heads: 4\n"
         "  ffn_hidden_size: 128\n  max_position_embeddings: 32\n"
         "data:\n  vocab_file: " +
         (fixture / "encoder.json").string() + "\n  merge_file: " + (fixture / "vocab.bpe").string() +
         "\n  seq_length: 32\n" +
         "optimizer:\n  lr: 2.0e-3\n  min_lr: 2.0e-4\n  weight_decay: 0.0\n  clip_grad: 1.0\n"
         "scheduler:\n  lr_warmup_iters: 2\n"
         "train:\n  micro_batch_size: 4\n  global_batch_size: 8\n  train_iters: 4\n  eval_interval: 1000\n"
         "  eval_iters: 100\n  precision: fp32\n  device: cpu\n" +
         "logging:\n  log_interval: 1\n  run_dir: " + run_dir + "\n" + section + ":\n  train_path: [" + train + "]\n" +
         (valid.empty() ? "" : "  valid_path: [" + valid + "]\n") + extra;
}

// log p(answer | prompt) of `model`, summed in double over the answer's tokens and end token.
inline double answer_log_prob(const GptModel& model, const ChatTemplate& chat, const std::string& prompt,
                              const std::string& answer) {
  const RenderedConversation whole = chat.render({{ChatRole::kUser, prompt}, {ChatRole::kAssistant, answer}});
  const size_t prompt_tokens = chat.render({{ChatRole::kUser, prompt}}).tokens.size();
  const int64_t length = int64_t(whole.tokens.size());
  std::vector<int64_t> ids(whole.tokens.begin(), whole.tokens.end());
  NoGradGuard no_grad;
  const Tensor logits = model.forward(Tensor::from_vector(ids, {1, length}));
  const std::vector<float> values = logits.contiguous().to_vector<float>();
  const int64_t vocab = logits.size(2);
  double total = 0.0;
  for (size_t t = prompt_tokens; t < whole.tokens.size(); ++t) {
    if (whole.loss_mask[t] == 0) continue;
    const float* row = values.data() + (t - 1) * size_t(vocab);
    double max = row[0];
    for (int64_t v = 1; v < vocab; ++v) max = std::max(max, double(row[v]));
    double sum = 0.0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - max);
    total += double(row[whole.tokens[t]]) - max - std::log(sum);
  }
  return total;
}

// Saves a model of `config` drawn from `seed` into `directory` (iter_0000001.h5) and returns the
// directory (a checkpoint argument).
inline std::string save_seeded_model(const TrainConfig& config, uint64_t seed, const std::string& directory) {
  GptModel model(config.model, seed, ParamOptions{DType::F32, Device::cpu()});
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = config.resolved_yaml;
  checkpoint.step = 1;
  for (const auto& [name, value] : model.named_parameters()) checkpoint.model[name] = {value, DType::F32};
  save_checkpoint(directory, checkpoint, 1, [](const std::string&) {});
  return directory;
}

}  // namespace tessera::testing
