// The prompts of GRPO: chat JSONL (data/sft_dataset.h's formats; scripts/make_arithmetic_chat.py
// writes them) read as questions to answer. A conversation's messages before its last assistant
// message are the prompt; the assistant's answer in the file is not used (the reward function
// checks the sampled answer). The model sees the prompt rendered by the chat template up to the
// point where the assistant's content would start; the reward function sees the last user
// message's text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/chat_template.h"

namespace tessera {

struct GrpoPrompt {
  std::vector<int32_t> tokens;  // the rendered prompt, ending with the assistant's header
  std::string question;         // the last user message (what the reward reads)
};

// The tokens a template puts before an assistant message's content after `messages`.
std::vector<int32_t> render_generation_prompt(const ChatTemplate& chat_template, std::vector<ChatMessage> messages);

// Every conversation of `files` as a prompt. Throws naming the file and line of a bad line, or a
// conversation with no user message before its last assistant message.
std::vector<GrpoPrompt> read_grpo_prompts(const std::vector<std::string>& files, const ChatTemplate& chat_template);

}  // namespace tessera
