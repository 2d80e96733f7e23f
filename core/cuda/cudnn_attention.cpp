// Fused (flash) scaled-dot-product attention through cuDNN 9's backend API: the operation
// graphs below are the ones cuDNN's fused-attention engines recognise (the same decomposition
// cudnn-frontend's SDPA nodes emit), never materialising the Tq x Tk scores.
//
// Layout: our tensors are [B, T, heads, D] row-major (T = Tq for Q, O and their gradients,
// Tk for K, V and theirs); cuDNN sees them as [B, heads, T, D] with strides
// [T*heads*D, D, heads*D, 1] (and K, V transposed to [B, KV, D, Tk] by swapping the last two
// strides), so nothing is copied. Q, K and V may also be strided views (slices of a packed QKV
// projection, head dim contiguous): their strides go into the graph. Grouped-query heads broadcast in the matmuls
// (query head h reads kv head h / (H / KV)); dK and dV of a kv head are summed over its query
// heads by a reduction in the graph.
//
// Forward:  S = scale * Q K^T [B, H, Tq, Tk], causal: S = (row >= col) ? S : -inf,
//           m = rowmax S, l = rowsum exp(S - m), Stats = m + log l, O = (exp(S - m) / l) V.
// Stats is the natural-log logsumexp of the scaled scores, [B, H, Tq, 1] f32 packed: exactly
// our lse [B, H, Tq], so it is written there directly and the backward reads it back.
// Backward: delta = rowsum(dO * O) (to workspace), P = exp(scale Q K^T - lse) (masked),
//           dV = P^T dO, dS = P * (dO V^T - delta) * scale, dK = dS^T Q, dQ = dS K (dQ is
//           accumulated in f32 in workspace, then converted).
//
// Fewer queries than keys (decoding with a KV cache; the queries are the last Tq positions,
// see core/backend.h): causal attention with one query sees every key, so it runs the
// non-causal graph; causal with 1 < Tq < Tk (a chunk appended to a cache) is refused. Its
// bottom-right mask (row + Tk - Tq >= col, the shift an f32 constant added to the int32 row
// index) built and ran on cuDNN 9 / H100 but was wrong for Tq = 7 (right for Tq = 1), as if
// the engine read the int32 index as float bits (subtracting the shift from the column index
// instead was wrong even for Tq = 1); cudnn-frontend builds that mask with int32
// pass-by-value scalars, which OperationGraph does not offer yet.
//
// Plans are finalized once per (B, H, KV, Tq, Tk, D, causal, dtype, direction) and cached (a
// decode loop whose key count grows by one per step builds one plan per length, ~50 ms each
// on an H100);
// workspace comes from the device's caching allocator. bf16 and f16 only (cuDNN's fused engines
// compute in bf16/f16 tensor cores; f32 inputs throw), head dims that are multiples of 8 up to
// 256 (the range tested against the CPU reference).
#include "core/cuda/cudnn_attention.h"

#include <cudnn_graph.h>

#include <array>
#include <cstdio>
#include <limits>
#include <map>
#include <tuple>

#include "core/cuda/cudnn_check.h"
#include "core/cuda/cudnn_graph.h"
#include "core/cuda/stream.h"

namespace tessera {
namespace cuda {
// From core/cuda/kernel_utils.cuh (defined in cuda_backend.cpp); that header holds device code
// a host compiler cannot read.
void check_launch(const char* kernel, cudaStream_t stream);
void check_on_device(const char* kernel, const char* name, const Tensor& t, int device);
}  // namespace cuda

namespace {

using cudnn::OperationGraph;
using cudnn::TensorId;

// Ids of the tensors the caller feeds.
enum : TensorId { kQ = 1, kK, kV, kO, kStats, kScale, kDO, kDQ, kDK, kDV, kDelta, kDQAccum };

struct Dims {
  int64_t B, Tq, Tk, H, KV, D;
  // Element strides of q, k and v over their [B, T, heads] dims (D is contiguous): slices of a
  // packed QKV projection are read where they lie.
  std::array<int64_t, 9> input_strides;
  // The same for dL_dq, dL_dk and dL_dv (backward only; zero in the forward): the gradients of
  // packed QKV slices are written into the packed gradient.
  std::array<int64_t, 9> grad_strides{};
};

cudnnDataType_t cudnn_type(DType dtype) { return dtype == DType::BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF; }

// Contiguous [B, T, heads, D] storage seen as [B, heads, T, D].
Shape bhtd_strides(int64_t T, int64_t heads, int64_t D) { return {T * heads * D, D, heads * D, 1}; }
// A tensor with strides (b, t, head) (three of Dims::input_strides or grad_strides, from
// `first`) seen as [B, heads, T, D] and as its transpose [B, heads, D, T].
Shape strided_bhtd(const std::array<int64_t, 9>& s, size_t first) { return {s[first], s[first + 2], s[first + 1], 1}; }
Shape input_bhtd(const Dims& d, size_t first) { return strided_bhtd(d.input_strides, first); }
Shape input_bhdt(const Dims& d, size_t first) {
  const auto& s = d.input_strides;
  return {s[first], s[first + 2], 1, s[first + 1]};
}

// y = (row >= col) ? x : -inf over the last two dims of x [B, H, T, T] (causal with Tq == Tk).
TensorId causal_mask(OperationGraph& g, TensorId x) {
  const Shape dims = g.dims(x);
  TensorId row = g.virtual_tensor(CUDNN_DATA_INT32, dims);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, row, OperationGraph::kNone, OperationGraph::kNone, CUDNN_DATA_FLOAT, 2);
  TensorId col = g.virtual_tensor(CUDNN_DATA_INT32, dims);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, x, col, OperationGraph::kNone, OperationGraph::kNone, CUDNN_DATA_FLOAT, 3);
  TensorId keep = g.virtual_tensor(CUDNN_DATA_BOOLEAN, dims);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, keep, col, OperationGraph::kNone, CUDNN_DATA_BOOLEAN);
  TensorId y = g.virtual_tensor(CUDNN_DATA_FLOAT, dims);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, y, g.constant(-std::numeric_limits<float>::infinity()), keep);
  return y;
}

// m = op(x) over the last dim, [B, H, T, 1].
TensorId row_reduce(OperationGraph& g, cudnnReduceTensorOp_t op, TensorId x) {
  Shape dims = g.dims(x);
  dims.back() = 1;
  TensorId y = g.virtual_tensor(CUDNN_DATA_FLOAT, dims);
  g.reduction(op, x, y);
  return y;
}

TensorId unary(OperationGraph& g, cudnnPointwiseMode_t mode, TensorId x) {
  TensorId y = g.virtual_tensor(CUDNN_DATA_FLOAT, g.dims(x));
  g.pointwise(mode, x, y);
  return y;
}

// y = x op b, b broadcast to x's shape.
TensorId binary(OperationGraph& g, cudnnPointwiseMode_t mode, TensorId x, TensorId b) {
  TensorId y = g.virtual_tensor(CUDNN_DATA_FLOAT, g.dims(x));
  g.pointwise(mode, x, y, b);
  return y;
}

std::unique_ptr<OperationGraph> forward_graph(const Dims& d, bool causal, cudnnDataType_t io) {
  auto graph = std::make_unique<OperationGraph>();
  OperationGraph& g = *graph;
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, H = d.H, KV = d.KV, D = d.D;
  g.tensor(kQ, io, {B, H, Tq, D}, input_bhtd(d, 0));
  g.tensor(kK, io, {B, KV, D, Tk}, input_bhdt(d, 3));
  g.tensor(kV, io, {B, KV, Tk, D}, input_bhtd(d, 6));
  g.tensor(kO, io, {B, H, Tq, D}, bhtd_strides(Tq, H, D));
  g.tensor(kStats, CUDNN_DATA_FLOAT, {B, H, Tq, 1}, {H * Tq, Tq, 1, 1});
  g.runtime_scalar(kScale);

  TensorId s = g.virtual_tensor(CUDNN_DATA_FLOAT, {B, H, Tq, Tk});
  g.matmul(kQ, kK, s);
  s = binary(g, CUDNN_POINTWISE_MUL, s, kScale);
  if (causal) s = causal_mask(g, s);
  TensorId max = row_reduce(g, CUDNN_REDUCE_TENSOR_MAX, s);
  TensorId e = unary(g, CUDNN_POINTWISE_EXP, binary(g, CUDNN_POINTWISE_SUB, s, max));
  TensorId sum = row_reduce(g, CUDNN_REDUCE_TENSOR_ADD, e);
  g.pointwise(CUDNN_POINTWISE_ADD, max, kStats, unary(g, CUDNN_POINTWISE_LOG, sum));
  TensorId p = g.virtual_tensor(io, {B, H, Tq, Tk});  // the second matmul reads P in the io type
  g.pointwise(CUDNN_POINTWISE_DIV, e, p, sum);
  g.matmul(p, kV, kO);
  return graph;
}

// out = a b for MHA; for GQA the per-query-head product, summed into out's kv heads.
void matmul_sum_heads(OperationGraph& g, const Dims& d, cudnnDataType_t io, TensorId a, TensorId b, TensorId out) {
  if (d.H == d.KV) {
    g.matmul(a, b, out);
    return;
  }
  TensorId full = g.virtual_tensor(io, {d.B, d.H, d.Tk, d.D});
  g.matmul(a, b, full);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, full, out);
}

std::unique_ptr<OperationGraph> backward_graph(const Dims& d, bool causal, cudnnDataType_t io) {
  auto graph = std::make_unique<OperationGraph>();
  OperationGraph& g = *graph;
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, H = d.H, KV = d.KV, D = d.D;
  g.tensor(kQ, io, {B, H, Tq, D}, input_bhtd(d, 0));
  g.tensor(kK, io, {B, KV, D, Tk}, input_bhdt(d, 3));
  g.tensor(kV, io, {B, KV, D, Tk}, input_bhdt(d, 6));
  g.tensor(kO, io, {B, H, Tq, D}, bhtd_strides(Tq, H, D));
  g.tensor(kDO, io, {B, H, Tq, D}, bhtd_strides(Tq, H, D));
  g.tensor(kStats, CUDNN_DATA_FLOAT, {B, H, Tq, 1}, {H * Tq, Tq, 1, 1});
  g.runtime_scalar(kScale);
  g.tensor(kDQ, io, {B, H, Tq, D}, strided_bhtd(d.grad_strides, 0));
  g.tensor(kDK, io, {B, KV, Tk, D}, strided_bhtd(d.grad_strides, 3));
  g.tensor(kDV, io, {B, KV, Tk, D}, strided_bhtd(d.grad_strides, 6));
  g.tensor(kDelta, CUDNN_DATA_FLOAT, {B, H, Tq, 1}, {H * Tq, Tq, 1, 1});            // workspace
  g.tensor(kDQAccum, CUDNN_DATA_FLOAT, {B, H, Tq, D}, {H * Tq * D, Tq * D, D, 1});  // workspace

  // delta = rowsum(dO * O)
  TensorId delta = row_reduce(g, CUDNN_REDUCE_TENSOR_ADD, binary(g, CUDNN_POINTWISE_MUL, kDO, kO));
  g.pointwise(CUDNN_POINTWISE_MUL, delta, kDelta, g.constant(1.0f));

  // P = exp(scale Q K^T - lse), masked
  TensorId s = g.virtual_tensor(CUDNN_DATA_FLOAT, {B, H, Tq, Tk});
  g.matmul(kQ, kK, s);
  s = binary(g, CUDNN_POINTWISE_SUB, binary(g, CUDNN_POINTWISE_MUL, s, kScale), kStats);
  if (causal) s = causal_mask(g, s);
  TensorId p = unary(g, CUDNN_POINTWISE_EXP, s);

  // dV = P^T dO
  TensorId p_t = g.virtual_tensor(io, {B, H, Tk, Tq}, {H * Tq * Tk, Tq * Tk, 1, Tk});
  g.reshape(p, p_t);
  matmul_sum_heads(g, d, io, p_t, kDO, kDV);

  // dS = P * (dO V^T - delta) * scale
  TensorId dp = g.virtual_tensor(CUDNN_DATA_FLOAT, {B, H, Tq, Tk});
  g.matmul(kDO, kV, dp);
  TensorId ds = binary(g, CUDNN_POINTWISE_MUL, binary(g, CUDNN_POINTWISE_SUB, dp, kDelta), p);
  ds = binary(g, CUDNN_POINTWISE_MUL, ds, kScale);

  // dK = dS^T Q
  TensorId ds_t = g.virtual_tensor(io, {B, H, Tk, Tq}, {H * Tq * Tk, Tq * Tk, 1, Tk});
  g.reshape(ds, ds_t);
  matmul_sum_heads(g, d, io, ds_t, kQ, kDK);

  // dQ = dS K, accumulated in f32
  TensorId k = g.virtual_tensor(CUDNN_DATA_FLOAT, {B, KV, Tk, D}, bhtd_strides(Tk, KV, D));
  g.reshape(kK, k);
  g.matmul(ds, k, kDQAccum);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, kDQAccum, kDQ);
  return graph;
}

void check_arg(const char* kernel, const char* name, const Tensor& t, int device, DType dtype, const Shape& shape) {
  cuda::check_on_device(kernel, name, t, device);
  TS_CHECK(t.dtype() == dtype && t.shape() == shape, kernel, ": expected ", name, " ", dtype_name(dtype), " ", shape,
           ", got ", dtype_name(t.dtype()), " ", t.shape());
  TS_CHECK(t.is_contiguous(), kernel, ": ", name, " ", t.shape(), " must be contiguous, strides ", t.strides());
  TS_CHECK(reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0, kernel, ": ", name,
           " must start on a 16-byte boundary for cuDNN (storage offset ", t.offset(), ")");
}

// q, k, v or a gradient of them, which cuDNN reads or writes through strides: the head dim
// contiguous, every stride and the start 16-byte aligned (what its fused engines access).
void check_strided_operand(const char* kernel, const char* name, const Tensor& t, int device, DType dtype,
                         const Shape& shape) {
  cuda::check_on_device(kernel, name, t, device);
  TS_CHECK(t.dtype() == dtype && t.shape() == shape, kernel, ": expected ", name, " ", dtype_name(dtype), " ", shape,
           ", got ", dtype_name(t.dtype()), " ", t.shape());
  const int64_t per_16_bytes = 16 / int64_t(dtype_size(dtype));
  bool aligned = t.strides()[3] == 1 && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
  for (int dim = 0; dim < 3; ++dim) aligned = aligned && t.strides()[size_t(dim)] % per_16_bytes == 0;
  TS_CHECK(aligned, kernel, ": ", name, " ", t.shape(), " with strides ", t.strides(), " (storage offset ", t.offset(),
           ") cannot be accessed by cuDNN: the head dim must be contiguous and the other strides and the start 16-byte "
           "aligned; pass a contiguous copy");
}

// Checks q and k and reads the dimensions.
Dims attention_dims(const char* kernel, const Tensor& q, const Tensor& k, int device) {
  cuda::check_on_device(kernel, "q", q, device);
  cuda::check_on_device(kernel, "k", k, device);
  TS_CHECK(q.dim() == 4, kernel, ": expected q [B, Tq, H, D], got ", q.shape());
  TS_CHECK(k.dim() == 4, kernel, ": expected k [B, Tk, KV, D], got ", k.shape());
  Dims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), {}};
  TS_CHECK(d.KV > 0 && d.H % d.KV == 0, kernel, ": query heads H = ", d.H,
           " must be a multiple of kv heads KV = ", d.KV, " (q ", q.shape(), ", k ", k.shape(), ")");
  TS_CHECK(d.Tq <= d.Tk, kernel, ": q ", q.shape(), " has more positions (Tq = ", d.Tq, ") than k ", k.shape(),
           " (Tk = ", d.Tk, "); the queries are the last Tq of the Tk positions");
  TS_CHECK(q.dtype() == DType::BF16 || q.dtype() == DType::F16, kernel, ": cuDNN fused attention needs bf16 or f16 ",
           "inputs, got ", dtype_name(q.dtype()), " q ", q.shape(), " (cast to bf16 for attention on the GPU)");
  TS_CHECK(d.D % 8 == 0 && d.D <= 256, kernel, ": cuDNN fused attention runs head dims D that are multiples of 8 ",
           "up to 256 (verified against the CPU reference), got D = ", d.D, " (q ", q.shape(), ")");
  TS_CHECK(d.B > 0 && d.Tq > 0, kernel, ": empty attention, q ", q.shape());
  return d;
}

// attention_dims, with q, k and v checked as strided inputs and their strides recorded.
Dims input_dims(const char* kernel, const Tensor& q, const Tensor& k, const Tensor& v, int device) {
  Dims d = attention_dims(kernel, q, k, device);
  check_strided_operand(kernel, "q", q, device, q.dtype(), {d.B, d.Tq, d.H, d.D});
  check_strided_operand(kernel, "k", k, device, q.dtype(), {d.B, d.Tk, d.KV, d.D});
  check_strided_operand(kernel, "v", v, device, q.dtype(), {d.B, d.Tk, d.KV, d.D});
  size_t i = 0;
  for (const Tensor* t : {&q, &k, &v})
    for (int dim = 0; dim < 3; ++dim) d.input_strides[i++] = t->strides()[size_t(dim)];
  return d;
}

// Whether the graph masks: causal attention with one query sees every key (it sits at the
// last position), so only Tq == Tk > 1 needs the mask.
bool needs_causal_mask(const char* kernel, const Dims& d, bool causal) {
  TS_CHECK(!causal || d.Tq == 1 || d.Tq == d.Tk, kernel, ": causal attention with 1 < Tq < Tk (Tq = ", d.Tq,
           ", Tk = ", d.Tk,
           ": a chunk of queries after cached keys) is not supported by the cuDNN path; feed "
           "one query at a time (Tq = 1) or the whole sequence (Tq = Tk), or run it on the CPU");
  return causal && d.Tq > 1;
}

std::string describe(const char* kernel, const Dims& d, bool causal, DType dtype) {
  return detail::concat(kernel, " (cuDNN fused attention, B=", d.B, " Tq=", d.Tq, " Tk=", d.Tk, " H=", d.H,
                        " KV=", d.KV, " D=", d.D, causal ? " causal " : " non-causal ", dtype_name(dtype), ")");
}

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace

// (B, Tq, Tk, H, KV, D, input strides, gradient strides, causal, dtype, backward) -> finalized plan.
using PlanKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, std::array<int64_t, 9>,
                           std::array<int64_t, 9>, bool, DType, bool>;

struct CudnnAttention::State {
  int device;
  cudaStream_t stream;
  cudnnHandle_t handle = nullptr;
  std::map<PlanKey, std::unique_ptr<OperationGraph>> plans;

  ~State() {
    if (handle != nullptr && cudnnDestroy(handle) != CUDNN_STATUS_SUCCESS) {
      std::fprintf(stderr, "tessera: cudnnDestroy failed\n");
    }
  }

  // The handle is made on first use (loading cuDNN costs time a process without attention
  // should not pay) and bound to the backend's stream.
  cudnnHandle_t get_handle() {
    if (handle == nullptr) {
      CudaDeviceGuard guard(device);
      TS_CUDNN_CHECK(cudnnCreate(&handle));
      TS_CUDNN_CHECK(cudnnSetStream(handle, stream));
    }
    return handle;
  }

  const OperationGraph& plan(const char* kernel, const Dims& d, bool causal, DType dtype, bool backward) {
    PlanKey key{d.B, d.Tq, d.Tk, d.H, d.KV, d.D, d.input_strides, d.grad_strides, causal, dtype, backward};
    auto it = plans.find(key);
    if (it != plans.end()) return *it->second;
    CudaDeviceGuard guard(device);
    std::unique_ptr<OperationGraph> graph =
        backward ? backward_graph(d, causal, cudnn_type(dtype)) : forward_graph(d, causal, cudnn_type(dtype));
    graph->build(get_handle(), describe(kernel, d, causal, dtype));
    return *plans.emplace(key, std::move(graph)).first->second;
  }

  // Device scratch from the caching allocator (released to it when the tensor dies; the
  // allocator orders reuse on this stream).
  Tensor workspace(size_t bytes) const {
    return Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::F32, Device::cuda(device));
  }
};

CudnnAttention::CudnnAttention(int device, cudaStream_t stream) : state_(std::make_unique<State>()) {
  state_->device = device;
  state_->stream = stream;
}

CudnnAttention::~CudnnAttention() = default;

void CudnnAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                             const Tensor& out, const Tensor& lse) {
  constexpr const char* kernel = "attention";
  const int device = state_->device;
  CudaDeviceGuard guard(device);  // cuDNN launches on the current device, whatever its stream's
  const Dims d = input_dims(kernel, q, k, v, device);
  check_arg(kernel, "out", out, device, q.dtype(), {d.B, d.Tq, d.H, d.D});
  check_arg(kernel, "lse", lse, device, DType::F32, {d.B, d.H, d.Tq});

  const bool masked = needs_causal_mask(kernel, d, causal);
  const OperationGraph& plan = state_->plan(kernel, d, masked, q.dtype(), /*backward=*/false);
  Tensor workspace =
      plan.workspace_size() > 0 ? state_->workspace(static_cast<size_t>(plan.workspace_size())) : Tensor();
  float scale_value = static_cast<float>(scale);
  plan.execute(state_->get_handle(),
               {{kQ, q.data_ptr()},
                {kK, k.data_ptr()},
                {kV, v.data_ptr()},
                {kO, out.data_ptr()},
                {kStats, lse.data_ptr()},
                {kScale, &scale_value}},
               workspace.defined() ? workspace.data_ptr() : nullptr);
  cuda::check_launch(kernel, state_->stream);
}

void CudnnAttention::backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                              const Tensor& dL_dout, bool causal, double scale, const Tensor& dL_dq,
                              const Tensor& dL_dk, const Tensor& dL_dv) {
  constexpr const char* kernel = "attention_backward";
  const int device = state_->device;
  CudaDeviceGuard guard(device);  // cuDNN launches on the current device, whatever its stream's
  Dims d = input_dims(kernel, q, k, v, device);
  check_arg(kernel, "out", out, device, q.dtype(), {d.B, d.Tq, d.H, d.D});
  check_arg(kernel, "lse", lse, device, DType::F32, {d.B, d.H, d.Tq});
  check_arg(kernel, "dL_dout", dL_dout, device, q.dtype(), {d.B, d.Tq, d.H, d.D});
  check_strided_operand(kernel, "dL_dq", dL_dq, device, q.dtype(), {d.B, d.Tq, d.H, d.D});
  check_strided_operand(kernel, "dL_dk", dL_dk, device, q.dtype(), {d.B, d.Tk, d.KV, d.D});
  check_strided_operand(kernel, "dL_dv", dL_dv, device, q.dtype(), {d.B, d.Tk, d.KV, d.D});
  size_t i = 0;
  for (const Tensor* t : {&dL_dq, &dL_dk, &dL_dv})
    for (int dim = 0; dim < 3; ++dim) d.grad_strides[i++] = t->strides()[size_t(dim)];

  const bool masked = needs_causal_mask(kernel, d, causal);
  const OperationGraph& plan = state_->plan(kernel, d, masked, q.dtype(), /*backward=*/true);
  // One buffer: [cuDNN's workspace | delta f32 [B, H, Tq] | dQ accumulator f32 [B, H, Tq, D]].
  const size_t plan_bytes = align256(static_cast<size_t>(plan.workspace_size()));
  const size_t delta_bytes = align256(static_cast<size_t>(d.B * d.H * d.Tq) * sizeof(float));
  const size_t accum_bytes = static_cast<size_t>(d.B * d.H * d.Tq * d.D) * sizeof(float);
  Tensor workspace = state_->workspace(plan_bytes + delta_bytes + accum_bytes);
  char* base = static_cast<char*>(workspace.data_ptr());
  float scale_value = static_cast<float>(scale);
  plan.execute(state_->get_handle(),
               {{kQ, q.data_ptr()},
                {kK, k.data_ptr()},
                {kV, v.data_ptr()},
                {kO, out.data_ptr()},
                {kDO, dL_dout.data_ptr()},
                {kStats, lse.data_ptr()},
                {kScale, &scale_value},
                {kDQ, dL_dq.data_ptr()},
                {kDK, dL_dk.data_ptr()},
                {kDV, dL_dv.data_ptr()},
                {kDelta, base + plan_bytes},
                {kDQAccum, base + plan_bytes + delta_bytes}},
               plan_bytes > 0 ? base : nullptr);
  cuda::check_launch(kernel, state_->stream);
}

}  // namespace tessera
