#include "launcher/checkpoint.h"

#include "core/autograd/grad_mode.h"
#include "launcher/checkpoint_hdf5.h"

namespace tessera {

namespace {

constexpr const char* kFormatName = "tessera-checkpoint";

void write_tensor(Hdf5File& file, const std::string& dataset, const Tensor& value) {
  NoGradGuard no_grad;
  Tensor host = value.to(Device::cpu()).to(DType::F32).contiguous();
  file.write_f32(dataset, host.shape(), host.data<float>());
}

Tensor read_tensor(const Hdf5File& file, const std::string& dataset) {
  return Tensor::from_vector(file.read_f32(dataset), file.dataset_shape(dataset));
}

std::string dataset_path(const std::string& group, const std::string& name) {
  TS_CHECK(!name.empty() && name.find('/') == std::string::npos, "checkpoint: tensor name '", name,
           "' cannot be an HDF5 dataset name (it is empty or holds '/')");
  return group + "/" + name;
}

void write_tensors(Hdf5File& file, const std::string& group, const std::map<std::string, Tensor>& tensors) {
  for (const auto& [name, value] : tensors) write_tensor(file, dataset_path(group, name), value);
}

std::map<std::string, Tensor> read_tensors(const Hdf5File& file, const std::string& group) {
  std::map<std::string, Tensor> tensors;
  if (!file.exists(group)) return tensors;
  for (const std::string& name : file.dataset_names(group)) tensors[name] = read_tensor(file, group + "/" + name);
  return tensors;
}

void check_format(const Hdf5File& file) {
  TS_CHECK(file.has_attribute("/", "format") && file.read_string_attribute("/", "format") == kFormatName, file.path(),
           ": not a Tessera checkpoint (the root attribute 'format' is not '", kFormatName, "')");
  int64_t version = file.read_int_attribute("/", "format_version");
  TS_CHECK(version == kCheckpointFormatVersion, file.path(), ": checkpoint format version ", version,
           " is not the version ", kCheckpointFormatVersion,
           " this build reads; use the Tessera release that wrote it");
}

// Chunk k >= 1's stream `what` as /rng attributes chunk<k>_<what>_seed and _offset.
void write_chunk_rngs(Hdf5File& file, const std::string& what, const std::vector<PhiloxState>& rngs) {
  for (size_t i = 0; i < rngs.size(); ++i) {
    const std::string prefix = "chunk" + std::to_string(i + 1) + "_" + what;
    file.write_uint_attribute("/rng", prefix + "_seed", rngs[i].seed);
    file.write_uint_attribute("/rng", prefix + "_offset", rngs[i].offset);
  }
}

std::vector<PhiloxState> read_chunk_rngs(const Hdf5File& file, const std::string& what) {
  std::vector<PhiloxState> rngs;
  for (size_t k = 1;; ++k) {
    const std::string prefix = "chunk" + std::to_string(k) + "_" + what;
    if (!file.has_attribute("/rng", prefix + "_seed")) return rngs;
    rngs.push_back(
        {file.read_uint_attribute("/rng", prefix + "_seed"), file.read_uint_attribute("/rng", prefix + "_offset")});
  }
}

}  // namespace

void write_checkpoint_file(const std::string& path, const TrainingCheckpoint& checkpoint) {
  Hdf5File file = Hdf5File::create(path);
  file.write_string_attribute("/", "format", kFormatName);
  file.write_int_attribute("/", "format_version", kCheckpointFormatVersion);
  file.write_string_attribute("/", "config", checkpoint.config_yaml);
  for (const auto& [name, parameter] : checkpoint.model) {
    std::string dataset = dataset_path("/model", name);
    write_tensor(file, dataset, parameter.value);
    file.write_string_attribute(dataset, "dtype", std::string(dtype_name(parameter.dtype)));
  }
  file.write_int_attribute("/optimizer", "steps_taken", checkpoint.optimizer.steps_taken);
  write_tensors(file, "/optimizer/exp_avg", checkpoint.optimizer.exp_avg);
  write_tensors(file, "/optimizer/exp_avg_sq", checkpoint.optimizer.exp_avg_sq);
  write_tensors(file, "/optimizer/master", checkpoint.optimizer.master);
  file.write_int_attribute("/scheduler", "step", checkpoint.step);
  file.write_uint_attribute("/rng", "dropout_seed", checkpoint.dropout_rng.seed);
  file.write_uint_attribute("/rng", "dropout_offset", checkpoint.dropout_rng.offset);
  if (checkpoint.model_parallel_rng) {
    file.write_uint_attribute("/rng", "model_parallel_seed", checkpoint.model_parallel_rng->seed);
    file.write_uint_attribute("/rng", "model_parallel_offset", checkpoint.model_parallel_rng->offset);
  }
  write_chunk_rngs(file, "dropout", checkpoint.chunk_dropout_rngs);
  write_chunk_rngs(file, "model_parallel", checkpoint.chunk_model_parallel_rngs);
  file.write_int_attribute("/data", "consumed_samples", checkpoint.consumed_samples);
  file.write_double_attribute("/loss_scaler", "scale", checkpoint.loss_scaler.scale);
  file.write_int_attribute("/loss_scaler", "clean_steps", checkpoint.loss_scaler.clean_steps);
  file.write_int_attribute("/loss_scaler", "skipped_steps", checkpoint.loss_scaler.skipped_steps);
  file.close();
}

TrainingCheckpoint read_checkpoint_file(const std::string& path) {
  Hdf5File file = Hdf5File::open_read_only(path);
  check_format(file);
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = file.read_string_attribute("/", "config");
  TS_CHECK(file.exists("/model"), path, ": the checkpoint has no /model group");
  for (const std::string& name : file.dataset_names("/model")) {
    std::string dataset = "/model/" + name;
    checkpoint.model[name] = {read_tensor(file, dataset),
                              dtype_from_name(file.read_string_attribute(dataset, "dtype"))};
  }
  checkpoint.optimizer.steps_taken = file.read_int_attribute("/optimizer", "steps_taken");
  checkpoint.optimizer.exp_avg = read_tensors(file, "/optimizer/exp_avg");
  checkpoint.optimizer.exp_avg_sq = read_tensors(file, "/optimizer/exp_avg_sq");
  checkpoint.optimizer.master = read_tensors(file, "/optimizer/master");
  checkpoint.step = file.read_int_attribute("/scheduler", "step");
  checkpoint.dropout_rng.seed = file.read_uint_attribute("/rng", "dropout_seed");
  checkpoint.dropout_rng.offset = file.read_uint_attribute("/rng", "dropout_offset");
  if (file.has_attribute("/rng", "model_parallel_seed")) {
    checkpoint.model_parallel_rng = PhiloxState{file.read_uint_attribute("/rng", "model_parallel_seed"),
                                                file.read_uint_attribute("/rng", "model_parallel_offset")};
  }
  checkpoint.chunk_dropout_rngs = read_chunk_rngs(file, "dropout");
  checkpoint.chunk_model_parallel_rngs = read_chunk_rngs(file, "model_parallel");
  checkpoint.consumed_samples = file.read_int_attribute("/data", "consumed_samples");
  checkpoint.loss_scaler.scale = file.read_double_attribute("/loss_scaler", "scale");
  checkpoint.loss_scaler.clean_steps = file.read_int_attribute("/loss_scaler", "clean_steps");
  checkpoint.loss_scaler.skipped_steps = file.read_int_attribute("/loss_scaler", "skipped_steps");
  return checkpoint;
}

}  // namespace tessera
