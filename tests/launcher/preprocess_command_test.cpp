// `tessera preprocess` end to end: Megatron-style options parse, a small corpus goes through a
// real Tokenizer (a byte-level one written here, so the test needs no download) into a pair
// whose sequences decode back to the documents, skipped lines are reported with their place,
// and tokenizer mistakes (none given, both forms given, an unknown file layout) are refused
// with a message. With the example data fetched (scripts/fetch_example_data.sh), the Brown
// corpus goes through GPT-2's tokenizer and every document decodes back exactly.
#include "launcher/preprocess_command.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"
#include "data/data_test_util.h"
#include "data/indexed_dataset.h"
#include "data/tokenizer.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;
using testing::write_file_bytes;

// GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for themselves, the other
// 68 bytes map to U+0100 upward in byte order.
std::string byte_symbol(int byte) {
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
  int code_point = byte;
  if (!printable(byte)) {
    code_point = 256;
    for (int b = 0; b < byte; ++b) code_point += !printable(b);
  }
  std::string utf8;
  if (code_point < 0x80) {
    utf8 += static_cast<char>(code_point);
  } else {
    utf8 += static_cast<char>(0xC0 | (code_point >> 6));
    utf8 += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return utf8;
}

// A byte-level GPT-2-layout tokenizer without merges: id = byte, <|endoftext|> = 256.
std::string write_byte_level_tokenizer(const TemporaryFolder& folder) {
  nlohmann::json vocab;
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  vocab["<|endoftext|>"] = 256;
  std::filesystem::create_directories(folder.path() / "tokenizer");
  write_file_bytes(folder.file("tokenizer/vocab.json"), vocab.dump());
  write_file_bytes(folder.file("tokenizer/merges.txt"), "#version: 0.2\n");
  return folder.file("tokenizer");
}

PreprocessCommandOptions parse(const std::vector<std::string>& arguments) {
  CLI::App app;
  PreprocessCommandOptions options;
  add_preprocess_subcommand(app, options);
  std::vector<std::string> reversed(arguments.rbegin(), arguments.rend());
  reversed.push_back("preprocess");
  app.parse(reversed);
  return options;
}

TEST(PreprocessCommand, ParsesMegatronStyleOptions) {
  PreprocessCommandOptions options =
      parse({"--input", "a.jsonl", "b.jsonl", "--output-prefix", "out/web", "--vocab-file", "gpt2/encoder.json",
             "--merge-file", "gpt2/vocab.bpe", "--json-key", "content", "--workers", "8", "--append-eod"});
  EXPECT_EQ(options.preprocess.inputs, (std::vector<std::string>{"a.jsonl", "b.jsonl"}));
  EXPECT_EQ(options.preprocess.output_prefix, "out/web");
  EXPECT_EQ(options.vocab_file, "gpt2/encoder.json");
  EXPECT_EQ(options.merge_file, "gpt2/vocab.bpe");
  EXPECT_EQ(options.preprocess.json_key, "content");
  EXPECT_EQ(options.preprocess.workers, 8);
  EXPECT_TRUE(options.preprocess.append_eod);
  EXPECT_THROW(parse({"--input", "a.jsonl"}), CLI::ParseError);  // --output is required
}

TEST(PreprocessCommand, DocumentsDecodeBackAndSkippedLinesAreReported) {
  TemporaryFolder folder;
  std::string input = folder.file("docs.jsonl");
  write_file_bytes(input,
                   "{\"text\": \"Hello, world!\"}\n{\"text\": broken}\n{\"text\": \"caf\\u00e9 <|endoftext|>\"}\n");
  PreprocessCommandOptions options = parse({"--input", input, "--output", folder.file("out"), "--tokenizer",
                                            write_byte_level_tokenizer(folder), "--workers", "2", "--append-eod"});
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(run_preprocess_command(options), 0);
  std::string printed = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(printed.find("wrote 2 documents"), std::string::npos) << printed;
  EXPECT_NE(printed.find("warning: skipped 1 of 3 lines (1 not valid JSON); first: " + input + ":2: not valid JSON"),
            std::string::npos)
      << printed;

  IndexedDataset dataset(folder.file("out"));
  Tokenizer tokenizer = Tokenizer::load(folder.file("tokenizer"));
  EXPECT_EQ(dataset.dtype(), IndexedDType::UInt16);
  std::vector<int64_t> first = dataset.sequence(0);
  EXPECT_EQ(first.size(), 14u);  // 13 bytes + EOD
  EXPECT_EQ(first.back(), 256);
  std::vector<int64_t> second = dataset.sequence(1);
  // "<|endoftext|>" inside a document is text (Megatron's GPT-2 preprocessing), not the EOD id.
  EXPECT_EQ(std::count(second.begin(), second.end(), 256), 1);
  std::vector<int32_t> ids(second.begin(), second.end() - 1);
  EXPECT_EQ(tokenizer.decode(ids), "caf\xc3\xa9 <|endoftext|>");
}

TEST(PreprocessCommand, RefusesTokenizerMistakes) {
  TemporaryFolder folder;
  std::string input = folder.file("docs.jsonl");
  write_file_bytes(input, "{\"text\": \"x\"}\n");
  auto expect_refused = [&](const std::vector<std::string>& tokenizer_arguments, const std::string& fragment) {
    std::vector<std::string> arguments = {"--input", input, "--output", folder.file("out")};
    arguments.insert(arguments.end(), tokenizer_arguments.begin(), tokenizer_arguments.end());
    try {
      run_preprocess_command(parse(arguments));
      FAIL() << "expected an error mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_refused({}, "give the tokenizer either as --tokenizer PATH or as --vocab-file");
  std::string tokenizer = write_byte_level_tokenizer(folder);
  expect_refused({"--tokenizer", tokenizer, "--vocab-file", tokenizer + "/vocab.json"}, "either as --tokenizer");
  expect_refused({"--vocab-file", tokenizer + "/vocab.json"}, "--vocab-file and --merge-file go together");
  std::filesystem::create_directories(folder.path() / "unknown");
  write_file_bytes(folder.file("unknown/spm.model"), "not a BPE tokenizer");
  expect_refused({"--tokenizer", folder.file("unknown")}, folder.file("unknown"));
  expect_refused({"--tokenizer", tokenizer, "--input-format", "csv"}, "--input-format 'csv'");
  EXPECT_FALSE(std::filesystem::exists(folder.file("out.bin")));
}

TEST(PreprocessCommand, ProgressLineShowsThroughputAndSkips) {
  PreprocessStats stats;
  stats.input_bytes = 4'000'000'000;
  stats.bytes_read = 1'000'000'000;
  stats.seconds = 20.0;
  stats.documents = 50'000;
  stats.tokens = 250'000'000;
  stats.malformed_json = 3;
  EXPECT_EQ(format_preprocess_progress(stats),
            "1.00/4.00 GB (25%)  50.0 MB/s  2500 docs/s  50000 documents  250000000 tokens  3 lines skipped");
}

TEST(PreprocessCommand, BrownCorpusDecodesBackThroughGpt2) {
  const char* cache_override = std::getenv("TESSERA_DATA_CACHE");
  const char* home = std::getenv("HOME");
  std::filesystem::path cache = cache_override != nullptr ? std::filesystem::path(cache_override)
                                : home != nullptr         ? std::filesystem::path(home) / ".cache/tessera/example-data"
                                                          : std::filesystem::path();
  if (!std::filesystem::exists(cache / "brown/brown.jsonl") || !std::filesystem::exists(cache / "gpt2/vocab.bpe")) {
    GTEST_SKIP() << "example data not fetched (run scripts/fetch_example_data.sh); looked in " << cache;
  }
  TemporaryFolder folder;
  PreprocessCommandOptions options =
      parse({"--input", (cache / "brown/brown.jsonl").string(), "--output", folder.file("brown"), "--tokenizer",
             (cache / "gpt2").string(), "--workers", "2", "--append-eod"});
  ::testing::internal::CaptureStdout();
  ASSERT_EQ(run_preprocess_command(options), 0);
  std::printf("%s", ::testing::internal::GetCapturedStdout().c_str());

  Tokenizer tokenizer = Tokenizer::load(cache / "gpt2");
  IndexedDataset dataset(folder.file("brown"));
  ASSERT_EQ(dataset.document_count(), 500);
  ASSERT_EQ(dataset.sequence_count(), 500);
  std::ifstream corpus(cache / "brown/brown.jsonl");
  std::string line;
  for (int64_t d = 0; std::getline(corpus, line); ++d) {
    std::vector<int64_t> sequence = dataset.sequence(d);
    ASSERT_EQ(sequence.back(), tokenizer.eod_id()) << "document " << d;
    std::vector<int32_t> ids(sequence.begin(), sequence.end() - 1);
    ASSERT_EQ(tokenizer.decode(ids), nlohmann::json::parse(line)["text"].get<std::string>()) << "document " << d;
  }
}

}  // namespace
}  // namespace tessera
