// Helpers shared by the tokenizer tests: where the committed fixtures live, reading the
// gzip'ed ones (zlib), and GPT-2's tokenizer loaded once per test executable.
// Fixtures: tests/data/fixtures/gpt2/{encoder.json,vocab.bpe} (OpenAI's GPT-2 files, see the
// README there) and tests/data/fixtures/tokenizer/ (the mixed text and tiktoken's ids for it,
// written by tests/reference/make_tokenizer_text.py and tiktoken_compare.py).
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "data_test_util.h"

namespace tessera::testing {

inline std::filesystem::path gpt2_fixture_dir() { return repository_root() / "tests/data/fixtures/gpt2"; }
inline std::filesystem::path tokenizer_fixture(const std::string& name) {
  return repository_root() / "tests/data/fixtures/tokenizer" / name;
}

inline std::string read_gzip_file(const std::filesystem::path& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw std::runtime_error("cannot open " + path.string());
  std::string contents;
  char buffer[1 << 16];
  int read = 0;
  while ((read = gzread(file, buffer, sizeof(buffer))) > 0) contents.append(buffer, static_cast<size_t>(read));
  gzclose(file);
  if (read < 0) throw std::runtime_error("corrupt gzip file " + path.string());
  return contents;
}

// Little-endian uint16 ids, as tiktoken_compare.py writes them.
inline std::vector<int32_t> read_u16_ids(const std::filesystem::path& path) {
  std::string bytes = read_gzip_file(path);
  std::vector<int32_t> ids(bytes.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<unsigned char>(bytes[2 * i]) | (static_cast<unsigned char>(bytes[2 * i + 1]) << 8);
  }
  return ids;
}

inline const Tokenizer& gpt2_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::load(gpt2_fixture_dir());
  return tokenizer;
}

}  // namespace tessera::testing
