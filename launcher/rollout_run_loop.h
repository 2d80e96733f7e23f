// The step loop `tessera grpo` and `tessera ppo` share: the held-out prompts are evaluated
// greedily before the first step, every train.eval_interval steps and after the last; every step's
// stats go to RUN_DIR/metrics.jsonl (from the leader) and to the log every log_interval steps.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "launcher/grpo_prompts.h"
#include "launcher/rollout_recipe.h"
#include "models/generation.h"

namespace tessera {

// Trainer: step() -> Stats, evaluate(prompts, sampling, seed) -> EvalStats (mean_reward,
// accuracy, samples), steps_taken(). Result: steps (Stats) and evaluations ({step, EvalStats}).
template <typename Trainer, typename Result, typename StepJson, typename StepLine>
void run_rollout_steps(Trainer& trainer, const RolloutRunConfig& config, uint64_t seed,
                       const std::vector<GrpoPrompt>& held_out, bool leader,
                       const std::function<void(const std::string&)>& log, Result& result, StepJson step_json,
                       StepLine step_line) {
  const SamplingOptions greedy{0.0, 0, 1.0};  // what the model answers
  auto evaluate = [&] {
    if (held_out.empty()) return;
    const auto e = trainer.evaluate(held_out, greedy, seed);
    result.evaluations.emplace_back(trainer.steps_taken(), e);
    log(fmt::format("eval after {} steps: held-out reward {:.3f}, accuracy {:.3f} ({} prompts, greedy)",
                    trainer.steps_taken(), e.mean_reward, e.accuracy, e.samples));
  };
  std::ofstream metrics;
  if (leader && !config.run_dir.empty()) {
    std::filesystem::create_directories(config.run_dir);
    metrics.open(std::filesystem::path(config.run_dir) / "metrics.jsonl");
  }
  evaluate();
  for (int64_t step = 1; step <= config.steps; ++step) {
    result.steps.push_back(trainer.step());
    if (metrics.is_open()) metrics << step_json(result.steps.back()) << "\n" << std::flush;
    if (step % config.log_interval == 0 || step == config.steps) log(step_line(result.steps.back(), config.steps));
    if (step % config.eval_interval == 0 && step != config.steps) evaluate();
  }
  evaluate();
}

}  // namespace tessera
