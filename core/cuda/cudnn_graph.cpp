// cuDNN backend-API operation graphs: descriptor plumbing, plan selection and execution.
#include "core/cuda/cudnn_graph.h"

#include <algorithm>
#include <cstdio>

#include "core/cuda/cudnn_check.h"

namespace tessera::cudnn {

// ---- Descriptor ----

Descriptor::Descriptor(cudnnBackendDescriptorType_t type) {
  TS_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &desc_));
}

Descriptor::~Descriptor() {
  if (desc_ != nullptr && cudnnBackendDestroyDescriptor(desc_) != CUDNN_STATUS_SUCCESS) {
    std::fprintf(stderr, "tessera: cudnnBackendDestroyDescriptor failed\n");
  }
}

Descriptor& Descriptor::operator=(Descriptor&& other) noexcept {
  if (this != &other) {
    if (desc_ != nullptr) cudnnBackendDestroyDescriptor(desc_);
    desc_ = std::exchange(other.desc_, nullptr);
  }
  return *this;
}

void Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                     const void* values) {
  TS_CUDNN_CHECK(cudnnBackendSetAttribute(desc_, name, type, count, values));
}

void Descriptor::set_int64(cudnnBackendAttributeName_t name, int64_t value) { set(name, CUDNN_TYPE_INT64, 1, &value); }

void Descriptor::set_int64s(cudnnBackendAttributeName_t name, const std::vector<int64_t>& values) {
  set(name, CUDNN_TYPE_INT64, static_cast<int64_t>(values.size()), values.data());
}

void Descriptor::set_data_type(cudnnBackendAttributeName_t name, cudnnDataType_t value) {
  set(name, CUDNN_TYPE_DATA_TYPE, 1, &value);
}

void Descriptor::set_descriptor(cudnnBackendAttributeName_t name, const Descriptor& value) {
  cudnnBackendDescriptor_t raw = value.get();
  set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
}

void Descriptor::finalize() { TS_CUDNN_CHECK(cudnnBackendFinalize(desc_)); }

// ---- tensors ----

TensorId OperationGraph::add_tensor(TensorId id, cudnnDataType_t type, const Shape& dims, const Shape& strides,
                                    bool is_virtual, bool by_value) {
  TS_CHECK(dims.size() == strides.size(), "cudnn graph: tensor ", id, " has dims ", dims, " but strides ", strides);
  for (const TensorInfo& t : tensors_) TS_CHECK(t.id != id, "cudnn graph: tensor id ", id, " used twice");
  Descriptor desc(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  desc.set_data_type(CUDNN_ATTR_TENSOR_DATA_TYPE, type);
  desc.set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, dims);
  desc.set_int64s(CUDNN_ATTR_TENSOR_STRIDES, strides);
  desc.set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, id);
  desc.set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, 16);
  bool virtual_flag = is_virtual;
  desc.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &virtual_flag);
  if (by_value) {
    bool by_value_flag = true;
    desc.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value_flag);
  }
  desc.finalize();
  tensors_.push_back({id, dims, std::move(desc)});
  return id;
}

TensorId OperationGraph::tensor(TensorId id, cudnnDataType_t type, const Shape& dims, const Shape& strides) {
  TS_CHECK(id >= 0 && id < kFirstVirtualId, "cudnn graph: caller tensor ids must lie in [0, ", kFirstVirtualId,
           "), got ", id);
  return add_tensor(id, type, dims, strides, /*is_virtual=*/false, /*by_value=*/false);
}

TensorId OperationGraph::virtual_tensor(cudnnDataType_t type, const Shape& dims, const Shape& strides) {
  return add_tensor(next_virtual_++, type, dims, strides.empty() ? contiguous_strides(dims) : strides,
                    /*is_virtual=*/true, /*by_value=*/false);
}

TensorId OperationGraph::constant(float value) {
  TensorId id = add_tensor(next_virtual_++, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  constants_.emplace_back(id, value);
  return id;
}

TensorId OperationGraph::runtime_scalar(TensorId id) {
  TS_CHECK(id >= 0 && id < kFirstVirtualId, "cudnn graph: caller tensor ids must lie in [0, ", kFirstVirtualId,
           "), got ", id);
  return add_tensor(id, CUDNN_DATA_FLOAT, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
}

Shape OperationGraph::dims(TensorId id) const {
  for (const TensorInfo& t : tensors_) {
    if (t.id == id) return t.dims;
  }
  TS_CHECK(false, "cudnn graph: no tensor with id ", id);
  return tensors_.front().dims;  // unreachable
}

const Descriptor& OperationGraph::desc(TensorId id) const {
  for (const TensorInfo& t : tensors_) {
    if (t.id == id) return t.desc;
  }
  TS_CHECK(false, "cudnn graph: no tensor with id ", id);
  return tensors_.front().desc;  // unreachable
}

// ---- operations ----

void OperationGraph::matmul(TensorId a, TensorId b, TensorId c) {
  Descriptor config(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  config.set_data_type(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT);
  config.finalize();
  Descriptor op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_ADESC, desc(a));
  op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_BDESC, desc(b));
  op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_CDESC, desc(c));
  op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_DESC, config);
  op.finalize();
  descriptors_.push_back(std::move(config));
  operations_.push_back(std::move(op));
}

void OperationGraph::pointwise(cudnnPointwiseMode_t mode, TensorId x, TensorId y, TensorId b, TensorId t,
                               cudnnDataType_t precision, int64_t axis) {
  Descriptor config(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  config.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  config.set_data_type(CUDNN_ATTR_POINTWISE_MATH_PREC, precision);
  if (axis >= 0) config.set_int64(CUDNN_ATTR_POINTWISE_AXIS, axis);
  config.finalize();
  Descriptor op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, config);
  op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, desc(x));
  if (b != kNone) op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, desc(b));
  if (t != kNone) op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, desc(t));
  op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, desc(y));
  op.finalize();
  descriptors_.push_back(std::move(config));
  operations_.push_back(std::move(op));
}

void OperationGraph::reduction(cudnnReduceTensorOp_t reduce_op, TensorId x, TensorId y) {
  Descriptor config(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  config.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce_op);
  config.set_data_type(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT);
  config.finalize();
  Descriptor op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, desc(x));
  op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, desc(y));
  op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_DESC, config);
  op.finalize();
  descriptors_.push_back(std::move(config));
  operations_.push_back(std::move(op));
}

void OperationGraph::reshape(TensorId x, TensorId y) {
  Descriptor op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  op.set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, desc(x));
  op.set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, desc(y));
  op.finalize();
  operations_.push_back(std::move(op));
}

// ---- plan ----

void OperationGraph::build(cudnnHandle_t handle, const std::string& what) {
  TS_CHECK(plan_ == nullptr, what, ": cudnn graph built twice");
  Descriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  std::vector<cudnnBackendDescriptor_t> ops;
  for (const Descriptor& op : operations_) ops.push_back(op.get());
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()), ops.data());
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  cudnnStatus_t status = cudnnBackendFinalize(graph.get());
  TS_CHECK(status == CUDNN_STATUS_SUCCESS, what,
           ": cuDNN does not support this operation graph: ", detail::cudnn_status_message(status));

  std::string refusals;  // why each candidate failed, for the error message
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    Descriptor heuristic(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heuristic.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
    heuristic.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    status = cudnnBackendFinalize(heuristic.get());
    if (status != CUDNN_STATUS_SUCCESS) {
      refusals += " [heuristic " + std::to_string(mode) + ": " + detail::cudnn_status_message(status) + "]";
      continue;
    }
    int64_t count = 0;
    TS_CUDNN_CHECK(cudnnBackendGetAttribute(heuristic.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
    std::vector<Descriptor> configs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(configs.back().get());
    }
    if (count > 0) {
      TS_CUDNN_CHECK(cudnnBackendGetAttribute(heuristic.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count, raw.data()));
    }
    for (int64_t i = 0; i < count; ++i) {
      Descriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
      plan.set_descriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs[static_cast<size_t>(i)]);
      status = cudnnBackendFinalize(plan.get());
      if (status != CUDNN_STATUS_SUCCESS) {
        refusals += " [config " + std::to_string(i) + ": " + detail::cudnn_status_message(status) + "]";
        continue;
      }
      int64_t returned = 0;
      TS_CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                              &returned, &workspace_size_));
      plan_ = plan.get();
      built_.push_back(std::move(graph));
      built_.push_back(std::move(heuristic));
      for (Descriptor& config : configs) built_.push_back(std::move(config));
      built_.push_back(std::move(plan));
      return;
    }
    if (count == 0) refusals += " [heuristic " + std::to_string(mode) + ": no engine configs]";
  }
  TS_CHECK(false, what, ": cuDNN has no engine for this configuration;", refusals);
}

void OperationGraph::execute(cudnnHandle_t handle, const std::vector<std::pair<TensorId, void*>>& buffers,
                             void* workspace) const {
  TS_CHECK(plan_ != nullptr, "cudnn graph: execute before build");
  std::vector<float> constant_values;
  constant_values.reserve(constants_.size());
  std::vector<int64_t> ids;
  std::vector<void*> pointers;
  for (const auto& [id, pointer] : buffers) {
    ids.push_back(id);
    pointers.push_back(pointer);
  }
  for (const auto& [id, value] : constants_) {
    constant_values.push_back(value);
    ids.push_back(id);
    pointers.push_back(&constant_values.back());
  }
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set_int64s(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, ids);
  pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(pointers.size()),
           pointers.data());
  pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  pack.finalize();
  TS_CUDNN_CHECK(cudnnBackendExecute(handle, plan_, pack.get()));
}

}  // namespace tessera::cudnn
