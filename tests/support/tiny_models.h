// Tiny GPT and Llama configurations for model tests: two layers, width 16, four query heads
// (two key/value heads for Llama), vocabulary 37 padded to 40. Header-only: include it from
// tests that link tessera_models.
#pragma once

#include "models/transformer_config.h"

namespace tessera::testing {

inline TransformerConfig tiny_transformer(bool llama) {
  TransformerConfig c = transformer_preset(llama ? "llama-tiny" : "gpt2-124m");
  c.name = llama ? "tiny-llama" : "tiny-gpt";
  c.num_layers = 2;
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_query_groups = llama ? 2 : 4;
  c.ffn_hidden_size = 24;
  c.vocab_size = 37;
  c.make_vocab_size_divisible_by = 8;
  c.max_position_embeddings = 16;
  return c;
}

}  // namespace tessera::testing
