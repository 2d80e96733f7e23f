#include "launcher/ppo_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <span>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/memory_stats.h"
#include "core/ops/ops.h"
#include "launcher/rollout_text.h"
#include "optim/grad_norm.h"
#include "posttrain/advantages.h"
#include "posttrain/log_probs.h"
#include "posttrain/losses.h"
#include "posttrain/rollout_scores.h"

namespace tessera {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
double mib(size_t bytes) { return double(bytes) / (1024.0 * 1024.0); }

std::vector<Tensor> trainable(const std::vector<Tensor>& parameters) {
  std::vector<Tensor> out;
  for (const Tensor& p : parameters)
    if (p.requires_grad()) out.push_back(p);
  return out;
}

// In place, as Module::zero_grad does (the critic's head is not reachable as a mutable Module).
void zero_gradients(const std::vector<Tensor>& parameters) {
  NoGradGuard no_grad;
  for (const Tensor& p : parameters) {
    Tensor grad = p.grad();
    if (grad.defined()) grad.zero_();
  }
}

double tokens_of(const RolloutBatch& batch) {
  double tokens = 0;
  for (int64_t length : batch.response_lengths) tokens += double(length);
  return tokens;
}

}  // namespace

void validate(const PpoTrainerOptions& o, int64_t dp) {
  TS_CHECK(o.prompts_per_step >= 1 && o.prompts_per_step % dp == 0, "train.global_batch_size (prompts per step) ",
           o.prompts_per_step, " must be a positive multiple of the ", dp, " data-parallel ranks");
  TS_CHECK(o.samples_per_prompt >= 1, "ppo.samples_per_prompt must be >= 1, got ", o.samples_per_prompt);
  const int64_t rows = o.prompts_per_step / dp * o.samples_per_prompt;
  TS_CHECK(o.num_minibatches >= 1 && rows % o.num_minibatches == 0, "ppo.num_minibatches ", o.num_minibatches,
           " must divide each rank's ", rows,
           " rollout rows (train.global_batch_size / ranks x ppo.samples_per_prompt)");
  TS_CHECK(o.micro_batch_size >= 1 && (rows / o.num_minibatches) % o.micro_batch_size == 0, "train.micro_batch_size ",
           o.micro_batch_size, " must divide each minibatch's ", rows / o.num_minibatches,
           " rows (rollout rows / ppo.num_minibatches)");
  TS_CHECK(o.epochs >= 1, "ppo.epochs must be >= 1, got ", o.epochs);
  TS_CHECK(o.max_new_tokens >= 1, "ppo.max_new_tokens must be >= 1, got ", o.max_new_tokens);
  TS_CHECK(o.sampling.temperature > 0, "ppo.temperature must be > 0 (the ratio needs the sampling distribution), got ",
           o.sampling.temperature);
  validate(o.sampling);
  TS_CHECK(o.clip_eps > 0, "ppo.clip_eps must be > 0, got ", o.clip_eps);
  TS_CHECK(o.value_clip > 0, "ppo.value_clip must be > 0, got ", o.value_clip);
  TS_CHECK(o.kl_coef >= 0, "ppo.kl_coef must be >= 0, got ", o.kl_coef);
  TS_CHECK(o.gamma > 0 && o.gamma <= 1, "ppo.gamma must be in (0, 1], got ", o.gamma);
  TS_CHECK(o.lam >= 0 && o.lam <= 1, "ppo.lam must be in [0, 1], got ", o.lam);
}

PpoTrainer::PpoTrainer(const PpoTrainerOptions& options, GptModel& actor, RewardModel& critic,
                       std::unique_ptr<ReferencePolicy> reference, PpoReward reward, std::vector<GrpoPrompt> prompts,
                       const Tokenizer& tokenizer, Communicator* data_parallel)
    : options_(options),
      actor_(actor),
      critic_(critic),
      reference_(std::move(reference)),
      reward_(std::move(reward)),
      prompts_(std::move(prompts)),
      tokenizer_(tokenizer),
      data_parallel_(data_parallel) {
  if (data_parallel_ != nullptr) {
    rank_ = data_parallel_->rank();
    world_ = data_parallel_->size();
  }
  validate(options_, world_);
  TS_CHECK(reward_.model != nullptr || reward_.function != nullptr,
           "PPO: no reward: set ppo.reward_model (a `tessera reward-model` checkpoint) or ppo.reward (arithmetic, "
           "addition or sorting)");
  TS_CHECK(!prompts_.empty(), "PPO: no prompts");
  TS_CHECK(options_.kl_coef == 0 || reference_ != nullptr, "PPO: ppo.kl_coef ", options_.kl_coef,
           " needs a reference model");
  tokenizer_.eod_id();  // throws when the tokenizer has no end token to stop responses at
  actor_parameters_ = trainable(actor_.parameters());
  critic_parameters_ = trainable(critic_.parameters());
  actor_optimizer_ = std::make_unique<AdamW>(actor_parameters_, options_.actor_adamw);
  critic_optimizer_ = std::make_unique<AdamW>(critic_parameters_, options_.critic_adamw);
  order_.resize(prompts_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = int64_t(i);
  std::mt19937_64 engine(options_.seed);  // same order on every rank
  for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[engine() % i]);
  sampler_ = Generator(rank_seed(options_.seed, rank_));
  actor_.eval();
  critic_.train(false);
}

GenerationOptions PpoTrainer::generation_options(const SamplingOptions& sampling) const {
  GenerationOptions g;
  g.max_new_tokens = options_.max_new_tokens;
  g.sampling = sampling;
  g.stop_sequences = {{tokenizer_.eod_id()}};
  return g;
}

std::vector<double> PpoTrainer::sum_over_ranks(std::vector<double> values) const {
  if (world_ == 1) return values;
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}).to(actor_parameters_.at(0).device());
  data_parallel_->all_reduce(t, ReduceOp::Sum);
  return t.to(Device::cpu()).to_vector<double>();
}

void PpoTrainer::all_reduce_gradients(const std::vector<Tensor>& parameters) const {
  if (world_ == 1) return;
  for (const Tensor& p : parameters)
    if (p.grad().defined()) {
      Tensor grad = p.grad();
      data_parallel_->all_reduce(grad, ReduceOp::Sum);
    }
}

PpoTrainer::Scored PpoTrainer::sample_and_score(const std::vector<const GrpoPrompt*>& prompts, int64_t samples,
                                                const SamplingOptions& sampling, Generator& generator) {
  const int32_t end = tokenizer_.eod_id();
  std::vector<std::vector<int32_t>> prompt_tokens;
  for (const GrpoPrompt* p : prompts) prompt_tokens.push_back(p->tokens);
  Scored out;
  NoGradGuard no_grad;
  out.responses = sample_groups(actor_, prompt_tokens, samples, generation_options(sampling), end, generator);
  std::vector<std::vector<int32_t>> row_prompts;
  for (size_t i = 0; i < out.responses.size(); ++i) {
    const GrpoPrompt& prompt = *prompts[i / size_t(samples)];
    std::vector<int32_t> text(out.responses[i].begin(), out.responses[i].end());
    if (!text.empty() && text.back() == end) text.pop_back();
    out.texts.push_back(decode_response(tokenizer_, text));
    out.scores.push_back(reward_.function ? reward_.function(prompt.question, out.texts.back()) : 0.0);
    out.correct.push_back(reward_.correct ? reward_.correct(prompt.question, out.texts.back()) : 0.0);
    row_prompts.push_back(prompt.tokens);
  }
  if (reward_.model != nullptr) {
    const Device device = reward_.model->parameters().at(0).device();
    const int64_t chunk = options_.micro_batch_size;
    for (int64_t first = 0; first < int64_t(row_prompts.size()); first += chunk) {
      const int64_t n = std::min<int64_t>(chunk, int64_t(row_prompts.size()) - first);
      const RolloutBatch rows =
          make_rollout_batch({row_prompts.begin() + first, row_prompts.begin() + first + n},
                             {out.responses.begin() + first, out.responses.begin() + first + n}, end, device);
      const std::vector<float> s = rollout_scores(*reward_.model, rows).to(Device::cpu()).to_vector<float>();
      for (int64_t i = 0; i < n; ++i) out.scores[size_t(first + i)] += double(s[size_t(i)]);
    }
  }
  return out;
}

PpoRollout PpoTrainer::collect_rollout() {
  const int64_t per_rank = options_.prompts_per_step / world_, samples = options_.samples_per_prompt;
  std::vector<const GrpoPrompt*> chosen;
  for (int64_t k = rank_ * per_rank; k < (rank_ + 1) * per_rank; ++k)
    chosen.push_back(&prompts_[order_[(next_prompt_ + k) % int64_t(order_.size())]]);
  next_prompt_ += options_.prompts_per_step;

  PpoRollout rollout;
  const Device device = actor_parameters_.at(0).device();
  if (device.is_cuda()) reset_peak_memory(device);
  const auto start = Clock::now();
  Scored scored = sample_and_score(chosen, samples, options_.sampling, sampler_);
  rollout.generation_seconds = seconds_since(start);
  if (device.is_cuda()) {  // generate()'s KV cache is gone: what is in use now is what training starts from
    const MemoryStats memory = memory_stats(device);
    rollout.generation_peak_mib = mib(memory.peak_bytes);
    rollout.after_release_mib = mib(memory.in_use_bytes);
  }
  std::vector<std::vector<int32_t>> row_prompts;
  for (size_t i = 0; i < scored.responses.size(); ++i) {
    rollout.questions.push_back(chosen[i / size_t(samples)]->question);
    rollout.response_tokens += double(scored.responses[i].size());
    row_prompts.push_back(chosen[i / size_t(samples)]->tokens);
  }
  rollout.responses = std::move(scored.texts);
  rollout.scores = scored.scores;
  rollout.correct = scored.correct;

  const RolloutBatch all = make_rollout_batch(row_prompts, scored.responses, tokenizer_.eod_id(), device);
  NoGradGuard no_grad;
  // GAE per micro-batch (it runs row by row), then whitening with moments over the whole step.
  double moments[3] = {0, 0, 0};  // token count, sum, sum of squares of the advantages
  for (int64_t first = 0; first < all.rows(); first += options_.micro_batch_size) {
    PpoMicroBatch m;
    m.batch = slice_rollout_batch(all, first, options_.micro_batch_size);
    std::vector<float> s(scored.scores.begin() + first, scored.scores.begin() + first + options_.micro_batch_size);
    m.scores = Tensor::from_vector(s, {options_.micro_batch_size});  // read on the host
    Tensor entropy;
    m.old_log_probs = rollout_log_probs(actor_, m.batch, options_.sampling.temperature, &entropy);
    rollout.entropy_sum += sum(entropy).item();
    Tensor kl = Tensor::zeros(m.batch.response_mask.shape(), DType::F32, device);
    if (options_.kl_coef > 0) {
      m.ref_log_probs = reference_->log_probs(m.batch, options_.sampling.temperature);
      kl = kl_penalty(m.old_log_probs, m.ref_log_probs, KlEstimator::K1).to(DType::F32) * m.batch.response_mask;
      rollout.kl_sum += sum(kl).item();
    }
    m.old_values = rollout_values(critic_, m.batch);
    const Tensor rewards = ppo_token_rewards(m.scores, kl, m.batch.response_mask, options_.kl_coef);
    const GaeResult g = gae(rewards, m.old_values, m.batch.response_mask, options_.gamma, options_.lam);
    m.advantages = g.advantages.to(DType::F32);
    m.returns = g.returns.to(DType::F32);
    const std::vector<double> a = m.advantages.to(Device::cpu()).to_vector<double>();
    const std::vector<double> mask = m.batch.response_mask.to(Device::cpu()).to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i)
      if (mask[i] != 0) {
        moments[0] += 1;
        moments[1] += a[i];
        moments[2] += a[i] * a[i];
      }
    rollout.micro_batches.push_back(std::move(m));
  }
  if (options_.whiten_advantages) {
    // TRL's masked_whiten over every response token of the step on all ranks (unbiased variance).
    const std::vector<double> t = sum_over_ranks({moments[0], moments[1], moments[2]});
    TS_CHECK(t[0] >= 2, "PPO: advantage whitening needs at least two response tokens in a step, got ", t[0]);
    const double mean = t[1] / t[0];
    const double variance = (t[2] - t[0] * mean * mean) / (t[0] - 1);
    const double scale = 1.0 / std::sqrt(std::max(variance, 0.0) + 1e-8);
    for (PpoMicroBatch& m : rollout.micro_batches) m.advantages = (m.advantages - mean) * scale * m.batch.response_mask;
  }
  return rollout;
}

PpoStepStats PpoTrainer::train_on(const PpoRollout& rollout) {
  const int64_t micros = int64_t(rollout.micro_batches.size());
  const int64_t per_minibatch = micros / options_.num_minibatches;
  std::vector<double> micro_tokens;
  for (const PpoMicroBatch& m : rollout.micro_batches) micro_tokens.push_back(tokens_of(m.batch));
  double clipped = 0, value_clipped = 0, trained_tokens = 0, processed_tokens = 0;
  PpoStepStats stats;
  const auto start = Clock::now();
  for (int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
    for (int64_t k = 0; k < options_.num_minibatches; ++k) {
      double local_tokens = 0;
      for (int64_t j = k * per_minibatch; j < (k + 1) * per_minibatch; ++j) local_tokens += micro_tokens[j];
      const double minibatch_tokens = sum_over_ranks({local_tokens})[0];
      zero_gradients(actor_parameters_);
      zero_gradients(critic_parameters_);
      double policy_loss = 0, value_loss = 0, clip = 0, value_clip = 0;
      for (int64_t j = k * per_minibatch; j < (k + 1) * per_minibatch; ++j) {
        const PpoMicroBatch& m = rollout.micro_batches[j];
        // Token means of micro-batches, weighted by their share of the minibatch's tokens on all ranks.
        const double weight = micro_tokens[j] / minibatch_tokens;
        const Tensor log_probs = rollout_log_probs(actor_, m.batch, options_.sampling.temperature);
        const PpoPolicyResult p =
            ppo_policy_loss(log_probs, m.old_log_probs, m.advantages, m.batch.response_mask, options_.clip_eps);
        (p.loss * weight).backward();
        const PpoValueResult v = ppo_value_loss(rollout_values(critic_, m.batch), m.old_values, m.returns,
                                                m.batch.response_mask, options_.value_clip);
        (v.loss * weight).backward();
        policy_loss += p.loss.item() * weight;
        value_loss += v.loss.item() * weight;
        clip += p.clip_fraction.item() * micro_tokens[j];
        value_clip += v.clip_fraction.item() * micro_tokens[j];
        processed_tokens += double(m.batch.tokens.numel());
      }
      all_reduce_gradients(actor_parameters_);
      all_reduce_gradients(critic_parameters_);
      const std::vector<double> totals = sum_over_ranks({policy_loss, value_loss, clip, value_clip});
      for (auto [parameters, optimizer] : {std::pair{&actor_parameters_, actor_optimizer_.get()},
                                           std::pair{&critic_parameters_, critic_optimizer_.get()}}) {
        double factor = 1.0;
        if (options_.clip_grad > 0) factor = clip_factor(std::sqrt(grad_norm_squared(*parameters)), options_.clip_grad);
        optimizer->step(factor);
      }
      stats.policy_losses.push_back(totals[0]);
      stats.value_losses.push_back(totals[1]);
      clipped += totals[2];
      value_clipped += totals[3];
      trained_tokens += minibatch_tokens;
    }
  }
  const double train_seconds = seconds_since(start);
  ++steps_;

  // Explained variance of the rollout's returns by the critic's values (before the updates).
  double ev[5] = {0, 0, 0, 0, 0};  // sum r, sum r^2, sum d, sum d^2 with d = r - v; tokens counted by response_tokens
  for (const PpoMicroBatch& m : rollout.micro_batches) {
    const std::vector<double> r = m.returns.to(Device::cpu()).to_vector<double>();
    const std::vector<double> v = m.old_values.to(Device::cpu()).to_vector<double>();
    const std::vector<double> mask = m.batch.response_mask.to(Device::cpu()).to_vector<double>();
    for (size_t i = 0; i < r.size(); ++i)
      if (mask[i] != 0) {
        ev[0] += r[i];
        ev[1] += r[i] * r[i];
        ev[2] += r[i] - v[i];
        ev[3] += (r[i] - v[i]) * (r[i] - v[i]);
        ev[4] += 1;
      }
  }
  const double n = double(rollout.scores.size());
  double score_sum = 0, correct_sum = 0;
  for (size_t i = 0; i < rollout.scores.size(); ++i) {
    score_sum += rollout.scores[i];
    correct_sum += rollout.correct[i] >= 1.0 ? 1.0 : 0.0;
  }
  const std::vector<double> t =
      sum_over_ranks({score_sum, correct_sum, n, rollout.response_tokens, rollout.entropy_sum, rollout.kl_sum,
                      processed_tokens, rollout.generation_seconds, train_seconds, ev[0], ev[1], ev[2], ev[3], ev[4]});
  stats.step = steps_;
  stats.mean_reward = t[0] / t[2];
  stats.accuracy = t[1] / t[2];
  stats.response_length = t[3] / t[2];
  stats.entropy = t[4] / t[3];
  stats.kl = t[5] / t[3];
  stats.clip_fraction = clipped / trained_tokens;
  stats.value_clip_fraction = value_clipped / trained_tokens;
  for (double l : stats.policy_losses) stats.policy_loss += l / double(stats.policy_losses.size());
  for (double l : stats.value_losses) stats.value_loss += l / double(stats.value_losses.size());
  const double var_returns = t[10] / t[13] - (t[9] / t[13]) * (t[9] / t[13]);
  const double var_residual = t[12] / t[13] - (t[11] / t[13]) * (t[11] / t[13]);
  stats.explained_variance = var_returns > 0 ? 1.0 - var_residual / var_returns : 0.0;
  // Throughput of the whole data-parallel group: tokens over all ranks per second of one rank.
  stats.generation_tokens_per_s = t[3] / (t[7] / double(world_));
  stats.training_tokens_per_s = t[6] / (t[8] / double(world_));
  stats.generation_peak_mib = rollout.generation_peak_mib;
  stats.after_release_mib = rollout.after_release_mib;
  return stats;
}

PpoStepStats PpoTrainer::step() { return train_on(collect_rollout()); }

PpoEvalStats PpoTrainer::evaluate(const std::vector<GrpoPrompt>& prompts, const SamplingOptions& sampling,
                                  uint64_t seed) {
  validate(sampling);
  std::vector<const GrpoPrompt*> mine;
  for (size_t i = size_t(rank_); i < prompts.size(); i += size_t(world_)) mine.push_back(&prompts[i]);
  Generator generator(rank_seed(seed, rank_));
  double reward_sum = 0, correct_sum = 0;
  const size_t chunk = size_t(options_.prompts_per_step / world_ * options_.samples_per_prompt);
  for (size_t first = 0; first < mine.size(); first += chunk) {
    const std::vector<const GrpoPrompt*> part(mine.begin() + first,
                                              mine.begin() + std::min(mine.size(), first + chunk));
    const Scored scored = sample_and_score(part, 1, sampling, generator);
    for (size_t i = 0; i < part.size(); ++i) {
      reward_sum += scored.scores[i];
      correct_sum += scored.correct[i] >= 1.0 ? 1.0 : 0.0;
    }
  }
  const std::vector<double> t = sum_over_ranks({reward_sum, correct_sum, double(mine.size())});
  TS_CHECK(t[2] > 0, "PPO evaluation: no prompts");
  return {t[0] / t[2], t[1] / t[2], int64_t(t[2])};
}

}  // namespace tessera
