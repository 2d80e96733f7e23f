#include "launcher/preference_config.h"

#include <fmt/format.h>

#include <filesystem>

#include "data/chat_template.h"
#include "data/tokenizer.h"

namespace tessera {

const char* preference_section(PreferenceMethod method) {
  return method == PreferenceMethod::kDpo ? "dpo" : "reward_model";
}

PreferenceRunConfig preference_config_from_recipe(PreferenceMethod method, const std::string& yaml_text,
                                                  const std::string& origin_name,
                                                  const std::vector<std::string>& overrides,
                                                  const LaunchContext& launch) {
  const std::string section = preference_section(method);
  const std::string train_key = section + ".train_path", valid_key = section + ".valid_path";
  const Recipe recipe = Recipe::parse(yaml_text, origin_name, overrides);
  PreferenceRunConfig c;
  c.method = method;
  for (const char* key : {"data.data_path", "data.sft_train_path", "data.sft_valid_path"}) {
    TS_CHECK(!recipe.has(key), recipe.origin(key), ": ", key, " is set, but `tessera ",
             method == PreferenceMethod::kDpo ? "dpo" : "reward-model", "` reads preference pairs from ", train_key,
             " and ", valid_key, "; drop ", key);
  }
  TS_CHECK(recipe.has(train_key), origin_name, ": ", train_key,
           " is required: the preference pairs JSONL ({\"prompt\", \"chosen\", \"rejected\"} per line; "
           "scripts/make_arithmetic_chat.py --pairs writes some)");
  c.train_paths = recipe.get_list(train_key);
  if (recipe.has(valid_key)) c.valid_paths = recipe.get_list(valid_key);
  for (const auto* files : {&c.train_paths, &c.valid_paths}) {
    const std::string& key = files == &c.train_paths ? train_key : valid_key;
    for (const std::string& file : *files)
      TS_CHECK(std::filesystem::exists(file), recipe.origin(key), ": ", key, ": ", file,
               " does not exist (write pairs with scripts/make_arithmetic_chat.py --pairs)");
  }
  TS_CHECK(!recipe.get_string("data.tokenizer_model").empty() ||
               (!recipe.get_string("data.vocab_file").empty() && !recipe.get_string("data.merge_file").empty()),
           origin_name, ": ", train_key,
           " needs the tokenizer to render the pairs: set data.vocab_file and data.merge_file (GPT-2 BPE) or "
           "data.tokenizer_model");

  c.init_from = recipe.get_string(section + ".init_from");
  if (method == PreferenceMethod::kDpo) {
    TS_CHECK(!c.init_from.empty(), origin_name,
             ": missing reference model: set dpo.init_from to the checkpoint the policy and its frozen reference "
             "start from (an SFT run's checkpoint directory, an iter_NNNNNNN folder or an .h5 file)");
    c.reference_from = recipe.get_string("dpo.reference_from");
    if (c.reference_from.empty()) c.reference_from = c.init_from;
    for (const char* key : {"dpo.init_from", "dpo.reference_from"}) {
      const std::string& path = key == std::string("dpo.init_from") ? c.init_from : c.reference_from;
      TS_CHECK(std::filesystem::exists(path), recipe.origin(key), ": missing reference model: ", key, " ", path,
               " does not exist (train an SFT model first: tessera train recipes/sft_arithmetic_gpt2.yaml)");
    }
  } else if (!c.init_from.empty()) {
    TS_CHECK(std::filesystem::exists(c.init_from), recipe.origin("reward_model.init_from"), ": reward_model.init_from ",
             c.init_from, " does not exist");
  }

  // The base configuration, with the pairs as the run's data source (see the header).
  std::vector<std::string> base_overrides = overrides;
  base_overrides.push_back("data.sft_train_path=[" + fmt::format("{}", fmt::join(c.train_paths, ",")) + "]");
  // LoRA (docs/lora.md): the policy is dpo.init_from's model as the frozen base plus adapters, and
  // the reference is that base with the adapters off. The resolved recipe names the base as
  // lora.base, so a checkpoint of the adapters alone says what `tessera export` merges them into.
  if (recipe.get_int("lora.rank") > 0) {
    TS_CHECK(method == PreferenceMethod::kDpo, recipe.origin("lora.rank"),
             ": `tessera reward-model` with LoRA is not supported (its scalar head trains whole); remove the lora "
             "section");
    TS_CHECK(recipe.get_string("dpo.reference_from").empty() || c.reference_from == c.init_from,
             recipe.origin("dpo.reference_from"), ": dpo.reference_from = ", c.reference_from,
             ", but with LoRA the frozen reference is dpo.init_from's model with the adapters off; drop "
             "dpo.reference_from");
    const std::string base = recipe.get_string("lora.base");
    TS_CHECK(base.empty() || base == c.init_from, recipe.origin("lora.base"), ": lora.base = ", base,
             ", but with LoRA in dpo the frozen base is dpo.init_from (", c.init_from, "); drop lora.base");
    base_overrides.push_back("lora.base=" + c.init_from);
  }
  c.train = train_config_from_recipe(Recipe::parse(yaml_text, origin_name, base_overrides), launch);
  const ParallelLayout& layout = c.train.layout;
  TS_CHECK(layout.tp == 1 && layout.pp == 1 && layout.cp == 1, recipe.origin("parallel.tensor_model_parallel_size"),
           ": ", section, " runs data-parallel only in this build (tp ", layout.tp, ", pp ", layout.pp, ", cp ",
           layout.cp,
           "); set parallel.tensor_model_parallel_size, pipeline_model_parallel_size and "
           "context_parallel_size to 1");
  TS_CHECK(c.train.zero_stage == 0, recipe.origin("parallel.zero_stage"), ": ", section,
           " does not shard the optimizer (parallel.zero_stage ", c.train.zero_stage, "); set it to 0");
  TS_CHECK(c.train.precision != Precision::FP16, recipe.origin("train.precision"), ": ", section,
           " with train.precision fp16 is not supported (no loss scaling here); use bf16 or fp32");

  if (method == PreferenceMethod::kDpo) {
    c.dpo.beta = recipe.get_float("dpo.beta");
    TS_CHECK(c.dpo.beta > 0.0, recipe.origin("dpo.beta"), ": dpo.beta must be positive, got ", c.dpo.beta);
    c.dpo.label_smoothing = recipe.get_float("dpo.label_smoothing");
    c.dpo.ipo = recipe.get_string("dpo.loss") == "ipo";
    TS_CHECK(!c.dpo.ipo || c.dpo.label_smoothing == 0.0, recipe.origin("dpo.label_smoothing"),
             ": dpo.label_smoothing applies to the dpo loss only; set it to 0 with dpo.loss ipo");
  }
  return c;
}

PreferenceDatasets load_preference_datasets(const PreferenceRunConfig& c,
                                            const std::function<void(const std::string&)>& log) {
  const SftDataConfig& data = c.train.sft;  // the tokenizer and chat template keys
  const Tokenizer tokenizer = !data.tokenizer_model.empty() ? Tokenizer::load(data.tokenizer_model)
                                                            : Tokenizer::load(std::filesystem::path(data.vocab_file),
                                                                              std::filesystem::path(data.merge_file));
  TS_CHECK(tokenizer.vocab_size() <= c.train.model.vocab_size, "the tokenizer's ", tokenizer.vocab_size(),
           " tokens do not fit the model's vocabulary of ", c.train.model.vocab_size);
  const ChatTemplate chat = ChatTemplate::for_family(data.chat_template, tokenizer);
  PreferenceDatasets out;
  out.train = PreferenceDataset::load(c.train_paths, chat, tokenizer, c.train.seq_length);
  log(fmt::format("preference data: {}", out.train->report().summary(c.train.seq_length)));
  if (!c.valid_paths.empty()) {
    out.valid = PreferenceDataset::load(c.valid_paths, chat, tokenizer, c.train.seq_length);
    log(fmt::format("preference validation data: {}", out.valid->report().summary(c.train.seq_length)));
  }
  return out;
}

}  // namespace tessera
