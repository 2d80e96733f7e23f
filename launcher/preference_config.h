// The settings of a preference-tuning run, `tessera dpo` (recipe section dpo:) and
// `tessera reward-model` (section reward_model:): the base training configuration of the recipe
// (model, optimizer, scheduler, train, checkpoint, logging: launcher/train_config.h) plus the
// method's section, every problem a one-line error naming the key before any work starts.
// The pairs files (SECTION.train_path / valid_path) stand in for the data section's source, so the
// base validation (tokenizer set, layout) applies to them; data.data_path and data.sft_*_path must
// not be set. This build runs preference tuning data-parallel only: tensor, pipeline and context
// parallelism and ZeRO are refused with the key to change. A lora section (dpo only) makes the
// policy dpo.init_from's model plus adapters; dpo.reference_from and lora.base must then be unset
// (the reference and the base are dpo.init_from), and the resolved recipe sets lora.base to it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/preference_dataset.h"
#include "launcher/train_config.h"
#include "posttrain/losses.h"

namespace tessera {

enum class PreferenceMethod { kDpo, kRewardModel };

struct PreferenceRunConfig {
  PreferenceMethod method = PreferenceMethod::kDpo;
  TrainConfig train;
  std::vector<std::string> train_paths, valid_paths;  // pairs JSONL
  // dpo: the policy's start, and the frozen reference's (init_from unless set); reward_model: the
  // backbone's start (empty: random weights from train.seed).
  std::string init_from, reference_from;
  DpoOptions dpo;  // beta, label_smoothing, ipo (dpo only)
};

const char* preference_section(PreferenceMethod method);  // "dpo" / "reward_model"

// `yaml_text` is the recipe (as Recipe::parse takes it, `origin_name` naming it in errors).
PreferenceRunConfig preference_config_from_recipe(PreferenceMethod method, const std::string& yaml_text,
                                                  const std::string& origin_name,
                                                  const std::vector<std::string>& overrides,
                                                  const LaunchContext& launch = {});

struct PreferenceDatasets {
  std::shared_ptr<const PreferenceDataset> train, valid;  // valid: null without SECTION.valid_path
};
// Reads the pairs with the recipe's tokenizer and chat template (data.chat_template), rows of
// data.seq_length tokens; logs one summary line per split.
PreferenceDatasets load_preference_datasets(const PreferenceRunConfig& c,
                                            const std::function<void(const std::string&)>& log);

}  // namespace tessera
