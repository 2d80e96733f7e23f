// Per-token quantities of a language model's output for post-training: log-probabilities of
// given labels, token entropies, and masked sums and means. Logits [B, T, V] at position t
// score labels[t] (labels already shifted by one, as LmBatch has them). Everything here is
// differentiable with respect to logits / values; masks are data (no gradient).
#pragma once

#include "core/tensor.h"

namespace tessera {

// log p(labels[b, t]) under softmax(logits[b, t]) -> [B, T], in cross_entropy's per-token
// dtype (the negated per-token loss). Positions whose label is ignore_index get 0.
Tensor token_log_probs(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);

// Entropy of softmax(logits) per position, -sum_v p_v log p_v -> [..., ] (the logits' shape
// without the last dim; computed as logsumexp(x) - sum_v p_v x_v, in f32 for 16-bit logits).
Tensor token_entropy(const Tensor& logits);

// sum over the last dim of values * mask: [B, T] -> [B] (sequence log-probabilities of the
// response tokens). mask has values' shape, any floating dtype, 1 = counts.
Tensor masked_sequence_sum(const Tensor& values, const Tensor& mask);

// sum(values * mask) / sum(mask) over all elements -> scalar. Refuses an all-zero mask.
Tensor masked_mean(const Tensor& values, const Tensor& mask);

}  // namespace tessera
