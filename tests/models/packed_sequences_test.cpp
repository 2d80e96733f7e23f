// Packing (LmBatch::document_lengths), f32 on the CPU, for the GPT flavour (learned positions)
// and the Llama flavour (RoPE, grouped queries): a batch of 2 rows, each holding 2-3
// conversations of different lengths plus padding at the end (masked out by the loss mask in
// one row, by ignored labels in the other, as a document of its own or inside the last one),
// gives every conversation the loss it has when run alone, and the gradients of the summed loss
// equal the sum of the conversations' gradients run one by one (relative error <= 1e-5). The
// control: the same batch without document lengths gives different losses to every conversation
// after a row's first. Also: rows of one document each give the unpacked path's loss bitwise,
// recomputation keeps the packed results bitwise, a pipeline of three pieces (GptPipelineStage)
// gives the whole model's packed loss, and bad lengths are refused in one line. On a GPU (bf16,
// cuDNN attention on the document segments): packed against one by one within bf16's tolerance
// (skipped visibly without a GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "models/gpt_model.h"
#include "models/gpt_pipeline_stage.h"
#include "support/gpu.h"
#include "support/tiny_models.h"

namespace tessera {
namespace {

constexpr uint64_t kSeed = 31;
constexpr int64_t kSeq = 12;
constexpr double kTolerance = 1e-5;

TransformerConfig tiny(bool llama, int64_t layers = 2) {
  TransformerConfig c = testing::tiny_transformer(llama);
  c.num_layers = layers;
  // Weights large enough that attention is far from uniform: a neighbouring conversation or a
  // shifted position moves a loss well beyond the tolerance (the control test checks it does).
  c.init_method_std = 0.2;
  return c;
}

// One conversation: tokens, the next-token labels inside it (the last token predicts nothing:
// nothing crosses into the next conversation), and a loss mask that hides its first token (the
// "prompt").
struct Conversation {
  std::vector<int64_t> tokens, labels;
  std::vector<float> mask;
};

Conversation conversation(int64_t length, int64_t salt, int64_t vocab) {
  Conversation c;
  for (int64_t i = 0; i <= length; ++i) c.tokens.push_back((i * 17 + salt * 29 + 3) % vocab);
  c.labels.assign(c.tokens.begin() + 1, c.tokens.end());
  c.labels.back() = -100;
  c.tokens.pop_back();
  for (int64_t i = 0; i < length; ++i) c.mask.push_back(i < 1 ? 0.0f : 1.0f);
  return c;
}

LmBatch batch_of(const std::vector<int64_t>& tokens, const std::vector<int64_t>& labels, const std::vector<float>& mask,
                 int64_t rows) {
  const int64_t t = static_cast<int64_t>(tokens.size()) / rows;
  return {Tensor::from_vector(tokens, {rows, t}), Tensor::from_vector(labels, {rows, t}),
          Tensor::from_vector(mask, {rows, t})};
}

LmBatch alone(const Conversation& c) { return batch_of(c.tokens, c.labels, c.mask, 1); }

// Where each conversation sits in the packed batch.
struct Placement {
  int64_t row, start, length;
};

struct Packed {
  LmBatch batch;
  std::vector<Conversation> conversations;
  std::vector<Placement> placements;
};

// Row 0: conversations of 5 and 4 tokens, then 3 padding tokens (loss mask 0) as a document of
// their own. Row 1: 3, 5 and 3 tokens, then 1 padding token (ignored label) inside the last
// document.
Packed packed_batch(int64_t vocab) {
  const std::vector<std::vector<int64_t>> rows = {{5, 4}, {3, 5, 3}};
  Packed packed;
  std::vector<int64_t> tokens, labels;
  std::vector<float> mask;
  DocumentLengths documents;
  for (int64_t row = 0; row < 2; ++row) {
    int64_t start = 0;
    std::vector<int64_t> lengths;
    for (int64_t length : rows[static_cast<size_t>(row)]) {
      Conversation c = conversation(length, static_cast<int64_t>(packed.conversations.size()), vocab);
      tokens.insert(tokens.end(), c.tokens.begin(), c.tokens.end());
      labels.insert(labels.end(), c.labels.begin(), c.labels.end());
      mask.insert(mask.end(), c.mask.begin(), c.mask.end());
      packed.placements.push_back({row, start, length});
      packed.conversations.push_back(std::move(c));
      lengths.push_back(length);
      start += length;
    }
    const int64_t padding = kSeq - start;
    tokens.insert(tokens.end(), static_cast<size_t>(padding), 0);
    if (row == 0) {
      labels.insert(labels.end(), static_cast<size_t>(padding), 1);  // real labels, masked out
      mask.insert(mask.end(), static_cast<size_t>(padding), 0.0f);
      lengths.push_back(padding);
    } else {
      labels.insert(labels.end(), static_cast<size_t>(padding), -100);
      mask.insert(mask.end(), static_cast<size_t>(padding), 1.0f);
      lengths.back() += padding;
    }
    documents.push_back(lengths);
  }
  packed.batch = batch_of(tokens, labels, mask, 2);
  packed.batch.document_lengths = documents;
  return packed;
}

// Each conversation's summed loss, from the packed batch's per-token losses [B, T].
std::vector<double> conversation_losses(const Tensor& per_token, const std::vector<Placement>& placements) {
  std::vector<double> losses;
  for (const Placement& p : placements)
    losses.push_back(sum(per_token.narrow(0, p.row, 1).narrow(1, p.start, p.length)).item());
  return losses;
}

double relative_error(const Tensor& got, const Tensor& expected) {
  std::vector<double> a = got.to_vector<double>(), b = expected.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

std::map<std::string, Tensor> gradients(const GptModel& model) {
  std::map<std::string, Tensor> grads;
  for (const auto& [name, p] : model.named_parameters()) grads[name] = p.grad().clone();
  return grads;
}

class PackedSequences : public ::testing::TestWithParam<bool> {};

TEST_P(PackedSequences, EachConversationGetsItsLossAndGradientAlone) {
  const TransformerConfig config = tiny(GetParam());
  const Packed packed = packed_batch(config.vocab_size);
  GptModel model(config, kSeed);

  // One by one: each conversation's summed loss, and the sum of their gradients.
  std::vector<double> expected_losses;
  std::map<std::string, Tensor> expected_grads;
  for (const Conversation& c : packed.conversations) {
    model.zero_grad();
    Tensor loss = model.loss(alone(c), LossReduction::Sum);
    loss.backward();
    expected_losses.push_back(loss.item());
    for (auto& [name, grad] : gradients(model))
      expected_grads[name] = expected_grads.contains(name) ? add(expected_grads[name], grad) : grad;
  }

  const std::vector<double> losses =
      conversation_losses(model.loss(packed.batch, LossReduction::None), packed.placements);
  ASSERT_EQ(losses.size(), expected_losses.size());
  for (size_t i = 0; i < losses.size(); ++i)
    EXPECT_LE(std::abs(losses[i] - expected_losses[i]), kTolerance * std::abs(expected_losses[i]))
        << "conversation " << i << ": packed " << losses[i] << ", alone " << expected_losses[i];

  model.zero_grad();
  model.loss(packed.batch, LossReduction::Sum).backward();
  for (const auto& [name, grad] : gradients(model))
    EXPECT_LE(relative_error(grad, expected_grads.at(name)), kTolerance) << name;
}

TEST_P(PackedSequences, WithoutDocumentLengthsLaterConversationsSeeTheirNeighbours) {
  const TransformerConfig config = tiny(GetParam());
  Packed packed = packed_batch(config.vocab_size);
  GptModel model(config, kSeed);
  const std::vector<double> with =
      conversation_losses(model.loss(packed.batch, LossReduction::None), packed.placements);
  packed.batch.document_lengths.clear();
  const std::vector<double> without =
      conversation_losses(model.loss(packed.batch, LossReduction::None), packed.placements);
  for (size_t i = 0; i < with.size(); ++i) {
    const double difference = std::abs(with[i] - without[i]);
    if (packed.placements[i].start == 0) {
      EXPECT_LE(difference, kTolerance * std::abs(with[i])) << "a row's first conversation sees nothing before it";
    } else {
      EXPECT_GT(difference, 100 * kTolerance * std::abs(with[i]))
          << "conversation " << i << " should change without lengths";
    }
  }
}

TEST_P(PackedSequences, OneDocumentPerRowIsTheUnpackedPathBitwise) {
  const TransformerConfig config = tiny(GetParam());
  Packed packed = packed_batch(config.vocab_size);
  GptModel model(config, kSeed);
  packed.batch.document_lengths.clear();
  const std::vector<float> unpacked = model.loss(packed.batch, LossReduction::None).to_vector<float>();
  packed.batch.document_lengths = {{kSeq}, {kSeq}};
  EXPECT_EQ(model.loss(packed.batch, LossReduction::None).to_vector<float>(), unpacked);
}

TEST_P(PackedSequences, RecomputationKeepsPackedResultsBitwise) {
  const TransformerConfig config = tiny(GetParam());
  const Packed packed = packed_batch(config.vocab_size);
  GptModel model(config, kSeed);
  Tensor loss = model.loss(packed.batch, LossReduction::Sum);
  loss.backward();
  const std::map<std::string, Tensor> expected = gradients(model);
  model.zero_grad();
  model.set_recompute(true);
  // The batch's lengths are gone before backward recomputes the layers: the model keeps its own.
  Tensor recomputed = [&] {
    LmBatch copy = packed.batch;
    return model.loss(copy, LossReduction::Sum);
  }();
  recomputed.backward();
  EXPECT_EQ(recomputed.item(), loss.item());
  for (const auto& [name, grad] : gradients(model))
    EXPECT_EQ(grad.to_vector<float>(), expected.at(name).to_vector<float>()) << name;
}

TEST_P(PackedSequences, EveryPipelineStageReadsTheDocumentLengths) {
  const TransformerConfig config = tiny(GetParam(), 3);
  const Packed packed = packed_batch(config.vocab_size);
  const double expected = GptModel(config, kSeed).loss(packed.batch).item();
  PipelineLayoutOptions options;
  options.num_layers = 3;
  options.pp = 3;
  PipelineLayout layout(options);
  std::vector<std::unique_ptr<GptPipelineStage>> stages;
  Tensor hidden;
  for (int stage = 0; stage < 3; ++stage) {
    stages.push_back(std::make_unique<GptPipelineStage>(
        config, kSeed, layout, stage, GptPipelineStageOptions{.micro_batch_size = 2, .seq_length = kSeq}));
    stages.back()->set_micro_batches({packed.batch});
    hidden = stages.back()->forward(0, 0, hidden).detach();
  }
  EXPECT_LE(std::abs(hidden.item() - expected), kTolerance * std::abs(expected));
}

// cuDNN attention takes bf16 and head dims that are multiples of 8: width 32 over 4 heads.
TEST_P(PackedSequences, OnTheGpuEachConversationGetsItsLossAndGradientAlone) {
  TS_REQUIRE_GPU();
  TransformerConfig config = tiny(GetParam());
  config.hidden_size = 32;
  const Device gpu = Device::cuda(0);
  const double tolerance = testing::tolerance_for(DType::BF16);
  auto on_gpu = [&](LmBatch batch) {
    batch.tokens = batch.tokens.to(gpu);
    batch.labels = batch.labels.to(gpu);
    batch.loss_mask = batch.loss_mask.to(gpu);
    return batch;
  };
  auto host_losses = [](const Tensor& per_token) { return per_token.to(DType::F32).to(Device::cpu()); };
  Packed packed = packed_batch(config.vocab_size);
  packed.batch = on_gpu(packed.batch);
  GptModel model(config, kSeed, ParamOptions{DType::BF16, gpu});

  std::vector<double> expected_losses;
  std::map<std::string, Tensor> expected_grads;
  for (const Conversation& c : packed.conversations) {
    model.zero_grad();
    Tensor loss = model.loss(on_gpu(alone(c)), LossReduction::Sum);
    loss.backward();
    expected_losses.push_back(loss.item());
    for (auto& [name, grad] : gradients(model)) {
      Tensor host = grad.to(DType::F32).to(Device::cpu());
      expected_grads[name] = expected_grads.contains(name) ? add(expected_grads[name], host) : host;
    }
  }
  const std::vector<double> losses =
      conversation_losses(host_losses(model.loss(packed.batch, LossReduction::None)), packed.placements);
  for (size_t i = 0; i < losses.size(); ++i)
    EXPECT_LE(std::abs(losses[i] - expected_losses[i]), tolerance * std::abs(expected_losses[i]))
        << "conversation " << i << ": packed " << losses[i] << ", alone " << expected_losses[i];
  model.zero_grad();
  model.loss(packed.batch, LossReduction::Sum).backward();
  for (const auto& [name, grad] : gradients(model))
    EXPECT_LE(testing::relative_error(grad, expected_grads.at(name)), tolerance) << name;

  // The control at this tolerance: unpacked, some later conversation moves well beyond it.
  packed.batch.document_lengths.clear();
  const std::vector<double> unpacked =
      conversation_losses(host_losses(model.loss(packed.batch, LossReduction::None)), packed.placements);
  double largest = 0;
  for (size_t i = 0; i < losses.size(); ++i) largest = std::max(largest, std::abs(unpacked[i] - losses[i]) / losses[i]);
  EXPECT_GT(largest, 5 * tolerance);
}

INSTANTIATE_TEST_SUITE_P(GptAndLlama, PackedSequences, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? std::string("Llama") : std::string("Gpt"); });

template <typename Run>
void expect_rejected(Run run, const std::string& reason) {
  try {
    run();
    ADD_FAILURE() << "expected an error containing '" << reason << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(reason), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  }
}

TEST(PackedSequencesErrors, BadDocumentLengthsAreRefusedInOneLine) {
  const TransformerConfig config = tiny(false);
  GptModel model(config, kSeed);
  LmBatch batch = packed_batch(config.vocab_size).batch;
  batch.document_lengths = {{kSeq}};
  expect_rejected([&] { model.loss(batch); }, "document_lengths has 1 rows but the batch has 2");
  batch.document_lengths = {{kSeq}, {5, 5}};
  expect_rejected([&] { model.loss(batch); }, "document_lengths row 1 sums to 10 but the sequence length is 12");
  batch.document_lengths = {{kSeq}, {12, 0}};
  expect_rejected([&] { model.loss(batch); }, "document_lengths row 1 holds a length 0");
}

}  // namespace
}  // namespace tessera
