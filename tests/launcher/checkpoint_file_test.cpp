// Single-rank checkpoint files and directories (what `tessera import` writes and generate/export
// read; training uses launcher/distributed_checkpoint.h): a file holds bit for bit what was
// written, the layout reads with the plain HDF5 C API, damaged files are refused (checksums,
// truncation) and skipped by auto-resume, a failed save leaves the last good checkpoint alone,
// and a model that does not match is refused naming the first parameter that differs.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <tuple>

#include "core/ops/ops.h"
#include "data/data_test_util.h"
#include "launcher/tiny_training_run.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_state.h"
#include "optim/adamw.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::batch_for;
using testing::TemporaryFolder;
using testing::tiny_config;
using testing::TinyRun;

// A run's state in the file's terms (host f32 copies; masters only where separate).
TrainingCheckpoint capture(const TinyRun& run) {
  TrainingCheckpoint c;
  c.config_yaml = "model:\n  preset: llama-tiny\n";
  c.step = run.steps;
  c.consumed_samples = 4 * run.steps;
  const StateDict parameters = run.model->named_parameters();
  for (size_t i = 0; i < parameters.size(); ++i) {
    const auto& [name, p] = parameters[i];
    c.model[name] = {p.to(DType::F32).clone(), p.dtype()};
    c.optimizer.exp_avg[name] = run.optimizer->exp_avg(i).clone();
    c.optimizer.exp_avg_sq[name] = run.optimizer->exp_avg_sq(i).clone();
    if (run.optimizer->has_separate_master(i)) c.optimizer.master[name] = run.optimizer->master_weight(i).clone();
  }
  c.optimizer.steps_taken = run.optimizer->steps_taken();
  c.dropout_rng = run.model->dropout_generator().state();
  return c;
}

void expect_bitwise_equal(const Tensor& a, const Tensor& b, const std::string& what);

// Every tensor and counter of two checkpoints, bit for bit.
void expect_same_checkpoint(const TrainingCheckpoint& a, const TrainingCheckpoint& b) {
  EXPECT_EQ(a.config_yaml, b.config_yaml);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.consumed_samples, b.consumed_samples);
  ASSERT_EQ(a.model.size(), b.model.size());
  for (const auto& [name, saved] : a.model) {
    expect_bitwise_equal(saved.value, b.model.at(name).value, name);
    EXPECT_EQ(saved.dtype, b.model.at(name).dtype) << name;
  }
  for (const auto& [what, x, y] : {std::tuple{"exp_avg", &a.optimizer.exp_avg, &b.optimizer.exp_avg},
                                   std::tuple{"exp_avg_sq", &a.optimizer.exp_avg_sq, &b.optimizer.exp_avg_sq},
                                   std::tuple{"master", &a.optimizer.master, &b.optimizer.master}}) {
    ASSERT_EQ(x->size(), y->size()) << what;
    for (const auto& [name, value] : *x) expect_bitwise_equal(value, y->at(name), std::string(what) + " " + name);
  }
  EXPECT_EQ(a.optimizer.steps_taken, b.optimizer.steps_taken);
  EXPECT_EQ(a.dropout_rng.seed, b.dropout_rng.seed);
  EXPECT_EQ(a.dropout_rng.offset, b.dropout_rng.offset);
}

void expect_bitwise_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], y[i]) << what << " element " << i;
}

std::string expect_throws(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected tessera::Error";
  return "";
}

const CheckpointWarn kNoWarnings = [](const std::string& message) {
  ADD_FAILURE() << "unexpected warning: " << message;
};

TEST(Checkpoint, AFileReadsBackBitForBitWhatWasWritten) {
  TemporaryFolder folder;
  for (DType dtype : {DType::F32, DType::BF16}) {
    TinyRun run(tiny_config(), 1, dtype);
    run.train(3);
    TrainingCheckpoint written = capture(run);
    EXPECT_EQ(written.optimizer.master.empty(), dtype == DType::F32) << "f32 parameters are their own masters";
    write_checkpoint_file(folder.file("state.h5"), written);
    TrainingCheckpoint read = read_checkpoint_file(folder.file("state.h5"));
    expect_same_checkpoint(read, written);
    EXPECT_EQ(read.step, 3);
    EXPECT_EQ(read.consumed_samples, 12);
  }
}

TEST(Checkpoint, LossScalerStateRoundTrips) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(), 1);
  TrainingCheckpoint checkpoint = capture(run);
  checkpoint.loss_scaler = {1536.25, 17, 3};  // not a power of two: the value must survive exactly
  write_checkpoint_file(folder.file("scaler.h5"), checkpoint);
  LossScalerState read = read_checkpoint_file(folder.file("scaler.h5")).loss_scaler;
  EXPECT_EQ(read.scale, 1536.25);
  EXPECT_EQ(read.clean_steps, 17);
  EXPECT_EQ(read.skipped_steps, 3);
  DynamicLossScaler scaler;
  scaler.set_state(read);
  EXPECT_EQ(scaler.scale(), 1536.25);
  EXPECT_EQ(scaler.skipped_steps(), 3);
}

TEST(Checkpoint, LayoutReadsWithThePlainHdf5Api) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(), 3);
  run.train(2);
  write_checkpoint_file(folder.file("state.h5"), capture(run));

  hid_t file = H5Fopen(folder.file("state.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  auto read_int_attribute = [&](const char* object, const char* name, hid_t type, void* value) {
    hid_t attribute = H5Aopen_by_name(file, object, name, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(attribute, 0) << object << " " << name;
    EXPECT_GE(H5Aread(attribute, type, value), 0);
    H5Aclose(attribute);
  };
  int64_t version = 0, step = 0, consumed = 0, steps_taken = 0;
  uint64_t offset = 0;
  read_int_attribute("/", "format_version", H5T_NATIVE_INT64, &version);
  read_int_attribute("/scheduler", "step", H5T_NATIVE_INT64, &step);
  read_int_attribute("/data", "consumed_samples", H5T_NATIVE_INT64, &consumed);
  read_int_attribute("/optimizer", "steps_taken", H5T_NATIVE_INT64, &steps_taken);
  read_int_attribute("/rng", "dropout_offset", H5T_NATIVE_UINT64, &offset);
  EXPECT_EQ(version, kCheckpointFormatVersion);
  EXPECT_EQ(step, 2);
  EXPECT_EQ(consumed, 8);
  EXPECT_EQ(steps_taken, 2);
  EXPECT_EQ(offset, run.model->dropout_generator().state().offset);
  EXPECT_GT(offset, 0u);

  for (const auto& [group, expected] :
       {std::pair<std::string, Tensor>{"/model/", run.model->named_parameters()[1].second},
        std::pair<std::string, Tensor>{"/optimizer/exp_avg_sq/", run.optimizer->exp_avg_sq(1)}}) {
    std::string name = group + run.model->named_parameters()[1].first;
    hid_t dataset = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
    ASSERT_GE(dataset, 0) << name;
    std::vector<float> values(size_t(expected.numel()));
    EXPECT_GE(H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dataset);
    EXPECT_EQ(values, expected.to_vector<float>()) << name;
  }
  EXPECT_EQ(H5Lexists(file, "/optimizer/master", H5P_DEFAULT), 0) << "f32 parameters are their own masters";
  EXPECT_EQ(H5Aexists_by_name(file, "/rng", "model_parallel_seed", H5P_DEFAULT), 0)
      << "only tensor-parallel shards keep a model-parallel stream";
  H5Fclose(file);
}

TEST(Checkpoint, TheModelParallelStreamOfATensorParallelShardRoundTrips) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(), 1);
  TrainingCheckpoint checkpoint = capture(run);
  EXPECT_FALSE(checkpoint.model_parallel_rng.has_value()) << "a single-rank model has no shard stream to keep";
  checkpoint.model_parallel_rng = PhiloxState{4321, 77};
  write_checkpoint_file(folder.file("shard.h5"), checkpoint);
  std::optional<PhiloxState> read = read_checkpoint_file(folder.file("shard.h5")).model_parallel_rng;
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->seed, 4321u);
  EXPECT_EQ(read->offset, 77u);
}

// File offset of the first chunk of `dataset`, found with the plain HDF5 API.
haddr_t first_chunk_address(const std::string& path, const std::string& dataset) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  hsize_t offset[2] = {0, 0}, size = 0;
  unsigned filter_mask = 0;
  haddr_t address = HADDR_UNDEF;
  hid_t space = H5Dget_space(d);
  H5Dget_chunk_info(d, space, 0, offset, &filter_mask, &address, &size);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(file);
  return address;
}

TEST(Checkpoint, AFlippedBitInTheWeightsFailsItsChecksum) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(), 6);
  std::string path = folder.file("state.h5");
  write_checkpoint_file(path, capture(run));
  haddr_t address = first_chunk_address(path, "/model/embedding.word_embeddings.weight");
  ASSERT_NE(address, HADDR_UNDEF);
  std::string bytes = testing::read_file_bytes(path);
  bytes[size_t(address) + 100] ^= 0x10;
  testing::write_file_bytes(path, bytes);
  std::string message = expect_throws([&] { read_checkpoint_file(path); });
  std::printf("  refused: %s\n", message.c_str());
  EXPECT_NE(message.find("embedding.word_embeddings.weight"), std::string::npos) << message;
  EXPECT_NE(message.find(path), std::string::npos) << message;
}

TEST(CheckpointDirectory, AutoResumeSkipsATruncatedLatestCheckpointWithAWarningNamingIt) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(), 7);
  std::string dir = folder.file("ckpt");
  run.train(1);
  save_checkpoint(dir, capture(run), 3, kNoWarnings);
  run.train(1);
  SavedCheckpoint latest = save_checkpoint(dir, capture(run), 3, kNoWarnings);
  EXPECT_EQ(fs::path(latest.path).filename(), "iter_0000002.h5");
  fs::resize_file(latest.path, latest.bytes / 2);

  std::vector<std::string> warnings;
  ::testing::internal::CaptureStderr();
  std::optional<LoadedCheckpoint> loaded =
      load_latest_checkpoint(dir, [&](const std::string& w) { warnings.push_back(w); });
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "") << "HDF5's own error printing must stay off";
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(fs::path(loaded->path).filename(), "iter_0000001.h5");
  EXPECT_EQ(loaded->checkpoint.step, 1);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(latest.path), std::string::npos) << warnings[0];

  // With every checkpoint unreadable auto-resume stops instead of silently starting over.
  fs::resize_file(dir + "/iter_0000001.h5", 100);
  std::string message = expect_throws([&] { load_latest_checkpoint(dir, [](const std::string&) {}); });
  EXPECT_NE(message.find("none of the 2 checkpoint files"), std::string::npos) << message;
}

TEST(CheckpointDirectory, AFailedSaveLeavesTheLastGoodCheckpointAndNoTemporaryFile) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(), 8);
  std::string dir = folder.file("ckpt");
  run.train(1);
  SavedCheckpoint good = save_checkpoint(dir, capture(run), 1, kNoWarnings);
  std::string good_bytes = testing::read_file_bytes(good.path);
  // The rename target of step 2 is a directory: everything is written, then the rename fails.
  fs::create_directories(dir + "/iter_0000002.h5/blocker");
  run.train(1);
  std::string message = expect_throws([&] { save_checkpoint(dir, capture(run), 1, kNoWarnings); });
  EXPECT_NE(message.find("iter_0000002.h5"), std::string::npos) << message;
  EXPECT_EQ(testing::read_file_bytes(good.path), good_bytes) << "keep_last = 1 must not delete it before success";
  EXPECT_FALSE(fs::exists(dir + "/iter_0000002.h5.tmp"));
  EXPECT_EQ(read_checkpoint_file(good.path).step, 1);

  // An unwritable temporary path fails before anything is renamed or deleted.
  fs::remove_all(dir + "/iter_0000002.h5");
  fs::create_directories(dir + "/iter_0000002.h5.tmp/blocker");
  expect_throws([&] { save_checkpoint(dir, capture(run), 1, kNoWarnings); });
  EXPECT_EQ(testing::read_file_bytes(good.path), good_bytes);
  EXPECT_FALSE(fs::exists(dir + "/iter_0000002.h5"));
}

TEST(CheckpointDirectory, KeepsTheLastKeepLastCheckpointsAndNeverDeletesHigherSteps) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(1, 32), 9);
  std::string dir = folder.file("ckpt");
  fs::create_directories(dir);
  testing::write_file_bytes(dir + "/iter_0000099.h5", "another run's (or an unreadable) checkpoint");
  std::vector<std::string> removed;
  for (int i = 0; i < 4; ++i) {
    run.train(1);
    SavedCheckpoint saved = save_checkpoint(dir, capture(run), 2, kNoWarnings);
    removed.insert(removed.end(), saved.removed.begin(), saved.removed.end());
  }
  std::vector<int64_t> steps;
  for (const CheckpointFileEntry& entry : list_checkpoints(dir)) steps.push_back(entry.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{3, 4, 99}));
  EXPECT_EQ(removed, (std::vector<std::string>{dir + "/iter_0000001.h5", dir + "/iter_0000002.h5"}));
}

TEST(CheckpointDirectory, TheLatestOfADirectoryIsItsHighestStep) {
  TemporaryFolder folder;
  TinyRun run(tiny_config(1, 32), 10);
  std::string dir = folder.file("ckpt");
  run.train(1);
  save_checkpoint(dir, capture(run), 3, kNoWarnings);
  run.train(1);
  save_checkpoint(dir, capture(run), 3, kNoWarnings);
  EXPECT_EQ(load_latest_checkpoint(dir, kNoWarnings)->checkpoint.step, 2);
  EXPECT_FALSE(load_latest_checkpoint(folder.file("empty"), kNoWarnings).has_value());
}

TEST(CheckpointState, LoadingWeightsChecksEveryParameterByNameAndShape) {
  TemporaryFolder folder;
  TinyRun saved(tiny_config(2, 64), 11);
  std::string path = folder.file("state.h5");
  write_checkpoint_file(path, capture(saved));
  TrainingCheckpoint checkpoint = read_checkpoint_file(path);

  TinyRun wider(tiny_config(2, 128), 12);
  std::string message = expect_throws([&] { load_model_weights(checkpoint, path, *wider.model); });
  EXPECT_NE(message.find("parameter embedding.word_embeddings.weight has shape [512, 64] in the checkpoint but "
                         "[512, 128] in the model"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(path), std::string::npos) << message;

  TinyRun deeper(tiny_config(3, 64), 13);
  message = expect_throws([&] { load_model_weights(checkpoint, path, *deeper.model); });
  EXPECT_NE(message.find("has no parameter decoder.layers.2.input_layernorm.weight"), std::string::npos) << message;

  TinyRun shallower(tiny_config(1, 64), 14);
  message = expect_throws([&] { load_model_weights(checkpoint, path, *shallower.model); });
  EXPECT_NE(message.find("holds parameter decoder.layers.1."), std::string::npos) << message;

  TinyRun same(tiny_config(2, 64), 15);
  load_model_weights(checkpoint, path, *same.model);
  for (const auto& [name, parameter] : same.model->named_parameters())
    expect_bitwise_equal(parameter, checkpoint.model.at(name).value, name);
}

}  // namespace
}  // namespace tessera
