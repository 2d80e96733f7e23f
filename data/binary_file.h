// Buffered, checked binary output for the files the data pipeline writes (.bin, .idx, .npy).
// Every write failure (disk full, permissions) throws naming the path. Files are written under
// a temporary name and moved into place by commit_file_atomically(), so a crash or an error
// never leaves a complete-looking but partial file behind.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace tessera {

class BinaryFileWriter {
 public:
  explicit BinaryFileWriter(std::string path);  // creates or truncates
  ~BinaryFileWriter();                          // closes quietly if close() was not called
  BinaryFileWriter(const BinaryFileWriter&) = delete;
  BinaryFileWriter& operator=(const BinaryFileWriter&) = delete;

  void write(const void* bytes, size_t count);
  template <typename T>
  void write_values(std::span<const T> values) {
    write(values.data(), values.size_bytes());
  }
  template <typename T>
  void write_value(const T& value) {
    write(&value, sizeof(T));
  }
  int64_t bytes_written() const { return bytes_written_; }
  const std::string& path() const { return path_; }
  void close();  // flushes; throws if the data did not reach the file

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t bytes_written_ = 0;
};

// A temporary name beside `path`, unique to this process and call, so that processes writing
// the same file at once (ranks building the same cache) never write into each other's file.
std::string unique_temporary_path(const std::string& path);

// Renames `from` over `to` (atomic on one filesystem); throws naming both paths.
void commit_file_atomically(const std::string& from, const std::string& to);

// Removes a file if it exists; never throws (for cleanup paths).
void remove_file_quietly(const std::string& path);

}  // namespace tessera
