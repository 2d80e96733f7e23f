// Tensor: a cheap, ref-counted handle to a TensorImpl (shape, strides, offset, dtype, storage
// and autograd state). Copying a Tensor copies the handle, not the data. Views (view, reshape,
// permute, transpose, narrow, expand, unsqueeze, squeeze) share storage with their base and
// are differentiable. Element offsets and strides are counted in elements, not bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace tessera {

class Node;
struct TensorImpl;

class Tensor {
 public:
  using GradReadyHook = std::function<void(const Tensor& parameter)>;

  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories ----
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype = DType::I64, Device device = Device::cpu());
  // Copies host values (row-major) into a new tensor of dtype_of<T>() on `device`.
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t dim) const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  // Pointer to the first element (storage base + offset).
  void* data_ptr() const;
  template <typename T>
  T* data() const;
  TensorImpl* impl() const { return impl_.get(); }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  // ---- host access (copies; any device, any layout) ----
  template <typename T>
  std::vector<T> to_vector() const;
  double item() const;  // a one-element tensor's value as double

  // ---- views (share storage, differentiable) ----
  Tensor view(const Shape& shape) const;     // requires a compatible layout
  Tensor reshape(const Shape& shape) const;  // view when possible, else a copy
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // ---- copies (differentiable) ----
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool requires_grad);
  bool is_leaf() const;
  const Tensor& grad() const;
  // Installs a gradient buffer (e.g. a view into a DDP bucket): later backward passes
  // accumulate into it in place. Must match this tensor's shape.
  void set_grad(const Tensor& grad) const;
  const std::shared_ptr<Node>& grad_fn() const;
  uint32_t output_nr() const;
  Tensor detach() const;  // same storage, no history
  // Rebinds this contiguous tensor to `storage` from element `offset` (which must hold it), in
  // place: shape, autograd state and hooks stay, the old storage is dropped. FSDP makes a unit's
  // parameters views of one flat buffer this way. Views taken earlier keep the old storage.
  void set_storage(std::shared_ptr<Storage> storage, int64_t offset) const;
  // Backpropagates from this tensor. `grad` defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = {}, bool retain_graph = false) const;
  // Fires after a leaf's gradient for this backward pass is fully accumulated.
  void register_grad_ready_hook(GradReadyHook hook) const;

  // ---- in-place (refused on tensors that need grad while grad mode is on) ----
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // same shape (src may broadcast); converts dtype/device
  Tensor& add_(const Tensor& other, double alpha = 1.0);  // this += alpha * other
  Tensor& mul_(double factor);

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Autograd state of one tensor. A non-leaf has grad_fn (the node that made it) and output_nr.
// A leaf that requires grad keeps a weak reference to its AccumulateGrad node: the graph owns
// the node, so the node (and the leaf it holds) dies with the graph.
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;
  std::vector<Tensor::GradReadyHook> grad_ready_hooks;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::F32;
  AutogradMeta autograd;
};

// Creates a tensor over existing storage (no copy, no autograd history).
Tensor make_tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset,
                   DType dtype);

std::ostream& operator<<(std::ostream& os, const Tensor& tensor);  // shape, dtype, device

// ---- templates ----
template <typename T>
T* Tensor::data() const {
  TS_CHECK(dtype() == dtype_of<T>(), "data<", dtype_name(dtype_of<T>()), ">() called on a ",
           dtype_name(dtype()), " tensor");
  return static_cast<T*>(data_ptr());
}

Tensor host_tensor_from_bytes(const void* bytes, const Shape& shape, DType dtype, Device device);

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  TS_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
           values.size(), " values do not fill shape ", shape_str(shape));
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> bytes(values.begin(), values.end());
    return host_tensor_from_bytes(bytes.data(), shape, DType::Bool, device);
  } else {
    return host_tensor_from_bytes(values.data(), shape, dtype_of<T>(), device);
  }
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu()).to(dtype_of<T>()).contiguous();
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}

}  // namespace tessera
