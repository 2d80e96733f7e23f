// Writes a rank's checkpoint file on a background thread while training goes on. The thread owns
// the host copies it writes (RankCheckpoint), so the run may change its tensors at once. One write
// at a time: the caller waits (wait()) before starting the next, and at the end of training.
// The HDF5 library is not built thread-safe: nothing else may use it while a write is in flight
// (the trainer touches HDF5 only to resume, before any save, and to commit, after the wait).
#pragma once

#include <atomic>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "launcher/distributed_checkpoint.h"

namespace tessera {

class AsyncCheckpointWriter {
 public:
  AsyncCheckpointWriter() = default;
  ~AsyncCheckpointWriter();  // waits for a write in flight (its error is dropped)
  AsyncCheckpointWriter(const AsyncCheckpointWriter&) = delete;
  AsyncCheckpointWriter& operator=(const AsyncCheckpointWriter&) = delete;

  // Starts writing `checkpoint` into `folder` (write_rank_file); a write must not be in flight.
  void start(std::string folder, RankCheckpoint checkpoint);
  bool busy() const { return thread_.joinable(); }
  // True when no write is in flight or the one in flight has finished (never blocks).
  bool finished() const { return !busy() || done_.load(); }
  // Blocks until the write in flight (if any) ends; returns its error message, if it failed.
  std::optional<std::string> wait();

 private:
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::optional<std::string> error_;  // written by the thread before done_, read after join
};

}  // namespace tessera
