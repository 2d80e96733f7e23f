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

void load_model_weights(const TrainingCheckpoint& checkpoint, const std::string& source, Module& model) {
  load_weights(checkpoint, source, model.named_parameters());
}

}  // namespace tessera
