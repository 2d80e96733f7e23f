// Chat templates: a conversation (system / user / assistant messages) -> token ids plus a
// per-token loss mask that is 1 exactly on the assistant's content and the end token(s) its
// format puts after the content, 0 on everything else (system and user turns, role headers,
// the conversation's begin text).
//
// A template is four format strings: `begin` (once, before the first message) and one per
// role holding exactly one {content}. Placeholders: {content} (the message text) and {eod}
// (the tokenizer's end-of-document id, whatever its spelling); any other {name} is an error.
// Backslash escapes \n, \t and \\ are read in format strings, so a recipe may write them
// either as YAML escapes or literally. Families:
//   gpt2    "<|user|>\n{content}\n", "<|assistant|>\n{content}{eod}" (and "<|system|>\n...\n"):
//           plain text headers that any byte-level tokenizer can spell; the turn ends with EOD.
//   llama3  Llama 3's "<|begin_of_text|>" + "<|start_header_id|>ROLE<|end_header_id|>\n\n
//           {content}<|eot_id|>"; the tokenizer must have those special tokens.
// Each piece is tokenized on its own: format text with special tokens recognized (so headers
// become their single ids), message content as plain text (a "<|eot_id|>" typed in a message is
// never a control token). Token boundaries therefore fall at every piece boundary, which is
// what makes the mask exact.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace tessera {

enum class ChatRole { kSystem, kUser, kAssistant };

// "system", "user", "assistant" -> the role; throws naming the role and the known ones.
ChatRole parse_chat_role(std::string_view role);
const char* chat_role_name(ChatRole role);

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;
};

struct ChatTemplateFormats {
  std::string begin;
  std::string system;
  std::string user;
  std::string assistant;
};

// Token ids of one conversation and, per token, 1 where the loss is taken.
struct RenderedConversation {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> loss_mask;
};

class ChatTemplate {
 public:
  // The formats of a family ("gpt2", "llama3"); throws for other names.
  static ChatTemplateFormats family_formats(std::string_view family);
  // A family's template for `tokenizer` (llama3 checks that its header tokens exist).
  static ChatTemplate for_family(std::string_view family, const Tokenizer& tokenizer);
  // A configurable template; `name` appears in error messages.
  ChatTemplate(const ChatTemplateFormats& formats, const Tokenizer& tokenizer, std::string name = "custom");

  // The tokenizer must outlive the template (content is encoded at render time).
  RenderedConversation render(const std::vector<ChatMessage>& messages) const;
  const std::string& name() const { return name_; }

 private:
  // A role's format split at {content}: the ids before and after it.
  struct RoleFormat {
    std::vector<int32_t> prefix;
    std::vector<int32_t> suffix;
  };

  const Tokenizer* tokenizer_;
  std::string name_;
  std::vector<int32_t> begin_;
  RoleFormat roles_[3];  // indexed by ChatRole
};

}  // namespace tessera
