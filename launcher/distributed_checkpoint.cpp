// Distributed checkpoint folders: rank files, metadata, commit, listing and slice reads
// (see distributed_checkpoint.h).
#include "launcher/distributed_checkpoint.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/check.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_hdf5.h"

namespace tessera {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormatName = "tessera-distributed-checkpoint";
constexpr int64_t kFormatVersion = 1;
constexpr const char* kMetadataFile = "metadata.json";
constexpr const char* kCommitFile = "COMMIT";

json shape_json(const Shape& shape) { return json(std::vector<int64_t>(shape.begin(), shape.end())); }
Shape shape_from(const json& value) {
  std::vector<int64_t> dims = value.get<std::vector<int64_t>>();
  return Shape(dims.begin(), dims.end());
}

json piece_json(const PieceRecord& p) {
  return {{"file", p.file},
          {"dataset", p.dataset},
          {"offsets", shape_json(p.box.offsets)},
          {"extent", shape_json(p.box.extent)},
          {"flat_begin", p.flat_begin},
          {"flat_end", p.flat_end}};
}

PieceRecord piece_from(const json& j) {
  return {j.at("file").get<std::string>(), j.at("dataset").get<std::string>(),
          TensorBox{shape_from(j.at("offsets")), shape_from(j.at("extent"))}, j.at("flat_begin").get<int64_t>(),
          j.at("flat_end").get<int64_t>()};
}

json philox_json(const PhiloxState& s) { return json::array({s.seed, s.offset}); }
PhiloxState philox_from(const json& j) { return {j.at(0).get<uint64_t>(), j.at(1).get<uint64_t>()}; }

json rng_json(const std::vector<RngRecord>& records) {
  json out = json::array();
  for (const RngRecord& r : records) {
    json entry = {{"tp_rank", r.tp_rank}, {"pp_rank", r.pp_rank}, {"chunk", r.chunk}, {"dropout", philox_json(r.dropout)}};
    if (r.model_parallel) entry["model_parallel"] = philox_json(*r.model_parallel);
    out.push_back(entry);
  }
  return out;
}

std::vector<RngRecord> rng_from(const json& j) {
  std::vector<RngRecord> records;
  for (const json& e : j) {
    RngRecord r{e.at("tp_rank").get<int>(), e.at("pp_rank").get<int>(), e.at("chunk").get<int>(),
                philox_from(e.at("dropout")), std::nullopt};
    if (e.contains("model_parallel")) r.model_parallel = philox_from(e.at("model_parallel"));
    records.push_back(r);
  }
  return records;
}

json tensor_json(const GlobalTensor& t) {
  json pieces = json::array();
  for (const PieceRecord& p : t.pieces) pieces.push_back(piece_json(p));
  return {{"dtype", std::string(dtype_name(t.dtype))},
          {"shape", shape_json(t.shape)},
          {"vocab_padded", t.vocab_padded},
          {"pieces", pieces}};
}

GlobalTensor tensor_from(const json& j) {
  GlobalTensor t{dtype_from_name(j.at("dtype").get<std::string>()), shape_from(j.at("shape")),
                 j.at("vocab_padded").get<bool>(), {}};
  for (const json& p : j.at("pieces")) t.pieces.push_back(piece_from(p));
  return t;
}

json metadata_json(const CheckpointMetadata& m) {
  json tensors = json::object();
  for (const auto& [name, t] : m.tensors) tensors[name] = tensor_json(t);
  const CheckpointLayout& l = m.layout;
  return {{"format", kFormatName},
          {"version", kFormatVersion},
          {"step", m.step},
          {"consumed_samples", m.consumed_samples},
          {"optimizer_steps_taken", m.optimizer_steps_taken},
          {"loss_scaler",
           {{"scale", m.loss_scaler.scale},
            {"clean_steps", m.loss_scaler.clean_steps},
            {"skipped_steps", m.loss_scaler.skipped_steps}}},
          {"layout",
           {{"tp", l.tp},
            {"pp", l.pp},
            {"vpp", l.vpp},
            {"dp", l.dp},
            {"cp", l.cp},
            {"zero_stage", l.zero_stage},
            {"world_size", l.world_size}}},
          {"config", m.config_yaml},
          {"rng", rng_json(m.rng)},
          {"tensors", tensors}};
}

CheckpointMetadata metadata_from(const json& j, const std::string& path) {
  TS_CHECK(j.is_object() && j.value("format", "") == kFormatName, path, ": not a Tessera distributed checkpoint ",
           "(its 'format' is not '", kFormatName, "')");
  const int64_t version = j.at("version").get<int64_t>();
  TS_CHECK(version == kFormatVersion, path, ": checkpoint format version ", version, " is not the version ",
           kFormatVersion, " this build reads; use the Tessera release that wrote it");
  CheckpointMetadata m;
  m.step = j.at("step").get<int64_t>();
  m.consumed_samples = j.at("consumed_samples").get<int64_t>();
  m.optimizer_steps_taken = j.at("optimizer_steps_taken").get<int64_t>();
  const json& s = j.at("loss_scaler");
  m.loss_scaler = {s.at("scale").get<double>(), s.at("clean_steps").get<int64_t>(),
                   s.at("skipped_steps").get<int64_t>()};
  const json& l = j.at("layout");
  m.layout = {l.at("tp").get<int>(),         l.at("pp").get<int>(), l.at("vpp").get<int>(),
              l.at("dp").get<int>(),         l.at("cp").get<int>(), l.at("zero_stage").get<int>(),
              l.at("world_size").get<int>()};
  m.config_yaml = j.at("config").get<std::string>();
  m.rng = rng_from(j.at("rng"));
  for (const auto& [name, t] : j.at("tensors").items()) m.tensors[name] = tensor_from(t);
  return m;
}

// Writes `text` to `path` atomically: a .tmp file, fsynced, renamed.
void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    TS_CHECK(out.good(), "checkpoint: cannot write ", temporary);
  }
  sync_to_disk(temporary, false);
  TS_CHECK(::rename(temporary.c_str(), path.c_str()) == 0, "checkpoint: cannot move ", temporary, " to ", path, ": ",
           std::strerror(errno));
}

// Test hook (fault tests only): TESSERA_TEST_KILL_DURING_SAVE="<rank>:<step>" makes that rank
// SIGKILL itself halfway through writing that step's file, as a node lost mid-save would.
bool killed_during_this_save(const std::string& folder, int rank) {
  const char* value = std::getenv("TESSERA_TEST_KILL_DURING_SAVE");
  if (value == nullptr) return false;
  std::string spec(value);
  const size_t colon = spec.find(':');
  if (colon == std::string::npos) return false;
  return std::stoi(spec.substr(0, colon)) == rank &&
         fs::path(folder).filename().string() == checkpoint_folder_name(std::stoll(spec.substr(colon + 1)));
}

const std::regex& folder_pattern() {
  static const std::regex pattern(R"(iter_(\d{7,}))");
  return pattern;
}

// Calls f(global coordinates of the row start, row length) for every row (run along the last dim)
// of the intersection of boxes a and b; returns false when they do not intersect.
template <typename F>
void for_each_row_of_intersection(const TensorBox& a, const TensorBox& b, F&& f) {
  const size_t dims = a.offsets.size();
  Shape lo(dims), hi(dims);
  for (size_t d = 0; d < dims; ++d) {
    lo[d] = std::max(a.offsets[d], b.offsets[d]);
    hi[d] = std::min(a.offsets[d] + a.extent[d], b.offsets[d] + b.extent[d]);
    if (lo[d] >= hi[d]) return;
  }
  Shape at = lo;
  const int64_t length = hi[dims - 1] - lo[dims - 1];
  while (true) {
    f(at, length);
    int64_t d = int64_t(dims) - 2;
    for (; d >= 0; --d) {
      if (++at[size_t(d)] < hi[size_t(d)]) break;
      at[size_t(d)] = lo[size_t(d)];
    }
    if (d < 0) return;
  }
}

// Row-major index of global coordinates `at` inside `box`.
int64_t flat_index(const TensorBox& box, const Shape& at) {
  int64_t index = 0;
  for (size_t d = 0; d < at.size(); ++d) index = index * box.extent[d] + (at[d] - box.offsets[d]);
  return index;
}

bool shapes_fit(const GlobalTensor& saved, const Shape& shape) {
  if (saved.shape == shape) return true;
  if (!saved.vocab_padded || saved.shape.size() != shape.size()) return false;
  for (size_t d = 1; d < shape.size(); ++d)
    if (saved.shape[d] != shape[d]) return false;
  return true;
}

}  // namespace

std::string CheckpointLayout::describe() const {
  return fmt::format("tp {} x pp {}{} x dp {}{}{}, {} rank(s)", tp, pp, vpp > 1 ? fmt::format(" (vpp {})", vpp) : "",
                     dp, cp > 1 ? fmt::format(" x cp {}", cp) : "",
                     zero_stage > 0 ? fmt::format(", ZeRO-{}", zero_stage) : "", world_size);
}

std::string checkpoint_folder_name(int64_t step) { return fmt::format("iter_{:07d}", step); }

std::string rank_file_name(int rank, int world_size) { return fmt::format("shard-r{}-of-{}.h5", rank, world_size); }

void write_rank_file(const std::string& folder, const RankCheckpoint& checkpoint) {
  const std::string name = rank_file_name(checkpoint.rank, checkpoint.world_size);
  const std::string path = (fs::path(folder) / name).string(), temporary = path + ".tmp";
  const bool kill = killed_during_this_save(folder, checkpoint.rank);
  json pieces = json::array();
  {
    Hdf5File file = Hdf5File::create(temporary);
    std::map<std::string, int> count;
    for (size_t i = 0; i < checkpoint.pieces.size(); ++i) {
      if (kill && i == checkpoint.pieces.size() / 2) {
        file.close();
        std::raise(SIGKILL);
      }
      const RankPiece& p = checkpoint.pieces[i];
      TS_CHECK(p.values.dtype() == DType::F32 && p.values.is_contiguous() && p.values.device().is_cpu() &&
                   p.values.numel() == p.flat_end - p.flat_begin,
               "checkpoint: piece of ", p.tensor, " is not a host f32 tensor of its ", p.flat_end - p.flat_begin,
               " elements");
      const std::string dataset = "/" + p.tensor + "/" + std::to_string(count[p.tensor]++);
      file.write_f32(dataset, {p.values.numel()}, p.values.data<float>());
      json record = piece_json({name, dataset, p.box, p.flat_begin, p.flat_end});
      record["tensor"] = p.tensor;
      record["dtype"] = std::string(dtype_name(p.dtype));
      record["shape"] = shape_json(p.global_shape);
      record["vocab_padded"] = p.vocab_padded;
      pieces.push_back(record);
    }
    file.write_string_attribute("/", "format", kFormatName);
    file.write_string_attribute("/", "pieces", pieces.dump());
    file.write_string_attribute("/", "rng", rng_json(checkpoint.rng).dump());
    file.close();
  }
  sync_to_disk(temporary, false);
  TS_CHECK(::rename(temporary.c_str(), path.c_str()) == 0, "checkpoint: cannot move ", temporary, " to ", path, ": ",
           std::strerror(errno));
}

void commit_checkpoint(const std::string& folder, CheckpointMetadata metadata) {
  metadata.tensors.clear();
  metadata.rng.clear();
  for (int rank = 0; rank < metadata.layout.world_size; ++rank) {
    const std::string path = (fs::path(folder) / rank_file_name(rank, metadata.layout.world_size)).string();
    TS_CHECK(fs::exists(path), "checkpoint: ", path, " is missing; rank ", rank, " did not finish its save");
    Hdf5File file = Hdf5File::open_read_only(path);
    for (const json& record : json::parse(file.read_string_attribute("/", "pieces"))) {
      const std::string tensor = record.at("tensor").get<std::string>();
      auto [entry, added] = metadata.tensors.try_emplace(
          tensor, GlobalTensor{dtype_from_name(record.at("dtype").get<std::string>()), shape_from(record.at("shape")),
                               record.at("vocab_padded").get<bool>(), {}});
      TS_CHECK(entry->second.shape == shape_from(record.at("shape")), "checkpoint: ranks disagree on the shape of ",
               tensor, " (", path, ")");
      entry->second.pieces.push_back(piece_from(record));
    }
    std::vector<RngRecord> rng = rng_from(json::parse(file.read_string_attribute("/", "rng")));
    metadata.rng.insert(metadata.rng.end(), rng.begin(), rng.end());
  }
  write_text_atomically((fs::path(folder) / kMetadataFile).string(), metadata_json(metadata).dump(1));
  write_text_atomically((fs::path(folder) / kCommitFile).string(), checkpoint_folder_name(metadata.step) + "\n");
  sync_to_disk(folder, true);
  sync_to_disk(fs::path(folder).parent_path().string(), true);
}

std::vector<CheckpointEntry> list_checkpoint_folders(const std::string& directory) {
  std::vector<CheckpointEntry> found;
  if (directory.empty() || !fs::is_directory(directory)) return found;
  for (const fs::directory_entry& entry : fs::directory_iterator(directory)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, folder_pattern())) continue;
    found.push_back({entry.path().string(), std::stoll(match[1].str()), fs::exists(entry.path() / kCommitFile)});
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return found;
}

std::vector<std::string> remove_old_checkpoints(const std::string& directory, int64_t keep_last) {
  std::vector<CheckpointEntry> folders = list_checkpoint_folders(directory);
  int64_t committed = 0, newest_committed = -1;
  for (const CheckpointEntry& e : folders) {
    if (!e.committed) continue;
    ++committed;
    newest_committed = e.step;
  }
  std::vector<std::string> removed;
  int64_t to_drop = std::max<int64_t>(0, committed - keep_last);
  for (const CheckpointEntry& e : folders) {
    const bool drop = e.committed ? to_drop-- > 0 : e.step < newest_committed;
    if (!drop) continue;
    // COMMIT first: a deletion interrupted half-way leaves an uncommitted folder, never a broken checkpoint.
    std::error_code error;
    fs::remove(fs::path(e.path) / kCommitFile, error);
    fs::remove_all(e.path, error);
    if (!error) removed.push_back(e.path);
  }
  return removed;
}

std::string prepare_checkpoint_folder(const std::string& directory, int64_t step) {
  const fs::path folder = fs::path(directory) / checkpoint_folder_name(step);
  std::error_code error;
  fs::remove(folder / kCommitFile, error);
  fs::remove_all(folder, error);
  TS_CHECK(!error, "checkpoint: cannot clear ", folder.string(), ": ", error.message());
  fs::create_directories(folder, error);
  TS_CHECK(!error, "checkpoint: cannot create ", folder.string(), ": ", error.message());
  return folder.string();
}

bool is_distributed_checkpoint(const std::string& path) {
  return fs::exists(fs::path(path) / kMetadataFile) || fs::exists(fs::path(path) / kCommitFile);
}

std::optional<std::string> find_resume_checkpoint(const std::string& resume, const std::string& save_dir,
                                                  const CheckpointWarn& warn) {
  if (resume == "none") return std::nullopt;
  const std::string directory = resume == "auto" ? save_dir : resume;
  if (resume != "auto") {
    TS_CHECK(fs::is_directory(resume), "train.resume: ", resume,
             " is not a checkpoint folder (iter_NNNNNNN/) or a checkpoint.save directory");
    if (is_distributed_checkpoint(resume)) {
      TS_CHECK(fs::exists(fs::path(resume) / kCommitFile), "train.resume: ", resume,
               " has no COMMIT marker: its save did not finish; resume from an earlier checkpoint");
      return resume;
    }
  }
  std::vector<CheckpointEntry> folders = list_checkpoint_folders(directory);
  for (auto e = folders.rbegin(); e != folders.rend(); ++e) {
    if (e->committed) return e->path;
    warn(fmt::format("{} has no COMMIT marker (a save that did not finish); skipping it", e->path));
  }
  TS_CHECK(resume == "auto", "train.resume: ", resume, " holds no committed checkpoint (iter_NNNNNNN/COMMIT)");
  return std::nullopt;
}

CheckpointReader::CheckpointReader(std::string folder) : folder_(std::move(folder)) {
  const std::string path = (fs::path(folder_) / kMetadataFile).string();
  TS_CHECK(fs::exists(fs::path(folder_) / kCommitFile), folder_,
           " has no COMMIT marker: its save did not finish; resume from an earlier checkpoint");
  std::ifstream in(path);
  TS_CHECK(in.good(), path, " is missing or unreadable; the checkpoint cannot be loaded");
  try {
    metadata_ = metadata_from(json::parse(in), path);
  } catch (const json::exception& e) {
    TS_CHECK(false, path, " is not valid checkpoint metadata (", e.what(), ")");
  }
}

CheckpointReader::~CheckpointReader() = default;

const GlobalTensor& CheckpointReader::tensor(const std::string& name) const {
  auto found = metadata_.tensors.find(name);
  TS_CHECK(found != metadata_.tensors.end(), folder_, "/", kMetadataFile, ": the checkpoint has no tensor ", name,
           " (the model differs from the one saved: resume with the recipe stored in the checkpoint, or start fresh "
           "with train.resume=none)");
  return found->second;
}

const Hdf5File& CheckpointReader::file(const std::string& name) {
  if (open_ && open_name_ == name) return *open_;
  open_.reset();
  const std::string path = (fs::path(folder_) / name).string();
  TS_CHECK(fs::exists(path), "checkpoint: ", path, " is missing (", folder_, "/", kMetadataFile,
           " lists it); the checkpoint is incomplete");
  open_ = Hdf5File::open_read_only_unique(path);
  open_name_ = name;
  return *open_;
}

void CheckpointReader::read(const std::string& name, const Shape& shape, const TensorBox& box, int64_t flat_begin,
                            int64_t flat_end, float* out) {
  const GlobalTensor& saved = tensor(name);
  TS_CHECK(shapes_fit(saved, shape), folder_, "/", kMetadataFile, ": tensor ", name, " has shape ", saved.shape,
           " in the checkpoint but ", shape,
           " in this model; resume with the model the checkpoint was saved with (its recipe is stored in it)");
  TS_CHECK(!shape.empty(), "checkpoint: tensor ", name, " is a scalar; checkpoints hold tensors of rank >= 1");
  // Where the wanted elements lie inside the saved global shape: those must all be found.
  const TensorBox everything{Shape(shape.size(), 0), saved.shape};
  int64_t wanted = 0, found = 0;
  for_each_row_of_intersection(box, everything, [&](const Shape& at, int64_t length) {
    const int64_t begin = flat_index(box, at);
    wanted += std::max<int64_t>(0, std::min(begin + length, flat_end) - std::max(begin, flat_begin));
  });
  for (const PieceRecord& piece : saved.pieces) {
    // The span of the piece's flat range that this box can touch: read only that.
    int64_t lo = piece.flat_end, hi = piece.flat_begin;
    for_each_row_of_intersection(piece.box, box, [&](const Shape& at, int64_t length) {
      const int64_t source = flat_index(piece.box, at), target = flat_index(box, at);
      const int64_t skip = std::max({int64_t(0), piece.flat_begin - source, flat_begin - target});
      const int64_t stop = std::min({length, piece.flat_end - source, flat_end - target});
      if (skip >= stop) return;
      lo = std::min(lo, source + skip);
      hi = std::max(hi, source + stop);
    });
    if (lo >= hi) continue;
    std::vector<float> values;
    try {
      values = file(piece.file).read_f32_range(piece.dataset, lo - piece.flat_begin, hi - lo);
    } catch (const std::exception& e) {
      TS_CHECK(false, "checkpoint: cannot read tensor ", name, " from ", folder_, "/", piece.file, ": ", e.what());
    }
    for_each_row_of_intersection(piece.box, box, [&](const Shape& at, int64_t length) {
      const int64_t source = flat_index(piece.box, at), target = flat_index(box, at);
      const int64_t skip = std::max({int64_t(0), piece.flat_begin - source, flat_begin - target});
      const int64_t stop = std::min({length, piece.flat_end - source, flat_end - target});
      if (skip >= stop) return;
      std::copy_n(values.data() + (source + skip - lo), stop - skip, out + (target + skip - flat_begin));
      found += stop - skip;
    });
  }
  TS_CHECK(found == wanted, folder_, "/", kMetadataFile, ": the pieces of tensor ", name, " cover ", found, " of the ",
           wanted, " elements this rank needs (pieces missing or overlapping); the checkpoint is damaged");
}

Tensor CheckpointReader::read_full(const std::string& name) {
  const GlobalTensor& saved = tensor(name);
  Tensor full = Tensor::zeros(saved.shape, DType::F32);
  read(name, saved.shape, TensorBox{Shape(saved.shape.size(), 0), saved.shape}, 0, full.numel(), full.data<float>());
  return full;
}

}  // namespace tessera
