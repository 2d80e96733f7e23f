// Trains an MLP on the two-spirals task on CPU: the smallest end-to-end run (data, model,
// autograd, optimizer) that the quickstart shows until the pretraining trainer lands.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace tessera {

struct ToyTrainOptions {
  int64_t steps = 1500;
  int64_t points_per_class = 200;
  int64_t classes = 3;
  int64_t hidden = 64;
  double lr = 0.2;
  double momentum = 0.9;
  uint64_t seed = 1234;
  int64_t log_every = 100;
};

struct ToyTrainResult {
  double final_loss = 0.0;
  double accuracy = 0.0;  // on the training points
  double seconds = 0.0;
};

// `log` receives one progress line per log_every steps (may be empty to stay quiet).
ToyTrainResult run_toy_training(const ToyTrainOptions& options,
                                const std::function<void(const std::string&)>& log = {});

}  // namespace tessera
