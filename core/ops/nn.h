// Neural-network ops with fused kernels and hand-written backward: embedding, normalisation,
// softmax, cross-entropy, dropout, attention, rotary embedding.
#pragma once

#include <utility>

#include "core/random.h"
#include "core/tensor.h"

namespace tessera {

// weight [V, C], ids [...] (i32/i64) -> [..., C].
Tensor embedding(const Tensor& weight, const Tensor& ids);

// Over the last dim; bias may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

// Pre-norm residual step fused into one kernel: h = x + residual; returns {norm(h), h}
// (h is the next residual stream).
std::pair<Tensor, Tensor> add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                         const Tensor& bias, double eps = 1e-5);
std::pair<Tensor, Tensor> add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                       double eps = 1e-6);

// Softmax over the last dim.
Tensor softmax(const Tensor& x);

enum class LossReduction : uint8_t { Mean, Sum, None };

struct CrossEntropyOptions {
  int64_t ignore_index = -100;
  // Optional per-token weights with the targets' shape (1 = counts, 0 = masked out).
  Tensor loss_mask;
  // Mean divides by the number of tokens that count (mask weight, ignored targets excluded),
  // never by the number of samples.
  LossReduction reduction = LossReduction::Mean;
};

// logits [..., V], targets [...] (i32/i64). Returns a scalar (Mean/Sum) or per-token losses.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& options = {});

// Inverted dropout: keeps each element with probability 1 - p and scales it by 1/(1-p).
// Draws one Philox stream from `generator`; identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, Generator& generator, bool training = true);

// q [B, Tq, H, D], k and v [B, Tk, KV, D] with H % KV == 0 (grouped-query attention) and
// Tq <= Tk: the queries are the last Tq of the Tk positions (query i sits at position
// i + Tk - Tq; causal lets it see keys 0..i + Tk - Tq), which is decoding with a KV cache;
// Tq == Tk is ordinary self-attention. scale <= 0 means 1/sqrt(D). Never differentiates
// through a Tq x Tk matrix it keeps.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal = true, double scale = 0.0);

// Causal-or-not self-attention over a packed multi-head QKV projection qkv [B, T, H, 3, D] (per
// head its query, key and value; GPT-2's layout): equal to scaled_dot_product_attention on the
// three slices. Where the backend takes strided q/k/v (Backend::attention_takes_strided_qkv) it
// reads the slices in place and writes their gradients straight into one packed gradient, with
// no split/concatenate copies; elsewhere it is that composition.
Tensor packed_qkv_attention(const Tensor& qkv, bool causal = true, double scale = 0.0);

// Llama-3 style frequency scaling of the rotary embedding (factor 0 = off).
struct RopeScaling {
  double factor = 0.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

// cos and sin tables [T, D/2] for positions 0..T-1 (f32, or f64 for dtype F64).
std::pair<Tensor, Tensor> rope_tables(int64_t seq_len, int64_t head_dim, double theta,
                                      const RopeScaling& scaling = {}, DType dtype = DType::F32,
                                      Device device = Device::cpu());
// x [B, T, H, D]; rotates pairs (i, i + D/2) by position * frequency, with cos/sin [T, D/2]
// holding the angles of x's positions: for positions p..p+T-1 (decoding after p cached
// tokens) pass rows [p, p + T) of longer tables, cos.narrow(0, p, T).
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin);

}  // namespace tessera
