#include "posttrain/log_probs.h"

#include "core/check.h"
#include "core/ops/ops.h"

namespace tessera {

namespace {

bool is_16_bit(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

// The mask as weights in values' dtype, checked against values' shape.
Tensor mask_weights(const char* name, const Tensor& values, const Tensor& mask) {
  TS_CHECK(values.defined() && mask.defined(), name, ": values and mask must be defined");
  TS_CHECK(mask.shape() == values.shape(), name, ": mask shape ", mask.shape(), " differs from values shape ",
           values.shape(), "; pass one mask entry per value");
  return mask.dtype() == values.dtype() ? mask.detach() : mask.detach().to(values.dtype());
}

}  // namespace

Tensor token_log_probs(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  TS_CHECK(logits.defined() && labels.defined(), "token_log_probs: logits and labels must be defined");
  TS_CHECK(logits.dim() == labels.dim() + 1, "token_log_probs: logits ", logits.shape(),
           " must have one more dim (the vocabulary) than labels ", labels.shape());
  CrossEntropyOptions options;
  options.ignore_index = ignore_index;
  options.reduction = LossReduction::None;
  // cross_entropy's per-token loss is -log p(label), 0 where the label is ignored.
  return neg(cross_entropy(logits, labels, options));
}

Tensor token_entropy(const Tensor& logits) {
  TS_CHECK(logits.defined() && logits.dim() >= 1, "token_entropy: logits must have a vocabulary dim");
  Tensor x = is_16_bit(logits.dtype()) ? logits.to(DType::F32) : logits;
  // logsumexp shifted by the (gradient-free) row max: the shift cancels in the gradient.
  Tensor row_max = amax(x, -1, /*keepdim=*/true);
  Tensor logsumexp = add(log(sum(exp(sub(x, row_max)), {-1})), row_max.squeeze(-1));
  return sub(logsumexp, sum(mul(softmax(x), x), {-1}));
}

Tensor masked_sequence_sum(const Tensor& values, const Tensor& mask) {
  Tensor weights = mask_weights("masked_sequence_sum", values, mask);
  TS_CHECK(values.dim() >= 1, "masked_sequence_sum: values must have a sequence dim, got shape ", values.shape());
  return sum(mul(values, weights), {-1});
}

Tensor masked_mean(const Tensor& values, const Tensor& mask) {
  Tensor weights = mask_weights("masked_mean", values, mask);
  Tensor count = sum(weights);
  TS_CHECK(count.item() > 0, "masked_mean: the mask of shape ", mask.shape(),
           " selects no element; the batch needs at least one response token");
  return div(sum(mul(values, weights)), count);
}

}  // namespace tessera
