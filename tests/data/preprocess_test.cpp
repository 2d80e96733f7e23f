// Preprocessing pipeline with a byte-level test encoder (id = byte value, EOD = 256), so the
// expected sequences are the documents' own bytes: documents land in input order whatever
// the worker count, JSONL and text inputs, EOD, dtype choice, every kind of unusable line is
// skipped and counted with its file:line, bad options are refused, and memory stays bounded:
// a generated JSONL much larger than the memory cap of a child process is preprocessed in it.
// TESSERA_PREPROCESS_MEMORY_TEST_MB sets that input's size (default 256).
#include "data/preprocess.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "core/check.h"
#include "data/data_test_util.h"
#include "data/indexed_dataset.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;
using testing::write_file_bytes;

constexpr int32_t kEod = 256;

PreprocessEncoder byte_encoder() {
  PreprocessEncoder encoder;
  encoder.encode_append = [](std::string_view text, std::vector<int32_t>& ids) {
    for (unsigned char c : text) ids.push_back(c);
  };
  encoder.vocab_size = 257;
  encoder.eod_id = kEod;
  return encoder;
}

std::vector<int64_t> bytes_of(const std::string& text, bool eod) {
  std::vector<int64_t> ids(text.begin(), text.end());
  for (auto& id : ids) id = static_cast<unsigned char>(id);
  if (eod && !ids.empty()) ids.push_back(kEod);
  return ids;
}

PreprocessOptions options_for(std::vector<std::string> inputs, std::string output, int workers = 1) {
  PreprocessOptions options;
  options.inputs = std::move(inputs);
  options.output_prefix = std::move(output);
  options.workers = workers;
  options.append_eod = true;
  return options;
}

TEST(Preprocess, JsonlDocumentsBecomeOneSequenceEachWithEod) {
  TemporaryFolder folder;
  std::string input = folder.file("docs.jsonl");
  write_file_bytes(input,
                   "{\"text\": \"Hello world\", \"id\": 1}\n"
                   "{\"id\": 2, \"text\": \"caf\\u00e9 \\ud83d\\ude00\\n\"}\r\n"
                   "{\"text\": \"\"}\n"
                   "{\"text\": \"last line, no newline\"}");
  PreprocessStats stats = preprocess_to_indexed_dataset(options_for({input}, folder.file("out")), byte_encoder());
  EXPECT_EQ(stats.documents, 4);
  EXPECT_EQ(stats.empty_documents, 1);
  EXPECT_EQ(stats.skipped(), 0);
  EXPECT_EQ(stats.bytes_read, static_cast<int64_t>(std::filesystem::file_size(input)));

  IndexedDataset dataset(folder.file("out"));
  EXPECT_EQ(dataset.dtype(), IndexedDType::UInt16);
  ASSERT_EQ(dataset.document_count(), 4);
  ASSERT_EQ(dataset.sequence_count(), 3);  // the empty document has no sequence, as in Megatron
  EXPECT_EQ(dataset.sequence(0), bytes_of("Hello world", true));
  EXPECT_EQ(dataset.sequence(1), bytes_of("caf\xc3\xa9 \xf0\x9f\x98\x80\n", true));
  EXPECT_EQ(dataset.sequence(2), bytes_of("last line, no newline", true));
  EXPECT_EQ(dataset.document_index(3), 2);
  EXPECT_EQ(stats.tokens, dataset.token_count());
}

TEST(Preprocess, TextInputIsOneDocumentPerLineAndEodIsOptional) {
  TemporaryFolder folder;
  std::string input = folder.file("corpus.txt");
  write_file_bytes(input, "first document\r\n\nsecond {\"text\": 1}\n   \n");
  PreprocessOptions options = options_for({input}, folder.file("out"));
  options.append_eod = false;
  PreprocessStats stats = preprocess_to_indexed_dataset(options, byte_encoder());
  EXPECT_EQ(stats.documents, 2);
  EXPECT_EQ(stats.blank_lines, 2);
  IndexedDataset dataset(folder.file("out"));
  EXPECT_EQ(dataset.sequence(0), bytes_of("first document", false));
  EXPECT_EQ(dataset.sequence(1), bytes_of("second {\"text\": 1}", false));
}

TEST(Preprocess, UnusableLinesAreSkippedAndCountedWithTheirPlace) {
  TemporaryFolder folder;
  std::string input = folder.file("messy.jsonl");
  write_file_bytes(input,
                   "{\"text\": \"good 1\"}\n"         // 1
                   "{\"text\": \"broken\"\n"          // 2 malformed JSON
                   "{\"text\": \"bad \xff byte\"}\n"  // 3 not UTF-8
                   "{\"body\": \"no text key\"}\n"    // 4 missing key
                   "{\"text\": 42}\n"                 // 5 not a string
                   "[\"text\", \"an array\"]\n"       // 6 not an object
                   "{\"text\": \"" +
                       std::string(200, 'x') +
                       "\"}\n"                                     // 7 too long
                       "\n"                                        // 8 blank
                       "{\"text\": \"lone \\ud800 surrogate\"}\n"  // 9 malformed (invalid escape)
                       "{\"text\": \"good 2\"}\n");                // 10
  PreprocessOptions options = options_for({input}, folder.file("out"));
  options.max_document_bytes = 100;
  PreprocessStats stats = preprocess_to_indexed_dataset(options, byte_encoder());
  EXPECT_EQ(stats.lines, 10);
  EXPECT_EQ(stats.documents, 2);
  EXPECT_EQ(stats.malformed_json, 2);
  EXPECT_EQ(stats.invalid_utf8, 1);
  EXPECT_EQ(stats.missing_key, 3);
  EXPECT_EQ(stats.too_long, 1);
  EXPECT_EQ(stats.blank_lines, 1);
  EXPECT_EQ(stats.skipped(), 7);
  ASSERT_EQ(stats.skipped_examples.size(), 5u);
  EXPECT_EQ(stats.skipped_examples[0], input + ":2: not valid JSON");
  EXPECT_EQ(stats.skipped_examples[1], input + ":3: not valid UTF-8");
  EXPECT_EQ(stats.skipped_examples[2], input + ":4: no string field \"text\"");
  IndexedDataset dataset(folder.file("out"));
  EXPECT_EQ(dataset.sequence(0), bytes_of("good 1", true));
  EXPECT_EQ(dataset.sequence(1), bytes_of("good 2", true));
}

// Many documents of varied size across several files and many chunks.
std::vector<std::string> write_corpus(const TemporaryFolder& folder, int files, int documents_per_file,
                                      std::vector<std::string>& texts) {
  std::mt19937 engine(5);
  std::vector<std::string> paths;
  for (int f = 0; f < files; ++f) {
    paths.push_back(folder.file("part" + std::to_string(f) + ".jsonl"));
    std::ofstream stream(paths.back());
    for (int d = 0; d < documents_per_file; ++d) {
      std::string text = "doc " + std::to_string(f) + "/" + std::to_string(d) + " ";
      text.append(engine() % 3000, static_cast<char>('a' + engine() % 26));
      texts.push_back(text);
      stream << "{\"text\": \"" << text << "\"}\n";
    }
  }
  return paths;
}

TEST(Preprocess, WorkersKeepInputOrderAndWriteTheSameBytesAsOne) {
  TemporaryFolder folder;
  std::vector<std::string> texts;
  std::vector<std::string> inputs = write_corpus(folder, 3, 1500, texts);  // ~7 MB: several chunks per file
  preprocess_to_indexed_dataset(options_for(inputs, folder.file("one")), byte_encoder());
  preprocess_to_indexed_dataset(options_for(inputs, folder.file("four"), 4), byte_encoder());
  EXPECT_TRUE(testing::read_file_bytes(folder.file("one.bin")) == testing::read_file_bytes(folder.file("four.bin")));
  EXPECT_TRUE(testing::read_file_bytes(folder.file("one.idx")) == testing::read_file_bytes(folder.file("four.idx")));
  IndexedDataset dataset(folder.file("four"));
  ASSERT_EQ(dataset.sequence_count(), static_cast<int64_t>(texts.size()));
  for (size_t d = 0; d < texts.size(); d += 97)
    EXPECT_EQ(dataset.sequence(static_cast<int64_t>(d)), bytes_of(texts[d], true));
}

TEST(Preprocess, LargeVocabulariesGetInt32Tokens) {
  TemporaryFolder folder;
  std::string input = folder.file("docs.jsonl");
  write_file_bytes(input, "{\"text\": \"ab\"}\n");
  PreprocessEncoder encoder;
  encoder.encode_append = [](std::string_view text, std::vector<int32_t>& ids) {
    for (unsigned char c : text) ids.push_back(100000 + c);
  };
  encoder.vocab_size = 128256;  // Llama 3
  encoder.eod_id = 128001;
  preprocess_to_indexed_dataset(options_for({input}, folder.file("out")), encoder);
  IndexedDataset dataset(folder.file("out"));
  EXPECT_EQ(dataset.dtype(), IndexedDType::Int32);
  EXPECT_EQ(dataset.sequence(0), (std::vector<int64_t>{100097, 100098, 128001}));
}

void expect_refused(const PreprocessOptions& options, const PreprocessEncoder& encoder, const std::string& fragment) {
  try {
    preprocess_to_indexed_dataset(options, encoder);
    FAIL() << "expected an error mentioning '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Preprocess, RefusesUnusableOptions) {
  TemporaryFolder folder;
  std::string input = folder.file("docs.jsonl");
  write_file_bytes(input, "{\"text\": \"ab\"}\n");
  expect_refused(options_for({folder.file("missing.jsonl")}, folder.file("out")), byte_encoder(),
                 "is not a readable file");
  write_file_bytes(folder.file("docs.jsonl.gz"), "x");
  expect_refused(options_for({folder.file("docs.jsonl.gz")}, folder.file("out")), byte_encoder(), "is compressed");
  expect_refused(options_for({input}, folder.file("no/such/folder/out")), byte_encoder(), "does not exist");
  expect_refused(options_for({input}, folder.file("out"), 0), byte_encoder(), "--workers 0");
  PreprocessEncoder no_eod = byte_encoder();
  no_eod.eod_id = -1;
  expect_refused(options_for({input}, folder.file("out")), no_eod, "--append-eod needs an end-of-document token");
  EXPECT_FALSE(std::filesystem::exists(folder.file("out.bin")));
}

// ---- bounded memory ----

int64_t vm_data_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmData:") {
      int64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    status.ignore(1 << 20, '\n');
  }
  return -1;
}

// Writes documents of 1 to 64 KiB of words (one in a thousand of 4 MiB) until `megabytes`.
void write_large_jsonl(const std::string& path, int64_t megabytes) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  TS_CHECK(file != nullptr, "cannot create ", path);
  std::mt19937 engine(7);
  std::string line;
  int64_t written = 0;
  while (written < megabytes << 20) {
    const size_t words = engine() % 1000 == 0 ? 800000 : 200 + engine() % 12000;
    line = "{\"id\": " + std::to_string(written) + ", \"text\": \"";
    for (size_t w = 0; w < words; ++w) line.append(w % 9 == 0 ? "token " : "word ");
    line += "\"}\n";
    TS_CHECK(std::fwrite(line.data(), 1, line.size(), file) == line.size(), "writing ", path, " failed");
    written += static_cast<int64_t>(line.size());
  }
  std::fclose(file);
}

struct CappedRun {
  int exit_code = -1;  // -1: killed by a signal
  int64_t peak_resident_mb = 0;
};

// Preprocesses `input` in a child process whose data segment may grow by at most cap_mb.
CappedRun preprocess_in_capped_child(const std::string& input, const std::string& output, int64_t cap_mb) {
  // Encoder: one id per 4 bytes, so the output stays small while every byte is read.
  PreprocessEncoder encoder;
  encoder.encode_append = [](std::string_view text, std::vector<int32_t>& ids) {
    for (size_t i = 0; i < text.size(); i += 4) ids.push_back(static_cast<unsigned char>(text[i]));
  };
  encoder.vocab_size = 50257;
  encoder.eod_id = 50256;
  std::fflush(stdout);
  pid_t child = fork();
  TS_CHECK(child >= 0, "fork failed");
  if (child == 0) {
    // RLIMIT_DATA counts every private writable mapping: heap, malloc arenas in use, stacks.
    const int64_t cap = vm_data_bytes() + (cap_mb << 20);
    struct rlimit limit = {static_cast<rlim_t>(cap), static_cast<rlim_t>(cap)};
    if (setrlimit(RLIMIT_DATA, &limit) != 0) _exit(3);
    try {
      PreprocessStats stats = preprocess_to_indexed_dataset(options_for({input}, output, 2), encoder);
      std::printf(
          "preprocessed %.0f MB in %.2f s (%.1f MB/s, %.0f docs/s) with the data segment capped at "
          "baseline + %lld MB\n",
          stats.bytes_read / 1e6, stats.seconds, stats.bytes_read / 1e6 / stats.seconds,
          stats.documents / stats.seconds, static_cast<long long>(cap_mb));
      std::fflush(stdout);
      _exit(stats.skipped() == 0 && stats.bytes_read == static_cast<int64_t>(std::filesystem::file_size(input)) ? 0
                                                                                                                : 4);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "capped child: %s\n", e.what());
      _exit(5);
    }
  }
  int status = 0;
  struct rusage usage {};
  TS_CHECK(wait4(child, &status, 0, &usage) == child, "wait4 failed");
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, usage.ru_maxrss / 1024};
}

TEST(Preprocess, MemoryStaysBoundedOnAnInputFarLargerThanTheCap) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a memory cap cannot be measured under a sanitizer (its shadow memory needs the address space)";
#endif
  const char* size_override = std::getenv("TESSERA_PREPROCESS_MEMORY_TEST_MB");
  const int64_t input_mb = size_override != nullptr ? std::atoll(size_override) : 256;
  const int64_t cap_mb = 160;
  TemporaryFolder folder;
  std::string input = folder.file("big.jsonl");
  write_large_jsonl(input, input_mb);

  CappedRun run = preprocess_in_capped_child(input, folder.file("out"), cap_mb);
  std::printf("input %lld MB, cap baseline + %lld MB, child peak resident memory %lld MB\n",
              static_cast<long long>(input_mb), static_cast<long long>(cap_mb),
              static_cast<long long>(run.peak_resident_mb));
  ASSERT_EQ(run.exit_code, 0) << "-1: killed, 3: setrlimit failed, 4: wrong counts, 5: error (see stderr)";
  EXPECT_LT(run.peak_resident_mb, cap_mb + 100);
  IndexedDataset dataset(folder.file("out"));
  EXPECT_GT(dataset.document_count(), 0);

  // Negative control: the cap binds. 8 MB cannot hold the chunks in flight and a 4 MiB
  // document; running out must end in a clean error (exit 5), not a crash.
  CappedRun starved = preprocess_in_capped_child(input, folder.file("starved"), 8);
  EXPECT_EQ(starved.exit_code, 5) << "0: an 8 MB cap did not stop the pipeline; -1: it crashed";
}

}  // namespace
}  // namespace tessera
