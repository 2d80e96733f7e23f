// VocabParallelEmbedding and vocab_parallel_cross_entropy (see vocab_parallel.h). Token ids are
// read on the host once per call (as cross_entropy does for its weights) to check their range
// and to find each one's row in this rank's shard; the [tokens, vocabulary] work runs on the
// logits' device through ordinary ops.
#include "parallel/vocab_parallel.h"

#include <algorithm>
#include <limits>
#include <string_view>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/check.h"
#include "core/ops/ops.h"
#include "parallel/communicator.h"
#include "parallel/tp_mappings.h"

namespace tessera {

namespace {

// Where ids fall in the shard [start, start + length): the row within it (0 outside) and
// whether the id is there (1/0), both as floats for device-side masks.
struct ShardedIds {
  std::vector<float> local;
  std::vector<float> in_shard;
};

ShardedIds shard_ids(const std::vector<int64_t>& ids, int64_t start, int64_t length) {
  ShardedIds out{std::vector<float>(ids.size(), 0.0f), std::vector<float>(ids.size(), 0.0f)};
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= start && ids[i] < start + length) {
      out.local[i] = static_cast<float>(ids[i] - start);
      out.in_shard[i] = 1.0f;
    }
  }
  return out;
}

void check_ids(std::string_view op, std::string_view what, const Tensor& ids) {
  TS_CHECK(ids.defined() && (ids.dtype() == DType::I32 || ids.dtype() == DType::I64), op, ": ", what,
           " must be i32 or i64, got ", ids.defined() ? dtype_name(ids.dtype()) : "an undefined tensor");
}

// Float row indices stay exact below 2^24.
constexpr int64_t kMaxVocabulary = int64_t{1} << 24;

// Row i of a [rows, length] one-hot: 1 at column local[i] where in_shard[i], else all zeros.
Tensor one_hot(const Tensor& local, const Tensor& in_shard, int64_t length) {
  Tensor columns = Tensor::arange(length, local.dtype(), local.device()).view({1, length});
  return mul(eq(columns, local), in_shard);
}

// 0 for the real vocabulary's columns of the shard, -inf for the padded ones.
Tensor padding_bias(int64_t start, int64_t length, int64_t vocab_size, DType dtype, Device device) {
  std::vector<double> bias(static_cast<size_t>(length), 0.0);
  for (int64_t j = std::max<int64_t>(vocab_size - start, 0); j < length; ++j)
    bias[static_cast<size_t>(j)] = -std::numeric_limits<double>::infinity();
  return Tensor::from_vector(bias, {1, length}).to(dtype).to(device);
}

}  // namespace

VocabParallelEmbedding::VocabParallelEmbedding(int64_t num_embeddings, int64_t dim, Communicator* tp,
                                               Generator& generator, VocabParallelEmbeddingOptions options)
    : tp_(tp), options_(options), num_embeddings_(num_embeddings) {
  TS_CHECK(num_embeddings > 0 && dim > 0, "VocabParallelEmbedding: sizes must be positive, got ", num_embeddings, "x",
           dim);
  TS_CHECK(num_embeddings <= kMaxVocabulary, "VocabParallelEmbedding: ", num_embeddings,
           " rows exceed the supported 2^24");
  TS_CHECK(tp != nullptr || !options.sequence_parallel,
           "VocabParallelEmbedding: sequence_parallel needs a tensor-parallel group; pass tp or set it to false");
  const int size = tp ? tp->size() : 1;
  TS_CHECK(num_embeddings % size == 0, "VocabParallelEmbedding on group '", tp ? tp->name() : "none", "': ",
           num_embeddings, " rows do not divide by the tensor-parallel size ", size,
           "; pad the vocabulary to a multiple of ", size);
  const int64_t rows = num_embeddings / size;
  vocab_start_ = (tp ? tp->rank() : 0) * rows;
  NoGradGuard no_grad;
  Tensor full = Tensor::empty({num_embeddings, dim}, options.param.dtype, options.param.device);
  normal_(full, generator, 0.0, options.init_std);
  weight_ = register_parameter("weight", tp ? full.narrow(0, vocab_start_, rows).contiguous() : full);
}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  if (tp_ == nullptr) return embedding(weight_, ids);
  check_ids("VocabParallelEmbedding", "ids", ids);
  std::vector<int64_t> host_ids = ids.to_vector<int64_t>();
  for (size_t i = 0; i < host_ids.size(); ++i) {
    TS_CHECK(host_ids[i] >= 0 && host_ids[i] < num_embeddings_, "VocabParallelEmbedding: id ", host_ids[i],
             " at flat position ", i, " is outside the table's ", num_embeddings_, " rows");
  }
  const int64_t rows = weight_.size(0);
  ShardedIds sharded = shard_ids(host_ids, vocab_start_, rows);
  Tensor local = Tensor::from_vector(sharded.local, ids.shape()).to(DType::I64).to(weight_.device());
  Tensor keep = Tensor::from_vector(sharded.in_shard, ids.shape()).to(weight_.dtype()).to(weight_.device());
  // Tokens of other ranks' rows look up row 0 and are zeroed: they add nothing, forward or back.
  Tensor partial = mul(embedding(weight_, local), keep.unsqueeze(-1));
  return options_.sequence_parallel ? reduce_scatter_to_sequence_parallel(partial, *tp_, options_.sequence_dim)
                                    : reduce_from_tensor_parallel(partial, *tp_);
}

Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, int64_t vocab_size, Communicator& tp,
                                    const CrossEntropyOptions& options) {
  constexpr std::string_view op = "vocab_parallel_cross_entropy";
  TS_CHECK(logits.defined() && logits.dim() >= 1 && is_floating(logits.dtype()), op,
           ": logits must be a floating tensor [..., V/tp]");
  check_ids(op, "targets", targets);
  TS_CHECK(logits.device() == tp.device(), op, ": logits are on ", logits.device(), " but group '", tp.name(),
           "' works on ", tp.device());
  Shape expected_targets(logits.shape().begin(), logits.shape().end() - 1);
  TS_CHECK(targets.shape() == expected_targets, op, ": targets ", targets.shape(),
           " must have the logits' shape without the vocab dim: ", expected_targets, " (logits ", logits.shape(), ")");
  TS_CHECK(!options.loss_mask.defined() || options.loss_mask.shape() == targets.shape(), op, ": loss_mask ",
           options.loss_mask.defined() ? options.loss_mask.shape() : Shape{}, " must match targets ", targets.shape());
  const int64_t shard = logits.size(-1), start = tp.rank() * shard, n = targets.numel();
  TS_CHECK(vocab_size > 0 && vocab_size <= shard * tp.size() && shard * tp.size() <= kMaxVocabulary, op,
           ": vocab_size ", vocab_size, " must be in [1, ", shard * tp.size(), "] (", tp.size(), " shards of ", shard,
           " columns, at most 2^24 in all)");

  // Per-token weights, as cross_entropy: the loss mask (or 1) where the target is not ignored.
  const int64_t ignore = options.ignore_index;
  std::vector<int64_t> host_targets = targets.to_vector<int64_t>();
  std::vector<double> weights = options.loss_mask.defined() ? options.loss_mask.to_vector<double>()
                                                            : std::vector<double>(static_cast<size_t>(n), 1.0);
  double counted = 0.0;
  for (size_t i = 0; i < host_targets.size(); ++i) {
    if (host_targets[i] == ignore) {
      weights[i] = 0.0;
      continue;
    }
    TS_CHECK(host_targets[i] >= 0 && host_targets[i] < vocab_size, op, ": target ", host_targets[i],
             " at flat position ", i, " is outside the vocabulary [0, ", vocab_size, ") and is not ignore_index ",
             ignore);
    counted += weights[i];
  }

  const DType compute = logits.dtype() == DType::F64 ? DType::F64 : DType::F32;
  const Device device = logits.device();
  ShardedIds sharded = shard_ids(host_targets, start, shard);
  Tensor local = Tensor::from_vector(sharded.local, {n, 1}).to(compute).to(device);
  Tensor in_shard = Tensor::from_vector(sharded.in_shard, {n, 1}).to(compute).to(device);
  Tensor losses, softmax;
  {
    NoGradGuard no_grad;
    Tensor x = logits.detach().contiguous().view({n, shard}).to(compute);
    Tensor masked = start + shard > vocab_size ? add(x, padding_bias(start, shard, vocab_size, compute, device)) : x;
    Tensor max = amax(masked, -1, /*keepdim=*/true);
    tp.all_reduce(max, ReduceOp::Max);
    Tensor target_logit = sum(mul(x, one_hot(local, in_shard, shard)), {-1}, /*keepdim=*/true);
    tp.all_reduce(target_logit, ReduceOp::Sum);
    Tensor exp_shifted = exp(sub(masked, max));
    Tensor sum_exp = sum(exp_shifted, {-1}, /*keepdim=*/true);
    tp.all_reduce(sum_exp, ReduceOp::Sum);
    losses = add(log(sum_exp), sub(max, target_logit)).view({n});
    softmax = div(exp_shifted, sum_exp);
  }
  auto backward = [softmax, local, in_shard, shape = logits.shape(), dtype = logits.dtype()](
                      const std::vector<Tensor>& g, const std::vector<bool>&) {
    const int64_t rows = softmax.size(0), columns = softmax.size(1);
    Tensor dL_dlogits = mul(sub(softmax, one_hot(local, in_shard, columns)), g[0].reshape({rows, 1}));
    return std::vector<Tensor>{dL_dlogits.to(dtype).view(shape)};
  };
  losses = record_op(std::string(op), {logits}, losses, backward);

  Tensor weighted = mul(losses, Tensor::from_vector(weights, {n}).to(compute).to(device));
  switch (options.reduction) {
    case LossReduction::None: return weighted.view(targets.shape());
    case LossReduction::Sum: return sum(weighted);
    case LossReduction::Mean: break;
  }
  // No token counts (a fully masked batch): the loss is 0 and so are its gradients.
  return scale(sum(weighted), counted > 0.0 ? 1.0 / counted : 0.0);
}

}  // namespace tessera
