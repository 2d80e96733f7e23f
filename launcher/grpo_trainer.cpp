#include "launcher/grpo_trainer.h"

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
#include "models/lora.h"
#include "optim/grad_norm.h"
#include "posttrain/advantages.h"
#include "posttrain/log_probs.h"
#include "posttrain/losses.h"

namespace tessera {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }
double mib(size_t bytes) { return double(bytes) / (1024.0 * 1024.0); }

}  // namespace

FrozenCopyReference::FrozenCopyReference(const GptModel& policy) {
  const Tensor first = policy.parameters().at(0);
  model_ = std::make_unique<GptModel>(policy.config(), /*seed=*/0, ParamOptions{first.dtype(), first.device()},
                                      policy.parallelism());
  const auto source = policy.named_parameters();
  const auto target = model_->named_parameters();
  TS_CHECK(source.size() == target.size(), "GRPO reference: the copy has ", target.size(), " parameters, the policy ",
           source.size());
  NoGradGuard no_grad;
  for (size_t i = 0; i < source.size(); ++i) {
    TS_CHECK(source[i].first == target[i].first, "GRPO reference: parameter ", i, " is ", target[i].first,
             " in the copy but ", source[i].first, " in the policy");
    Tensor weight = target[i].second;
    weight.copy_(source[i].second);
    weight.set_requires_grad(false);
  }
  model_->eval();
}

Tensor FrozenCopyReference::log_probs(const RolloutBatch& batch, double temperature) const {
  NoGradGuard no_grad;
  return rollout_log_probs(*model_, batch, temperature);
}

LoraBaseReference::LoraBaseReference(const GptModel& policy) : policy_(policy) {
  TS_CHECK(!lora_adapters(policy).empty(), "GRPO reference: the policy has no LoRA adapters to switch off");
}

Tensor LoraBaseReference::log_probs(const RolloutBatch& batch, double temperature) const {
  NoGradGuard no_grad;
  LoraDisabledScope adapters_off(policy_);  // the policy stays in eval mode throughout GRPO
  return rollout_log_probs(policy_, batch, temperature);
}

void validate(const GrpoTrainerOptions& o, int64_t dp) {
  TS_CHECK(o.group_size >= 2, "grpo.group_size must be >= 2 (advantages compare the samples of a prompt), got ",
           o.group_size);
  TS_CHECK(o.prompts_per_step >= 1 && o.prompts_per_step % dp == 0, "train.global_batch_size (prompts per step) ",
           o.prompts_per_step, " must be a positive multiple of the ", dp, " data-parallel ranks");
  const int64_t rows = o.prompts_per_step / dp * o.group_size;
  TS_CHECK(o.num_minibatches >= 1 && rows % o.num_minibatches == 0, "grpo.num_minibatches ", o.num_minibatches,
           " must divide each rank's ", rows, " rollout rows (train.global_batch_size / ranks x grpo.group_size)");
  TS_CHECK(o.micro_batch_size >= 1 && (rows / o.num_minibatches) % o.micro_batch_size == 0, "train.micro_batch_size ",
           o.micro_batch_size, " must divide each minibatch's ", rows / o.num_minibatches,
           " rows (rollout rows / grpo.num_minibatches)");
  TS_CHECK(o.epochs >= 1, "grpo.epochs must be >= 1, got ", o.epochs);
  TS_CHECK(o.max_new_tokens >= 1, "grpo.max_new_tokens must be >= 1, got ", o.max_new_tokens);
  TS_CHECK(o.sampling.temperature > 0, "grpo.temperature must be > 0 (a group of greedy samples is one sample), got ",
           o.sampling.temperature);
  validate(o.sampling);
  TS_CHECK(o.clip_eps > 0, "grpo.clip_eps must be > 0, got ", o.clip_eps);
  TS_CHECK(o.kl_coef >= 0, "grpo.kl_coef must be >= 0, got ", o.kl_coef);
}

GrpoTrainer::GrpoTrainer(const GrpoTrainerOptions& options, GptModel& policy,
                         std::unique_ptr<ReferencePolicy> reference, RewardFunction reward, RewardFunction correct,
                         std::vector<GrpoPrompt> prompts, const Tokenizer& tokenizer, Communicator* data_parallel)
    : options_(options),
      policy_(policy),
      reference_(std::move(reference)),
      reward_(std::move(reward)),
      correct_(correct ? std::move(correct) : reward_),
      prompts_(std::move(prompts)),
      tokenizer_(tokenizer),
      data_parallel_(data_parallel) {
  if (data_parallel_ != nullptr) {
    rank_ = data_parallel_->rank();
    world_ = data_parallel_->size();
  }
  validate(options_, world_);
  TS_CHECK(reward_ != nullptr, "GRPO: no reward function");
  TS_CHECK(!prompts_.empty(), "GRPO: no prompts");
  TS_CHECK(options_.kl_coef == 0 || reference_ != nullptr, "GRPO: grpo.kl_coef ", options_.kl_coef,
           " needs a reference model");
  tokenizer_.eod_id();  // throws when the tokenizer has no end token to stop responses at
  for (const Tensor& p : policy_.parameters())
    if (p.requires_grad()) parameters_.push_back(p);
  optimizer_ = std::make_unique<AdamW>(parameters_, options_.adamw);
  order_.resize(prompts_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = int64_t(i);
  std::mt19937_64 engine(options_.seed);  // same order on every rank
  for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[engine() % i]);
  sampler_ = Generator(rank_seed(options_.seed, rank_));
  policy_.eval();
}

GenerationOptions GrpoTrainer::generation_options(const SamplingOptions& sampling) const {
  GenerationOptions g;
  g.max_new_tokens = options_.max_new_tokens;
  g.sampling = sampling;
  g.stop_sequences = {{tokenizer_.eod_id()}};
  return g;
}

std::vector<double> GrpoTrainer::sum_over_ranks(std::vector<double> values) const {
  if (world_ == 1) return values;
  const Device device = parameters_.empty() ? Device::cpu() : parameters_[0].device();
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}).to(device);
  data_parallel_->all_reduce(t, ReduceOp::Sum);
  return t.to(Device::cpu()).to_vector<double>();
}

GrpoRollout GrpoTrainer::collect_rollout() {
  const int64_t per_rank = options_.prompts_per_step / world_, g = options_.group_size;
  std::vector<const GrpoPrompt*> chosen;
  for (int64_t k = rank_ * per_rank; k < (rank_ + 1) * per_rank; ++k)
    chosen.push_back(&prompts_[order_[(next_prompt_ + k) % int64_t(order_.size())]]);
  next_prompt_ += options_.prompts_per_step;

  GrpoRollout rollout;
  const Device device = parameters_.at(0).device();
  if (device.is_cuda()) reset_peak_memory(device);
  std::vector<std::vector<int32_t>> prompt_tokens;
  for (const GrpoPrompt* p : chosen) prompt_tokens.push_back(p->tokens);
  const int32_t end = tokenizer_.eod_id();
  const auto start = Clock::now();
  std::vector<std::vector<int32_t>> responses;
  {
    NoGradGuard no_grad;
    responses = sample_groups(policy_, prompt_tokens, g, generation_options(options_.sampling), end, sampler_);
  }
  rollout.generation_seconds = seconds_since(start);
  if (device.is_cuda()) {  // generate()'s KV cache is gone: what is in use now is what training starts from
    const MemoryStats memory = memory_stats(device);
    rollout.generation_peak_mib = mib(memory.peak_bytes);
    rollout.after_release_mib = mib(memory.in_use_bytes);
  }

  std::vector<std::vector<int32_t>> row_prompts;
  for (size_t i = 0; i < responses.size(); ++i) {
    const GrpoPrompt& prompt = *chosen[i / g];
    std::vector<int32_t> text(responses[i].begin(), responses[i].end());
    if (!text.empty() && text.back() == end) text.pop_back();
    rollout.questions.push_back(prompt.question);
    rollout.responses.push_back(decode_response(tokenizer_, text));
    rollout.rewards.push_back(reward_(prompt.question, rollout.responses.back()));
    rollout.correct.push_back(correct_(prompt.question, rollout.responses.back()));
    rollout.response_tokens += double(responses[i].size());
    row_prompts.push_back(prompt.tokens);
  }
  std::vector<float> rewards(rollout.rewards.begin(), rollout.rewards.end());
  const std::vector<float> advantages =
      grpo_advantages(Tensor::from_vector(rewards, {int64_t(rewards.size())}), {g, options_.scale_rewards})
          .to_vector<float>();

  const RolloutBatch all = make_rollout_batch(row_prompts, responses, end, device);
  NoGradGuard no_grad;
  for (int64_t first = 0; first < all.rows(); first += options_.micro_batch_size) {
    GrpoMicroBatch micro;
    micro.batch = slice_rollout_batch(all, first, options_.micro_batch_size);
    std::vector<float> a(advantages.begin() + first, advantages.begin() + first + options_.micro_batch_size);
    micro.advantages = Tensor::from_vector(a, {options_.micro_batch_size, 1}, device);
    Tensor entropy;
    micro.old_log_probs = rollout_log_probs(policy_, micro.batch, options_.sampling.temperature, &entropy);
    rollout.entropy_sum += sum(entropy).item();
    if (options_.kl_coef > 0) {
      micro.ref_log_probs = reference_->log_probs(micro.batch, options_.sampling.temperature);
      const Tensor kl = kl_penalty(micro.old_log_probs, micro.ref_log_probs, KlEstimator::K3);
      rollout.kl_sum += sum(kl.to(DType::F32) * micro.batch.response_mask).item();
    }
    rollout.micro_batches.push_back(std::move(micro));
  }
  return rollout;
}

GrpoStepStats GrpoTrainer::train_on(const GrpoRollout& rollout) {
  const int64_t micros = int64_t(rollout.micro_batches.size());
  const int64_t per_minibatch = micros / options_.num_minibatches;
  std::vector<double> micro_tokens;
  for (const GrpoMicroBatch& m : rollout.micro_batches) {
    double tokens = 0;
    for (int64_t length : m.batch.response_lengths) tokens += double(length);
    micro_tokens.push_back(tokens);
  }
  double clipped_tokens = 0, trained_tokens = 0, processed_tokens = 0;
  GrpoStepStats stats;
  const auto start = Clock::now();
  for (int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
    for (int64_t k = 0; k < options_.num_minibatches; ++k) {
      double local_tokens = 0;
      for (int64_t j = k * per_minibatch; j < (k + 1) * per_minibatch; ++j) local_tokens += micro_tokens[j];
      const double minibatch_tokens = sum_over_ranks({local_tokens})[0];
      policy_.zero_grad();
      double loss = 0, clipped = 0;
      for (int64_t j = k * per_minibatch; j < (k + 1) * per_minibatch; ++j) {
        const GrpoMicroBatch& m = rollout.micro_batches[j];
        const Tensor log_probs = rollout_log_probs(policy_, m.batch, options_.sampling.temperature);
        const PpoPolicyResult policy_loss =
            ppo_policy_loss(log_probs, m.old_log_probs, m.advantages, m.batch.response_mask, options_.clip_eps);
        Tensor micro_loss = policy_loss.loss;
        if (options_.kl_coef > 0)
          micro_loss =
              micro_loss + options_.kl_coef * masked_mean(kl_penalty(log_probs, m.ref_log_probs, KlEstimator::K3),
                                                          m.batch.response_mask);
        // Token means of micro-batches, weighted by their share of the minibatch's tokens on all ranks.
        const double weight = micro_tokens[j] / minibatch_tokens;
        (micro_loss * weight).backward();
        loss += micro_loss.item() * weight;
        clipped += policy_loss.clip_fraction.item() * micro_tokens[j];
        processed_tokens += double(m.batch.tokens.numel());
      }
      if (world_ > 1)
        for (const Tensor& p : parameters_)
          if (p.grad().defined()) {
            Tensor grad = p.grad();
            data_parallel_->all_reduce(grad, ReduceOp::Sum);
          }
      const std::vector<double> totals = sum_over_ranks({loss, clipped});
      double factor = 1.0;
      if (options_.clip_grad > 0) factor = clip_factor(std::sqrt(grad_norm_squared(parameters_)), options_.clip_grad);
      optimizer_->step(factor);
      stats.update_losses.push_back(totals[0]);
      clipped_tokens += totals[1];
      trained_tokens += minibatch_tokens;
    }
  }
  const double train_seconds = seconds_since(start);
  ++steps_;

  const double n = double(rollout.rewards.size());
  double reward_sum = 0, correct_sum = 0;
  for (size_t i = 0; i < rollout.rewards.size(); ++i) {
    reward_sum += rollout.rewards[i];
    correct_sum += rollout.correct[i] >= 1.0 ? 1.0 : 0.0;
  }
  const std::vector<double> t =
      sum_over_ranks({reward_sum, correct_sum, n, rollout.response_tokens, rollout.entropy_sum, rollout.kl_sum,
                      processed_tokens, rollout.generation_seconds, train_seconds});
  stats.step = steps_;
  stats.mean_reward = t[0] / t[2];
  stats.accuracy = t[1] / t[2];
  stats.response_length = t[3] / t[2];
  stats.entropy = t[4] / t[3];
  stats.kl = t[5] / t[3];
  stats.clip_fraction = clipped_tokens / trained_tokens;
  for (double l : stats.update_losses) stats.loss += l / double(stats.update_losses.size());
  // Throughput of the whole data-parallel group: tokens over all ranks per second of one rank.
  stats.generation_tokens_per_s = t[3] / (t[7] / double(world_));
  stats.training_tokens_per_s = t[6] / (t[8] / double(world_));
  stats.generation_peak_mib = rollout.generation_peak_mib;
  stats.after_release_mib = rollout.after_release_mib;
  return stats;
}

GrpoStepStats GrpoTrainer::step() { return train_on(collect_rollout()); }

GrpoEvalStats GrpoTrainer::evaluate(const std::vector<GrpoPrompt>& prompts, const SamplingOptions& sampling,
                                    uint64_t seed) {
  validate(sampling);
  std::vector<const GrpoPrompt*> mine;
  for (size_t i = size_t(rank_); i < prompts.size(); i += size_t(world_)) mine.push_back(&prompts[i]);
  Generator generator(rank_seed(seed, rank_));
  GenerationOptions generation = generation_options(sampling);
  double reward_sum = 0, correct_sum = 0;
  const size_t chunk = size_t(options_.prompts_per_step / world_ * options_.group_size);
  NoGradGuard no_grad;
  for (size_t first = 0; first < mine.size(); first += chunk) {
    std::vector<std::vector<int32_t>> tokens;
    for (size_t i = first; i < std::min(mine.size(), first + chunk); ++i) tokens.push_back(mine[i]->tokens);
    const std::vector<std::vector<int32_t>> responses = generate(policy_, tokens, generation, generator);
    for (size_t i = 0; i < responses.size(); ++i) {
      const std::string text = decode_response(tokenizer_, responses[i]);
      reward_sum += reward_(mine[first + i]->question, text);
      correct_sum += correct_(mine[first + i]->question, text) >= 1.0 ? 1.0 : 0.0;
    }
  }
  const std::vector<double> t = sum_over_ranks({reward_sum, correct_sum, double(mine.size())});
  TS_CHECK(t[2] > 0, "GRPO evaluation: no prompts");
  return {t[0] / t[2], t[1] / t[2], int64_t(t[2])};
}

}  // namespace tessera
