#include "launcher/checkpoint_state.h"

#include "core/autograd/grad_mode.h"

namespace tessera {

namespace {

constexpr const char* kMismatchHint =
    " (the model built from this recipe differs from the run that saved the checkpoint; compare the recipe's "
    "model section with the config stored in the checkpoint, or start fresh with train.resume=none)";

void check_parameters_match(const TrainingCheckpoint& checkpoint, const std::string& source,
                            const StateDict& parameters) {
  for (const auto& [name, parameter] : parameters) {
    auto saved = checkpoint.model.find(name);
    TS_CHECK(saved != checkpoint.model.end(), source, ": the checkpoint has no parameter ", name, kMismatchHint);
    TS_CHECK(saved->second.value.shape() == parameter.shape(), source, ": parameter ", name, " has shape ",
             saved->second.value.shape(), " in the checkpoint but ", parameter.shape(), " in the model", kMismatchHint);
  }
  if (checkpoint.model.size() != parameters.size()) {
    for (const auto& [name, saved] : checkpoint.model) {
      bool known = false;
      for (const auto& entry : parameters) known = known || entry.first == name;
      TS_CHECK(known, source, ": the checkpoint holds parameter ", name, " that the model lacks", kMismatchHint);
    }
  }
}

const Tensor& saved_state(const std::map<std::string, Tensor>& tensors, const std::string& name,
                          const std::string& source, const char* what) {
  auto found = tensors.find(name);
  TS_CHECK(found != tensors.end(), source, ": the checkpoint has no optimizer ", what, " for parameter ", name,
           " (/optimizer/", what, "/", name, ")");
  return found->second;
}

void check_optimizer_over(const StateDict& parameters, const AdamW& optimizer) {
  TS_CHECK(parameters.size() == optimizer.parameters().size(), "checkpoint: the optimizer holds ",
           optimizer.parameters().size(), " parameters but the model ", parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    TS_CHECK(optimizer.parameters()[i].is_same(parameters[i].second), "checkpoint: optimizer parameter ", i,
             " is not the model's ", parameters[i].first, "; build the optimizer over model.parameters()");
  }
}

// The model's weights, dropout streams and counters (everything but the optimizer state).
void capture_model_state(const GptModel& model, const StateDict& parameters, TrainingCheckpoint& checkpoint) {
  for (const auto& [name, parameter] : parameters)
    checkpoint.model[name] = {parameter.to(Device::cpu()).to(DType::F32), parameter.dtype()};
  checkpoint.dropout_rng = model.dropout_generator().state();
  if (model.parallelism().tp_size() > 1) checkpoint.model_parallel_rng = model.rng_tracker().fork().state();
}

void restore_rng(const TrainingCheckpoint& checkpoint, const std::string& source, GptModel& model) {
  model.dropout_generator().set_state(checkpoint.dropout_rng);
  if (model.parallelism().tp_size() > 1) {
    TS_CHECK(checkpoint.model_parallel_rng.has_value(), source,
             ": the checkpoint has no model-parallel random stream (/rng model_parallel_seed); it was not saved by a "
             "tensor-parallel run");
    model.rng_tracker().fork().set_state(*checkpoint.model_parallel_rng);
  }
}

void check_parameters_are(const StateDict& parameters, const std::vector<Tensor>& optimized) {
  TS_CHECK(parameters.size() == optimized.size(), "checkpoint: the optimizer holds ", optimized.size(),
           " parameters but the model ", parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    TS_CHECK(optimized[i].is_same(parameters[i].second), "checkpoint: optimizer parameter ", i, " is not the model's ",
             parameters[i].first, "; build the optimizer over model.parameters()");
  }
}

}  // namespace

TrainingCheckpoint capture_training_state(const GptModel& model, const DistributedOptimizer& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml) {
  NoGradGuard no_grad;
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = config_yaml;
  checkpoint.step = step;
  StateDict parameters = model.named_parameters();
  check_parameters_are(parameters, optimizer.parameters());
  capture_model_state(model, parameters, checkpoint);
  for (const ShardPiece& piece : optimizer.pieces()) {
    const std::string& name = parameters[piece.parameter].first;
    auto flat = [&](const Tensor& state) {
      return state.narrow(0, piece.shard_offset, piece.numel).to(Device::cpu()).clone();
    };
    checkpoint.optimizer.master[name] = flat(optimizer.master());
    checkpoint.optimizer.exp_avg[name] = flat(optimizer.exp_avg());
    checkpoint.optimizer.exp_avg_sq[name] = flat(optimizer.exp_avg_sq());
  }
  checkpoint.optimizer.steps_taken = optimizer.steps_taken();
  checkpoint.consumed_samples = consumed_samples;
  return checkpoint;
}

void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, GptModel& model,
                            DistributedOptimizer& optimizer) {
  StateDict parameters = model.named_parameters();
  check_parameters_are(parameters, optimizer.parameters());
  load_model_weights(checkpoint, source, model);
  const OptimizerCheckpoint& saved = checkpoint.optimizer;
  const char* layout_hint =
      " (the ZeRO shard layout differs: resume with the data-parallel size and parallel.ddp_bucket_size_mb the "
      "checkpoint was saved with)";
  TS_CHECK(saved.exp_avg.size() == optimizer.pieces().size(), source, ": the checkpoint holds optimizer state for ",
           saved.exp_avg.size(), " parameter pieces but this rank owns ", optimizer.pieces().size(), layout_hint);
  NoGradGuard no_grad;
  for (const ShardPiece& piece : optimizer.pieces()) {
    const std::string& name = parameters[piece.parameter].first;
    auto load = [&](const std::map<std::string, Tensor>& tensors, const char* what, const Tensor& into) {
      const Tensor& value = saved_state(tensors, name, source, what);
      TS_CHECK(value.numel() == piece.numel, source, ": the saved ", what, " of ", name, " has ", value.numel(),
               " elements but this rank owns ", piece.numel, layout_hint);
      into.narrow(0, piece.shard_offset, piece.numel).copy_(value.reshape({piece.numel}));
    };
    load(saved.master, "master", optimizer.master());
    load(saved.exp_avg, "exp_avg", optimizer.exp_avg());
    load(saved.exp_avg_sq, "exp_avg_sq", optimizer.exp_avg_sq());
  }
  optimizer.set_steps_taken(saved.steps_taken);
  restore_rng(checkpoint, source, model);
}

TrainingCheckpoint capture_training_state(const GptModel& model, const AdamW& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml) {
  NoGradGuard no_grad;
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = config_yaml;
  checkpoint.step = step;
  StateDict parameters = model.named_parameters();
  check_optimizer_over(parameters, optimizer);
  for (size_t i = 0; i < parameters.size(); ++i) {
    const auto& [name, parameter] = parameters[i];
    checkpoint.model[name] = {parameter.to(Device::cpu()).to(DType::F32), parameter.dtype()};
    checkpoint.optimizer.exp_avg[name] = optimizer.exp_avg(i).to(Device::cpu());
    checkpoint.optimizer.exp_avg_sq[name] = optimizer.exp_avg_sq(i).to(Device::cpu());
    if (optimizer.has_separate_master(i))
      checkpoint.optimizer.master[name] = optimizer.master_weight(i).to(Device::cpu());
  }
  checkpoint.optimizer.steps_taken = optimizer.steps_taken();
  checkpoint.dropout_rng = model.dropout_generator().state();
  if (model.parallelism().tp_size() > 1) checkpoint.model_parallel_rng = model.rng_tracker().fork().state();
  checkpoint.consumed_samples = consumed_samples;
  return checkpoint;
}

void load_model_weights(const TrainingCheckpoint& checkpoint, const std::string& source, Module& model) {
  StateDict parameters = model.named_parameters();
  check_parameters_match(checkpoint, source, parameters);
  NoGradGuard no_grad;
  for (auto& [name, parameter] : parameters) parameter.copy_(checkpoint.model.at(name).value);
}

void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, GptModel& model,
                            AdamW& optimizer) {
  StateDict parameters = model.named_parameters();
  check_optimizer_over(parameters, optimizer);
  load_model_weights(checkpoint, source, model);
  const OptimizerCheckpoint& saved = checkpoint.optimizer;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const std::string& name = parameters[i].first;
    // A run that saved f32 parameters stored no separate master: the parameter is the master.
    auto master = saved.master.find(name);
    const Tensor& master_value = master != saved.master.end() ? master->second : checkpoint.model.at(name).value;
    optimizer.load_state(i, master_value, saved_state(saved.exp_avg, name, source, "exp_avg"),
                         saved_state(saved.exp_avg_sq, name, source, "exp_avg_sq"));
  }
  optimizer.set_steps_taken(saved.steps_taken);
  model.dropout_generator().set_state(checkpoint.dropout_rng);
  if (model.parallelism().tp_size() > 1) {
    TS_CHECK(checkpoint.model_parallel_rng.has_value(), source,
             ": the checkpoint has no model-parallel random stream (/rng model_parallel_seed); it was not saved by a "
             "tensor-parallel run");
    model.rng_tracker().fork().set_state(*checkpoint.model_parallel_rng);
  }
}

}  // namespace tessera
