// Reads preprocessing input as chunks of whole lines, file after file, in bounded memory:
// a chunk closes once it holds about `chunk_bytes` bytes or its file ends, and a line longer
// than `max_line_bytes` is skipped as it streams past (its number is recorded, its bytes are
// never held). Lines are stored without their '\n'; a last line without a newline counts.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

struct InputChunk {
  int64_t id = 0;                       // position in the whole input, from 0
  size_t file_index = 0;                // which input file the lines come from
  int64_t raw_bytes = 0;                // input bytes this chunk consumed, newlines and skipped lines included
  std::string text;                     // the lines back to back
  std::vector<size_t> line_ends;        // end offset of each line in `text`
  std::vector<int64_t> line_numbers;    // 1-based line number of each line in its file
  std::vector<int64_t> too_long_lines;  // line numbers skipped for exceeding max_line_bytes

  size_t line_count() const { return line_ends.size(); }
  std::string_view line(size_t i) const {
    size_t begin = i == 0 ? 0 : line_ends[i - 1];
    return std::string_view(text).substr(begin, line_ends[i] - begin);
  }
};

class InputChunkReader {
 public:
  InputChunkReader(std::vector<std::string> files, int64_t chunk_bytes, int64_t max_line_bytes);
  ~InputChunkReader();
  InputChunkReader(const InputChunkReader&) = delete;
  InputChunkReader& operator=(const InputChunkReader&) = delete;

  // Fills `chunk` with the next lines; false once every file has been read.
  bool next(InputChunk& chunk);

 private:
  bool open_next_file();
  bool refill();
  // Appends the next line of the current file to chunk.text; false at the end of the file.
  bool append_line(InputChunk& chunk, bool& too_long);

  std::vector<std::string> files_;
  int64_t chunk_bytes_;
  int64_t max_line_bytes_;
  size_t next_file_ = 0;     // the next file to open
  size_t current_file_ = 0;  // the file being read
  std::FILE* file_ = nullptr;
  int64_t line_number_ = 0;
  int64_t next_chunk_id_ = 0;
  std::vector<char> buffer_;
  size_t position_ = 0;
  size_t filled_ = 0;
  int64_t consumed_ = 0;  // bytes taken from the buffer since the current chunk began
};

}  // namespace tessera
