// A cuDNN operation graph built through the backend API (cudnn_graph.h; the C++ frontend is not
// available): tensors named by unique id, matmul / pointwise / reduction / reshape operations,
// finalized once into an execution plan (the first engine config of cuDNN's heuristic that
// finalizes) and then executed any number of times with a variant pack of device pointers.
//
// Tensors are either the caller's (an id the caller picks below kFirstVirtualId, fed at execute),
// virtual (intermediates that never reach memory; ids handed out from kFirstVirtualId), or
// pass-by-value f32 scalars: constants held by the graph, or runtime scalars whose host value
// the caller feeds at execute like a buffer. Host (.cpp) files only.
#pragma once

#include <cudnn_graph.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/shape.h"

namespace tessera::cudnn {

// Owns one cudnnBackendDescriptor_t (destroyed with it; destruction never throws).
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type);
  ~Descriptor();
  Descriptor(Descriptor&& other) noexcept : desc_(std::exchange(other.desc_, nullptr)) {}
  Descriptor& operator=(Descriptor&& other) noexcept;
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return desc_; }
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count, const void* values);
  void set_int64(cudnnBackendAttributeName_t name, int64_t value);
  void set_int64s(cudnnBackendAttributeName_t name, const std::vector<int64_t>& values);
  void set_data_type(cudnnBackendAttributeName_t name, cudnnDataType_t value);
  void set_descriptor(cudnnBackendAttributeName_t name, const Descriptor& value);
  void finalize();

 private:
  cudnnBackendDescriptor_t desc_ = nullptr;
};

using TensorId = int64_t;

class OperationGraph {
 public:
  static constexpr TensorId kFirstVirtualId = 1000;
  static constexpr TensorId kNone = -1;

  // A tensor the caller feeds at execute (id < kFirstVirtualId, unique in the graph).
  TensorId tensor(TensorId id, cudnnDataType_t type, const Shape& dims, const Shape& strides);
  // An intermediate: packed row-major strides unless `strides` is given.
  TensorId virtual_tensor(cudnnDataType_t type, const Shape& dims, const Shape& strides = {});
  // A pass-by-value f32 scalar [1, 1, 1, 1]: a constant, or (runtime_scalar) fed at execute
  // through a host pointer to its float.
  TensorId constant(float value);
  TensorId runtime_scalar(TensorId id);
  Shape dims(TensorId id) const;

  // c = a b over the last two dims; batch dims of b may divide those of a (grouped heads).
  void matmul(TensorId a, TensorId b, TensorId c);
  // y = mode(x[, b][, t]) computed in `precision`; `axis` for CUDNN_POINTWISE_GEN_INDEX.
  // Binary-select is y = t ? x : b.
  void pointwise(cudnnPointwiseMode_t mode, TensorId x, TensorId y, TensorId b = kNone, TensorId t = kNone,
                 cudnnDataType_t precision = CUDNN_DATA_FLOAT, int64_t axis = -1);
  // y = op(x) over the dims where y has extent 1 (or x's extent is a multiple of y's).
  void reduction(cudnnReduceTensorOp_t op, TensorId x, TensorId y);
  // y views x with other dims/strides (a transpose when the strides are swapped).
  void reshape(TensorId x, TensorId y);

  // Finalizes the graph and the first engine config (heuristic mode A, then fallback) whose
  // plan finalizes. Throws tessera::Error starting with `what` when cuDNN has no engine for it.
  void build(cudnnHandle_t handle, const std::string& what);
  int64_t workspace_size() const { return workspace_size_; }
  // Runs the plan on the handle's stream. `buffers` pairs every caller tensor and runtime
  // scalar with its pointer (device memory; a host float* for a runtime scalar).
  void execute(cudnnHandle_t handle, const std::vector<std::pair<TensorId, void*>>& buffers, void* workspace) const;

 private:
  struct TensorInfo {
    TensorId id;
    Shape dims;
    Descriptor desc;
  };
  TensorId add_tensor(TensorId id, cudnnDataType_t type, const Shape& dims, const Shape& strides, bool is_virtual,
                      bool by_value);
  const Descriptor& desc(TensorId id) const;

  std::vector<TensorInfo> tensors_;
  std::vector<std::pair<TensorId, float>> constants_;
  std::vector<Descriptor> descriptors_;  // operation descriptors (matmul, pointwise, ... configs)
  std::vector<Descriptor> operations_;   // the graph's operations, in order
  TensorId next_virtual_ = kFirstVirtualId;
  std::vector<Descriptor> built_;  // operation graph, heuristic, engine configs, plan
  cudnnBackendDescriptor_t plan_ = nullptr;
  int64_t workspace_size_ = 0;
};

}  // namespace tessera::cudnn
