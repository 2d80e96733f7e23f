// The seam between ops and devices: everything a device must do, as a small vtable of kernels.
// Op frontends (core/ops) check arguments, allocate outputs, call these kernels and record
// autograd; kernels only compute. The CPU backend (core/cpu) is the reference: simple,
// readable, f32/f64 (bf16/f16 stored, computed in f32). The CUDA backend implements the same
// interface and is tested against it.
//
// Conventions for every kernel:
//  - outputs are preallocated by the caller with the right shape/dtype/device and written
//    with = (never accumulated into) unless the name ends in _accumulate;
//  - inputs are contiguous unless the comment says "strided";
//  - row kernels take [R, C] and work on each of the R rows (the frontend flattens leading dims);
//  - statistics (mean, rstd, lse, per-token losses and their gradient, rope cos/sin tables)
//    are f32 whatever the activation dtype (f64 for f64 inputs);
//  - weights and biases have the activations' dtype (the frontend casts mixed-precision
//    master weights before the call);
//  - out may alias x only where the comment says so (elementwise kernels, rope).
#pragma once

#include <cstdint>
#include <memory>

#include "core/random.h"
#include "core/storage.h"
#include "core/tensor.h"

namespace tessera {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Max, Min, Eq, Gt, Lt };
enum class UnaryOp : uint8_t { Neg, Exp, Log, Sqrt, Rsqrt, Abs, Relu, Gelu, Silu, Tanh, Sigmoid, Square };
enum class RowReduceOp : uint8_t { Sum, Max, Min };

// What the GEMM applies to its result before writing C (fused in cuBLASLt's epilogue).
enum class GemmEpilogue : uint8_t {
  None,
  Bias,      // C = AB + bias (bias [N], broadcast over rows)
  BiasGelu,  // C = gelu(AB + bias); pre_gelu (if defined) receives AB + bias for the backward
  Gelu,      // C = gelu(AB); pre_gelu (if defined) receives AB
  // C = gelu'(pre_gelu) * AB, with pre_gelu (required) the forward's saved pre-activation: the
  // gradient through a GELU, fused into the GEMM that computes the gradient of its output.
  DGelu,
};

struct GemmArgs {
  bool trans_a = false;  // use A^T: A is stored [batch, K, M] instead of [batch, M, K]
  bool trans_b = false;  // use B^T: B is stored [batch, N, K] instead of [batch, K, N]
  double alpha = 1.0;
  double beta = 0.0;  // C = alpha * op(A) op(B) + beta * C (beta must be 0 with an epilogue)
  GemmEpilogue epilogue = GemmEpilogue::None;
  Tensor bias;      // [N], C's dtype
  Tensor pre_gelu;  // C's shape and dtype, or undefined; an input for DGelu, else an output
};

// One parameter's slice of a multi-tensor AdamW step. master, exp_avg and exp_avg_sq are f32;
// grad is f32 or bf16; model_copy (bf16, or undefined) receives the updated weights in the
// same pass (the compute copy of mixed-precision training).
struct AdamWParam {
  Tensor master;
  Tensor grad;
  Tensor exp_avg;
  Tensor exp_avg_sq;
  Tensor model_copy;
};

struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled: p -= lr * weight_decay * p
  int64_t step = 1;           // 1-based, for bias correction
  double grad_scale = 1.0;    // gradients are divided by this first (clipping, loss scaling)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual Allocator& allocator() = 0;

  // ---- memory ----
  // dst = src converted to dst's dtype. Same shape; src and dst strided (src may be a
  // broadcast view with stride 0). src may live on another device when one side is the host.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;  // dst strided

  // ---- random (Philox, see core/random.h). Uniform: element i uses word i of the draw;
  // dropout: 16 bits of word i / 2 (core/dropout_bits.h); both bit-exact across devices.
  // Normal: element i uses words 2i and 2i+1 (Box-Muller in f64), equal across devices up to
  // libm rounding. core/cpu/random.cpp has the exact maps. ----
  virtual void fill_uniform(const Tensor& dst, PhiloxState state, double low, double high) = 0;
  virtual void fill_normal(const Tensor& dst, PhiloxState state, double mean, double stddev) = 0;
  // out = x * keep / (1 - p) with keep = dropout_bits(i) >= dropout_threshold(p)
  // (core/dropout_bits.h). Also the backward (x = dL_dy).
  virtual void dropout(const Tensor& x, double p, PhiloxState state, const Tensor& out) = 0;

  // ---- elementwise ----
  // out = a op b; a and b strided views with out's shape (broadcast by stride 0). Comparison
  // ops write 1/0 in out's dtype.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out) = 0;
  // dL_dx = dL_dy * f'(x), from the input x, for every UnaryOp (Gelu: tanh approximation).
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& dL_dy, const Tensor& dL_dx) = 0;
  // out = x * scale + shift (scalar affine; also scale and add-scalar).
  virtual void affine(const Tensor& x, double scale, double shift, const Tensor& out) = 0;
  // out = x ^ exponent.
  virtual void pow(const Tensor& x, double exponent, const Tensor& out) = 0;
  // y += alpha * x in place (gradient accumulation, SGD); y strided, x same shape, any float dtypes.
  virtual void axpy(double alpha, const Tensor& x, const Tensor& y) = 0;
  // SwiGLU: out = silu(gate) * up; backward writes both input gradients.
  virtual void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  virtual void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dL_dout,
                               const Tensor& dL_dgate, const Tensor& dL_dup) = 0;
  // SwiGLU of a packed projection h [R, 2F] (each row its gate, then its up; contiguous):
  // out [R, F]; the backward writes dL_dh [R, 2F] from dL_dout [R, F]. No split copies.
  virtual void swiglu_packed(const Tensor& h, const Tensor& out) = 0;
  virtual void swiglu_packed_backward(const Tensor& h, const Tensor& dL_dout, const Tensor& dL_dh) = 0;

  // ---- reductions over the last dim of x [R, C] into out [R] ----
  virtual void reduce_rows(RowReduceOp op, const Tensor& x, const Tensor& out) = 0;
  virtual void argmax_rows(const Tensor& x, const Tensor& out_i64) = 0;

  // ---- matmul: c[batch, M, N] (= or +=, see GemmArgs) a[batch, M, K] b[batch, K, N]; a batch
  // count of 1 broadcasts over c's batch. f32 accumulation for 16-bit types. ----
  virtual void gemm(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) = 0;

  // ---- embedding: out[N, C] = weight[ids[N], :]; backward adds rows into dL_dweight ----
  virtual void embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) = 0;
  // deterministic: the same bits on every run (no floating-point atomics on GPUs).
  virtual void embedding_backward_accumulate(const Tensor& ids, const Tensor& dL_dout,
                                             const Tensor& dL_dweight, bool deterministic) = 0;

  // ---- normalisation over the last dim of x [R, C], fused with the residual add of a
  // pre-norm transformer: with `residual` defined, the input is h = x + residual and it is
  // also written to `residual_out` (the next residual stream). bias may be undefined.
  // Backward takes h (what forward normalised) and, if defined, dL_dresidual_out, the
  // gradient arriving at residual_out, which it adds into dL_dh. ----
  virtual void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                          const Tensor& bias, double eps, const Tensor& y, const Tensor& residual_out,
                          const Tensor& mean, const Tensor& rstd) = 0;
  virtual void layer_norm_backward(const Tensor& h, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd, const Tensor& dL_dy,
                                   const Tensor& dL_dresidual_out, const Tensor& dL_dh,
                                   const Tensor& dL_dweight, const Tensor& dL_dbias) = 0;
  virtual void rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps,
                        const Tensor& y, const Tensor& residual_out, const Tensor& rstd) = 0;
  virtual void rms_norm_backward(const Tensor& h, const Tensor& weight, const Tensor& rstd,
                                 const Tensor& dL_dy, const Tensor& dL_dresidual_out,
                                 const Tensor& dL_dh, const Tensor& dL_dweight) = 0;

  // ---- softmax over the last dim of [R, C] ----
  virtual void softmax(const Tensor& x, const Tensor& y) = 0;
  virtual void softmax_backward(const Tensor& y, const Tensor& dL_dy, const Tensor& dL_dx) = 0;

  // ---- cross-entropy: logits [N, V], targets [N] (i32/i64). losses[N] (f32/f64) gets
  // logsumexp - logit[target], 0 where target == ignore_index. Backward: dL_dlogits =
  // (softmax - onehot) * dL_dlosses[row], 0 on ignored rows. ----
  virtual void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                             const Tensor& losses) = 0;
  virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                      int64_t ignore_index, const Tensor& dL_dlosses,
                                      const Tensor& dL_dlogits) = 0;
  // Forward and backward in one pass over the logits (the trainer's path, where each row's
  // loss weight is known before backward): losses as above and dL_dlogits for the given
  // per-row weights dL_dlosses. dL_dlogits may alias logits (overwrites them in place).
  virtual void cross_entropy_fused(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                   const Tensor& dL_dlosses, const Tensor& losses,
                                   const Tensor& dL_dlogits) = 0;

  // ---- optimizer ----
  virtual void adamw(const std::vector<AdamWParam>& params, const AdamWHyper& hyper) = 0;
  // out (f32 [1]) = sum over all tensors of sum(x^2), accumulated in f32 or better.
  virtual void sum_squares(const std::vector<Tensor>& tensors, const Tensor& out) = 0;
  // Multiplies every tensor by inv_scale in place and sets found_inf (f32 [1]) to 1 if any
  // value is inf or NaN (left unchanged otherwise): fp16 dynamic loss scaling.
  virtual void unscale_and_check_finite(const std::vector<Tensor>& tensors, double inv_scale,
                                        const Tensor& found_inf) = 0;

  // ---- attention: q [B, Tq, H, D], k and v [B, Tk, KV, D] with Tq <= Tk (H % KV == 0; query
  // head h reads kv head h / (H / KV)), out [B, Tq, H, D], lse [B, H, Tq] (logsumexp of the
  // scaled scores, f32/f64). The queries are the last Tq of the Tk positions (bottom-right
  // aligned: query i sits at position i + Tk - Tq, as when decoding after Tk - Tq cached
  // tokens); causal masks key j > i + Tk - Tq. Tq == Tk is ordinary self-attention. (CUDA
  // refuses causal with 1 < Tq < Tk for now: core/cuda/cudnn_attention.cpp says why.) ----
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                         double scale, const Tensor& out, const Tensor& lse) = 0;
  // Whether attention and attention_backward take q, k and v, and write dL_dq, dL_dk and dL_dv,
  // as strided views (the last dim contiguous, e.g. slices of a packed QKV projection and of its
  // gradient) without copies; otherwise they must be contiguous. Every other tensor of the two
  // calls is contiguous either way.
  virtual bool attention_takes_strided_qkv() const { return false; }
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& out, const Tensor& lse, const Tensor& dL_dout,
                                  bool causal, double scale, const Tensor& dL_dq,
                                  const Tensor& dL_dk, const Tensor& dL_dv) = 0;

  // ---- rotary embedding on x [B, T, H, D] with cos/sin [T, D/2] (f32/f64), rotating pairs
  // (i, i + D/2) (the Llama / NeoX "rotate half" layout); row t of the tables holds the angles
  // of x's position t (positions from p on: rows [p, p + T) of a longer table, a contiguous
  // slice). inverse = rotate by -angle (the backward). ----
  virtual void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse,
                    const Tensor& out) = 0;
};

// The backend that runs kernels for tensors on `device`.
Backend& backend_for(Device device);

}  // namespace tessera
