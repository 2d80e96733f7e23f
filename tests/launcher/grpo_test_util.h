// Shared by the GRPO tests: single-digit addition as chat prompts under a byte-level tokenizer
// (id = byte, end-of-text 256) and a compact template ("3+4=" -> "7" EOD), a tiny GPT whose
// vocabulary fits it, and a short SFT on the same task so GRPO starts from a model that answers
// in the right format but not always correctly.
#pragma once

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "data/chat_template.h"
#include "data/sft_test_util.h"
#include "launcher/grpo_prompts.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"

namespace tessera::testing {

inline ChatTemplate compact_template() {
  return ChatTemplate(ChatTemplateFormats{"", "{content}", "{content}", "{content}{eod}"}, byte_tokenizer(), "compact");
}

inline TransformerConfig grpo_tiny_config() {
  TransformerConfig c = transformer_preset("gpt2-124m");
  c.name = "grpo-tiny";
  c.num_layers = 2;
  c.hidden_size = 64;
  c.num_attention_heads = 4;
  c.num_query_groups = 4;
  c.ffn_hidden_size = 128;
  c.vocab_size = 261;  // byte_tokenizer's ids
  c.make_vocab_size_divisible_by = 8;
  c.max_position_embeddings = 16;
  return c;
}

// "a+b=" for a, b in [0, 10): the pairs with (a + 2b) % 5 == 0 are held out (20 of 100).
inline std::vector<std::pair<int, int>> addition_pairs(bool held_out) {
  std::vector<std::pair<int, int>> pairs;
  for (int a = 0; a < 10; ++a)
    for (int b = 0; b < 10; ++b)
      if (((a + 2 * b) % 5 == 0) == held_out) pairs.emplace_back(a, b);
  return pairs;
}

inline std::string question(const std::pair<int, int>& p) {
  return std::to_string(p.first) + "+" + std::to_string(p.second) + "=";
}

inline std::vector<GrpoPrompt> addition_prompts(bool held_out) {
  const ChatTemplate t = compact_template();
  std::vector<GrpoPrompt> prompts;
  for (const auto& p : addition_pairs(held_out))
    prompts.push_back({render_generation_prompt(t, {{ChatRole::kUser, question(p)}}), question(p)});
  return prompts;
}

// `steps` AdamW steps of SFT on the training pairs (loss on the answer and its end token), 16
// conversations a step drawn from `seed`.
inline void sft_addition(GptModel& model, int steps, double lr, uint32_t seed) {
  const ChatTemplate t = compact_template();
  const auto pairs = addition_pairs(false);
  std::vector<Tensor> parameters = model.parameters();
  AdamW optimizer(parameters, AdamWOptions{.lr = lr, .weight_decay = 0.0});
  std::mt19937 engine(seed);
  const int64_t rows = 16, width = 8;
  for (int step = 0; step < steps; ++step) {
    std::vector<int64_t> tokens(rows * width, 0), labels(rows * width, -100);
    std::vector<float> mask(rows * width, 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const auto& p = pairs[engine() % pairs.size()];
      const RenderedConversation c =
          t.render({{ChatRole::kUser, question(p)}, {ChatRole::kAssistant, std::to_string(p.first + p.second)}});
      for (size_t i = 0; i < c.tokens.size(); ++i) tokens[r * width + int64_t(i)] = c.tokens[i];
      for (size_t i = 0; i + 1 < c.tokens.size(); ++i) {
        labels[r * width + int64_t(i)] = c.tokens[i + 1];
        mask[r * width + int64_t(i)] = c.loss_mask[i + 1];
      }
    }
    const Shape shape{rows, width};
    model.zero_grad();
    model
        .loss(LmBatch{Tensor::from_vector(tokens, shape), Tensor::from_vector(labels, shape),
                      Tensor::from_vector(mask, shape)})
        .backward();
    optimizer.step();
  }
}

}  // namespace tessera::testing
