#include "core/ops/shape_ops.h"

#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/checks.h"

namespace tessera {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  TS_CHECK(!tensors.empty(), "cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  check_defined("cat", first, "tensor 0");
  int64_t d = normalize_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[static_cast<size_t>(d)] = 0;
  std::vector<int64_t> extents;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    check_defined("cat", t, "a tensor");
    check_same_dtype_device("cat", first, t);
    bool compatible = t.dim() == first.dim();
    for (int64_t j = 0; compatible && j < t.dim(); ++j) compatible = j == d || t.size(j) == first.size(j);
    TS_CHECK(compatible, "cat: tensor ", i, " has shape ", t.shape(), " but tensor 0 has shape ", first.shape(),
             "; all dims except ", d, " must match");
    extents.push_back(t.size(d));
    out_shape[static_cast<size_t>(d)] += t.size(d);
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  int64_t start = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    backend_for(out.device()).copy(tensors[i].detach(), out.narrow(d, start, extents[i]));
    start += extents[i];
  }
  return record_op("cat", tensors, out, [d, extents](const std::vector<Tensor>& g, const std::vector<bool>& need) {
    std::vector<Tensor> grads;
    int64_t offset = 0;
    for (size_t i = 0; i < extents.size(); ++i) {
      grads.push_back(need[i] ? g[0].narrow(d, offset, extents[i]) : Tensor());
      offset += extents[i];
    }
    return grads;
  });
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined("split", x, "input");
  int64_t d = normalize_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    TS_CHECK(s >= 0, "split: negative size ", s);
    total += s;
  }
  TS_CHECK(total == x.size(d), "split: sizes sum to ", total, " but dim ", d, " of ", x.shape(), " has ", x.size(d));
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.detach().narrow(d, start, s));
    start += s;
  }
  // One node for all pieces: its backward concatenates their gradients (zeros for unused pieces).
  record_op("split", {x}, pieces, [d](const std::vector<Tensor>& g, const std::vector<bool>&) {
    return std::vector<Tensor>{cat(g, d)};
  });
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  check_defined("chunk", x, "input");
  int64_t d = normalize_dim(dim, x.dim(), "chunk");
  TS_CHECK(chunks > 0 && x.size(d) % chunks == 0, "chunk: dim ", d, " of ", x.shape(),
           " does not split into ", chunks, " equal pieces");
  return split(x, std::vector<int64_t>(static_cast<size_t>(chunks), x.size(d) / chunks), d);
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  TS_CHECK(!tensors.empty(), "stack: needs at least one tensor");
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) expanded.push_back(t.unsqueeze(normalize_dim(dim, t.dim() + 1, "stack")));
  return cat(expanded, dim);
}

}  // namespace tessera
