// Learning smoke test: the whole stack (data, MLP, autograd, SGD) learns the two-spirals task,
// which no linear model can fit (a linear classifier tops out near 50% on three arms).
#include <gtest/gtest.h>

#include "launcher/toy_train.h"

namespace tessera {
namespace {

TEST(ToyTrain, MlpLearnsTwoSpiralsToAtLeast99Percent) {
  ToyTrainOptions options;
  ToyTrainResult result = run_toy_training(options);
  std::printf("toy-train: %lld steps, loss %.4f, accuracy %.2f%%, %.1fs\n", static_cast<long long>(options.steps),
              result.final_loss, 100.0 * result.accuracy, result.seconds);
  EXPECT_GE(result.accuracy, 0.99);
}

TEST(ToyTrain, AWidthOneModelCannotLearnIt) {
  // Negative control: the same run with a bottleneck of width 1 must fail the bar above,
  // so the bar measures learning capacity rather than the data being trivial.
  ToyTrainOptions options;
  options.hidden = 1;
  options.steps = 300;
  EXPECT_LT(run_toy_training(options).accuracy, 0.9);
}

}  // namespace
}  // namespace tessera
