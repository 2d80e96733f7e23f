// Distributed checkpoints: every rank writes only the tensor pieces it owns, and a metadata record
// says where each piece of every global tensor lives, so a run of any layout (tp, pp, vpp, dp,
// zero stage, world size) reads exactly the slices its own pieces need.
//
// One checkpoint is a folder of checkpoint.save, named like Megatron's iterations:
//
//   iter_0000010/
//     shard-r{rank}-of-{world}.h5   one per rank (launcher/checkpoint_hdf5.h: checksummed chunks).
//                                   Each piece is a 1-D f32 dataset /<tensor>/<k>; the root
//                                   attribute "pieces" describes them (JSON, as in metadata.json)
//                                   and "rng" holds the rank's dropout streams.
//     metadata.json                 written by rank 0 once every rank's file is complete:
//                                   {"format": "tessera-distributed-checkpoint", "version": 1,
//                                    "step", "consumed_samples", "optimizer_steps_taken",
//                                    "loss_scaler": {scale, clean_steps, skipped_steps},
//                                    "layout": {tp, pp, vpp, dp, cp, zero_stage, world_size},
//                                    "config": the resolved recipe YAML,
//                                    "rng": [{tp_rank, pp_rank, chunk, dropout: [seed, offset],
//                                             model_parallel: [seed, offset] (tp runs)}],
//                                    "tensors": {name: {dtype, shape, vocab_padded, pieces: [
//                                       {file, dataset, offsets, extent, flat_begin, flat_end}]}}}
//     COMMIT                        written last (renamed from COMMIT.tmp): the checkpoint counts
//                                   only with it, so a save interrupted anywhere is ignored.
//
// Global tensors: model/<parameter> (the single-rank model's name and shape, f32 values of the
// run's dtype `dtype`), optimizer/exp_avg/<parameter>, optimizer/exp_avg_sq/<parameter> and, for
// parameters that are not f32, optimizer/master/<parameter> (an f32 parameter is its own master).
// A piece is elements [flat_begin, flat_end) (row-major) of the box `offsets` + `extent` of the
// global tensor: a tensor-parallel shard is one box (two for SwiGLU's fused [gate; up]), a ZeRO
// optimizer slice a flat range of one. vocab_padded tensors (word embeddings, output layer) may
// differ in padded rows between tp sizes: a reader takes the rows both have.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "optim/loss_scaler.h"

namespace tessera {

class Hdf5File;

struct TensorBox {
  Shape offsets;
  Shape extent;
};

// Where one piece of a global tensor is stored (see above); `file` is relative to the folder.
struct PieceRecord {
  std::string file;
  std::string dataset;
  TensorBox box;
  int64_t flat_begin = 0;
  int64_t flat_end = 0;
};

struct GlobalTensor {
  DType dtype = DType::F32;
  Shape shape;
  bool vocab_padded = false;
  std::vector<PieceRecord> pieces;
};

struct RngRecord {
  int tp_rank = 0;
  int pp_rank = 0;
  int chunk = 0;
  PhiloxState dropout;
  std::optional<PhiloxState> model_parallel;
};

struct CheckpointLayout {
  int tp = 1, pp = 1, vpp = 1, dp = 1, cp = 1, zero_stage = 0, world_size = 1;
  bool operator==(const CheckpointLayout&) const = default;
  std::string describe() const;  // "tp 2 x pp 2 (vpp 1) x dp 2, ZeRO-1, 8 ranks"
};

struct CheckpointMetadata {
  int64_t step = 0;
  int64_t consumed_samples = 0;
  int64_t optimizer_steps_taken = 0;
  LossScalerState loss_scaler;
  CheckpointLayout layout;
  std::string config_yaml;
  std::vector<RngRecord> rng;
  std::map<std::string, GlobalTensor> tensors;
};

// One piece as a rank holds it before writing: host f32 values (1-D, flat_end - flat_begin).
struct RankPiece {
  std::string tensor;
  DType dtype = DType::F32;
  Shape global_shape;
  bool vocab_padded = false;
  TensorBox box;
  int64_t flat_begin = 0;
  int64_t flat_end = 0;
  Tensor values;
};

// Everything one rank writes (owned host copies: the run goes on while a thread writes them).
struct RankCheckpoint {
  int rank = 0;
  int world_size = 1;
  std::vector<RankPiece> pieces;
  std::vector<RngRecord> rng;
};

std::string checkpoint_folder_name(int64_t step);       // iter_0000010
std::string rank_file_name(int rank, int world_size);  // shard-r3-of-8.h5

// Writes `checkpoint` as folder/rank_file_name(...) (a .tmp first, fsynced, then renamed).
void write_rank_file(const std::string& folder, const RankCheckpoint& checkpoint);

// Rank 0, once every rank's file is written: collects their piece lists into metadata.json (with
// `metadata`'s scalars), then writes COMMIT; both atomically, the folder fsynced. Throws naming a
// missing or unreadable rank file.
void commit_checkpoint(const std::string& folder, CheckpointMetadata metadata);

struct CheckpointEntry {
  std::string path;
  int64_t step = 0;
  bool committed = false;
};
// The iter_NNNNNNN folders of `directory`, lowest step first; none when it does not exist.
std::vector<CheckpointEntry> list_checkpoint_folders(const std::string& directory);
// Deletes committed checkpoints beyond the newest `keep_last`, and uncommitted folders older than
// the newest committed one (interrupted saves); returns what it removed.
std::vector<std::string> remove_old_checkpoints(const std::string& directory, int64_t keep_last);
// Rank 0 before a save of `step`: an existing folder of that step (an interrupted save, or a
// checkpoint this run replaces) is removed, and the folder created empty.
std::string prepare_checkpoint_folder(const std::string& directory, int64_t step);

// train.resume: "none" -> nothing; "auto" -> the newest committed checkpoint of save_dir (nothing
// when there is none); otherwise a committed checkpoint folder, or a directory whose newest
// committed checkpoint is used (an error when it has none). `warn` hears about uncommitted
// folders newer than the one picked.
using CheckpointWarn = std::function<void(const std::string& message)>;
std::optional<std::string> find_resume_checkpoint(const std::string& resume, const std::string& save_dir,
                                                  const CheckpointWarn& warn);

// True when `path` is a checkpoint folder of this format (it holds metadata.json or COMMIT).
bool is_distributed_checkpoint(const std::string& path);

// Reads a committed checkpoint: its metadata, and any slice of a global tensor from the pieces
// that overlap it (opening only their files). Errors name the file and the tensor.
class CheckpointReader {
 public:
  explicit CheckpointReader(std::string folder);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& folder() const { return folder_; }
  const CheckpointMetadata& metadata() const { return metadata_; }
  bool has(const std::string& tensor) const { return metadata_.tensors.contains(tensor); }
  // Throws naming the tensor when the checkpoint lacks it.
  const GlobalTensor& tensor(const std::string& name) const;

  // Fills out[0 .. flat_end - flat_begin) with elements [flat_begin, flat_end) of `box` of global
  // tensor `name`, whose shape in the reading model is `shape` (it must equal the saved shape;
  // vocab_padded tensors may differ in rows, and rows the checkpoint lacks keep out's values).
  void read(const std::string& name, const Shape& shape, const TensorBox& box, int64_t flat_begin, int64_t flat_end,
            float* out);
  // The whole global tensor (f32, host), e.g. to assemble the single-rank model.
  Tensor read_full(const std::string& name);

 private:
  const Hdf5File& file(const std::string& name);

  std::string folder_;
  CheckpointMetadata metadata_;
  std::string open_name_;  // one file open at a time (HDF5's quiet-errors scopes nest)
  std::unique_ptr<Hdf5File> open_;
};

}  // namespace tessera
