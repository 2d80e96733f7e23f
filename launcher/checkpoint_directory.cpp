#include "launcher/checkpoint_directory.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <regex>

#include "core/check.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

// An open file descriptor, closed on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Deletes the temporary file of a save that did not finish.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::string path) : path_(std::move(path)) {}
  ~TemporaryFile() {
    std::error_code ignored;
    if (!committed_) fs::remove(path_, ignored);
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  const std::string& path() const { return path_; }
  void commit() { committed_ = true; }

 private:
  std::string path_;
  bool committed_ = false;
};

// Deletes the oldest checkpoints of lower step than the one just saved until keep_last remain
// counting it. Higher steps belong to another run (or were skipped as unreadable) and stay:
// deleting them could lose work, and a save at their step replaces them anyway.
void remove_old_checkpoints(const std::string& directory, int64_t saved_step, int64_t keep_last, SavedCheckpoint& saved,
                            const CheckpointWarn& warn) {
  std::vector<CheckpointFileEntry> older;
  for (CheckpointFileEntry& entry : list_checkpoints(directory))
    if (entry.step < saved_step) older.push_back(std::move(entry));
  int64_t excess = int64_t(older.size()) + 1 - keep_last;
  for (int64_t i = 0; i < excess; ++i) {
    const std::string& path = older[size_t(i)].path;
    std::error_code error;
    if (fs::remove(path, error)) {
      saved.removed.push_back(path);
    } else {
      warn(fmt::format("checkpoint: could not delete the old checkpoint {} ({}); delete it by hand", path,
                       error ? error.message() : "it vanished"));
    }
  }
}

}  // namespace

// Flushes a file's or a directory's contents (a rename lives in its directory) to the disk.
void sync_to_disk(const std::string& path, bool directory) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0)));
  TS_CHECK(fd.get() >= 0, "checkpoint: cannot open ", path, " to sync it to disk: ", std::strerror(errno));
  TS_CHECK(::fsync(fd.get()) == 0, "checkpoint: fsync of ", path, " failed: ", std::strerror(errno));
}

std::string checkpoint_file_name(int64_t step) {
  TS_CHECK(step >= 0, "checkpoint: step ", step, " must be >= 0");
  return fmt::format("iter_{:07d}.h5", step);
}

std::vector<CheckpointFileEntry> list_checkpoints(const std::string& directory) {
  std::vector<CheckpointFileEntry> entries;
  if (directory.empty() || !fs::is_directory(directory)) return entries;
  static const std::regex kName(R"(iter_(\d{7,})\.h5)");
  for (const fs::directory_entry& file : fs::directory_iterator(directory)) {
    std::smatch match;
    std::string name = file.path().filename().string();
    if (std::regex_match(name, match, kName)) entries.push_back({file.path().string(), std::stoll(match[1].str())});
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return entries;
}

SavedCheckpoint save_checkpoint(const std::string& directory, const TrainingCheckpoint& checkpoint, int64_t keep_last,
                                const CheckpointWarn& warn) {
  TS_CHECK(!directory.empty(), "checkpoint: no directory to save into (set checkpoint.save)");
  TS_CHECK(keep_last >= 1, "checkpoint.keep_last ", keep_last, " must be at least 1");
  auto start = std::chrono::steady_clock::now();
  std::error_code error;
  fs::create_directories(directory, error);
  TS_CHECK(!error, "checkpoint.save: cannot create the directory ", directory, ": ", error.message());

  SavedCheckpoint saved;
  saved.path = (fs::path(directory) / checkpoint_file_name(checkpoint.step)).string();
  TemporaryFile temporary(saved.path + ".tmp");
  write_checkpoint_file(temporary.path(), checkpoint);
  sync_to_disk(temporary.path(), false);
  TS_CHECK(::rename(temporary.path().c_str(), saved.path.c_str()) == 0, "checkpoint: cannot move ", temporary.path(),
           " to ", saved.path, ": ", std::strerror(errno), "; the previous checkpoints are untouched");
  temporary.commit();
  sync_to_disk(directory, true);
  saved.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  saved.bytes = fs::file_size(saved.path);
  remove_old_checkpoints(directory, checkpoint.step, keep_last, saved, warn);
  return saved;
}

std::optional<LoadedCheckpoint> load_latest_checkpoint(const std::string& directory, const CheckpointWarn& warn) {
  std::vector<CheckpointFileEntry> entries = list_checkpoints(directory);
  for (auto entry = entries.rbegin(); entry != entries.rend(); ++entry) {
    try {
      return LoadedCheckpoint{entry->path, read_checkpoint_file(entry->path)};
    } catch (const Error& e) {
      warn(fmt::format("checkpoint: skipping {}: it does not read completely ({})", entry->path, e.what()));
    }
  }
  TS_CHECK(entries.empty(), "checkpoint: none of the ", entries.size(), " checkpoint files in ", directory,
           " reads completely (see the warnings above); restore one from a copy, or pass another checkpoint");
  return std::nullopt;
}

}  // namespace tessera
