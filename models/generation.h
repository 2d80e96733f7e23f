// Text generation from a GptModel: a batch of prompts is continued token by token, each token
// chosen from the last position's logits by greedy decoding or by sampling.
//
// Batching: prompts may differ in length. The first pass runs them together right-padded to
// the longest (causal attention keeps padding out of every real position), then each row's
// cache is cut back to its own length, so row b's k-th new token sits at position
// len(b) + k whatever the other rows hold (per-sequence lengths, no attention mask needed).
// Without a cache (use_cache = false) every step reruns each row's whole sequence: slow, and
// the reference the cached path is tested against.
//
// Sampling follows Hugging Face's warpers, in their order: logits / temperature, then top-k
// (ties with the k-th logit kept), then top-p (the smallest set of most likely tokens whose
// probability sums to >= top_p, at least one token), then a draw from what is left,
// renormalised. Temperature 0 is greedy (argmax; the lowest id among equal logits). Draws come
// from a Philox Generator: one draw per step, word b for row b, so a seed reproduces the text.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/random.h"
#include "models/gpt_model.h"

namespace tessera {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: no top-k
  double top_p = 1.0;        // 1: no top-p
};

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  // A row stops once its new tokens end with one of these (the end-of-text token, a stop
  // text's tokens); the stop sequence is not part of the returned tokens.
  std::vector<std::vector<int32_t>> stop_sequences;
  bool use_cache = true;
};

// Throws naming the first option out of range.
void validate(const SamplingOptions& options);

// The probabilities a token is drawn from for one row of logits (temperature > 0): zero for
// the tokens top-k and top-p removed, the rest renormalised to sum to 1.
std::vector<double> sampling_distribution(std::span<const float> logits, const SamplingOptions& options);

// The next token for one row of logits: argmax at temperature 0, else the token where the
// cumulative sampling distribution (in id order) first exceeds `uniform` in [0, 1).
int32_t choose_token(std::span<const float> logits, const SamplingOptions& options, double uniform);

// The new tokens of each prompt (at most max_new_tokens, fewer when a stop sequence ended it).
// The model must be in eval mode; prompts must be non-empty.
std::vector<std::vector<int32_t>> generate(const GptModel& model, const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerationOptions& options, Generator& generator);

}  // namespace tessera
