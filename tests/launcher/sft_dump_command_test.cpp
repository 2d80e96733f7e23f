// `tessera sft-dump`: the printed report and row equal what the data library computes for the
// same options (loaded here directly); a format override changes the template; a row outside
// the data is a one-line error.
#include "launcher/sft_dump_command.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "core/check.h"
#include "data/sft_dataset.h"
#include "data/tokenizer.h"

namespace tessera {
namespace {

const std::string kRoot = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().string();

SftDumpCommandOptions fixture_options() {
  SftDumpCommandOptions options;
  options.inputs = {kRoot + "/tests/data/fixtures/sft_chat.jsonl"};
  options.tokenizer = kRoot + "/tests/data/fixtures/gpt2";
  options.seq_length = 64;
  options.no_shuffle = true;
  return options;
}

std::string captured_run(const SftDumpCommandOptions& options) {
  ::testing::internal::CaptureStdout();
  const int code = run_sft_dump_command(options);
  std::fflush(stdout);
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(code, 0);
  return out;
}

TEST(SftDumpCommand, PrintsTheReportAndTheRowTheLibraryBuilds) {
  SftDumpCommandOptions options = fixture_options();
  options.row = 1;
  const std::string out = captured_run(options);
  Tokenizer tokenizer = Tokenizer::load(options.tokenizer);
  ChatTemplate chat = ChatTemplate::for_family("gpt2", tokenizer);
  SftDatasetOptions dataset_options;
  dataset_options.sequence_length = 64;
  dataset_options.shuffle = false;
  std::shared_ptr<SftDataset> dataset = SftDataset::load(options.inputs, chat, tokenizer, dataset_options);
  // GPT-2 tokens: lines 1, 2, 4 render to 28, 23 and 38; first-fit in 64 puts line 4 in row 1.
  const std::string want = dataset->report().summary(64) + "\n\nrow 1 (" + options.inputs[0] + ":4):\n" +
                           format_sft_sample(dataset->sample(1), tokenizer);
  EXPECT_EQ(out, want);
}

TEST(SftDumpCommand, FormatOverridesReplaceTheFamilysStrings) {
  SftDumpCommandOptions options = fixture_options();
  options.format_assistant = "Answer:{content}{eod}";
  const std::string out = captured_run(options);
  EXPECT_NE(out.find("'Answer'"), std::string::npos) << out;
  EXPECT_EQ(out.find("'istant'"), std::string::npos) << out;  // "<|assistant|>" is gone
}

TEST(SftDumpCommand, ARowOutsideTheDataIsAnError) {
  SftDumpCommandOptions options = fixture_options();
  options.row = 3;  // three conversations of 27-35 GPT-2 tokens: two rows of 64
  ::testing::internal::CaptureStdout();
  try {
    run_sft_dump_command(options);
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("sft-dump: --row 3 is outside [0, 2)"), std::string::npos) << error.what();
  }
  ::testing::internal::GetCapturedStdout();
}

}  // namespace
}  // namespace tessera
