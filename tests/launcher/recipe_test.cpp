// Recipe loading: defaults, overrides, and every kind of bad input with the message a user
// needs (file:line, the key, what was expected, a did-you-mean).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/check.h"
#include "launcher/recipe.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

const char* kGood = R"(model:
  preset: gpt2-124m
  num_layers: 4
data:
  data_path: [0.7, data/a_text_document, 0.3, data/b_text_document]
train:
  micro_batch_size: 4
  global_batch_size: 32
  train_iters: 100
optimizer:
  lr: 6.0e-4
)";

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    Recipe::parse(yaml, "r.yaml", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Recipe, ReadsValuesFillsDefaultsAndAppliesOverrides) {
  Recipe r = Recipe::parse(kGood, "r.yaml", {"train.train_iters=250", "optimizer.weight_decay=0.0"});
  EXPECT_EQ(r.get_string("model.preset"), "gpt2-124m");
  EXPECT_EQ(r.get_int("model.num_layers"), 4);
  EXPECT_EQ(r.get_int("train.train_iters"), 250);
  EXPECT_EQ(r.origin("train.train_iters"), "command line");
  EXPECT_EQ(r.origin("model.num_layers"), "r.yaml:3");
  EXPECT_DOUBLE_EQ(r.get_float("optimizer.lr"), 6e-4);
  EXPECT_DOUBLE_EQ(r.get_float("optimizer.weight_decay"), 0.0);
  EXPECT_EQ(r.get_string("data.split"), "969,30,1");  // default
  EXPECT_EQ(r.origin("data.split"), "default");
  EXPECT_THAT(r.get_list("data.data_path"),
              ::testing::ElementsAre("0.7", "data/a_text_document", "0.3", "data/b_text_document"));
  EXPECT_FALSE(r.has("model.hidden_size"));  // no default: the preset decides
}

TEST(Recipe, ResolvedYamlReadsBackToTheSameValues) {
  Recipe r = Recipe::parse(kGood, "r.yaml", {"train.seed=7"});
  Recipe again = Recipe::parse(r.resolved_yaml(), "resolved.yaml");
  EXPECT_EQ(again.get_int("train.seed"), 7);
  EXPECT_EQ(again.get_list("data.data_path"), r.get_list("data.data_path"));
  EXPECT_EQ(again.resolved_yaml(), r.resolved_yaml());
}

TEST(Recipe, UnknownKeyNamesFileLineAndSuggests) {
  std::string yaml = std::string(kGood) + "scheduler:\n  lr_warmup_itres: 10\n";
  EXPECT_THAT(error_of(yaml), AllOf(HasSubstr("r.yaml:13"), HasSubstr("scheduler.lr_warmup_itres"),
                                    HasSubstr("did you mean 'lr_warmup_iters'")));
}

TEST(Recipe, KeyInTheWrongSectionSaysWhereItBelongs) {
  EXPECT_THAT(error_of(std::string(kGood) + "logging:\n  micro_batch_size: 2\n"),
              AllOf(HasSubstr("logging.micro_batch_size"), HasSubstr("belongs in section 'train'")));
}

TEST(Recipe, UnknownSectionSuggests) {
  EXPECT_THAT(error_of(std::string(kGood) + "optimiser:\n  lr: 1.0\n"),
              AllOf(HasSubstr("unknown section 'optimiser'"), HasSubstr("did you mean 'optimizer'")));
}

TEST(Recipe, WrongTypesAndRangesNameTheKey) {
  EXPECT_THAT(error_of(kGood, {"train.micro_batch_size=four"}),
              AllOf(HasSubstr("train.micro_batch_size"), HasSubstr("must be an integer")));
  EXPECT_THAT(error_of(kGood, {"train.micro_batch_size=0"}), HasSubstr("must be >= 1"));
  EXPECT_THAT(error_of(kGood, {"optimizer.adam_beta2=1.5"}), HasSubstr("optimizer.adam_beta2"));
  EXPECT_THAT(error_of(kGood, {"parallel.sequence_parallel=yes please"}), HasSubstr("true or false"));
  EXPECT_THAT(error_of(kGood, {"scheduler.lr_decay_style=cosin"}),
              AllOf(HasSubstr("is not one of"), HasSubstr("did you mean 'cosine'")));
  std::string list_for_scalar = std::string(kGood) + "checkpoint:\n  save: [a, b]\n";
  EXPECT_THAT(error_of(list_for_scalar), AllOf(HasSubstr("r.yaml:13"), HasSubstr("checkpoint.save")));
}

TEST(Recipe, MissingRequiredKeysAndBadOverridesAreErrors) {
  EXPECT_THAT(error_of("model:\n  preset: gpt2-124m\n"), HasSubstr("required key"));
  EXPECT_THAT(error_of(kGood, {"train_iters=5"}), HasSubstr("section.key=value"));
  EXPECT_THAT(error_of(kGood, {"train.train_itrs=5"}), HasSubstr("did you mean 'train.train_iters'"));
  EXPECT_THAT(error_of("model: [unclosed\n"), AllOf(HasSubstr("r.yaml:"), HasSubstr("invalid YAML")));
  EXPECT_THROW(Recipe::load("/no/such/recipe.yaml"), Error);
}

TEST(DidYouMean, OnlySuggestsCloseWords) {
  EXPECT_EQ(did_you_mean("hiden_size", {"hidden_size", "num_layers"}), "hidden_size");
  EXPECT_EQ(did_you_mean("completely_different", {"hidden_size", "num_layers"}), "");
}

}  // namespace
}  // namespace tessera
