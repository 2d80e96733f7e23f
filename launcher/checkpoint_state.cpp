#include "launcher/checkpoint_state.h"

#include <map>

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

void load_weights(const TrainingCheckpoint& checkpoint, const std::string& source, StateDict parameters) {
  check_parameters_match(checkpoint, source, parameters);
  NoGradGuard no_grad;
  for (auto& [name, parameter] : parameters) parameter.copy_(checkpoint.model.at(name).value);
}

const Tensor& saved_state(const std::map<std::string, Tensor>& tensors, const std::string& name,
                          const std::string& source, const char* what) {
  auto found = tensors.find(name);
  TS_CHECK(found != tensors.end(), source, ": the checkpoint has no optimizer ", what, " for parameter ", name,
           " (/optimizer/", what, "/", name, ")");
  return found->second;
}

// The model's name of every optimized parameter, in the optimizer's order (the piece's own order
// for AdamW and ZeRO-1/2, unit by unit for FSDP).
std::vector<std::string> names_in_optimizer_order(const StateDict& parameters, const std::vector<Tensor>& optimized) {
  TS_CHECK(parameters.size() == optimized.size(), "checkpoint: the optimizer holds ", optimized.size(),
           " parameters but the model ", parameters.size());
  std::map<const TensorImpl*, std::string> name_of;
  for (const auto& [name, parameter] : parameters) name_of[parameter.impl()] = name;
  std::vector<std::string> names;
  for (size_t i = 0; i < optimized.size(); ++i) {
    auto found = name_of.find(optimized[i].impl());
    TS_CHECK(found != name_of.end(), "checkpoint: optimizer parameter ", i,
             " is not one of the model's parameters; build the optimizer over the model's parameters");
    names.push_back(found->second);
  }
  return names;
}

// AdamW and ZeRO-1/2 index the piece's parameters in the piece's order.
void check_parameters_are(const StateDict& parameters, const std::vector<Tensor>& optimized) {
  TS_CHECK(parameters.size() == optimized.size(), "checkpoint: the optimizer holds ", optimized.size(),
           " parameters but the model ", parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    TS_CHECK(optimized[i].is_same(parameters[i].second), "checkpoint: optimizer parameter ", i, " is not the model's ",
             parameters[i].first, "; build the optimizer over model.parameters()");
  }
}

// The checkpoint must hold the streams of as many chunks as the piece has (checked before the
// weights, whose names would differ too, so the error names the cause).
void check_chunk_count(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model) {
  const size_t saved = checkpoint.chunk_dropout_rngs.size() + 1, chunks = model.chunks().size();
  TS_CHECK(saved == chunks, source, ": the checkpoint holds ", saved,
           " model chunk(s) of a pipeline rank but this rank ", "has ", chunks,
           "; resume with the parallel.virtual_pipeline_model_parallel_size it was saved with");
}

// The weights (f32 on the host) and every chunk's random streams.
void capture_model_state(const ModelPiece& model, const StateDict& parameters, TrainingCheckpoint& checkpoint) {
  for (const auto& [name, parameter] : parameters)
    checkpoint.model[name] = {parameter.to(Device::cpu()).to(DType::F32), parameter.dtype()};
  const std::vector<const GptModel*>& chunks = model.chunks();
  const bool tp = chunks.front()->parallelism().tp_size() > 1;
  checkpoint.dropout_rng = chunks.front()->dropout_generator().state();
  if (tp) checkpoint.model_parallel_rng = chunks.front()->rng_tracker().fork().state();
  for (size_t c = 1; c < chunks.size(); ++c) {
    checkpoint.chunk_dropout_rngs.push_back(chunks[c]->dropout_generator().state());
    if (tp) checkpoint.chunk_model_parallel_rngs.push_back(chunks[c]->rng_tracker().fork().state());
  }
}

void restore_rng(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model) {
  const std::vector<const GptModel*>& chunks = model.chunks();
  for (size_t c = 0; c < chunks.size(); ++c)
    chunks[c]->dropout_generator().set_state(c == 0 ? checkpoint.dropout_rng : checkpoint.chunk_dropout_rngs[c - 1]);
  if (chunks.front()->parallelism().tp_size() == 1) return;
  TS_CHECK(
      checkpoint.model_parallel_rng.has_value() && checkpoint.chunk_model_parallel_rngs.size() + 1 == chunks.size(),
      source,
      ": the checkpoint has no model-parallel random stream (/rng model_parallel_seed); it was not saved by a "
      "tensor-parallel run");
  for (size_t c = 0; c < chunks.size(); ++c) {
    chunks[c]->rng_tracker().fork().set_state(c == 0 ? *checkpoint.model_parallel_rng
                                                     : checkpoint.chunk_model_parallel_rngs[c - 1]);
  }
}

// ZeRO pieces (1/2 and 3 alike): each piece of the flat state, stored flat by parameter name.
void capture_pieces(const std::vector<std::string>& names, const std::vector<ShardPiece>& pieces, const Tensor& master,
                    const Tensor& exp_avg, const Tensor& exp_avg_sq, OptimizerCheckpoint& saved) {
  for (const ShardPiece& piece : pieces) {
    const std::string& name = names[piece.parameter];
    auto flat = [&](const Tensor& state) {
      return state.narrow(0, piece.shard_offset, piece.numel).to(Device::cpu()).clone();
    };
    saved.master[name] = flat(master);
    saved.exp_avg[name] = flat(exp_avg);
    saved.exp_avg_sq[name] = flat(exp_avg_sq);
  }
}

void restore_pieces(const OptimizerCheckpoint& saved, const std::string& source, const std::vector<std::string>& names,
                    const std::vector<ShardPiece>& pieces, const Tensor& master, const Tensor& exp_avg,
                    const Tensor& exp_avg_sq, const char* layout_hint) {
  TS_CHECK(saved.exp_avg.size() == pieces.size(), source, ": the checkpoint holds optimizer state for ",
           saved.exp_avg.size(), " parameter pieces but this rank owns ", pieces.size(), layout_hint);
  NoGradGuard no_grad;
  for (const ShardPiece& piece : pieces) {
    const std::string& name = names[piece.parameter];
    auto load = [&](const std::map<std::string, Tensor>& tensors, const char* what, const Tensor& into) {
      const Tensor& value = saved_state(tensors, name, source, what);
      TS_CHECK(value.numel() == piece.numel, source, ": the saved ", what, " of ", name, " has ", value.numel(),
               " elements but this rank owns ", piece.numel, layout_hint);
      into.narrow(0, piece.shard_offset, piece.numel).copy_(value.reshape({piece.numel}));
    };
    load(saved.master, "master", master);
    load(saved.exp_avg, "exp_avg", exp_avg);
    load(saved.exp_avg_sq, "exp_avg_sq", exp_avg_sq);
  }
}

TrainingCheckpoint start_checkpoint(int64_t step, int64_t consumed_samples, const std::string& config_yaml) {
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = config_yaml;
  checkpoint.step = step;
  checkpoint.consumed_samples = consumed_samples;
  return checkpoint;
}

// Every FSDP unit gathered while alive (collective over dp on both ends).
class GatheredParameters {
 public:
  explicit GatheredParameters(FullyShardedDataParallel& fsdp) : fsdp_(fsdp) { fsdp_.gather_full_parameters(); }
  ~GatheredParameters() { fsdp_.release_full_parameters(); }
  GatheredParameters(const GatheredParameters&) = delete;
  GatheredParameters& operator=(const GatheredParameters&) = delete;

 private:
  FullyShardedDataParallel& fsdp_;
};

}  // namespace

ModelPiece::ModelPiece(std::vector<const GptModel*> chunks) : chunks_(std::move(chunks)) {
  TS_CHECK(!chunks_.empty(), "checkpoint: a model piece needs at least one chunk");
}

StateDict ModelPiece::named_parameters() const {
  StateDict all;
  for (const GptModel* chunk : chunks_) {
    StateDict named = chunk->named_parameters();
    all.insert(all.end(), named.begin(), named.end());
  }
  return all;
}

TrainingCheckpoint capture_training_state(const ModelPiece& model, const AdamW& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml) {
  NoGradGuard no_grad;
  TrainingCheckpoint checkpoint = start_checkpoint(step, consumed_samples, config_yaml);
  StateDict parameters = model.named_parameters();
  check_parameters_are(parameters, optimizer.parameters());
  capture_model_state(model, parameters, checkpoint);
  for (size_t i = 0; i < parameters.size(); ++i) {
    const std::string& name = parameters[i].first;
    checkpoint.optimizer.exp_avg[name] = optimizer.exp_avg(i).to(Device::cpu());
    checkpoint.optimizer.exp_avg_sq[name] = optimizer.exp_avg_sq(i).to(Device::cpu());
    if (optimizer.has_separate_master(i))
      checkpoint.optimizer.master[name] = optimizer.master_weight(i).to(Device::cpu());
  }
  checkpoint.optimizer.steps_taken = optimizer.steps_taken();
  return checkpoint;
}

void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model,
                            AdamW& optimizer) {
  check_chunk_count(checkpoint, source, model);
  StateDict parameters = model.named_parameters();
  check_parameters_are(parameters, optimizer.parameters());
  load_weights(checkpoint, source, parameters);
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
  restore_rng(checkpoint, source, model);
}

TrainingCheckpoint capture_training_state(const ModelPiece& model, const DistributedOptimizer& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml) {
  NoGradGuard no_grad;
  TrainingCheckpoint checkpoint = start_checkpoint(step, consumed_samples, config_yaml);
  StateDict parameters = model.named_parameters();
  check_parameters_are(parameters, optimizer.parameters());
  capture_model_state(model, parameters, checkpoint);
  capture_pieces(names_in_optimizer_order(parameters, optimizer.parameters()), optimizer.pieces(), optimizer.master(),
                 optimizer.exp_avg(), optimizer.exp_avg_sq(), checkpoint.optimizer);
  checkpoint.optimizer.steps_taken = optimizer.steps_taken();
  return checkpoint;
}

void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model,
                            DistributedOptimizer& optimizer) {
  check_chunk_count(checkpoint, source, model);
  StateDict parameters = model.named_parameters();
  check_parameters_are(parameters, optimizer.parameters());
  load_weights(checkpoint, source, parameters);
  restore_pieces(checkpoint.optimizer, source, names_in_optimizer_order(parameters, optimizer.parameters()),
                 optimizer.pieces(), optimizer.master(), optimizer.exp_avg(), optimizer.exp_avg_sq(),
                 " (the ZeRO shard layout differs: resume with the data-parallel size and "
                 "parallel.ddp_bucket_size_mb the checkpoint was saved with)");
  optimizer.set_steps_taken(checkpoint.optimizer.steps_taken);
  restore_rng(checkpoint, source, model);
}

TrainingCheckpoint capture_training_state(const ModelPiece& model, const FsdpOptimizer& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml) {
  NoGradGuard no_grad;
  TrainingCheckpoint checkpoint = start_checkpoint(step, consumed_samples, config_yaml);
  StateDict parameters = model.named_parameters();
  std::vector<std::string> names = names_in_optimizer_order(parameters, optimizer.parameters());
  {
    GatheredParameters gathered(optimizer.fsdp());
    capture_model_state(model, parameters, checkpoint);
    // The gathered buffers are freed below; host f32 parameters would still be views of them.
    for (auto& [name, saved] : checkpoint.model) saved.value = saved.value.clone();
  }
  capture_pieces(names, optimizer.pieces(), optimizer.master(), optimizer.exp_avg(), optimizer.exp_avg_sq(),
                 checkpoint.optimizer);
  checkpoint.optimizer.steps_taken = optimizer.steps_taken();
  return checkpoint;
}

void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model,
                            FsdpOptimizer& optimizer) {
  check_chunk_count(checkpoint, source, model);
  StateDict parameters = model.named_parameters();
  std::vector<std::string> names = names_in_optimizer_order(parameters, optimizer.parameters());
  check_parameters_match(checkpoint, source, parameters);
  NoGradGuard no_grad;
  // Each piece of the saved weights goes into the unit's parameter shard; the padding stays zero.
  for (const ShardPiece& piece : optimizer.pieces()) {
    Tensor saved = checkpoint.model.at(names[piece.parameter]).value.reshape({-1});
    Tensor shard = optimizer.fsdp().parameter_shard(piece.bucket);
    shard.narrow(0, piece.shard_offset - optimizer.unit_offset(piece.bucket), piece.numel)
        .copy_(saved.narrow(0, piece.param_offset, piece.numel));
  }
  restore_pieces(
      checkpoint.optimizer, source, names, optimizer.pieces(), optimizer.master(), optimizer.exp_avg(),
      optimizer.exp_avg_sq(),
      " (the ZeRO-3 shard layout differs: resume with the data-parallel size the checkpoint was saved with)");
  optimizer.set_steps_taken(checkpoint.optimizer.steps_taken);
  restore_rng(checkpoint, source, model);
}

void load_model_weights(const TrainingCheckpoint& checkpoint, const std::string& source, Module& model) {
  load_weights(checkpoint, source, model.named_parameters());
}

}  // namespace tessera
