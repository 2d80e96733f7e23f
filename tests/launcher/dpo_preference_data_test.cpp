// Preference pairs (data/preference_dataset.h) rendered with the gpt2 chat template: each side is
// the prompt then the response, right-padded; its labels are exactly the response's tokens and
// end token, checked against the template rendering the prompt alone and the whole conversation
// (an assistant turn inside the prompt stays untrained); pairs too long are skipped and counted;
// bad lines are one line naming file:line. Also the step order: every pair once per epoch, the same
// global batch for any number of ranks.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "data/chat_template.h"
#include "data/preference_dataset.h"
#include "launcher/dpo_test_util.h"
#include "launcher/preference_batches.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PreferenceData, LabelsAreTheResponseTokensOnly) {
  TemporaryFolder folder;
  const std::string path = folder.file("pairs.jsonl");
  {
    std::ofstream out(path);
    out << "{\"prompt\": \"What is 2 + 3?\", \"chosen\": \"5\", \"rejected\": \"15\"}\n\n";
    out << "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": "
           "\"Hello there\"}, {\"role\": \"user\", \"content\": \"Sort: 3, 1\"}], \"chosen\": \"1, 3\", "
           "\"rejected\": \"3, 1\"}\n";
    std::string long_prompt;
    for (int i = 0; i < 80; ++i) long_prompt += " a";  // 80 tokens
    out << "{\"prompt\": \"" << long_prompt << "\", \"chosen\": \"a\", \"rejected\": \"b\"}\n";
  }
  const Tokenizer& tokenizer = testing::gpt2_tokenizer();
  const ChatTemplate chat = ChatTemplate::for_family("gpt2", tokenizer);
  const auto data = PreferenceDataset::load({path}, chat, tokenizer, 64);
  ASSERT_EQ(data->size(), 2);
  EXPECT_EQ(data->report().pairs, 3);
  EXPECT_EQ(data->report().skipped, 1) << "the 80-token prompt does not fit 64 tokens";

  // Independently: the response's tokens are what the whole conversation adds after the prompt.
  auto check_side = [&](const PreferenceSequence& side, std::vector<ChatMessage> prompt, const std::string& answer) {
    const RenderedConversation alone = chat.render(prompt);
    prompt.push_back({ChatRole::kAssistant, answer});
    const RenderedConversation whole = chat.render(prompt);
    ASSERT_EQ(side.length, int64_t(whole.tokens.size()));
    const std::vector<int32_t> response_ids = tokenizer.encode(answer, SpecialTokens::kAsText);
    std::vector<int64_t> expected_labels;
    // Response content then the end token; the assistant header is not trained.
    for (int32_t id : response_ids) expected_labels.push_back(id);
    expected_labels.push_back(tokenizer.eod_id());
    std::vector<int64_t> labels;
    for (size_t t = 0; t < side.labels.size(); ++t) {
      if (side.labels[t] == kPreferenceIgnoreIndex) continue;
      EXPECT_GE(t + 1, alone.tokens.size()) << "a prompt token is trained at " << t;
      EXPECT_EQ(side.labels[t], side.tokens[t + 1]);
      labels.push_back(side.labels[t]);
    }
    EXPECT_EQ(labels, expected_labels);
    ASSERT_EQ(side.tokens.size(), 64u);
    for (size_t t = size_t(side.length); t < 64; ++t) EXPECT_EQ(side.tokens[t], tokenizer.eod_id()) << "padding";
  };
  check_side(data->sample(0).chosen, {{ChatRole::kUser, "What is 2 + 3?"}}, "5");
  check_side(data->sample(0).rejected, {{ChatRole::kUser, "What is 2 + 3?"}}, "15");
  const std::vector<ChatMessage> conversation = {
      {ChatRole::kUser, "Hi"}, {ChatRole::kAssistant, "Hello there"}, {ChatRole::kUser, "Sort: 3, 1"}};
  check_side(data->sample(1).chosen, conversation, "1, 3");
  check_side(data->sample(1).rejected, conversation, "3, 1");

  const PreferenceBatch batch = make_preference_batch(*data, {1, 0}, Device::cpu());
  EXPECT_EQ(batch.tokens.shape(), (Shape{4, 64}));
  EXPECT_EQ(batch.lengths, (std::vector<int64_t>{data->sample(1).chosen.length, data->sample(0).chosen.length,
                                                 data->sample(1).rejected.length, data->sample(0).rejected.length}));
}

TEST(PreferenceData, BadLinesAreOneLineNamingTheLine) {
  TemporaryFolder folder;
  auto load_line = [&](const std::string& line) {
    const std::string path = folder.file("bad.jsonl");
    std::ofstream(path) << "{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"b\"}\n" << line << "\n";
    return error_of([&] {
      const Tokenizer& tokenizer = testing::gpt2_tokenizer();
      PreferenceDataset::load({path}, ChatTemplate::for_family("gpt2", tokenizer), tokenizer, 32);
    });
  };
  EXPECT_NE(load_line("{\"prompt\": \"q\", \"chosen\": \"a\"}").find("bad.jsonl:2 has no \"rejected\""),
            std::string::npos);
  EXPECT_NE(load_line("{\"prompt\": \"q\", \"chosen\": \"a\", \"rejected\": \"a\"}").find("are the same text"),
            std::string::npos);
  EXPECT_NE(load_line("{\"prompt\": \"q\", \"chosen\": 5, \"rejected\": \"a\"}").find("must be a string"),
            std::string::npos);
  EXPECT_NE(load_line("{\"prompt\": ").find("bad.jsonl:2: malformed JSON"), std::string::npos);
  EXPECT_NE(load_line("{\"chosen\": \"a\", \"rejected\": \"b\"}").find("expected {\"prompt\""), std::string::npos);
  EXPECT_NE(load_line("{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}], \"chosen\": \"a\", \"rejected\": "
                      "\"b\"}")
                .find("unknown role \"tool\""),
            std::string::npos);
}

TEST(PreferenceData, StepsVisitEveryPairOncePerEpoch) {
  std::multiset<int64_t> seen;
  for (int64_t step = 0; step < 5; ++step) {
    const std::vector<int64_t> pairs = preference_step_pairs(10, step, 4, 7);
    ASSERT_EQ(pairs.size(), 4u);
    seen.insert(pairs.begin(), pairs.end());
  }
  // 20 positions = two epochs of 10 pairs: each pair exactly twice.
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(seen.count(i), 2u) << "pair " << i;
  EXPECT_NE(preference_step_pairs(10, 0, 10, 7), preference_step_pairs(10, 1, 10, 7)) << "epochs reshuffle";
  EXPECT_EQ(preference_step_pairs(10, 3, 4, 7), preference_step_pairs(10, 3, 4, 7));
}

}  // namespace
}  // namespace tessera
