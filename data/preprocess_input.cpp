#include "data/preprocess_input.h"

#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace tessera {

InputChunkReader::InputChunkReader(std::vector<std::string> files, int64_t chunk_bytes, int64_t max_line_bytes)
    : files_(std::move(files)), chunk_bytes_(chunk_bytes), max_line_bytes_(max_line_bytes), buffer_(size_t{1} << 20) {}

InputChunkReader::~InputChunkReader() {
  if (file_ != nullptr) std::fclose(file_);
}

bool InputChunkReader::open_next_file() {
  if (file_ != nullptr) {
    std::fclose(file_);
    file_ = nullptr;
  }
  if (next_file_ >= files_.size()) return false;
  current_file_ = next_file_++;
  file_ = std::fopen(files_[current_file_].c_str(), "rb");
  TS_CHECK(file_ != nullptr, "cannot open input ", files_[current_file_], ": ", std::strerror(errno));
  line_number_ = 0;
  position_ = filled_ = 0;
  return true;
}

bool InputChunkReader::refill() {
  filled_ = std::fread(buffer_.data(), 1, buffer_.size(), file_);
  TS_CHECK(filled_ > 0 || !std::ferror(file_), "reading ", files_[current_file_], " failed: ", std::strerror(errno));
  position_ = 0;
  return filled_ > 0;
}

bool InputChunkReader::append_line(InputChunk& chunk, bool& too_long) {
  const size_t start = chunk.text.size();
  too_long = false;
  bool any = false;
  for (;;) {
    if (position_ == filled_ && !refill()) return any;
    any = true;
    const char* begin = buffer_.data() + position_;
    const size_t available = filled_ - position_;
    const char* newline = static_cast<const char*>(std::memchr(begin, '\n', available));
    const size_t length = newline != nullptr ? static_cast<size_t>(newline - begin) : available;
    if (!too_long) {
      if (static_cast<int64_t>(chunk.text.size() - start + length) > max_line_bytes_) {
        too_long = true;
        chunk.text.resize(start);
      } else {
        chunk.text.append(begin, length);
      }
    }
    const size_t taken = length + (newline != nullptr ? 1 : 0);
    position_ += taken;
    consumed_ += static_cast<int64_t>(taken);
    if (newline != nullptr) return true;
  }
}

bool InputChunkReader::next(InputChunk& chunk) {
  chunk.text.clear();
  chunk.line_ends.clear();
  chunk.line_numbers.clear();
  chunk.too_long_lines.clear();
  consumed_ = 0;
  if (file_ == nullptr && !open_next_file()) return false;
  for (;;) {
    bool too_long = false;
    if (!append_line(chunk, too_long)) {
      if (!chunk.line_ends.empty() || !chunk.too_long_lines.empty()) break;  // the file ended the chunk
      if (!open_next_file()) return false;
      continue;
    }
    ++line_number_;
    if (too_long) {
      chunk.too_long_lines.push_back(line_number_);
    } else {
      chunk.line_ends.push_back(chunk.text.size());
      chunk.line_numbers.push_back(line_number_);
    }
    if (static_cast<int64_t>(chunk.text.size()) >= chunk_bytes_) break;
  }
  chunk.id = next_chunk_id_++;
  chunk.file_index = current_file_;
  chunk.raw_bytes = consumed_;
  return true;
}

}  // namespace tessera
