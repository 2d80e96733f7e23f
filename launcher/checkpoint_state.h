// What one rank of a run checkpoints (ModelPiece: its model chunks; launcher/checkpoint_sharding.h
// captures and restores their pieces), and loading a single-rank checkpoint's weights into a
// model (generate, logits), after checking that the checkpoint holds exactly the model's
// parameters, by name and shape, naming the first one that differs.
#pragma once

#include <string>
#include <vector>

#include "launcher/checkpoint.h"
#include "models/gpt_model.h"

namespace tessera {

// What one rank checkpoints: a whole model (or a tp shard of it), or a pipeline rank's chunks,
// several with an interleaved schedule (vpp > 1). Layer names are global, so the chunks'
// parameters share one checkpoint, chunk after chunk (the order the trainer's optimizer holds
// them in); each chunk keeps its own random streams.
class ModelPiece {
 public:
  ModelPiece(const GptModel& model) : chunks_{&model} {}  // NOLINT(google-explicit-constructor): one chunk
  explicit ModelPiece(std::vector<const GptModel*> chunks);
  const std::vector<const GptModel*>& chunks() const { return chunks_; }
  StateDict named_parameters() const;  // chunk after chunk

 private:
  std::vector<const GptModel*> chunks_;
};

// The model's weights alone (generation, evaluation), from a checkpoint of the single-rank model.
void load_model_weights(const TrainingCheckpoint& checkpoint, const std::string& source, Module& model);

}  // namespace tessera
