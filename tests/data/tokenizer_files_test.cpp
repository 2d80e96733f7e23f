// Tokenizer file layouts: GPT-2's encoder.json + vocab.bpe and vocab.json + merges.txt, Hugging
// Face tokenizer.json (ByteLevel, and Llama 3 style Split + ByteLevel, merges as strings or
// pairs), the byte-to-unicode alphabet, writing GPT-2 files back, and a clear error for every
// layout that is not supported or is broken. The tokenizer.json files are built here from the
// GPT-2 fixtures, so the ids they give are checked against tiktoken's (cases.json).
#include "data/tokenizer_files.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "data/bpe_byte_unicode.h"
#include "data/bpe_pretokenizer.h"
#include "tokenizer_test_util.h"

namespace tessera {
namespace {

using nlohmann::json;
using testing::gpt2_fixture_dir;
using testing::gpt2_tokenizer;
using testing::read_file_bytes;
using testing::TemporaryFolder;
using testing::write_file_bytes;

std::vector<std::string> gpt2_merge_lines() {
  std::string text = read_file_bytes((gpt2_fixture_dir() / "vocab.bpe").string());
  std::vector<std::string> lines;
  size_t start = text.find('\n') + 1;  // skip "#version: 0.2"
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    if (end > start) lines.push_back(text.substr(start, end - start));
  }
  return lines;
}

// A Hugging Face tokenizer.json holding GPT-2's vocabulary and merges.
json gpt2_tokenizer_json(const json& pre_tokenizer, bool merges_as_pairs) {
  json merges = json::array();
  for (const std::string& line : gpt2_merge_lines()) {
    size_t space = line.find(' ');
    merges.push_back(merges_as_pairs ? json::array({line.substr(0, space), line.substr(space + 1)}) : json(line));
  }
  return json{{"version", "1.0"},
              {"added_tokens", json::array({{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}}})},
              {"normalizer", nullptr},
              {"pre_tokenizer", pre_tokenizer},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model",
               {{"type", "BPE"},
                {"vocab", json::parse(read_file_bytes((gpt2_fixture_dir() / "encoder.json").string()))},
                {"merges", merges}}}};
}

const json kByteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
const json kLlama3PreTokenizer = {
    {"type", "Sequence"},
    {"pretokenizers",
     json::array(
         {{{"type", "Split"},
           {"pattern", {{"Regex", std::string(kLlama3Pattern)}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}};

json tiktoken_cases() {
  return json::parse(read_file_bytes(testing::tokenizer_fixture("cases.json").string()))["cases"];
}

// Runs `load` and checks that it throws an Error whose message holds every one of `parts`.
template <typename Load>
void expect_error(Load load, std::initializer_list<std::string> parts) {
  try {
    load();
    ADD_FAILURE() << "expected an error mentioning '" << *parts.begin() << "'";
  } catch (const Error& error) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(error.what()).find(part), std::string::npos) << "message: " << error.what();
    }
  }
}

TEST(TokenizerByteUnicode, MatchesGpt2Alphabet) {
  EXPECT_EQ(byte_to_unicode(' '), U'\u0120');   // 'Ġ'
  EXPECT_EQ(byte_to_unicode('\n'), U'\u010a');  // 'Ċ'
  EXPECT_EQ(byte_to_unicode(0), U'\u0100');
  EXPECT_EQ(byte_to_unicode('A'), U'A');
  EXPECT_EQ(byte_to_unicode(0x7f), U'\u0121');  // first byte after the 33 controls and space
  EXPECT_EQ(byte_to_unicode(0xad), U'\u0143');  // soft hyphen, the 68th and last remapped byte
  EXPECT_EQ(byte_to_unicode(0xff), U'\u00ff');
  std::string all_bytes;
  for (int byte = 0; byte < 256; ++byte) all_bytes.push_back(static_cast<char>(byte));
  EXPECT_EQ(unicode_text_to_bytes(bytes_to_unicode_text(all_bytes)), all_bytes);
  EXPECT_EQ(bytes_to_unicode_text(" the"), "\xc4\xa0the");
  EXPECT_EQ(unicode_text_to_bytes("\xe2\x96\x81"), std::nullopt);  // '▁' is SentencePiece's, not GPT-2's
}

TEST(TokenizerFiles, VocabJsonAndMergesTxtEqualEncoderJsonAndVocabBpe) {
  TemporaryFolder folder;
  write_file_bytes(folder.file("vocab.json"), read_file_bytes((gpt2_fixture_dir() / "encoder.json").string()));
  std::string merges = "#version: 0.2\r\n";  // CRLF lines are accepted
  for (const std::string& line : gpt2_merge_lines()) merges += line + "\r\n";
  write_file_bytes(folder.file("merges.txt"), merges);
  Tokenizer from_directory = Tokenizer::load(folder.path());
  Tokenizer from_pair = Tokenizer::load(folder.path() / "vocab.json", folder.path() / "merges.txt", "<|endoftext|>");
  for (const auto& entry : tiktoken_cases()) {
    std::string text = entry["text"].get<std::string>();
    EXPECT_EQ(from_directory.encode(text), gpt2_tokenizer().encode(text));
    EXPECT_EQ(from_pair.encode(text), entry["gpt2"].get<std::vector<int32_t>>());
  }
}

TEST(TokenizerFiles, HuggingFaceByteLevelTokenizerJson) {
  TemporaryFolder folder;
  write_file_bytes(folder.file("tokenizer.json"), gpt2_tokenizer_json(kByteLevel, /*merges_as_pairs=*/false).dump());
  Tokenizer tokenizer = Tokenizer::load(folder.path());
  EXPECT_EQ(tokenizer.vocab_size(), 50257);
  EXPECT_EQ(tokenizer.eod_id(), 50256);
  for (const auto& entry : tiktoken_cases()) {
    std::string text = entry["text"].get<std::string>();
    EXPECT_EQ(tokenizer.encode(text), entry["gpt2"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(tokenizer.encode(text, SpecialTokens::kRecognize), entry["gpt2_specials"].get<std::vector<int32_t>>());
  }
}

TEST(TokenizerFiles, HuggingFaceLlama3StyleTokenizerJsonWithMergePairs) {
  TemporaryFolder folder;
  write_file_bytes(folder.file("tokenizer.json"),
                   gpt2_tokenizer_json(kLlama3PreTokenizer, /*merges_as_pairs=*/true).dump());
  Tokenizer tokenizer = Tokenizer::load(folder.file("tokenizer.json"));
  EXPECT_EQ(tokenizer.pattern(), kLlama3Pattern);
  for (const auto& entry : tiktoken_cases()) {
    std::string text = entry["text"].get<std::string>();
    EXPECT_EQ(tokenizer.encode(text), entry["llama3"].get<std::vector<int32_t>>()) << text;
  }
}

// tokenizer.json files as Hugging Face's `tokenizers` writes them (hf_tokenizers_compare.py kept
// them without their vocabulary and with one merge, which shows the merges format), refilled
// with GPT-2's vocabulary and merges: they must give tiktoken's ids on the mixed text.
TEST(TokenizerFiles, TokenizerJsonWrittenByHuggingFaceGivesTiktokenIds) {
  TemporaryFolder folder;
  std::string text = testing::read_gzip_file(testing::tokenizer_fixture("mixed_text.txt.gz"));
  for (const auto& [skeleton, ids] : {std::pair{"hf_gpt2_skeleton.json", "mixed_text.gpt2_ids.u16.gz"},
                                      std::pair{"hf_llama3_style_skeleton.json", "mixed_text.llama3_ids.u16.gz"}}) {
    SCOPED_TRACE(skeleton);
    json tokenizer_json = json::parse(read_file_bytes(testing::tokenizer_fixture(skeleton).string()));
    json& model = tokenizer_json["model"];
    bool merges_as_pairs = model["merges"].at(0).is_array();
    model["vocab"] = json::parse(read_file_bytes((gpt2_fixture_dir() / "encoder.json").string()));
    model["merges"] = gpt2_tokenizer_json(kByteLevel, merges_as_pairs)["model"]["merges"];
    write_file_bytes(folder.file("tokenizer.json"), tokenizer_json.dump());
    Tokenizer tokenizer = Tokenizer::load(folder.file("tokenizer.json"));
    EXPECT_EQ(tokenizer.encode(text), testing::read_u16_ids(testing::tokenizer_fixture(ids)));
    EXPECT_EQ(tokenizer.encode("a<|endoftext|>b", SpecialTokens::kRecognize), (std::vector<int32_t>{64, 50256, 65}));
  }
}

TEST(TokenizerFiles, WrittenGpt2FilesReadBackIdentically) {
  TemporaryFolder folder;
  TokenizerSpec spec = read_tokenizer_files(gpt2_fixture_dir());
  write_gpt2_tokenizer_files(spec, folder.file("vocab.json"), folder.file("merges.txt"));
  TokenizerSpec again = read_gpt2_tokenizer_files(folder.file("vocab.json"), folder.file("merges.txt"));
  EXPECT_EQ(again.vocab, spec.vocab);
  EXPECT_EQ(again.merges, spec.merges);
  EXPECT_EQ(again.special_tokens, spec.special_tokens);
}

// One broken or unsupported tokenizer.json per case: what to change and what the error names.
struct BadTokenizerJson {
  std::string name;
  std::function<void(json&)> change;
  std::string expected_message;
};

TEST(TokenizerFiles, UnsupportedOrBrokenTokenizerJsonGivesClearErrors) {
  const std::vector<BadTokenizerJson> cases = {
      {"normalizer",
       [](json& j) {
         j["normalizer"] = {{"type", "NFC"}};
       },
       "normalizer is"},
      {"model type", [](json& j) { j["model"]["type"] = "WordPiece"; }, "model.type is \"WordPiece\""},
      {"byte fallback", [](json& j) { j["model"]["byte_fallback"] = true; }, "model.byte_fallback is true"},
      {"word suffix", [](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; }, "model.end_of_word_suffix"},
      {"no pre_tokenizer", [](json& j) { j.erase("pre_tokenizer"); }, "pre_tokenizer is missing"},
      {"metaspace",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Metaspace"}};
       },
       "expected ByteLevel"},
      {"prefix space", [](json& j) { j["pre_tokenizer"]["add_prefix_space"] = true; }, "add_prefix_space is true"},
      {"split behavior",
       [](json& j) {
         j["pre_tokenizer"] = kLlama3PreTokenizer;
         j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
       },
       "behavior \"Removed\""},
      {"bad regex",
       [](json& j) {
         j["pre_tokenizer"] = kLlama3PreTokenizer;
         j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
       },
       "does not compile"},
      {"vocab not object", [](json& j) { j["model"]["vocab"] = json::array(); }, "model.vocab to be a JSON object"},
      {"sentencepiece token", [](json& j) { j["model"]["vocab"]["\xe2\x96\x81the"] = 60000; },
       "byte-to-unicode alphabet"},
      {"duplicate id", [](json& j) { j["model"]["vocab"]["Hello"] = 0; }, "gives id 0 to both"},
      {"merge with 3 parts", [](json& j) { j["model"]["merges"][5] = "a b c"; }, "model.merges[5] is 'a b c'"},
      {"merge of unknown", [](json& j) { j["model"]["merges"][0] = "Ġ zzzzqq"; }, "merge 1 'Ġ zzzzqq'"},
      {"lstrip added token", [](json& j) { j["added_tokens"][0]["lstrip"] = true; }, "sets lstrip"},
      {"missing byte",
       [](json& j) {
         j["model"]["vocab"].erase("!");
         j["model"]["merges"] = json::array();
       },
       "needs a token for every byte"},
  };
  TemporaryFolder folder;
  json good = gpt2_tokenizer_json(kByteLevel, false);
  for (const auto& bad : cases) {
    SCOPED_TRACE(bad.name);
    json broken = good;
    bad.change(broken);
    std::string path = folder.file(bad.name + ".json");
    write_file_bytes(path, broken.dump());
    expect_error([&] { Tokenizer::load(path); }, {path, bad.expected_message});
  }
}

TEST(TokenizerFiles, UnknownFileLayoutsGiveClearErrors) {
  TemporaryFolder folder;
  write_file_bytes(folder.file("not_json.json"), "{\"model\": ");
  expect_error([&] { Tokenizer::load(folder.file("not_json.json")); }, {"not_json.json", "is not valid JSON"});
  write_file_bytes(folder.file("encoder.json"), read_file_bytes((gpt2_fixture_dir() / "encoder.json").string()));
  expect_error([&] { Tokenizer::load(folder.file("encoder.json")); },
               {"encoder.json", "expected a Hugging Face tokenizer.json", "pass the vocabulary and merges files"});
  expect_error([&] { Tokenizer::load(folder.path()); },
               {folder.path().string(), "holds none of tokenizer.json, encoder.json + vocab.bpe"});
  expect_error([&] { Tokenizer::load(folder.file("missing")); }, {"missing", "does not exist"});
  write_file_bytes(folder.file("vocab.bpe"), "#version: 0.2\nĠ t\nthis line has three\n");
  expect_error([&] { Tokenizer::load(folder.path() / "encoder.json", folder.path() / "vocab.bpe"); },
               {"vocab.bpe", "line 3 is 'this line has three'"});
}

}  // namespace
}  // namespace tessera
