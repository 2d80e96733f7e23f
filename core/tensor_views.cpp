// Differentiable views: new shape/strides/offset over the same storage. Each records the
// inverse mapping of its gradient (reshape back, inverse permute, pad, sum over broadcast).
#include <algorithm>

#include "core/autograd/node.h"
#include "core/ops/ops.h"
#include "core/tensor.h"

namespace tessera {

namespace {

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  return make_tensor(base.storage(), std::move(shape), std::move(strides), offset, base.dtype());
}

// Replaces one -1 in `shape` by the size that keeps numel; checks the total.
Shape infer_shape(Shape shape, int64_t numel, std::string_view op, const Shape& from) {
  int64_t known = 1;
  int64_t infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      TS_CHECK(infer_at < 0, op, ": only one dimension can be -1, got ", shape);
      infer_at = static_cast<int64_t>(i);
    } else {
      TS_CHECK(shape[i] >= 0, op, ": invalid size ", shape[i], " in shape ", shape);
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    TS_CHECK(known != 0 && numel % known == 0, op, ": cannot reshape ", from, " (", numel,
             " elements) into ", shape);
    shape[static_cast<size_t>(infer_at)] = numel / known;
  }
  TS_CHECK(shape_numel(shape) == numel, op, ": cannot reshape ", from, " (", numel, " elements) into ",
           shape, " (", shape_numel(shape), " elements)");
  return shape;
}

BackwardFn reshape_back(Shape input_shape) {
  return [input_shape](const std::vector<Tensor>& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g[0].reshape(input_shape)};
  };
}

}  // namespace

Tensor Tensor::view(const Shape& new_shape) const {
  Shape shape_out = infer_shape(new_shape, numel(), "view", shape());
  TS_CHECK(is_contiguous(), "view: tensor of shape ", shape(), " with strides ", strides(),
           " is not contiguous; use reshape() (which copies) or contiguous() first");
  Tensor out = make_view(*this, shape_out, contiguous_strides(shape_out), offset());
  return record_op("view", {*this}, out, reshape_back(shape()));
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  return is_contiguous() ? view(new_shape) : contiguous().view(new_shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  TS_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: got ", dims.size(), " dims for a ",
           dim(), "-D tensor of shape ", shape());
  Shape shape_out(dims.size()), strides_out(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = normalize_dim(dims[i], dim(), "permute");
    TS_CHECK(inverse[static_cast<size_t>(d)] < 0, "permute: dim ", d, " repeated in the permutation");
    inverse[static_cast<size_t>(d)] = static_cast<int64_t>(i);
    shape_out[i] = shape()[static_cast<size_t>(d)];
    strides_out[i] = strides()[static_cast<size_t>(d)];
  }
  Tensor out = make_view(*this, shape_out, strides_out, offset());
  return record_op("permute", {*this}, out, [inverse](const std::vector<Tensor>& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g[0].permute(inverse)};
  });
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> dims(static_cast<size_t>(dim()));
  for (size_t i = 0; i < dims.size(); ++i) dims[i] = static_cast<int64_t>(i);
  std::swap(dims[static_cast<size_t>(normalize_dim(dim0, dim(), "transpose"))],
            dims[static_cast<size_t>(normalize_dim(dim1, dim(), "transpose"))]);
  return permute(dims);
}

Tensor Tensor::narrow(int64_t dim_, int64_t start, int64_t length) const {
  int64_t d = normalize_dim(dim_, dim(), "narrow");
  int64_t extent = shape()[static_cast<size_t>(d)];
  TS_CHECK(start >= 0 && length >= 0 && start + length <= extent, "narrow: range [", start, ", ",
           start + length, ") is outside dim ", d, " of size ", extent, " (shape ", shape(), ")");
  Shape shape_out = shape();
  shape_out[static_cast<size_t>(d)] = length;
  Tensor out = make_view(*this, shape_out, strides(), offset() + start * strides()[static_cast<size_t>(d)]);
  Shape input_shape = shape();
  return record_op("narrow", {*this}, out, [input_shape, d, start, length](const std::vector<Tensor>& g,
                                                                           const std::vector<bool>&) {
    Tensor grad = Tensor::zeros(input_shape, g[0].dtype(), g[0].device());
    grad.narrow(d, start, length).copy_(g[0]);
    return std::vector<Tensor>{grad};
  });
}

Tensor Tensor::expand(const Shape& target) const {
  TS_CHECK(target.size() >= shape().size(), "expand: cannot expand shape ", shape(), " to fewer dims ", target);
  size_t lead = target.size() - shape().size();
  Shape shape_out(target.size()), strides_out(target.size());
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      TS_CHECK(target[i] >= 0, "expand: invalid size -1 for new leading dim ", i, " in ", target);
      shape_out[i] = target[i];
      strides_out[i] = 0;
      continue;
    }
    int64_t have = shape()[i - lead];
    int64_t want = target[i] == -1 ? have : target[i];
    TS_CHECK(have == want || have == 1, "expand: cannot expand shape ", shape(), " to ", target,
             " (dim ", i, ": ", have, " -> ", want, ")");
    shape_out[i] = want;
    strides_out[i] = have == want ? strides()[i - lead] : 0;
  }
  if (shape_out == shape()) return *this;
  Tensor out = make_view(*this, shape_out, strides_out, offset());
  Shape input_shape = shape();
  return record_op("expand", {*this}, out, [input_shape](const std::vector<Tensor>& g, const std::vector<bool>&) {
    return std::vector<Tensor>{sum_to(g[0], input_shape)};
  });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim(d, dim() + 1, "unsqueeze");
  Shape shape_out = shape(), strides_out = strides();
  int64_t stride = d < dim() ? strides()[static_cast<size_t>(d)] * shape()[static_cast<size_t>(d)] : 1;
  shape_out.insert(shape_out.begin() + d, 1);
  strides_out.insert(strides_out.begin() + d, stride);
  Tensor out = make_view(*this, shape_out, strides_out, offset());
  return record_op("unsqueeze", {*this}, out, reshape_back(shape()));
}

Tensor Tensor::squeeze(int64_t d) const {
  d = normalize_dim(d, dim(), "squeeze");
  TS_CHECK(shape()[static_cast<size_t>(d)] == 1, "squeeze: dim ", d, " of shape ", shape(), " is not 1");
  Shape shape_out = shape(), strides_out = strides();
  shape_out.erase(shape_out.begin() + d);
  strides_out.erase(strides_out.begin() + d);
  Tensor out = make_view(*this, shape_out, strides_out, offset());
  return record_op("squeeze", {*this}, out, reshape_back(shape()));
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int64_t s = normalize_dim(start_dim, dim(), "flatten");
  int64_t e = normalize_dim(end_dim, dim(), "flatten");
  TS_CHECK(s <= e, "flatten: start_dim ", start_dim, " is after end_dim ", end_dim);
  Shape shape_out(shape().begin(), shape().begin() + s);
  int64_t merged = 1;
  for (int64_t i = s; i <= e; ++i) merged *= shape()[static_cast<size_t>(i)];
  shape_out.push_back(merged);
  shape_out.insert(shape_out.end(), shape().begin() + e + 1, shape().end());
  return reshape(shape_out);
}

}  // namespace tessera
