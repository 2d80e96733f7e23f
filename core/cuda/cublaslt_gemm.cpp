// cuBLASLt GEMM (see cublaslt_gemm.h). cuBLASLt is column-major and Tessera row-major: a
// row-major [M, N] matrix is a column-major [N, M] one, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T, i.e. cuBLASLt's "A" is our b, its "B" is our a and its m x n output
// is N x M. The bias epilogue adds a vector along cuBLASLt's rows, which are our columns: the
// [N] bias of the contract. The GELU epilogue is the tanh approximation, like the CPU's.
#include "core/cuda/cublaslt_gemm.h"
#include "core/gemm_shape.h"

#include <cublasLt.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/cuda/cublas_check.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/kernel_utils.cuh"
#include "core/cuda/stream.h"

namespace tessera {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what cuBLAS asks for on Hopper
constexpr int kCandidates = 8;                          // heuristic answers timed per configuration

// ---- RAII for cuBLASLt descriptors ----
template <typename Handle, cublasStatus_t (*destroy)(Handle)>
struct LtDeleter {
  void operator()(Handle handle) const {
    if (destroy(handle) != CUBLAS_STATUS_SUCCESS) std::fprintf(stderr, "tessera: destroying a cuBLASLt descriptor failed\n");
  }
};
template <typename Handle, cublasStatus_t (*destroy)(Handle)>
using LtPtr = std::unique_ptr<std::remove_pointer_t<Handle>, LtDeleter<Handle, destroy>>;
using MatmulDesc = LtPtr<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using MatrixLayout = LtPtr<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using Preference = LtPtr<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

template <typename V>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const V& value) {
  TS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}
template <typename V>
void set_attribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attribute, const V& value) {
  TS_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, attribute, &value, sizeof(value)));
}
template <typename V>
void set_attribute(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attribute, const V& value) {
  TS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof(value)));
}

// ---- shapes (core/gemm_shape.h: the same checks and messages as the CPU reference) ----
GemmSize check_gemm(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args, int device) {
  cuda::check_on_device("gemm", "a", a, device);
  cuda::check_on_device("gemm", "b", b, device);
  cuda::check_on_device("gemm", "c", c, device);
  GemmSize s = check_gemm_operands(a, b, c, args);
  TS_CHECK(s.batch <= INT_MAX, "gemm: cuBLASLt takes at most ", INT_MAX, " batches: ", gemm_shapes(a, b, c, args));
  return s;
}

bool has_bias(GemmEpilogue e) { return e == GemmEpilogue::Bias || e == GemmEpilogue::BiasGelu; }
bool has_gelu(GemmEpilogue e) { return e == GemmEpilogue::Gelu || e == GemmEpilogue::BiasGelu; }
// Whether pre_gelu travels as cuBLASLt's aux matrix: written by a GELU epilogue, read by DGelu.
bool has_aux(GemmEpilogue e) { return has_gelu(e) || e == GemmEpilogue::DGelu; }

void check_epilogue(const Tensor& c, const GemmSize& s, const GemmArgs& args, int device) {
  if (args.epilogue == GemmEpilogue::None) return;
  TS_CHECK(args.beta == 0.0, "gemm: an epilogue needs beta == 0, got beta ", args.beta);
  if (has_bias(args.epilogue)) {
    TS_CHECK(args.bias.defined() && args.bias.dtype() == c.dtype() && args.bias.is_contiguous() &&
                 args.bias.shape() == Shape{s.n},
             "gemm: the bias epilogue needs a contiguous bias [", s.n, "] of dtype ", c.dtype(), ", got ",
             args.bias.defined() ? shape_str(args.bias.shape()) : std::string("none"));
    cuda::check_on_device("gemm", "bias", args.bias, device);
  }
  TS_CHECK(args.epilogue != GemmEpilogue::DGelu || args.pre_gelu.defined(),
           "gemm: the dgelu epilogue needs pre_gelu, the forward's pre-activation");
  if (has_aux(args.epilogue) && args.pre_gelu.defined()) {
    TS_CHECK(args.pre_gelu.shape() == c.shape() && args.pre_gelu.dtype() == c.dtype() && args.pre_gelu.is_contiguous(),
             "gemm: pre_gelu must be contiguous with c's shape ", c.shape(), " and dtype ", c.dtype());
    cuda::check_on_device("gemm", "pre_gelu", args.pre_gelu, device);
  }
}

cudaDataType_t data_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return CUDA_R_32F;
    case DType::F64: return CUDA_R_64F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: break;
  }
  TS_CHECK(false, "gemm: expected a floating dtype (f32, f64, bf16, f16), got ", dtype_name(dtype));
  return CUDA_R_32F;
}

cublasLtEpilogue_t lt_epilogue(GemmEpilogue e, bool aux) {
  switch (e) {
    case GemmEpilogue::None: return CUBLASLT_EPILOGUE_DEFAULT;
    case GemmEpilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::BiasGelu: return aux ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
    case GemmEpilogue::Gelu: return aux ? CUBLASLT_EPILOGUE_GELU_AUX : CUBLASLT_EPILOGUE_GELU;
    case GemmEpilogue::DGelu: return CUBLASLT_EPILOGUE_DGELU;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

const char* epilogue_name(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::None: return "none";
    case GemmEpilogue::Bias: return "bias";
    case GemmEpilogue::BiasGelu: return "bias+gelu";
    case GemmEpilogue::Gelu: return "gelu";
    case GemmEpilogue::DGelu: return "dgelu";
  }
  return "?";
}

// Largest power of two (up to 256, cuBLASLt's default assumption) dividing the address.
uint32_t alignment_of(const void* p) {
  auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

// ---- plans: descriptors and algorithm for one GEMM configuration ----
// Everything the heuristic's answer depends on. m/batch are after folding (see run).
struct PlanKey {
  DType dtype;
  int64_t m, n, k, batch;
  bool trans_a, trans_b, broadcast_a, broadcast_b;
  GemmEpilogue epilogue;
  int64_t aux_ld;  // leading dimension of the pre-GELU output, 0 if none is written
  uint32_t align_a, align_b, align_c, align_bias, align_aux;
  bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& key) const {
    size_t h = 0;
    auto mix = [&h](uint64_t v) { h ^= std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
    mix(static_cast<uint64_t>(key.dtype));
    for (int64_t v : {key.m, key.n, key.k, key.batch, key.aux_ld}) mix(static_cast<uint64_t>(v));
    mix((uint64_t(key.trans_a) << 0) | (uint64_t(key.trans_b) << 1) | (uint64_t(key.broadcast_a) << 2) |
        (uint64_t(key.broadcast_b) << 3) | (uint64_t(key.epilogue) << 4));
    for (uint32_t v : {key.align_a, key.align_b, key.align_c, key.align_bias, key.align_aux}) mix(v);
    return h;
  }
};

std::string describe(const PlanKey& key) {
  return detail::concat("dtype ", dtype_name(key.dtype), ", M ", key.m, ", N ", key.n, ", K ", key.k, ", batch ",
                        key.batch, key.trans_a ? ", a transposed" : "", key.trans_b ? ", b transposed" : "",
                        ", epilogue ", epilogue_name(key.epilogue), key.aux_ld ? " (pre-gelu written)" : "",
                        ", alignments a/b/c ", key.align_a, "/", key.align_b, "/", key.align_c, " bytes");
}

// Descriptor roles are cuBLASLt's: lt_a describes our b, lt_b our a (see the top of the file).
struct Plan {
  MatmulDesc desc;
  MatrixLayout lt_a, lt_b, lt_c;
  cublasLtMatmulAlgo_t algo{};
};

MatrixLayout make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                         int64_t batch_stride) {
  cublasLtMatrixLayout_t raw = nullptr;
  TS_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  MatrixLayout layout(raw);
  if (batch > 1) {
    set_attribute(raw, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, static_cast<int32_t>(batch));
    set_attribute(raw, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, batch_stride);
  }
  return layout;
}

// Builds the descriptors of `key` and asks the heuristic for its best algorithms (at most
// kCandidates, best first, into `candidates`; the plan starts with the first). The bias and
// pre-GELU pointers are set here (the heuristic reads their alignment) and again on every call.
std::unique_ptr<Plan> make_plan(cublasLtHandle_t handle, const PlanKey& key, const void* bias, void* aux,
                                std::vector<cublasLtMatmulAlgo_t>& candidates) {
  auto plan = std::make_unique<Plan>();
  cudaDataType_t type = data_type(key.dtype);
  bool f64 = key.dtype == DType::F64;
  cublasLtMatmulDesc_t desc = nullptr;
  TS_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F,
                                           f64 ? CUDA_R_64F : CUDA_R_32F));
  plan->desc.reset(desc);
  set_attribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_attribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N);
  set_attribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, lt_epilogue(key.epilogue, key.aux_ld != 0));
  if (bias) set_attribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  if (aux) {
    set_attribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
    set_attribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, key.aux_ld);
    set_attribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, key.m * key.aux_ld);
  }
  // Our b is [K, N] row-major = column-major N x K (ld N), or stored [N, K] when transposed.
  plan->lt_a = make_layout(type, key.trans_b ? key.k : key.n, key.trans_b ? key.n : key.k,
                           key.trans_b ? key.k : key.n, key.batch, key.broadcast_b ? 0 : key.k * key.n);
  plan->lt_b = make_layout(type, key.trans_a ? key.m : key.k, key.trans_a ? key.k : key.m,
                           key.trans_a ? key.m : key.k, key.batch, key.broadcast_a ? 0 : key.m * key.k);
  plan->lt_c = make_layout(type, key.n, key.m, key.n, key.batch, key.m * key.n);

  cublasLtMatmulPreference_t raw_pref = nullptr;
  TS_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
  Preference pref(raw_pref);
  set_attribute(raw_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(kWorkspaceBytes));
  set_attribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_b);
  set_attribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_a);
  set_attribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c);
  set_attribute(raw_pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c);

  std::vector<cublasLtMatmulHeuristicResult_t> results(kCandidates);
  int found = 0;
  cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, desc, plan->lt_a.get(), plan->lt_b.get(),
                                                         plan->lt_c.get(), plan->lt_c.get(), raw_pref, kCandidates,
                                                         results.data(), &found);
  TS_CHECK(status != CUBLAS_STATUS_NOT_SUPPORTED && (status != CUBLAS_STATUS_SUCCESS || found > 0),
           "gemm: cuBLASLt has no algorithm for ", describe(key));
  TS_CUBLAS_CHECK(status);
  for (int i = 0; i < found; ++i) candidates.push_back(results[static_cast<size_t>(i)].algo);
  plan->algo = candidates.front();
  return plan;
}

// The pointers and scalars of one cublasLtMatmul (our a and b; c is read when beta != 0).
struct Operands {
  const void* a;
  const void* b;
  void* c;
  const void* alpha;
  const void* beta;
};

void matmul(cublasLtHandle_t handle, const Plan& plan, const cublasLtMatmulAlgo_t& algo, const Operands& op,
            void* workspace, cudaStream_t stream) {
  TS_CUBLAS_CHECK(cublasLtMatmul(handle, plan.desc.get(), op.alpha, op.b, plan.lt_a.get(), op.a, plan.lt_b.get(),
                                 op.beta, op.c, plan.lt_c.get(), op.c, plan.lt_c.get(), &algo, workspace,
                                 kWorkspaceBytes, stream));
}

// A CUDA event that records time (CudaEvent in stream.h only orders, with timing disabled).
class TimingEvent {
 public:
  TimingEvent() { TS_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~TimingEvent() {
    if (cudaEventDestroy(event_) != cudaSuccess) std::fprintf(stderr, "tessera: cudaEventDestroy failed\n");
  }
  TimingEvent(const TimingEvent&) = delete;
  TimingEvent& operator=(const TimingEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// The heuristic's first answer is sometimes several times slower than another of its answers
// (GPT-2's attention projection, [16384, 768] x [768, 768] with bias, ran at 28% of the best
// on an H100). So on a configuration's first call every candidate runs on the real a and b
// into scratch outputs (beta = 0): once to warm up (dropping any that refuse the operands),
// then in each round a burst of back-to-back calls between timing events, round-robin so that
// clock ramp-up and power throttling fall on all candidates alike. The candidate with the
// lowest median burst is kept: the best single call picked, for Llama's lm-head dx ([8192,
// 128256] x [128256, 2048] on an H100), an algorithm that took 6 ms on some calls but 9.4 ms
// on most calls back to back (66% of the best). This waits for the stream once per
// configuration.
void choose_fastest(cublasLtHandle_t handle, Plan& plan, const std::vector<cublasLtMatmulAlgo_t>& candidates,
                    const PlanKey& key, const void* a, const void* b, Device device, void* workspace,
                    cudaStream_t stream) {
  constexpr size_t kRounds = 3, kBurst = 3;
  Tensor scratch_c = Tensor::empty({key.batch * key.m * key.n}, key.dtype, device);
  Tensor scratch_aux;
  if (key.aux_ld) {
    scratch_aux = Tensor::empty({key.batch * key.m * key.aux_ld}, key.dtype, device);
    set_attribute(plan.desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, scratch_aux.data_ptr());
  }
  const float one32 = 1.0f, zero32 = 0.0f;
  const double one64 = 1.0, zero64 = 0.0;
  bool f64 = key.dtype == DType::F64;
  Operands op{a, b, scratch_c.data_ptr(), f64 ? static_cast<const void*>(&one64) : &one32,
              f64 ? static_cast<const void*>(&zero64) : &zero32};
  const size_t n = candidates.size();
  std::vector<bool> usable(n, false);
  for (size_t i = 0; i < n; ++i) {
    try {
      matmul(handle, plan, candidates[i], op, workspace, stream);
      usable[i] = true;
    } catch (const Error&) {
      // A candidate that refuses these operands is not a choice.
    }
  }
  std::vector<TimingEvent> events(2 * kRounds * n);
  for (size_t round = 0; round < kRounds; ++round) {
    for (size_t i = 0; i < n; ++i) {
      if (!usable[i]) continue;
      TS_CUDA_CHECK(cudaEventRecord(events[2 * (round * n + i)].get(), stream));
      for (size_t call = 0; call < kBurst; ++call) matmul(handle, plan, candidates[i], op, workspace, stream);
      TS_CUDA_CHECK(cudaEventRecord(events[2 * (round * n + i) + 1].get(), stream));
    }
  }
  TS_CUDA_CHECK(cudaStreamSynchronize(stream));
  float best_ms = 0.0f;
  int best = -1;
  for (size_t i = 0; i < n; ++i) {
    if (!usable[i]) continue;
    std::vector<float> bursts(kRounds);
    for (size_t round = 0; round < kRounds; ++round)
      TS_CUDA_CHECK(cudaEventElapsedTime(&bursts[round], events[2 * (round * n + i)].get(),
                                         events[2 * (round * n + i) + 1].get()));
    std::nth_element(bursts.begin(), bursts.begin() + kRounds / 2, bursts.end());
    const float median_ms = bursts[kRounds / 2];
    if (best < 0 || median_ms < best_ms) best_ms = median_ms, best = static_cast<int>(i);
  }
  TS_CHECK(best >= 0, "gemm: none of cuBLASLt's algorithms ran for ", describe(key));
  plan.algo = candidates[static_cast<size_t>(best)];
}

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

}  // namespace

struct CublasLtGemm::State {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  mutable std::mutex mutex;
  std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;
  std::vector<std::unique_ptr<Plan>> capture_plans;  // untimed plans made while a graph was captured
};

CublasLtGemm::CublasLtGemm(int device, cudaStream_t stream) : state_(std::make_unique<State>()) {
  state_->device = device;
  state_->stream = stream;
  CudaDeviceGuard guard(device);
  TS_CUBLAS_CHECK(cublasLtCreate(&state_->handle));
  TS_CUDA_CHECK(cudaMalloc(&state_->workspace, kWorkspaceBytes));
}

CublasLtGemm::~CublasLtGemm() {
  state_->plans.clear();
  if (state_->handle && cublasLtDestroy(state_->handle) != CUBLAS_STATUS_SUCCESS)
    std::fprintf(stderr, "tessera: cublasLtDestroy failed\n");
  if (state_->workspace && cudaFree(state_->workspace) != cudaSuccess)
    std::fprintf(stderr, "tessera: freeing the cuBLASLt workspace failed\n");
}

size_t CublasLtGemm::plan_count() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->plans.size();
}

void CublasLtGemm::run(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) {
  State& st = *state_;
  GemmSize s = check_gemm(a, b, c, args, st.device);
  check_epilogue(c, s, args, st.device);
  data_type(c.dtype());  // throws for a non-floating dtype
  if (s.m == 0 || s.n == 0 || s.batch == 0) return;
  if (c.dtype() == DType::F64 && args.epilogue == GemmEpilogue::DGelu) {
    // As for the forward below: the GEMM, then the GELU gradient by the elementwise kernel.
    GemmArgs linear = args;
    linear.epilogue = GemmEpilogue::None;
    linear.pre_gelu = Tensor();
    Tensor product = Tensor::empty(c.shape(), c.dtype(), c.device());
    run(a, b, product, linear);
    backend_for(c.device()).unary_backward(UnaryOp::Gelu, args.pre_gelu, product, c);
    return;
  }
  if (c.dtype() == DType::F64 && has_gelu(args.epilogue)) {
    // cuBLASLt's f64 GELU epilogue is accurate to ~2e-10 only: GEMM (+ bias) into the
    // pre-activation, then GELU by the elementwise kernel (which may write in place).
    GemmArgs linear = args;
    linear.epilogue = has_bias(args.epilogue) ? GemmEpilogue::Bias : GemmEpilogue::None;
    linear.pre_gelu = Tensor();
    const Tensor& pre = args.pre_gelu.defined() ? args.pre_gelu : c;
    run(a, b, pre, linear);
    backend_for(c.device()).unary(UnaryOp::Gelu, pre, c);
    return;
  }
  if (s.k == 0) {
    // cuBLASLt needs K >= 1: an inner dimension of one over zeros gives the same result.
    GemmArgs zero_k = args;
    zero_k.trans_a = zero_k.trans_b = false;
    run(Tensor::zeros({1, s.m, 1}, c.dtype(), c.device()), Tensor::zeros({1, 1, s.n}, c.dtype(), c.device()), c,
        zero_k);
    return;
  }
  // A batch of a against one shared b (a not transposed) is a single GEMM with batch * M rows.
  bool fold = s.batch > 1 && s.batch_b == 1 && s.batch_a == s.batch && !args.trans_a;
  int64_t m = fold ? s.batch * s.m : s.m, batch = fold ? 1 : s.batch;

  // The pre-GELU matrix needs a leading dimension divisible by 8 (and 16-byte alignment): for
  // other shapes cuBLASLt writes it into a padded buffer, copied out after (or, read by DGelu,
  // copied in before).
  const void* bias = has_bias(args.epilogue) ? args.bias.data_ptr() : nullptr;
  Tensor aux = has_aux(args.epilogue) ? args.pre_gelu : Tensor();
  Tensor staged;
  if (aux.defined() && (s.n % 8 != 0 || alignment_of(aux.data_ptr()) < 16)) {
    Shape padded = aux.shape();
    padded.back() = round_up(s.n, 8);
    staged = Tensor::empty(padded, c.dtype(), c.device());
    if (args.epilogue == GemmEpilogue::DGelu) backend_for(c.device()).copy(aux, staged.narrow(-1, 0, s.n));
  }
  void* aux_ptr = staged.defined() ? staged.data_ptr() : aux.defined() ? aux.data_ptr() : nullptr;

  PlanKey key{c.dtype(),
              m,
              s.n,
              s.k,
              batch,
              args.trans_a,
              args.trans_b,
              s.batch_a == 1 && batch > 1,
              s.batch_b == 1 && batch > 1,
              args.epilogue,
              staged.defined() ? staged.size(-1) : aux.defined() ? s.n : 0,
              alignment_of(a.data_ptr()),
              alignment_of(b.data_ptr()),
              alignment_of(c.data_ptr()),
              bias ? alignment_of(bias) : 0,
              aux_ptr ? alignment_of(aux_ptr) : 0};

  float alpha32 = static_cast<float>(args.alpha), beta32 = static_cast<float>(args.beta);
  bool f64 = c.dtype() == DType::F64;
  const void* alpha = f64 ? static_cast<const void*>(&args.alpha) : &alpha32;
  const void* beta = f64 ? static_cast<const void*>(&args.beta) : &beta32;
  {
    CudaDeviceGuard guard(st.device);
    std::lock_guard<std::mutex> lock(st.mutex);
    auto it = st.plans.find(key);
    Plan* found = it == st.plans.end() ? nullptr : it->second.get();
    if (!found) {
      std::vector<cublasLtMatmulAlgo_t> candidates;
      std::unique_ptr<Plan> plan = make_plan(st.handle, key, bias, aux_ptr, candidates);
      cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
      TS_CUDA_CHECK(cudaStreamIsCapturing(st.stream, &capture));
      if (capture == cudaStreamCaptureStatusActive) {
        // A CUDA graph capture cannot wait for timings: the heuristic's first answer, kept
        // apart so that the first eager call still times the candidates.
        found = st.capture_plans.emplace_back(std::move(plan)).get();
      } else {
        if (candidates.size() > 1)
          choose_fastest(st.handle, *plan, candidates, key, a.data_ptr(), b.data_ptr(), c.device(), st.workspace,
                         st.stream);
        found = st.plans.emplace(key, std::move(plan)).first->second.get();
      }
    }
    Plan& plan = *found;
    if (bias) set_attribute(plan.desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    if (aux_ptr) set_attribute(plan.desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux_ptr);
    matmul(st.handle, plan, plan.algo, Operands{a.data_ptr(), b.data_ptr(), c.data_ptr(), alpha, beta},
           st.workspace, st.stream);
  }
  if (staged.defined() && args.epilogue != GemmEpilogue::DGelu)
    backend_for(c.device()).copy(staged.narrow(-1, 0, s.n), aux);
}

}  // namespace tessera
