#include "launcher/toy_train.h"

#include <fmt/format.h>

#include <chrono>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "data/spirals.h"
#include "models/mlp.h"
#include "optim/sgd.h"

namespace tessera {

namespace {

double accuracy_of(const Mlp& model, const ClassificationData& data) {
  NoGradGuard no_grad;
  std::vector<int64_t> predicted = argmax(model.forward(data.features), -1).to_vector<int64_t>();
  std::vector<int64_t> labels = data.labels.to_vector<int64_t>();
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

}  // namespace

ToyTrainResult run_toy_training(const ToyTrainOptions& options, const std::function<void(const std::string&)>& log) {
  TS_CHECK(options.steps > 0, "toy training: steps must be positive, got ", options.steps);
  auto start = std::chrono::steady_clock::now();
  Generator generator(options.seed);
  ClassificationData data = make_spirals(options.points_per_class, options.classes, 0.1, generator);
  Mlp model({2, options.hidden, options.hidden, options.classes}, generator);
  Sgd optimizer(model.parameters(), {.lr = options.lr, .momentum = options.momentum});

  ToyTrainResult result;
  for (int64_t step = 1; step <= options.steps; ++step) {
    model.zero_grad();
    Tensor loss = cross_entropy(model.forward(data.features), data.labels);
    loss.backward();
    optimizer.step();
    result.final_loss = loss.item();
    if (log && options.log_every > 0 && (step % options.log_every == 0 || step == options.steps)) {
      log(fmt::format("step {:5d}/{}  loss {:.4f}  train accuracy {:.1f}%", step, options.steps, result.final_loss,
                      100.0 * accuracy_of(model, data)));
    }
  }
  result.accuracy = accuracy_of(model, data);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tessera
