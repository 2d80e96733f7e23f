#include "data/tokenizer_files.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"
#include "data/bpe_byte_unicode.h"
#include "data/bpe_pretokenizer.h"

namespace tessera {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  TS_CHECK(in.good(), "tokenizer file ", path, " cannot be opened; check the path");
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

json parse_json_file(const fs::path& path) {
  json parsed = json::parse(read_text_file(path), nullptr, /*allow_exceptions=*/false);
  TS_CHECK(!parsed.is_discarded(), "tokenizer file ", path, " is not valid JSON");
  return parsed;
}

std::string token_bytes_or_throw(const std::string& spelled, const fs::path& path, const std::string& where) {
  std::optional<std::string> bytes = unicode_text_to_bytes(spelled);
  TS_CHECK(bytes.has_value(), path, ": ", where, " '", spelled,
           "' is not spelled in GPT-2's byte-to-unicode alphabet; only byte-level BPE tokenizers are supported");
  return *bytes;
}

bool is_tiktoken_special(const std::string& token) { return token == "<|endoftext|>" || token == "<|startoftext|>"; }

// {"token": id, ...} -> spec.vocab (and spec.special_tokens for tiktoken's two specials).
void read_vocab_object(const json& vocab, const fs::path& path, const std::string& key, bool split_specials,
                       TokenizerSpec& spec) {
  TS_CHECK(vocab.is_object(), path, ": expected ", key, " to be a JSON object {\"token\": id, ...}, got ",
           vocab.type_name());
  std::map<int64_t, std::string> seen_ids;
  for (const auto& [spelled, id] : vocab.items()) {
    TS_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (int64_t{1} << 31), path, ": ",
             key, " entry '", spelled, "' has id ", id.dump(), "; expected a non-negative 32-bit integer");
    int64_t value = id.get<int64_t>();
    auto [previous, inserted] = seen_ids.emplace(value, spelled);
    TS_CHECK(inserted, path, ": ", key, " gives id ", value, " to both '", previous->second, "' and '", spelled, "'");
    if (split_specials && is_tiktoken_special(spelled)) {
      spec.special_tokens.emplace_back(spelled, static_cast<int32_t>(value));
      continue;
    }
    auto [entry, fresh] =
        spec.vocab.emplace(token_bytes_or_throw(spelled, path, key + " token"), static_cast<int32_t>(value));
    TS_CHECK(fresh, path, ": ", key, " spells the same bytes twice ('", spelled, "')");
  }
}

std::pair<std::string, std::string> split_merge_line(const std::string& line, const fs::path& path,
                                                     const std::string& where) {
  size_t space = line.find(' ');
  TS_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size() &&
               line.find(' ', space + 1) == std::string::npos,
           path, ": ", where, " is '", line, "'; expected two tokens separated by one space");
  return {token_bytes_or_throw(line.substr(0, space), path, where),
          token_bytes_or_throw(line.substr(space + 1), path, where)};
}

void read_merges_text(const fs::path& path, TokenizerSpec& spec) {
  std::istringstream lines(read_text_file(path));
  std::string line;
  for (size_t number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.starts_with("#version"))) continue;
    spec.merges.push_back(split_merge_line(line, path, "line " + std::to_string(number)));
  }
}

std::string json_string_or_throw(const json& object, const std::string& key, const fs::path& path,
                                 const std::string& where) {
  TS_CHECK(object.is_object() && object.contains(key) && object[key].is_string(), path, ": expected ", where, ".", key,
           " to be a string");
  return object[key].get<std::string>();
}

bool json_flag(const json& object, const std::string& key, bool fallback) {
  return object.contains(key) && object[key].is_boolean() ? object[key].get<bool>() : fallback;
}

void read_hf_model(const json& model, const fs::path& path, TokenizerSpec& spec) {
  TS_CHECK(model.is_object(), path, ": expected a \"model\" object (a Hugging Face tokenizer.json)");
  std::string type = model.value("type", "BPE");
  TS_CHECK(type == "BPE", path, ": model.type is \"", type, "\"; only BPE models are supported");
  TS_CHECK(!json_flag(model, "byte_fallback", false), path,
           ": model.byte_fallback is true (a SentencePiece-style BPE); only byte-level BPE is supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    TS_CHECK(!model.contains(key) || model[key].is_null() || model[key] == "", path, ": model.", key,
             " is set; only byte-level BPE without word markers is supported");
  }
  TS_CHECK(model.contains("vocab") && model.contains("merges"), path, ": model needs \"vocab\" and \"merges\"");
  read_vocab_object(model["vocab"], path, "model.vocab", /*split_specials=*/false, spec);
  const json& merges = model["merges"];
  TS_CHECK(merges.is_array(), path, ": expected model.merges to be an array, got ", merges.type_name());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& merge = merges[i];
    std::string where = "model.merges[" + std::to_string(i) + "]";
    if (merge.is_string()) {
      spec.merges.push_back(split_merge_line(merge.get<std::string>(), path, where));
    } else {
      TS_CHECK(merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string(), path, ": ", where,
               " is ", merge.dump(), "; expected \"left right\" or [\"left\", \"right\"]");
      spec.merges.emplace_back(token_bytes_or_throw(merge[0].get<std::string>(), path, where),
                               token_bytes_or_throw(merge[1].get<std::string>(), path, where));
    }
  }
  spec.ignore_merges = json_flag(model, "ignore_merges", false);
}

void check_byte_level(const json& byte_level, const fs::path& path, const std::string& where, bool use_regex) {
  TS_CHECK(!json_flag(byte_level, "add_prefix_space", false), path, ": ", where,
           ".add_prefix_space is true; only tokenizers without an added prefix space are supported");
  TS_CHECK(json_flag(byte_level, "use_regex", true) == use_regex, path, ": ", where, ".use_regex must be ",
           use_regex ? "true" : "false", " here (GPT-2's regex alone, or a Split regex followed by ByteLevel)");
}

// The pre-tokenization regex of a ByteLevel or [Split, ByteLevel] pre_tokenizer.
std::string read_hf_pattern(const json& pre_tokenizer, const fs::path& path) {
  const std::string expected =
      "; expected ByteLevel, or a Sequence of Split {pattern {Regex}, behavior Isolated} and ByteLevel";
  std::string type = json_string_or_throw(pre_tokenizer, "type", path, "pre_tokenizer");
  if (type == "ByteLevel") {
    check_byte_level(pre_tokenizer, path, "pre_tokenizer", /*use_regex=*/true);
    return std::string(kGpt2Pattern);
  }
  TS_CHECK(type == "Sequence" && pre_tokenizer.contains("pretokenizers") && pre_tokenizer["pretokenizers"].is_array() &&
               pre_tokenizer["pretokenizers"].size() == 2,
           path, ": pre_tokenizer is ", pre_tokenizer.dump().substr(0, 200), expected);
  const json& split = pre_tokenizer["pretokenizers"][0];
  const json& byte_level = pre_tokenizer["pretokenizers"][1];
  TS_CHECK(json_string_or_throw(split, "type", path, "pre_tokenizer.pretokenizers[0]") == "Split" &&
               json_string_or_throw(byte_level, "type", path, "pre_tokenizer.pretokenizers[1]") == "ByteLevel",
           path, ": pre_tokenizer.pretokenizers are ", split.value("type", "?"), ", ", byte_level.value("type", "?"),
           expected);
  TS_CHECK(split.value("behavior", "") == "Isolated" && !json_flag(split, "invert", false), path,
           ": pre_tokenizer Split has behavior \"", split.value("behavior", ""), "\" (invert ",
           json_flag(split, "invert", false), "); only Isolated without invert is supported");
  TS_CHECK(split.contains("pattern") && split["pattern"].is_object() && split["pattern"].contains("Regex"), path,
           ": pre_tokenizer Split needs pattern {\"Regex\": ...}");
  check_byte_level(byte_level, path, "pre_tokenizer.pretokenizers[1]", /*use_regex=*/false);
  return json_string_or_throw(split["pattern"], "Regex", path, "pre_tokenizer.pretokenizers[0].pattern");
}

void read_hf_added_tokens(const json& added_tokens, const fs::path& path, TokenizerSpec& spec) {
  if (added_tokens.is_null()) return;
  TS_CHECK(added_tokens.is_array(), path, ": expected added_tokens to be an array");
  for (const json& token : added_tokens) {
    std::string content = json_string_or_throw(token, "content", path, "added_tokens[]");
    TS_CHECK(token.contains("id") && token["id"].is_number_integer(), path, ": added token '", content,
             "' has no integer id");
    for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
      TS_CHECK(!json_flag(token, flag, false), path, ": added token '", content, "' sets ", flag,
               ", which Tessera does not support");
    }
    spec.special_tokens.emplace_back(content, token["id"].get<int32_t>());
  }
}

}  // namespace

TokenizerSpec read_gpt2_tokenizer_files(const fs::path& vocab_json, const fs::path& merges) {
  TokenizerSpec spec;
  spec.source = vocab_json.string() + " + " + merges.string();
  read_vocab_object(parse_json_file(vocab_json), vocab_json, "the vocabulary", /*split_specials=*/true, spec);
  read_merges_text(merges, spec);
  spec.pattern = std::string(kGpt2Pattern);
  return spec;
}

TokenizerSpec read_hf_tokenizer_json(const fs::path& tokenizer_json) {
  json root = parse_json_file(tokenizer_json);
  TS_CHECK(root.is_object() && root.contains("model") && root["model"].is_object(), tokenizer_json,
           ": expected a Hugging Face tokenizer.json (an object with \"model\", \"pre_tokenizer\", ...); for GPT-2 "
           "files pass the vocabulary and merges files together, or their directory");
  TS_CHECK(!root.contains("normalizer") || root["normalizer"].is_null(), tokenizer_json, ": normalizer is ",
           root["normalizer"].dump().substr(0, 200), "; only byte-level BPE without a normalizer is supported");
  TS_CHECK(root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null(), tokenizer_json,
           ": pre_tokenizer is missing; expected ByteLevel, or a Sequence of Split and ByteLevel");
  TokenizerSpec spec;
  spec.source = tokenizer_json.string();
  read_hf_model(root["model"], tokenizer_json, spec);
  spec.pattern = read_hf_pattern(root["pre_tokenizer"], tokenizer_json);
  read_hf_added_tokens(root.value("added_tokens", json()), tokenizer_json, spec);
  return spec;
}

TokenizerSpec read_tokenizer_files(const fs::path& path) {
  TS_CHECK(fs::exists(path), "tokenizer path ", path, " does not exist");
  if (!fs::is_directory(path)) return read_hf_tokenizer_json(path);
  if (fs::exists(path / "tokenizer.json")) return read_hf_tokenizer_json(path / "tokenizer.json");
  for (auto [vocab, merges] : {std::pair{"encoder.json", "vocab.bpe"}, std::pair{"vocab.json", "merges.txt"}}) {
    if (fs::exists(path / vocab) && fs::exists(path / merges))
      return read_gpt2_tokenizer_files(path / vocab, path / merges);
  }
  TS_CHECK(false, "tokenizer directory ", path,
           " holds none of tokenizer.json, encoder.json + vocab.bpe, vocab.json + merges.txt");
  return {};
}

void write_gpt2_tokenizer_files(const TokenizerSpec& spec, const fs::path& vocab_json, const fs::path& merges_txt) {
  json vocab = json::object();
  for (const auto& [bytes, id] : spec.vocab) vocab[bytes_to_unicode_text(bytes)] = id;
  for (const auto& [text, id] : spec.special_tokens) vocab[text] = id;
  std::ofstream vocab_out(vocab_json, std::ios::binary);
  TS_CHECK(vocab_out.good(), "cannot write ", vocab_json, "; check that its directory exists and is writable");
  vocab_out << vocab.dump() << '\n';
  std::ofstream merges_out(merges_txt, std::ios::binary);
  TS_CHECK(merges_out.good(), "cannot write ", merges_txt, "; check that its directory exists and is writable");
  merges_out << "#version: 0.2\n";
  for (const auto& [left, right] : spec.merges) {
    merges_out << bytes_to_unicode_text(left) << ' ' << bytes_to_unicode_text(right) << '\n';
  }
  TS_CHECK(vocab_out.good() && merges_out.good(), "writing ", vocab_json, " or ", merges_txt, " failed (disk full?)");
}

}  // namespace tessera
