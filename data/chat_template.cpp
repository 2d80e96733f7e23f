#include "data/chat_template.h"

#include "core/check.h"

namespace tessera {
namespace {

// One piece of a format string: literal text, the end-of-document id, or the message content.
struct FormatPiece {
  enum Kind { kText, kEod, kContent } kind;
  std::string text;
};

std::string unescape(const std::string& format, const std::string& where) {
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '\\' || i + 1 == format.size()) {
      out += format[i];
      continue;
    }
    const char next = format[++i];
    if (next == 'n') {
      out += '\n';
    } else if (next == 't') {
      out += '\t';
    } else if (next == '\\') {
      out += '\\';
    } else {
      TS_CHECK(false, where, ": unknown escape '\\", next, "' in format \"", format, "\"; known: \\n, \\t, \\\\");
    }
  }
  return out;
}

bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

// Splits an (unescaped) format at its {content} and {eod} placeholders; a brace not followed
// by a name and '}' is literal text.
std::vector<FormatPiece> split_format(const std::string& format, const std::string& where) {
  std::vector<FormatPiece> pieces;
  std::string text;
  for (size_t i = 0; i < format.size(); ++i) {
    size_t end = i + 1;
    while (format[i] == '{' && end < format.size() && is_name_char(format[end])) ++end;
    if (format[i] != '{' || end == i + 1 || end == format.size() || format[end] != '}') {
      text += format[i];
      continue;
    }
    const std::string name = format.substr(i + 1, end - i - 1);
    TS_CHECK(name == "content" || name == "eod", where, ": unknown placeholder {", name, "} in format \"", format,
             "\"; known: {content}, {eod}");
    if (!text.empty()) pieces.push_back({FormatPiece::kText, std::move(text)});
    text.clear();
    pieces.push_back({name == "content" ? FormatPiece::kContent : FormatPiece::kEod, ""});
    i = end;
  }
  if (!text.empty()) pieces.push_back({FormatPiece::kText, std::move(text)});
  return pieces;
}

void append_piece(const FormatPiece& piece, const Tokenizer& tokenizer, std::vector<int32_t>& ids) {
  if (piece.kind == FormatPiece::kEod) {
    ids.push_back(tokenizer.eod_id());
  } else {
    tokenizer.encode_append(piece.text, ids, SpecialTokens::kRecognize);
  }
}

}  // namespace

ChatRole parse_chat_role(std::string_view role) {
  if (role == "system") return ChatRole::kSystem;
  if (role == "user") return ChatRole::kUser;
  if (role == "assistant") return ChatRole::kAssistant;
  TS_CHECK(false, "unknown role \"", role, "\"; known roles: system, user, assistant");
  return ChatRole::kUser;
}

const char* chat_role_name(ChatRole role) {
  switch (role) {
    case ChatRole::kSystem:
      return "system";
    case ChatRole::kUser:
      return "user";
    case ChatRole::kAssistant:
      return "assistant";
  }
  return "?";
}

ChatTemplateFormats ChatTemplate::family_formats(std::string_view family) {
  if (family == "gpt2") {
    return {"", "<|system|>\\n{content}\\n", "<|user|>\\n{content}\\n", "<|assistant|>\\n{content}{eod}"};
  }
  if (family == "llama3") {
    return {"<|begin_of_text|>", "<|start_header_id|>system<|end_header_id|>\\n\\n{content}<|eot_id|>",
            "<|start_header_id|>user<|end_header_id|>\\n\\n{content}<|eot_id|>",
            "<|start_header_id|>assistant<|end_header_id|>\\n\\n{content}<|eot_id|>"};
  }
  TS_CHECK(false, "unknown chat template \"", family, "\"; known: gpt2, llama3 (or give the format strings)");
  return {};
}

ChatTemplate ChatTemplate::for_family(std::string_view family, const Tokenizer& tokenizer) {
  ChatTemplateFormats formats = family_formats(family);
  if (family == "llama3") {
    for (const char* token : {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}) {
      TS_CHECK(tokenizer.token_id(token) >= 0, "chat template llama3: the tokenizer has no ", token,
               " token; use a Llama 3 tokenizer, or the gpt2 template");
    }
  } else {
    tokenizer.eod_id();  // gpt2 ends each assistant turn with EOD: fail now, not at the first render
  }
  return ChatTemplate(formats, tokenizer, std::string(family));
}

ChatTemplate::ChatTemplate(const ChatTemplateFormats& formats, const Tokenizer& tokenizer, std::string name)
    : tokenizer_(&tokenizer), name_(std::move(name)) {
  const std::string where = "chat template " + name_;
  for (const FormatPiece& piece : split_format(unescape(formats.begin, where + " begin"), where + " begin")) {
    TS_CHECK(piece.kind != FormatPiece::kContent, where, ": the begin format cannot hold {content}");
    append_piece(piece, tokenizer, begin_);
  }
  const std::string* role_formats[3] = {&formats.system, &formats.user, &formats.assistant};
  for (int r = 0; r < 3; ++r) {
    const std::string role_where = where + " " + chat_role_name(static_cast<ChatRole>(r));
    std::vector<FormatPiece> pieces = split_format(unescape(*role_formats[r], role_where), role_where);
    int contents = 0;
    for (const FormatPiece& piece : pieces) {
      if (piece.kind == FormatPiece::kContent) {
        ++contents;
      } else {
        append_piece(piece, tokenizer, contents == 0 ? roles_[r].prefix : roles_[r].suffix);
      }
    }
    TS_CHECK(contents == 1, role_where, ": the format \"", *role_formats[r], "\" must hold {content} exactly once");
  }
}

RenderedConversation ChatTemplate::render(const std::vector<ChatMessage>& messages) const {
  TS_CHECK(!messages.empty(), "a conversation needs at least one message");
  RenderedConversation out;
  out.tokens = begin_;
  out.loss_mask.assign(begin_.size(), 0);
  for (const ChatMessage& message : messages) {
    const RoleFormat& format = roles_[static_cast<int>(message.role)];
    const uint8_t trained = message.role == ChatRole::kAssistant ? 1 : 0;
    out.tokens.insert(out.tokens.end(), format.prefix.begin(), format.prefix.end());
    out.loss_mask.resize(out.tokens.size(), 0);
    tokenizer_->encode_append(message.content, out.tokens, SpecialTokens::kAsText);
    out.tokens.insert(out.tokens.end(), format.suffix.begin(), format.suffix.end());
    out.loss_mask.resize(out.tokens.size(), trained);
  }
  return out;
}

}  // namespace tessera
