#include "launcher/sft_dump_command.h"

#include <fmt/format.h>

#include "core/check.h"
#include "data/chat_template.h"
#include "data/sft_dataset.h"
#include "data/tokenizer.h"

namespace tessera {

CLI::App* add_sft_dump_subcommand(CLI::App& app, SftDumpCommandOptions& options) {
  CLI::App* command = app.add_subcommand("sft-dump", "Show packed SFT rows of chat JSONL with the loss mask visible");
  command->add_option("--input", options.inputs, "JSONL files: {\"messages\": [...]} or {\"prompt\", \"response\"}")
      ->required();
  command->add_option("--tokenizer", options.tokenizer, "tokenizer.json, or a folder of tokenizer files")->required();
  command->add_option("--eod-token", options.eod_token, "end-of-document token (default: the tokenizer's own)");
  command->add_option("--template", options.chat_template, "chat template family: gpt2 or llama3")
      ->capture_default_str();
  command->add_option("--format-begin", options.format_begin, "replaces the family's begin text");
  command->add_option("--format-system", options.format_system, "replaces the system format ({content}, {eod})");
  command->add_option("--format-user", options.format_user, "replaces the user format ({content}, {eod})");
  command->add_option("--format-assistant", options.format_assistant,
                      "replaces the assistant format ({content}, {eod})");
  command->add_option("--seq-length", options.seq_length, "tokens per packed row")->capture_default_str();
  command->add_option("--packing", options.packing, "first_fit or sequential")->capture_default_str();
  command->add_option("--overflow", options.overflow, "conversations longer than a row: skip or truncate")
      ->capture_default_str();
  command->add_option("--seed", options.seed, "shuffle seed")->capture_default_str();
  command->add_flag("--no-shuffle", options.no_shuffle, "pack in file order");
  command->add_option("--row", options.row, "first row to print")->capture_default_str();
  command->add_option("--rows", options.rows, "rows to print")->capture_default_str();
  return command;
}

int run_sft_dump_command(const SftDumpCommandOptions& options) {
  Tokenizer tokenizer = Tokenizer::load(options.tokenizer, options.eod_token);
  ChatTemplateFormats formats = ChatTemplate::family_formats(options.chat_template);
  const bool custom = !options.format_begin.empty() || !options.format_system.empty() || !options.format_user.empty() ||
                      !options.format_assistant.empty();
  if (!options.format_begin.empty()) formats.begin = options.format_begin;
  if (!options.format_system.empty()) formats.system = options.format_system;
  if (!options.format_user.empty()) formats.user = options.format_user;
  if (!options.format_assistant.empty()) formats.assistant = options.format_assistant;
  ChatTemplate chat = custom ? ChatTemplate(formats, tokenizer, options.chat_template + " (customized)")
                             : ChatTemplate::for_family(options.chat_template, tokenizer);

  SftDatasetOptions dataset_options;
  dataset_options.sequence_length = options.seq_length;
  dataset_options.packing = parse_sft_packing(options.packing);
  dataset_options.overflow = parse_sft_overflow(options.overflow);
  dataset_options.shuffle = !options.no_shuffle;
  dataset_options.seed = options.seed;
  std::shared_ptr<SftDataset> dataset = SftDataset::load(options.inputs, chat, tokenizer, dataset_options);
  fmt::print("{}\n", dataset->report().summary(options.seq_length));
  TS_CHECK(options.row >= 0 && options.row < dataset->size(), "sft-dump: --row ", options.row, " is outside [0, ",
           dataset->size(), ")");
  const int64_t end = std::min(dataset->size(), options.row + std::max<int64_t>(options.rows, 1));
  for (int64_t row = options.row; row < end; ++row) {
    SftSample sample = dataset->sample(row);
    std::string origins;
    for (int64_t conversation : sample.conversations) {
      origins += (origins.empty() ? "" : ", ") + dataset->conversation(conversation).origin;
    }
    fmt::print("\nrow {} ({}):\n{}", row, origins, format_sft_sample(sample, tokenizer));
  }
  return 0;
}

}  // namespace tessera
