// The auto-configurator's memory model (autoconfig/memory_model.h) against the real allocations,
// as real ranks (np 2 and 4): for every tp x pp x dp layout of the world and every ZeRO stage the
// trainer allows there, each rank builds what `tessera train` builds (the bf16 GptModel or its
// pipeline stage, DDP + AdamW, DDP + DistributedOptimizer, or FSDP + FsdpOptimizer) and its
// measured bytes of parameters, gradients, optimizer state and communication buffers must equal
// the prediction from the model's shape exactly, as must its list of parameter tensor sizes. Two
// models (a GPT: tied, learned positions, biases of sizes dp does not divide; a Llama: untied,
// SwiGLU, GQA) and two bucket sizes (tiny buckets that pad often, one bucket) cover the padding
// rules of DDP buckets and FSDP units.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "autoconfig/memory_model.h"
#include "models/gpt_model.h"
#include "models/gpt_pipeline_stage.h"
#include "optim/adamw.h"
#include "optim/distributed_optimizer.h"
#include "optim/fsdp_optimizer.h"
#include "parallel/distributed_data_parallel.h"
#include "parallel/fsdp.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "tests/mpi/parallel_test_helpers.h"

namespace tessera {
namespace {

constexpr uint64_t kSeed = 7;
constexpr double kTinyBucketsMb = 500.0 * 4 / double(1 << 20);  // ~500 elements: many padded buckets
constexpr double kOneBucketMb = 40.0;
constexpr int kPrefetch = 1;

struct Case {
  int tp = 1, pp = 1, dp = 1;
  int zero = 0;
  double bucket_mb = kOneBucketMb;
};

std::string describe(const Case& c) {
  return "tp " + std::to_string(c.tp) + " pp " + std::to_string(c.pp) + " dp " + std::to_string(c.dp) + " zero " +
         std::to_string(c.zero) + " bucket " + std::to_string(c.bucket_mb) + " MiB";
}

// Every layout of `world` ranks the model's widths allow, with the ZeRO stages the trainer runs on it.
std::vector<Case> cases_for(int world, const TransformerConfig& config) {
  std::vector<Case> cases;
  for (int tp = 1; tp <= world; tp *= 2) {
    if (config.num_attention_heads % tp != 0 || config.num_query_groups % tp != 0 || config.ffn_hidden_size % tp != 0)
      continue;
    for (int pp = 1; tp * pp <= world; pp *= 2) {
      const int dp = world / (tp * pp);
      for (int zero = 0; zero <= 3; ++zero) {
        if ((zero > 0 && dp == 1) || (pp > 1 && zero >= 2)) continue;
        for (double bucket : {kTinyBucketsMb, kOneBucketMb}) cases.push_back({tp, pp, dp, zero, bucket});
      }
    }
  }
  return cases;
}

struct Measured {
  std::vector<int64_t> numels;
  autoconfig::StateBytes bytes;
};

// What the trainer allocates on this rank for `c` (launcher/training_run.cpp's make_* functions).
Measured build_and_measure(const TransformerConfig& config, const Case& c, const ProcessGroups& groups) {
  const ParamOptions bf16{DType::BF16, Device::cpu()};
  const ModelParallelism tp{.tp = &groups.tp()};
  std::unique_ptr<GptModel> model;
  std::unique_ptr<GptPipelineStage> stage;
  if (c.pp == 1) {
    model = std::make_unique<GptModel>(config, kSeed, bf16, tp);
  } else {
    stage = std::make_unique<GptPipelineStage>(
        config, kSeed, autoconfig::even_pipeline_layout(config.num_layers, c.pp, 1), groups.coords().pp,
        GptPipelineStageOptions{1, 8, LossReduction::Sum}, bf16, tp);
  }
  const std::vector<Tensor> parameters = model ? model->parameters() : stage->parameters();
  Measured m;
  for (const Tensor& p : parameters) m.numels.push_back(p.numel());
  if (c.zero == 3) {
    FullyShardedDataParallel fsdp(model->fsdp_units(), groups.dp(), FsdpOptions{.prefetch = kPrefetch});
    model->set_fsdp(&fsdp);
    FsdpOptimizer optimizer(fsdp, {});
    const ZeroMemoryReport r = optimizer.memory_report();
    m.bytes = {int64_t(r.parameters), int64_t(r.gradients), int64_t(r.optimizer_state), int64_t(r.communication)};
    model->set_fsdp(nullptr);
    return m;
  }
  const GradSync sync = c.zero == 0 ? GradSync::AllReduce : c.zero == 1 ? GradSync::ReduceScatter : GradSync::Sharded;
  DistributedDataParallel ddp(parameters, groups.dp(), DdpOptions{.bucket_size_mb = c.bucket_mb, .grad_sync = sync});
  if (c.zero == 0) {
    AdamW adamw(parameters, {});
    m.bytes.gradients = int64_t(ddp.grad_buffer_bytes());
    for (size_t i = 0; i < parameters.size(); ++i) {
      m.bytes.parameters += parameters[i].numel() * int64_t(dtype_size(parameters[i].dtype()));
      m.bytes.optimizer_state +=
          4 * (adamw.master_weight(i).numel() + adamw.exp_avg(i).numel() + adamw.exp_avg_sq(i).numel());
    }
    return m;
  }
  DistributedOptimizer zero(ddp, {});
  const ZeroMemoryReport r = zero.memory_report();
  m.bytes = {int64_t(r.parameters), int64_t(r.gradients), int64_t(r.optimizer_state), int64_t(r.communication)};
  return m;
}

class AutoconfigMemoryTest : public ::testing::Test {
 protected:
  MpiCommunicator world_{MPI_COMM_WORLD, "world"};

  void check(const TransformerConfig& config) {
    for (const Case& c : cases_for(world_.size(), config)) {
      SCOPED_TRACE(config.name + ", " + describe(c));
      ProcessGroups groups(world_, {.tp = c.tp, .pp = c.pp, .dp = c.dp});
      const Measured measured = build_and_measure(config, c, groups);
      const std::vector<autoconfig::ParameterTensor> predicted_tensors = autoconfig::rank_parameters(
          config, c.tp, autoconfig::even_pipeline_layout(config.num_layers, c.pp, 1), groups.coords().pp);
      std::vector<int64_t> predicted_numels;
      for (const autoconfig::ParameterTensor& p : predicted_tensors) predicted_numels.push_back(p.numel);
      EXPECT_EQ(predicted_numels, measured.numels);
      const autoconfig::StateBytes predicted =
          autoconfig::training_state_bytes(predicted_tensors, c.zero, c.dp, c.bucket_mb, kPrefetch);
      EXPECT_EQ(predicted.parameters, measured.bytes.parameters);
      EXPECT_EQ(predicted.gradients, measured.bytes.gradients);
      EXPECT_EQ(predicted.optimizer_state, measured.bytes.optimizer_state);
      EXPECT_EQ(predicted.communication, measured.bytes.communication);
    }
  }
};

TEST_F(AutoconfigMemoryTest, GptStateBytesEqualTheAllocatedOnes) {
  check(testing::tiny_gpt_config("autoconfig-gpt", 4));
}

// Odd widths (33 = 3 heads of 11; MLP 64) make tensor sizes that dp does not divide, so DDP
// buckets and FSDP units are padded (tp 1 only: 3 heads do not split).
TEST_F(AutoconfigMemoryTest, OddWidthGptPaddingEqualsTheAllocatedOne) {
  TransformerConfig config = testing::tiny_gpt_config("autoconfig-gpt-odd", 4);
  config.hidden_size = 33;
  config.num_attention_heads = 3;
  config.num_query_groups = 3;
  config.ffn_hidden_size = 64;
  check(config);
}

TEST_F(AutoconfigMemoryTest, LlamaStateBytesEqualTheAllocatedOnes) {
  check(testing::tiny_llama_config("autoconfig-llama", 4));
}

}  // namespace
}  // namespace tessera
