#include "models/generation.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>

#include "core/autograd/grad_mode.h"
#include "core/check.h"

namespace tessera {

namespace {

// One sequence of the batch while it grows.
struct Row {
  std::vector<int32_t> prompt;
  std::vector<int32_t> generated;  // stop sequence included while decoding
  size_t stop_length = 0;          // tokens at the end of `generated` that matched a stop sequence
  bool done = false;
};

// Each row's logits for its next token (host f32, one vector of V per row).
using NextLogits = std::function<std::vector<std::vector<float>>(const std::vector<Row>&)>;

// [B, T] i64: each sequence followed by padding (token 0) up to the longest.
Tensor right_padded(const std::vector<std::vector<int32_t>>& sequences, Device device) {
  size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  std::vector<int64_t> tokens(sequences.size() * longest, 0);
  for (size_t b = 0; b < sequences.size(); ++b)
    std::copy(sequences[b].begin(), sequences[b].end(), tokens.begin() + b * longest);
  return Tensor::from_vector(tokens, {static_cast<int64_t>(sequences.size()), static_cast<int64_t>(longest)})
      .to(device);
}

// logits [B, T, V] at (row, position), on the host in f32.
std::vector<float> logits_at(const Tensor& logits, int64_t row, int64_t position) {
  return logits.narrow(0, row, 1).narrow(1, position, 1).to_vector<float>();
}

Device model_device(const GptModel& model) { return model.parameters().front().device(); }

// Reruns every row's whole sequence (prompt and new tokens) each step.
NextLogits without_cache(const GptModel& model) {
  return [&model](const std::vector<Row>& rows) {
    std::vector<std::vector<int32_t>> sequences;
    for (const Row& row : rows) {
      sequences.push_back(row.prompt);
      sequences.back().insert(sequences.back().end(), row.generated.begin(), row.generated.end());
    }
    Tensor logits = model.forward(right_padded(sequences, model_device(model)));
    std::vector<std::vector<float>> next;
    for (size_t b = 0; b < rows.size(); ++b)
      next.push_back(logits_at(logits, static_cast<int64_t>(b), static_cast<int64_t>(sequences[b].size()) - 1));
    return next;
  };
}

// The first call runs the right-padded prompts and cuts each cache row back to its prompt;
// later calls run only each row's last new token.
NextLogits with_cache(const GptModel& model, KvCache& cache) {
  return [&model, &cache, first = true](const std::vector<Row>& rows) mutable {
    std::vector<std::vector<float>> next;
    if (first) {
      first = false;
      std::vector<std::vector<int32_t>> prompts;
      for (const Row& row : rows) prompts.push_back(row.prompt);
      Tensor logits = model.forward(right_padded(prompts, model_device(model)), cache);
      for (size_t b = 0; b < rows.size(); ++b) {
        const auto length = static_cast<int64_t>(rows[b].prompt.size());
        cache.truncate(static_cast<int64_t>(b), length);
        next.push_back(logits_at(logits, static_cast<int64_t>(b), length - 1));
      }
      return next;
    }
    std::vector<std::vector<int32_t>> last;
    for (const Row& row : rows) last.push_back({row.generated.back()});
    Tensor logits = model.forward(right_padded(last, model_device(model)), cache);
    for (size_t b = 0; b < rows.size(); ++b) next.push_back(logits_at(logits, static_cast<int64_t>(b), 0));
    return next;
  };
}

bool ends_with(const std::vector<int32_t>& tokens, const std::vector<int32_t>& suffix) {
  return tokens.size() >= suffix.size() && std::equal(suffix.rbegin(), suffix.rend(), tokens.rbegin());
}

void append_token(Row& row, int32_t token, const GenerationOptions& options) {
  row.generated.push_back(token);
  for (const auto& stop : options.stop_sequences) {
    if (ends_with(row.generated, stop)) {
      row.stop_length = stop.size();
      row.done = true;
      return;
    }
  }
  row.done = static_cast<int64_t>(row.generated.size()) == options.max_new_tokens;
}

void check_request(const GptModel& model, const std::vector<std::vector<int32_t>>& prompts,
                   const GenerationOptions& options) {
  validate(options.sampling);
  TS_CHECK(!model.is_training(), "generate: put the model in eval mode first (model.eval())");
  TS_CHECK(options.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ", options.max_new_tokens);
  TS_CHECK(!prompts.empty(), "generate: no prompts");
  for (size_t b = 0; b < prompts.size(); ++b) {
    TS_CHECK(!prompts[b].empty(), "generate: prompt ", b, " has no tokens; start it with at least one (e.g. the ",
             "end-of-text token)");
    for (int32_t token : prompts[b]) {
      TS_CHECK(token >= 0 && token < model.config().vocab_size, "generate: prompt ", b, " holds token ", token,
               ", outside the model's vocabulary of ", model.config().vocab_size);
    }
  }
  for (const auto& stop : options.stop_sequences) TS_CHECK(!stop.empty(), "generate: an empty stop sequence");
  // The last new token is never fed back: the longest sequence the model reads is one shorter.
  size_t longest = 0;
  for (const auto& prompt : prompts) longest = std::max(longest, prompt.size());
  const int64_t positions = static_cast<int64_t>(longest) + std::max<int64_t>(options.max_new_tokens - 1, 0);
  TS_CHECK(positions <= model.config().max_position_embeddings, "generate: the longest prompt (", longest,
           " tokens) plus ", options.max_new_tokens, " new tokens needs ", positions,
           " positions, beyond the model's max_position_embeddings ", model.config().max_position_embeddings,
           "; shorten the prompt or ask for fewer new tokens");
}

}  // namespace

void validate(const SamplingOptions& options) {
  TS_CHECK(std::isfinite(options.temperature) && options.temperature >= 0.0, "sampling: temperature ",
           options.temperature, " must be >= 0 (0 = greedy)");
  TS_CHECK(options.top_k >= 0, "sampling: top_k ", options.top_k, " must be >= 0 (0 = off)");
  TS_CHECK(options.top_p > 0.0 && options.top_p <= 1.0, "sampling: top_p ", options.top_p,
           " must be in (0, 1] (1 = off)");
}

std::vector<double> sampling_distribution(std::span<const float> logits, const SamplingOptions& options) {
  validate(options);
  TS_CHECK(options.temperature > 0.0, "sampling_distribution: temperature 0 is greedy, there is nothing to draw");
  TS_CHECK(!logits.empty(), "sampling_distribution: empty logits");
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    TS_CHECK(std::isfinite(logits[i]), "sampling: logit of token ", i, " is ", logits[i],
             " (the model's output is not finite)");
    p[i] = static_cast<double>(logits[i]) / options.temperature;
  }
  if (options.top_k > 0 && options.top_k < static_cast<int64_t>(p.size())) {
    std::vector<double> sorted = p;
    std::nth_element(sorted.begin(), sorted.begin() + (options.top_k - 1), sorted.end(), std::greater<>());
    const double kth = sorted[static_cast<size_t>(options.top_k - 1)];
    for (double& x : p) x = x < kth ? -std::numeric_limits<double>::infinity() : x;
  }
  const double max = *std::max_element(p.begin(), p.end());
  for (double& x : p) x = std::exp(x - max);
  double total = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= total;
  if (options.top_p < 1.0) {
    std::vector<size_t> order(p.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&p](size_t a, size_t b) { return p[a] > p[b]; });
    double kept = 0.0;
    for (size_t i : order) {
      if (kept >= options.top_p) {
        p[i] = 0.0;
      } else {
        kept += p[i];
      }
    }
    for (double& x : p) x /= kept;
  }
  return p;
}

int32_t choose_token(std::span<const float> logits, const SamplingOptions& options, double uniform) {
  TS_CHECK(!logits.empty(), "choose_token: empty logits");
  if (options.temperature == 0.0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const std::vector<double> p = sampling_distribution(logits, options);
  double cumulative = 0.0;
  int32_t last_kept = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) continue;
    last_kept = static_cast<int32_t>(i);
    cumulative += p[i];
    if (uniform < cumulative) return last_kept;
  }
  return last_kept;  // uniform within rounding of 1
}

std::vector<std::vector<int32_t>> generate(const GptModel& model, const std::vector<std::vector<int32_t>>& prompts,
                                           const GenerationOptions& options, Generator& generator) {
  check_request(model, prompts, options);
  NoGradGuard no_grad;
  std::vector<Row> rows;
  size_t longest_prompt = 0;
  for (const auto& prompt : prompts) {
    rows.push_back({prompt, {}, 0, options.max_new_tokens == 0});
    longest_prompt = std::max(longest_prompt, prompt.size());
  }
  std::optional<KvCache> cache;
  NextLogits next_logits = without_cache(model);
  if (options.use_cache) {
    cache.emplace(model.new_kv_cache(static_cast<int64_t>(rows.size()),
                                     static_cast<int64_t>(longest_prompt) + options.max_new_tokens));
    next_logits = with_cache(model, *cache);
  }
  auto all_done = [&rows] { return std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.done; }); };
  while (!all_done()) {
    const std::vector<std::vector<float>> logits = next_logits(rows);
    const PhiloxState draw = generator.next();
    for (size_t b = 0; b < rows.size(); ++b) {
      if (rows[b].done) continue;
      const double uniform = uint_to_unit_float(philox_word(draw, b));
      append_token(rows[b], choose_token(logits[b], options.sampling, uniform), options);
    }
  }
  std::vector<std::vector<int32_t>> out;
  for (const Row& row : rows) out.emplace_back(row.generated.begin(), row.generated.end() - row.stop_length);
  return out;
}

}  // namespace tessera
