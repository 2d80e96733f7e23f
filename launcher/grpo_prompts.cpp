#include "launcher/grpo_prompts.h"

#include <fstream>

#include "core/check.h"
#include "data/sft_dataset.h"

namespace tessera {

std::vector<int32_t> render_generation_prompt(const ChatTemplate& chat_template, std::vector<ChatMessage> messages) {
  // Render with an empty assistant message: its loss mask starts exactly where the content (here
  // nothing, so the end token) would begin, and everything before that is the prompt.
  messages.push_back({ChatRole::kAssistant, ""});
  const RenderedConversation rendered = chat_template.render(messages);
  size_t first = 0;
  while (first < rendered.loss_mask.size() && rendered.loss_mask[first] == 0) ++first;
  return {rendered.tokens.begin(), rendered.tokens.begin() + static_cast<std::ptrdiff_t>(first)};
}

std::vector<GrpoPrompt> read_grpo_prompts(const std::vector<std::string>& files, const ChatTemplate& chat_template) {
  TS_CHECK(!files.empty(), "GRPO prompts: no input files (set grpo.prompts_path)");
  std::vector<GrpoPrompt> prompts;
  for (const std::string& file : files) {
    std::ifstream stream(file);
    TS_CHECK(stream.good(), "GRPO prompts: cannot open ", file);
    const size_t before = prompts.size();
    std::string line;
    for (int64_t number = 1; std::getline(stream, line); ++number) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      const std::string origin = file + ":" + std::to_string(number);
      std::vector<ChatMessage> messages = parse_sft_line(line, origin);
      while (!messages.empty() && messages.back().role == ChatRole::kAssistant) messages.pop_back();
      GrpoPrompt prompt;
      for (const ChatMessage& message : messages)
        if (message.role == ChatRole::kUser) prompt.question = message.content;
      TS_CHECK(!messages.empty() && messages.back().role == ChatRole::kUser, origin,
               ": no user message before the assistant's answer; a GRPO prompt ends with the user's question");
      prompt.tokens = render_generation_prompt(chat_template, std::move(messages));
      prompts.push_back(std::move(prompt));
    }
    TS_CHECK(!stream.bad(), "GRPO prompts: reading ", file, " failed");
    TS_CHECK(prompts.size() > before, file, ": no prompts (the file is empty)");
  }
  return prompts;
}

}  // namespace tessera
