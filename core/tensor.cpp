// Tensor metadata, factories, copies, autograd accessors and in-place updates.
// View methods live in tensor_views.cpp.
#include "core/tensor.h"

#include <cstring>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend.h"

namespace tessera {

namespace {

const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  TS_CHECK(impl != nullptr, "operation on an undefined tensor");
  return *impl;
}

void check_inplace_allowed(const Tensor& t, const char* op) {
  TS_CHECK(!(GradMode::is_enabled() && t.requires_grad()), op,
           ": in-place update of a tensor that requires grad ", t,
           " while grad mode is on; do it under NoGradGuard (optimizer steps, init) or detach()");
}

}  // namespace

Tensor make_tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset,
                   DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// ---- factories ----

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) TS_CHECK(s >= 0, "empty: negative dimension in shape ", shape);
  size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return make_tensor(backend_for(device).allocator().allocate(nbytes), shape,
                     contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<int64_t> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[static_cast<size_t>(i)] = i;
  return from_vector(values, {n}).to(dtype).to(device);
}

Tensor host_tensor_from_bytes(const void* bytes, const Shape& shape, DType dtype, Device device) {
  Tensor host = Tensor::empty(shape, dtype, Device::cpu());
  if (host.numel() > 0) std::memcpy(host.data_ptr(), bytes, static_cast<size_t>(host.numel()) * dtype_size(dtype));
  return host.to(device);
}

// ---- metadata ----

const Shape& Tensor::shape() const { return checked(impl_).shape; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::offset() const { return checked(impl_).offset; }
int64_t Tensor::size(int64_t d) const { return shape()[static_cast<size_t>(normalize_dim(d, dim(), "size"))]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_).storage; }

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  const Shape& st = strides();
  if (shape_numel(sh) == 0) return true;  // no element, no layout (as PyTorch)
  int64_t expected = 1;
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 0) return true;
    if (sh[i] != 1 && st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  const TensorImpl& impl = checked(impl_);
  TS_CHECK(!impl.storage->released(), "tensor ", *this,
           " has released storage (a ZeRO-3/FSDP parameter used outside its gathered unit?)");
  return static_cast<char*>(impl.storage->data()) + impl.offset * static_cast<int64_t>(dtype_size(impl.dtype));
}

double Tensor::item() const {
  TS_CHECK(numel() == 1, "item: expected a one-element tensor, got shape ", shape());
  return to_vector<double>()[0];
}

// ---- copies ----

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  backend_for(device()).copy(detach(), out);
  return record_op("clone", {*this}, out, [](const std::vector<Tensor>& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g[0]};
  });
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target, device());
  backend_for(device()).copy(detach(), out);
  DType source = dtype();
  return record_op("to_dtype", {*this}, out, [source](const std::vector<Tensor>& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g[0].to(source)};
  });
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor out = empty(shape(), dtype(), target);
  // Cross-device copies run on the accelerator's backend (it owns the copy engine).
  backend_for(target.is_cpu() ? device() : target).copy(detach(), out);
  Device source = device();
  return record_op("to_device", {*this}, out, [source](const std::vector<Tensor>& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g[0].to(source)};
  });
}

// ---- autograd ----

bool Tensor::requires_grad() const {
  const TensorImpl& impl = checked(impl_);
  return impl.autograd.requires_grad || impl.autograd.grad_fn != nullptr;
}

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  TS_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can change requires_grad; use detach() first");
  TS_CHECK(!requires_grad || is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, got ",
           dtype());
  impl_->autograd.requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const { return checked(impl_).autograd.grad_fn == nullptr; }
const Tensor& Tensor::grad() const { return checked(impl_).autograd.grad; }

void Tensor::set_grad(const Tensor& grad) const {
  TS_CHECK(!grad.defined() || grad.shape() == shape(), "set_grad: gradient shape ", grad.shape(),
           " does not match tensor shape ", shape());
  impl_->autograd.grad = grad;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).autograd.grad_fn; }
uint32_t Tensor::output_nr() const { return checked(impl_).autograd.output_nr; }

void Tensor::set_storage(std::shared_ptr<Storage> storage, int64_t offset) const {
  checked(impl_);
  TensorImpl& impl = *impl_;
  TS_CHECK(storage != nullptr && is_contiguous() && offset >= 0, "set_storage: needs a contiguous tensor, a storage ",
           "and offset >= 0, got ", *this, " at offset ", offset);
  const size_t end = size_t(offset + numel()) * dtype_size(impl.dtype);
  TS_CHECK(storage->device() == device() && end <= storage->nbytes(), "set_storage: ", *this, " at element ", offset,
           " needs ", end, " bytes on ", device().str(), ", the storage has ", storage->nbytes(), " on ",
           storage->device().str());
  impl.storage = std::move(storage);
  impl.offset = offset;
}

Tensor Tensor::detach() const {
  const TensorImpl& impl = checked(impl_);
  return make_tensor(impl.storage, impl.shape, impl.strides, impl.offset, impl.dtype);
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  Tensor seed = grad;
  if (!seed.defined()) {
    TS_CHECK(numel() == 1, "backward: a gradient must be given for a non-scalar tensor of shape ", shape());
    seed = ones(shape(), dtype(), device());
  }
  run_backward({*this}, {seed}, retain_graph);
}

void Tensor::register_grad_ready_hook(GradReadyHook hook) const {
  TS_CHECK(is_leaf() && requires_grad(), "register_grad_ready_hook: only leaf tensors that require grad "
           "(parameters) have grad-ready hooks");
  impl_->autograd.grad_ready_hooks.push_back(std::move(hook));
}

// ---- in-place ----

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::fill_(double value) {
  check_inplace_allowed(*this, "fill_");
  backend_for(device()).fill(*this, value);
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace_allowed(*this, "copy_");
  Tensor source = src.detach().expand(shape());
  backend_for(device().is_cpu() ? source.device() : device()).copy(source, *this);
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace_allowed(*this, "add_");
  TS_CHECK(other.device() == device(), "add_: device mismatch: ", *this, " += ", other);
  backend_for(device()).axpy(alpha, other.detach().expand(shape()).contiguous(), *this);
  return *this;
}

Tensor& Tensor::mul_(double factor) {
  check_inplace_allowed(*this, "mul_");
  if (is_contiguous()) {
    backend_for(device()).affine(*this, factor, 0.0, *this);
  } else {
    Tensor scaled = empty(shape(), dtype(), device());
    backend_for(device()).affine(detach().contiguous(), factor, 0.0, scaled);
    backend_for(device()).copy(scaled, *this);
  }
  return *this;
}

std::ostream& operator<<(std::ostream& os, const Tensor& tensor) {
  if (!tensor.defined()) return os << "Tensor(undefined)";
  return os << "Tensor(" << shape_str(tensor.shape()) << ", " << tensor.dtype() << ", " << tensor.device() << ")";
}

}  // namespace tessera
