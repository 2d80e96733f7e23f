// Megatron .bin/.idx compatibility: a pair written by an independent Python writer
// (tests/reference/megatron_idx_writer.py, stdlib only, written from Megatron's layout) reads
// back exactly, our writer produces the same bytes from the same tokens, a tiny index matches
// bytes written out by hand, and every kind of damaged pair is refused with a message that
// says what is wrong.
#include "data/indexed_dataset.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "core/check.h"
#include "data/data_test_util.h"
#include "data/indexed_dataset_writer.h"

namespace tessera {
namespace {

using testing::read_file_bytes;
using testing::TemporaryFolder;
using testing::write_file_bytes;

// A document is a list of sequences (Megatron's add_item calls before end_document).
using Documents = std::vector<std::vector<std::vector<int32_t>>>;

void write_with_ours(const std::string& prefix, IndexedDType dtype, const Documents& documents) {
  IndexedDatasetWriter writer(prefix, dtype);
  for (const auto& document : documents) {
    for (const auto& sequence : document) writer.add_sequence(sequence);
    writer.end_document();
  }
  writer.finalize();
}

void write_with_python(const TemporaryFolder& folder, const std::string& prefix, const std::string& dtype,
                       const Documents& documents) {
  nlohmann::json spec = {{"dtype", dtype}, {"documents", documents}};
  std::string spec_path = folder.file("spec-" + dtype + ".json");
  write_file_bytes(spec_path, spec.dump());
  std::string script = (testing::repository_root() / "tests/reference/megatron_idx_writer.py").string();
  ASSERT_TRUE(std::filesystem::exists(script)) << script;
  std::string command = "python3 '" + script + "' --input '" + spec_path + "' --output '" + prefix + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
}

// Documents with several sequences, an empty document, a zero-length sequence and ids that
// use the whole range of the dtype.
Documents mixed_documents(int32_t max_token, uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_int_distribution<int32_t> token(0, max_token);
  std::uniform_int_distribution<int> length(1, 40);
  Documents documents;
  for (int d = 0; d < 25; ++d) {
    std::vector<std::vector<int32_t>> document;
    int sequences = d % 5 == 3 ? 0 : 1 + d % 3;
    for (int s = 0; s < sequences; ++s) {
      std::vector<int32_t> sequence(static_cast<size_t>(d == 7 && s == 0 ? 0 : length(engine)));
      for (auto& id : sequence) id = token(engine);
      document.push_back(sequence);
    }
    documents.push_back(document);
  }
  documents[0][0][0] = max_token;
  documents[0][0][1] = 0;
  return documents;
}

void expect_reads_exactly(const IndexedDataset& dataset, const Documents& documents) {
  int64_t sequence = 0;
  ASSERT_EQ(dataset.document_count(), static_cast<int64_t>(documents.size()));
  for (size_t d = 0; d < documents.size(); ++d) {
    EXPECT_EQ(dataset.document_index(static_cast<int64_t>(d)), sequence) << "document " << d;
    for (const auto& want : documents[d]) {
      std::vector<int64_t> got = dataset.sequence(sequence);
      EXPECT_EQ(got, std::vector<int64_t>(want.begin(), want.end())) << "sequence " << sequence;
      ++sequence;
    }
  }
  EXPECT_EQ(dataset.sequence_count(), sequence);
  EXPECT_EQ(dataset.document_index(dataset.document_count()), sequence);
}

struct DtypeCase {
  IndexedDType dtype;
  std::string name;
  int32_t max_token;
};
void PrintTo(const DtypeCase& c, std::ostream* os) { *os << c.name; }

class IndexedDatasetAgainstPythonWriter : public ::testing::TestWithParam<DtypeCase> {};

TEST_P(IndexedDatasetAgainstPythonWriter, ReadsItsPairExactlyAndWritesTheSameBytes) {
  if (!testing::python3_available()) GTEST_SKIP() << "python3 not found: the independent-writer comparison is skipped";
  const DtypeCase& c = GetParam();
  TemporaryFolder folder;
  Documents documents = mixed_documents(c.max_token, 17);
  std::string theirs = folder.file("python_" + c.name);
  std::string ours = folder.file("tessera_" + c.name);
  write_with_python(folder, theirs, c.name, documents);
  write_with_ours(ours, c.dtype, documents);

  IndexedDataset dataset(theirs);
  EXPECT_EQ(dataset.dtype(), c.dtype);
  expect_reads_exactly(dataset, documents);

  std::string their_idx = read_file_bytes(theirs + ".idx"), our_idx = read_file_bytes(ours + ".idx");
  std::string their_bin = read_file_bytes(theirs + ".bin"), our_bin = read_file_bytes(ours + ".bin");
  EXPECT_GT(their_bin.size(), 0u);
  EXPECT_TRUE(our_idx == their_idx) << ".idx differs: " << our_idx.size() << " vs " << their_idx.size() << " bytes";
  EXPECT_TRUE(our_bin == their_bin) << ".bin differs: " << our_bin.size() << " vs " << their_bin.size() << " bytes";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, IndexedDatasetAgainstPythonWriter,
                         ::testing::Values(DtypeCase{IndexedDType::UInt16, "uint16", 65535},
                                           DtypeCase{IndexedDType::Int32, "int32", 2147483647},
                                           DtypeCase{IndexedDType::UInt8, "uint8", 255}),
                         [](const auto& info) { return info.param.name; });

TEST(IndexedDataset, TinyIndexMatchesHandWrittenBytes) {
  // Two documents: {[7, 8, 9], [10]} and {[65535]}, uint16 (code 8).
  TemporaryFolder folder;
  std::string prefix = folder.file("tiny");
  write_with_ours(prefix, IndexedDType::UInt16, {{{7, 8, 9}, {10}}, {{65535}}});
  const unsigned char want_idx[] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0,           // magic
                                    1,   0,   0,   0,   0,   0,   0,   0,              // version 1
                                    8,                                                 // dtype code: uint16
                                    3,   0,   0,   0,   0,   0,   0,   0,              // 3 sequences
                                    3,   0,   0,   0,   0,   0,   0,   0,              // 3 document-index entries
                                    3,   0,   0,   0,   1,   0,   0,   0, 1, 0, 0, 0,  // lengths 3, 1, 1
                                    0,   0,   0,   0,   0,   0,   0,   0,              // pointer 0
                                    6,   0,   0,   0,   0,   0,   0,   0,              // pointer 6 (3 tokens x 2 bytes)
                                    8,   0,   0,   0,   0,   0,   0,   0,              // pointer 8
                                    0,   0,   0,   0,   0,   0,   0,   0,              // document index: 0,
                                    2,   0,   0,   0,   0,   0,   0,   0,   //   2 (document 0 holds sequences 0, 1),
                                    3,   0,   0,   0,   0,   0,   0,   0};  //   3
  const unsigned char want_bin[] = {7, 0, 8, 0, 9, 0, 10, 0, 0xff, 0xff};
  EXPECT_EQ(read_file_bytes(prefix + ".idx"), std::string(reinterpret_cast<const char*>(want_idx), sizeof(want_idx)));
  EXPECT_EQ(read_file_bytes(prefix + ".bin"), std::string(reinterpret_cast<const char*>(want_bin), sizeof(want_bin)));

  IndexedDataset dataset(prefix);
  EXPECT_EQ(dataset.token_count(), 5);
  std::vector<int64_t> middle;
  dataset.append_tokens(0, 1, 2, middle);
  EXPECT_EQ(middle, (std::vector<int64_t>{8, 9}));
  EXPECT_THROW(dataset.append_tokens(0, 2, 2, middle), Error);
  EXPECT_THROW(dataset.sequence(3), Error);
}

TEST(IndexedDatasetWriter, AddDocumentWritesNoSequenceForAnEmptyDocumentLikeMegatronPreprocessing) {
  TemporaryFolder folder;
  std::string prefix = folder.file("docs");
  {
    IndexedDatasetWriter writer(prefix, IndexedDType::Int32);
    writer.add_document(std::vector<int32_t>{1, 2});
    writer.add_document(std::vector<int32_t>{});
    writer.add_document(std::vector<int32_t>{3});
    writer.finalize();
  }
  IndexedDataset dataset(prefix);
  EXPECT_EQ(dataset.sequence_count(), 2);
  EXPECT_EQ(dataset.document_count(), 3);
  EXPECT_EQ(dataset.document_index(1), 1);
  EXPECT_EQ(dataset.document_index(2), 1);
}

TEST(IndexedDatasetWriter, RefusesATokenThatDoesNotFitTheDtypeAndLeavesNoFiles) {
  TemporaryFolder folder;
  std::string prefix = folder.file("overflow");
  try {
    IndexedDatasetWriter writer(prefix, IndexedDType::UInt16);
    writer.add_document(std::vector<int32_t>{1, 65536});
    FAIL() << "a uint16 dataset accepted token 65536";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit its dtype uint16"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_empty(folder.path())) << "an abandoned writer left files behind";
}

// ---- damaged pairs ----

class DamagedIndex : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = folder_.file("data");
    write_with_ours(prefix_, IndexedDType::UInt16, {{{1, 2, 3}}, {{4, 5}}});
    idx_ = read_file_bytes(prefix_ + ".idx");
  }
  void expect_refused(const std::string& fragment) {
    try {
      IndexedDataset dataset(prefix_);
      FAIL() << "opened a damaged pair; expected an error mentioning '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }
  TemporaryFolder folder_;
  std::string prefix_;
  std::string idx_;
};

TEST_F(DamagedIndex, MissingIdxOrBin) {
  std::filesystem::remove(prefix_ + ".idx");
  expect_refused("data.idx not found");
  write_file_bytes(prefix_ + ".idx", idx_);
  std::filesystem::remove(prefix_ + ".bin");
  expect_refused("data.bin not found");
}

TEST_F(DamagedIndex, EmptyOrTruncatedHeader) {
  write_file_bytes(prefix_ + ".idx", "");
  expect_refused("shorter than the 34-byte header");
  write_file_bytes(prefix_ + ".idx", idx_.substr(0, 20));
  expect_refused("shorter than the 34-byte header");
}

TEST_F(DamagedIndex, BadMagic) {
  idx_[0] = 'X';
  write_file_bytes(prefix_ + ".idx", idx_);
  expect_refused("does not start with the magic");
}

TEST_F(DamagedIndex, BadVersion) {
  idx_[9] = 2;
  write_file_bytes(prefix_ + ".idx", idx_);
  expect_refused("index version 2");
}

TEST_F(DamagedIndex, UnknownDtypeCode) {
  idx_[17] = 9;
  write_file_bytes(prefix_ + ".idx", idx_);
  expect_refused("dtype code 9");
}

TEST_F(DamagedIndex, TruncatedArrays) {
  write_file_bytes(prefix_ + ".idx", idx_.substr(0, idx_.size() - 8));
  expect_refused("truncated or corrupt");
}

TEST_F(DamagedIndex, SequenceCountThatWouldOverflow) {
  std::memset(idx_.data() + 18, 0xff, 8);
  write_file_bytes(prefix_ + ".idx", idx_);
  expect_refused("truncated or corrupt");
}

TEST_F(DamagedIndex, BinShorterOrLongerThanTheIndexSays) {
  std::string bin = read_file_bytes(prefix_ + ".bin");
  write_file_bytes(prefix_ + ".bin", bin.substr(0, bin.size() - 2));
  expect_refused("the .bin is truncated or belongs to another index");
  write_file_bytes(prefix_ + ".bin", bin + "xx");
  expect_refused("the pair comes from different runs");
}

TEST_F(DamagedIndex, DocumentIndexThatDoesNotEndAtTheSequenceCount) {
  // The last document-index entry is the final 8 bytes of the file.
  idx_[idx_.size() - 8] = 1;
  write_file_bytes(prefix_ + ".idx", idx_);
  expect_refused("the document index ends at sequence 1 but there are 2 sequences");
}

}  // namespace
}  // namespace tessera
