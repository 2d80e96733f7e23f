// Chat templates: on a byte-level tokenizer (id = byte) every expected id and mask bit is
// written down from the text by hand; the mask covers exactly the assistant's content and its
// end token; message text never becomes a control token; GPT-2's real tokenizer renders to
// ids that decode back to the formatted text; bad templates are one-line errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "core/check.h"
#include "data/chat_template.h"
#include "sft_test_util.h"
#include "tokenizer_test_util.h"

namespace tessera {
namespace {

using testing::byte_ids;
using testing::byte_tokenizer;

// The expected rendering, built piece by piece with each piece's mask bit.
struct Expected {
  RenderedConversation out;
  Expected& text(const std::string& text, uint8_t mask) {
    for (int32_t id : byte_ids(text)) id_(id, mask);
    return *this;
  }
  Expected& id_(int32_t id, uint8_t mask) {
    out.tokens.push_back(id);
    out.loss_mask.push_back(mask);
    return *this;
  }
};

void expect_rendered(const RenderedConversation& got, const RenderedConversation& want) {
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.loss_mask, want.loss_mask);
}

TEST(ChatTemplate, Gpt2MasksExactlyTheAssistantContentAndItsEod) {
  ChatTemplate chat = ChatTemplate::for_family("gpt2", byte_tokenizer());
  RenderedConversation got =
      chat.render({{ChatRole::kSystem, "Add."}, {ChatRole::kUser, "2+3"}, {ChatRole::kAssistant, "5"}});
  Expected want;
  want.text("<|system|>\nAdd.\n<|user|>\n2+3\n<|assistant|>\n", 0).text("5", 1).id_(testing::kByteEod, 1);
  expect_rendered(got, want.out);
}

TEST(ChatTemplate, EveryAssistantTurnOfAMultiTurnConversationIsMasked) {
  ChatTemplate chat = ChatTemplate::for_family("gpt2", byte_tokenizer());
  RenderedConversation got = chat.render({{ChatRole::kUser, "7+8"},
                                          {ChatRole::kAssistant, "15"},
                                          {ChatRole::kUser, "and +1"},
                                          {ChatRole::kAssistant, "16"}});
  Expected want;
  want.text("<|user|>\n7+8\n<|assistant|>\n", 0).text("15", 1).id_(testing::kByteEod, 1);
  want.text("<|user|>\nand +1\n<|assistant|>\n", 0).text("16", 1).id_(testing::kByteEod, 1);
  expect_rendered(got, want.out);
}

TEST(ChatTemplate, Llama3UsesItsHeaderTokensAndMasksTheAssistantAndEot) {
  using namespace testing;
  ChatTemplate chat = ChatTemplate::for_family("llama3", byte_tokenizer());
  RenderedConversation got =
      chat.render({{ChatRole::kSystem, "S"}, {ChatRole::kUser, "Q"}, {ChatRole::kAssistant, "A b"}});
  Expected want;
  want.id_(kByteBeginOfText, 0);
  want.id_(kByteStartHeader, 0).text("system", 0).id_(kByteEndHeader, 0).text("\n\nS", 0).id_(kByteEot, 0);
  want.id_(kByteStartHeader, 0).text("user", 0).id_(kByteEndHeader, 0).text("\n\nQ", 0).id_(kByteEot, 0);
  want.id_(kByteStartHeader, 0).text("assistant", 0).id_(kByteEndHeader, 0).text("\n\n", 0);
  want.text("A b", 1).id_(kByteEot, 1);
  expect_rendered(got, want.out);
}

TEST(ChatTemplate, SpecialTokenTextInsideAMessageStaysText) {
  ChatTemplate chat = ChatTemplate::for_family("llama3", byte_tokenizer());
  RenderedConversation got = chat.render({{ChatRole::kAssistant, "<|eot_id|>"}});
  // The content's 10 bytes, each its own id, then the real end-of-turn token.
  const std::vector<int32_t> content = byte_ids("<|eot_id|>");
  ASSERT_GE(got.tokens.size(), content.size() + 1);
  EXPECT_EQ(std::vector<int32_t>(got.tokens.end() - 11, got.tokens.end() - 1), content);
  EXPECT_EQ(got.tokens.back(), testing::kByteEot);
  EXPECT_EQ(std::count(got.tokens.begin(), got.tokens.end(), testing::kByteEot), 1);
}

TEST(ChatTemplate, ConfigurableFormatsReadEscapesAndTheEodPlaceholder) {
  ChatTemplateFormats formats{"BOS", "", "", ""};
  formats.system = "[S]{content}\\n";
  formats.user = "Q: {content}\\n";
  formats.assistant = "A: {content}\\t{eod}";
  ChatTemplate chat(formats, byte_tokenizer(), "qa");
  RenderedConversation got = chat.render({{ChatRole::kUser, "hi"}, {ChatRole::kAssistant, "yo"}});
  Expected want;
  want.text("BOS", 0).text("Q: hi\n", 0).text("A: ", 0).text("yo\t", 1).id_(testing::kByteEod, 1);
  expect_rendered(got, want.out);
  EXPECT_EQ(chat.name(), "qa");
}

TEST(ChatTemplate, Gpt2TemplateOnTheRealGpt2TokenizerDecodesToTheFormattedText) {
  const Tokenizer& gpt2 = testing::gpt2_tokenizer();
  ChatTemplate chat = ChatTemplate::for_family("gpt2", gpt2);
  RenderedConversation got = chat.render({{ChatRole::kUser, "What is 12 + 30?"}, {ChatRole::kAssistant, "42"}});
  EXPECT_EQ(gpt2.decode(got.tokens), "<|user|>\nWhat is 12 + 30?\n<|assistant|>\n42<|endoftext|>");
  // The trained ids are exactly the content's own encoding followed by EOD.
  std::vector<int32_t> trained;
  for (size_t t = 0; t < got.tokens.size(); ++t) {
    if (got.loss_mask[t]) trained.push_back(got.tokens[t]);
  }
  std::vector<int32_t> want = gpt2.encode("42");
  want.push_back(gpt2.eod_id());
  EXPECT_EQ(trained, want);
}

void expect_one_line_error(const std::function<void()>& action, const std::string& needle) {
  try {
    action();
    ADD_FAILURE() << "expected an error mentioning " << needle;
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(needle), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(ChatTemplate, BadTemplatesAreOneLineErrors) {
  const Tokenizer& bytes = byte_tokenizer();
  ChatTemplateFormats gpt2 = ChatTemplate::family_formats("gpt2");
  expect_one_line_error([&] { ChatTemplate::for_family("chatml", bytes); }, "unknown chat template \"chatml\"");
  expect_one_line_error([&] { ChatTemplate::for_family("llama3", testing::gpt2_tokenizer()); },
                        "the tokenizer has no <|begin_of_text|> token");
  ChatTemplateFormats typo = gpt2;
  typo.user = "<|user|>{contnet}";
  expect_one_line_error([&] { ChatTemplate(typo, bytes); }, "unknown placeholder {contnet}");
  ChatTemplateFormats missing = gpt2;
  missing.assistant = "<|assistant|>";
  expect_one_line_error([&] { ChatTemplate(missing, bytes); }, "chat template custom assistant: the format");
  ChatTemplateFormats twice = gpt2;
  twice.system = "{content}{content}";
  expect_one_line_error([&] { ChatTemplate(twice, bytes); }, "must hold {content} exactly once");
  ChatTemplateFormats escape = gpt2;
  escape.user = "{content}\\q";
  expect_one_line_error([&] { ChatTemplate(escape, bytes); }, "unknown escape '\\q'");
  expect_one_line_error([] { parse_chat_role("tool"); }, "unknown role \"tool\"");
}

}  // namespace
}  // namespace tessera
