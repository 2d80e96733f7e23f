#include "launcher/async_checkpoint_writer.h"

#include "core/check.h"

namespace tessera {

AsyncCheckpointWriter::~AsyncCheckpointWriter() { wait(); }

void AsyncCheckpointWriter::start(std::string folder, RankCheckpoint checkpoint) {
  TS_CHECK(!busy(), "AsyncCheckpointWriter: a write is in flight; wait() for it before starting the next");
  done_.store(false);
  error_.reset();
  thread_ = std::thread([this, folder = std::move(folder), checkpoint = std::move(checkpoint)] {
    try {
      write_rank_file(folder, checkpoint);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
    done_.store(true);
  });
}

std::optional<std::string> AsyncCheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  std::optional<std::string> error = std::move(error_);
  error_.reset();
  return error;
}

}  // namespace tessera
