// DPO/IPO, PPO's policy and value losses, GAE and GRPO against PyTorch: the fixture
// tests/reference/fixtures/posttrain_losses_torch.json was written by
// tests/reference/posttrain_losses_torch.py (TRL's formulas in torch, f64, on CUDA on the GPU
// machine) from inputs that this test rebuilds with the same formulas. Compared on the CPU in
// f64 and, where a GPU is visible, on CUDA in f32. TESSERA_POSTTRAIN_TORCH_FIXTURE names
// another fixture file; without one the tests skip, saying how to make it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/ops/ops.h"
#include "posttrain/advantages.h"
#include "posttrain/losses.h"
#include "support/gpu.h"

namespace tessera {
namespace {

std::filesystem::path fixture_path() {
  if (const char* path = std::getenv("TESSERA_POSTTRAIN_TORCH_FIXTURE")) return path;
  // The repository root, from this file's own path (CMake compiles with absolute paths).
  std::filesystem::path root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  return root / "tests/reference/fixtures/posttrain_losses_torch.json";
}

const std::optional<nlohmann::json>& fixture() {
  static const std::optional<nlohmann::json> parsed = []() -> std::optional<nlohmann::json> {
    std::ifstream stream(fixture_path());
    if (!stream) return std::nullopt;
    return nlohmann::json::parse(stream);
  }();
  return parsed;
}

#define TS_REQUIRE_TORCH_FIXTURE()                                                                       \
  do {                                                                                                   \
    if (!fixture()) {                                                                                    \
      GTEST_SKIP() << "no torch fixture at " << fixture_path()                                           \
                   << "; run python3 tests/reference/posttrain_losses_torch.py --out <that path> where " \
                      "torch is installed";                                                              \
    }                                                                                                    \
  } while (0)

// offset + scale * sin(freq * k + phase), k = 0..n-1: the script's series().
std::vector<double> series(int64_t n, double scale, double freq, double phase, double offset = 0.0) {
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) out[static_cast<size_t>(k)] = offset + scale * std::sin(freq * double(k) + phase);
  return out;
}

std::vector<double> plus(std::vector<double> a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

// The devices and dtypes to compare on: the CPU in f64, CUDA in f32 where a GPU is visible.
struct Target {
  Device device;
  DType dtype;
};
std::vector<Target> targets() {
  std::vector<Target> out = {{Device::cpu(), DType::F64}};
  if (cuda_device_count() > 0) out.push_back({Device::cuda(0), DType::F32});
  return out;
}

Tensor on(const Target& target, const std::vector<double>& values, const Shape& shape, bool requires_grad = false) {
  Tensor t = Tensor::from_vector(values, shape).to(target.dtype).to(target.device);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

// Normwise relative error of got against torch's numbers, within the dtype's tolerance.
void expect_close(const Tensor& got, const nlohmann::json& want, DType dtype, const std::string& what) {
  std::vector<double> w = want.is_array() ? want.get<std::vector<double>>() : std::vector<double>{want.get<double>()};
  Tensor expected = Tensor::from_vector(w, got.dim() == 0 ? Shape{} : got.shape());
  double tolerance = dtype == DType::F64 ? 1e-12 : testing::tolerance_for(dtype);
  EXPECT_LE(testing::relative_error(got.to(DType::F64), expected), tolerance) << what << " on " << dtype_name(dtype);
}

constexpr int64_t kPairs = 6, kB = 3, kT = 6;

void check_dpo(const std::string& name, DpoOptions options) {
  const nlohmann::json& want = (*fixture())[name];
  for (const Target& target : targets()) {
    Tensor pc = on(target, series(kPairs, 3.0, 1.3, 0.0, -10.0), {kPairs}, true);
    Tensor pr = on(target, series(kPairs, 3.0, 0.9, 1.57, -12.0), {kPairs}, true);
    Tensor rc = on(target, series(kPairs, 2.0, 0.4, 1.0, -10.5), {kPairs});
    Tensor rr = on(target, series(kPairs, 2.0, 0.7, 2.0, -11.5), {kPairs});
    DpoResult result = dpo_loss(pc, pr, rc, rr, options);
    result.loss.backward();
    expect_close(result.loss, want["loss"], target.dtype, name + " loss");
    expect_close(pc.grad(), want["grad_policy_chosen"], target.dtype, name + " d/d policy_chosen");
    expect_close(pr.grad(), want["grad_policy_rejected"], target.dtype, name + " d/d policy_rejected");
    expect_close(result.chosen_rewards, want["chosen_rewards"], target.dtype, name + " chosen rewards");
    expect_close(result.rejected_rewards, want["rejected_rewards"], target.dtype, name + " rejected rewards");
    expect_close(result.margins, want["margins"], target.dtype, name + " margins");
  }
}

TEST(TorchReference, DpoAndIpo) {
  TS_REQUIRE_TORCH_FIXTURE();
  check_dpo("dpo_sigmoid", {.beta = 0.1, .label_smoothing = 0.0, .ipo = false});
  check_dpo("dpo_smoothed", {.beta = 0.2, .label_smoothing = 0.1, .ipo = false});
  check_dpo("ipo", {.beta = 0.5, .label_smoothing = 0.0, .ipo = true});
}

const std::vector<double> kPpoMask = {0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0};

TEST(TorchReference, PpoPolicyAndValueLosses) {
  TS_REQUIRE_TORCH_FIXTURE();
  const nlohmann::json& want = (*fixture())["ppo"];
  const int64_t n = kB * kT;
  std::vector<double> logp = series(n, 1.0, 0.37, 0.0, -1.5), values = series(n, 0.5, 0.61, 0.0);
  for (const Target& target : targets()) {
    Tensor logprobs = on(target, logp, {kB, kT}, true);
    Tensor old = on(target, plus(logp, series(n, 0.3, 1.1, 0.5)), {kB, kT});
    Tensor advantages = on(target, series(n, 1.5, 0.53, 1.57), {kB, kT});
    Tensor v = on(target, values, {kB, kT}, true);
    Tensor old_values = on(target, plus(values, series(n, 0.4, 0.83, 0.2)), {kB, kT});
    Tensor returns = on(target, series(n, 1.0, 0.29, 1.57), {kB, kT});
    Tensor mask = on(target, kPpoMask, {kB, kT});
    PpoPolicyResult policy = ppo_policy_loss(logprobs, old, advantages, mask, 0.2);
    PpoValueResult value = ppo_value_loss(v, old_values, returns, mask, 0.2);
    add(policy.loss, value.loss).backward();
    expect_close(policy.loss, want["policy_loss"], target.dtype, "policy loss");
    expect_close(policy.clip_fraction, want["clip_fraction"], target.dtype, "clip fraction");
    expect_close(policy.approx_kl, want["approx_kl"], target.dtype, "approx kl");
    expect_close(logprobs.grad(), want["grad_logprobs"], target.dtype, "d/d logprobs");
    expect_close(value.loss, want["value_loss"], target.dtype, "value loss");
    expect_close(value.clip_fraction, want["value_clip_fraction"], target.dtype, "value clip fraction");
    expect_close(v.grad(), want["grad_values"], target.dtype, "d/d values");
  }
}

TEST(TorchReference, GaeAndGrpoAdvantages) {
  TS_REQUIRE_TORCH_FIXTURE();
  const nlohmann::json& want = *fixture();
  const std::vector<double> mask = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
  for (const Target& target : targets()) {
    // Rewards and values keep their (junk) values on padding: gae must ignore them, as TRL's
    // zeroing does.
    GaeResult result =
        gae(on(target, series(kB * kT, 1.0, 0.77, 0.3), {kB, kT}),
            on(target, series(kB * kT, 0.8, 0.45, 1.1), {kB, kT}), on(target, mask, {kB, kT}), 0.95, 0.9);
    expect_close(result.advantages, want["gae"]["advantages"], target.dtype, "gae advantages");
    expect_close(result.returns, want["gae"]["returns"], target.dtype, "gae returns");
    Tensor grpo = grpo_advantages(on(target, series(12, 1.0, 2.3, 0.1), {12}), {.group_size = 4});
    expect_close(grpo, want["grpo"]["advantages"], target.dtype, "grpo advantages");
  }
}

}  // namespace
}  // namespace tessera
