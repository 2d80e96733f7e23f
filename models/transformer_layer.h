// One pre-norm decoder layer. The residual stream travels as (residual, pending): `pending` is
// the last sublayer's output not yet added, so each add is fused into the next norm:
//   (x, r) = norm1(pending + residual); r += dropout(attention(x)) ... as
//   (x2, r) = norm2(attn_out + r); pending = dropout(mlp(x2))
// Parameters: input_layernorm.*, self_attention.*, pre_mlp_layernorm.*, mlp.*.
// Tensor parallel (model_parallelism.h): attention and MLP are split, the norms replicated;
// with sequence parallelism the stream and the norms hold this rank's T/tp positions.
#pragma once

#include <vector>

#include "core/random.h"
#include "models/feed_forward.h"
#include "models/norm.h"
#include "models/self_attention.h"

namespace tessera {

struct ResidualStream {
  Tensor residual;  // [B, T, C] ([B, T/tp, C] with sequence parallelism)
  Tensor pending;   // the same, or undefined (before the first layer)
};

class TransformerLayer : public Module {
 public:
  TransformerLayer(const TransformerConfig& config, Generator& init_generator, ParamOptions options,
                   const ModelParallelism& parallel = {});
  // Draws a layer takes from its init generator (the weights of linear_qkv, linear_proj,
  // linear_fc1, linear_fc2; biases and norms start constant): a pipeline piece skips the layers
  // of other pieces by advancing the generator this many draws per layer.
  static constexpr uint64_t kInitDraws = 4;
  // dropout_generator may be null when hidden_dropout is 0 or in eval mode. cache: this
  // layer's slot in a KV cache when decoding (see SelfAttention), empty when training.
  // documents: packed rows' document lengths (SelfAttention), null for one document per row.
  ResidualStream forward(const ResidualStream& in, const RopeTables* rope_tables, Generator* dropout_generator,
                         LayerCache cache = {}, const DocumentLengths* documents = nullptr) const;
  // Parameters every tp rank holds whole: the norms' and the row-parallel biases.
  std::vector<Tensor> replicated_parameters() const;

 private:
  Tensor maybe_dropout(const Tensor& x, Generator* generator) const;

  double hidden_dropout_;
  std::shared_ptr<Norm> input_norm_;
  std::shared_ptr<SelfAttention> attention_;
  std::shared_ptr<Norm> pre_mlp_norm_;
  std::shared_ptr<FeedForward> mlp_;
};

}  // namespace tessera
