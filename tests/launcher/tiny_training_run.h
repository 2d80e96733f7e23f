// A tiny Llama (dropout on, so steps draw from the dropout stream) and its AdamW optimizer,
// trained on fixed batches: the state the checkpoint tests save, restore and compare.
#pragma once

#include <memory>
#include <vector>

#include "models/gpt_model.h"
#include "optim/adamw.h"

namespace tessera::testing {

inline TransformerConfig tiny_config(int64_t num_layers = 2, int64_t hidden_size = 64) {
  TransformerConfig config = transformer_preset("llama-tiny");
  config.num_layers = num_layers;
  config.hidden_size = hidden_size;
  config.hidden_dropout = 0.1;
  return config;
}

// The batch of training step `step` (tokens and labels below the vocabulary of 512).
inline LmBatch batch_for(int64_t step) {
  std::vector<int64_t> tokens, labels;
  for (int64_t i = 0; i < 16; ++i) {
    tokens.push_back((i * 37 + step * 11) % 500);
    labels.push_back((i * 37 + step * 11 + 5) % 500);
  }
  return {Tensor::from_vector(tokens, {2, 8}), Tensor::from_vector(labels, {2, 8}), Tensor()};
}

// A model and its optimizer, `steps` AdamW steps into training on batch_for(1), batch_for(2), ...
struct TinyRun {
  std::unique_ptr<GptModel> model;
  std::unique_ptr<AdamW> optimizer;
  int64_t steps = 0;

  TinyRun(const TransformerConfig& config, uint64_t seed, DType dtype = DType::F32)
      : model(std::make_unique<GptModel>(config, seed, ParamOptions{dtype, Device::cpu()})),
        optimizer(std::make_unique<AdamW>(model->parameters(), AdamWOptions{.lr = 1e-2, .weight_decay = 0.1})) {}

  void train(int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      model->zero_grad();
      model->loss(batch_for(++steps)).backward();
      optimizer->step();
    }
  }
};

}  // namespace tessera::testing
