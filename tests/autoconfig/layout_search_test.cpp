// The layout search (autoconfig/layout_search.h): the enumeration against a hand count and the
// trainer's rules, the ranking, the table, and the one-line errors for bad input (a GPU count
// with no layout, a model that fits nowhere, an unknown GPU, a broken hardware table). That the
// trainer accepts every proposed layout is checked through its own parser in
// autoconfig_command_test.cpp.
#include "autoconfig/layout_search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "core/check.h"

namespace tessera::autoconfig {
namespace {

GpuSpec h100() { return load_gpu_spec("h100-80gb", default_hardware_dir()); }

Job job_for(const std::string& preset, int gpus, int64_t global_batch, int64_t seq) {
  Job job;
  job.model = transformer_preset(preset);
  job.gpus = gpus;
  job.global_batch_size = global_batch;
  job.seq_length = seq;
  return job;
}

template <typename Call>
std::string error_of(Call call) {
  try {
    call();
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    return message;
  }
  ADD_FAILURE() << "expected an error";
  return "";
}

// GPT-2 (12 heads, 12 layers) on 2 GPUs, global batch 4:
//   tp 1 pp 1 dp 2: micro batch 1, 2 x ZeRO 0-3 x recompute 2            = 16
//   tp 1 pp 2 dp 1: 1F1B with micro batch 1, 2, 4 (3); interleaved vpp 2, 3, 6 need an even
//                   number of micro-batches: micro batch 1, 2 (3 x 2); x recompute 2 = 18
//   tp 2 pp 1 dp 1: micro batch 1, 2, 4 x recompute 2                      = 6
TEST(EnumerateLayouts, HandCountForGpt2OnTwoGpus) {
  EXPECT_EQ(enumerate_layouts(job_for("gpt2-124m", 2, 4, 1024)).size(), 40u);
}

TEST(EnumerateLayouts, EveryLayoutFollowsTheTrainersRules) {
  const Job job = job_for("llama3-8b", 16, 32, 4096);
  const std::vector<Candidate> layouts = enumerate_layouts(job);
  ASSERT_FALSE(layouts.empty());
  for (const Candidate& c : layouts) {
    SCOPED_TRACE(c.describe());
    EXPECT_EQ(c.tp * c.pp * c.dp * c.cp, 16);
    EXPECT_EQ(c.cp, 1);  // the trainer has no context parallelism
    EXPECT_LE(c.tp, job.gpus_per_node);
    EXPECT_EQ(job.model.num_attention_heads % c.tp, 0);
    EXPECT_EQ(job.model.num_query_groups % c.tp, 0);
    EXPECT_EQ(job.model.num_layers % (c.pp * c.vpp), 0);
    EXPECT_EQ(job.global_batch_size % (c.micro_batch_size * c.dp), 0);
    EXPECT_NE(c.recompute, Recompute::Selective);  // the trainer runs none or full
    if (c.pp > 1) {
      EXPECT_LE(c.zero_stage, 1);
    }
    if (c.dp == 1) {
      EXPECT_EQ(c.zero_stage, 0);
    }
    EXPECT_EQ(c.sequence_parallel, c.tp > 1 && c.zero_stage < 2);
    if (c.vpp > 1) {
      EXPECT_GT(c.pp, 1);
      EXPECT_EQ(c.num_microbatches(job) % c.pp, 0);
    }
  }
}

TEST(SearchLayouts, RanksFittingLayoutsFastestFirst) {
  const GpuSpec gpu = h100();
  const Job job = job_for("llama3-8b", 16, 64, 4096);
  const SearchResult result = search_layouts(job, gpu);
  ASSERT_FALSE(result.ranked.empty());
  EXPECT_LT(result.ranked.size(), result.enumerated);  // some layouts of an 8B model do not fit 80 GB
  for (size_t i = 0; i < result.ranked.size(); ++i) {
    EXPECT_LE(result.ranked[i].memory.peak(), gpu.usable_bytes());
    if (i > 0) {
      EXPECT_LE(result.ranked[i - 1].time.step, result.ranked[i].time.step);
    }
  }
  const std::string table = format_table(result, job, gpu, 3);
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 2 + 3);  // title, header, 3 rows
  EXPECT_NE(table.find("fastest predicted step"), std::string::npos) << table;
  EXPECT_NE(table.find("vs #1"), std::string::npos) << table;
}

// 7 GPUs: tp and pp can only be 1 or 7 (no divisor of 8 heads groups or 32 layers) and dp 7 does
// not divide 1024; 5 and 6 fail the same way, 4 and 8 work.
TEST(SearchLayouts, GpuCountWithoutLayoutNamesTheRulesAndNearbyCounts) {
  const std::string message = error_of([] { enumerate_layouts(job_for("llama3-8b", 7, 1024, 4096)); });
  EXPECT_NE(message.find("--gpus 7 has no layout llama3-8b can run"), std::string::npos) << message;
  EXPECT_NE(message.find("use --gpus 4 or 8"), std::string::npos) << message;
}

TEST(SearchLayouts, ModelThatFitsNowhereSaysHowManyGpusWould) {
  const std::string message = error_of([] { search_layouts(job_for("llama3-70b", 1, 8, 4096), h100()); });
  EXPECT_NE(message.find("llama3-70b (pretrain, seq 4096) fits no layout of 1 x h100-80gb"), std::string::npos)
      << message;
  EXPECT_NE(message.find("use --gpus"), std::string::npos) << message;
  EXPECT_NE(message.find("or more"), std::string::npos) << message;
}

TEST(SearchLayouts, SequenceLongerThanTheModelIsRefused) {
  const std::string message = error_of([] { enumerate_layouts(job_for("gpt2-124m", 1, 8, 2048)); });
  EXPECT_NE(message.find("--seq-len 2048 exceeds gpt2-124m's max_position_embeddings 1024"), std::string::npos)
      << message;
}

TEST(Hardware, ShippedTablesLoad) {
  for (const char* name : {"h100-80gb", "h200-141gb", "a100-80gb"}) {
    const GpuSpec gpu = load_gpu_spec(name, default_hardware_dir());
    EXPECT_EQ(gpu.name, name);
    EXPECT_GT(gpu.usable_bytes(), 70.0 * double(int64_t{1} << 30));
  }
}

TEST(Hardware, UnknownGpuListsTheKnownOnes) {
  const std::string message = error_of([] { load_gpu_spec("b200", default_hardware_dir()); });
  EXPECT_NE(message.find("unknown --gpu 'b200'; known: a100-80gb, h100-80gb, h200-141gb"), std::string::npos)
      << message;
  EXPECT_NE(message.find("calibrate_hardware.py"), std::string::npos) << message;
}

TEST(Hardware, MissingKeyIsNamed) {
  std::ifstream in(default_hardware_dir() + "/h100-80gb.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find("hbm_gbs:");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 3, "xyz");
  const std::string message = error_of([&] { parse_gpu_spec(text, "broken.yaml"); });
  EXPECT_NE(message.find("broken.yaml: missing key 'hbm_gbs'"), std::string::npos) << message;
}

TEST(RecipeOverrides, NameTheLayoutKeys) {
  Candidate c;
  c.tp = 2, c.pp = 4, c.vpp = 2, c.dp = 8, c.sequence_parallel = true, c.zero_stage = 1, c.micro_batch_size = 2;
  c.recompute = Recompute::Full;
  const std::vector<std::string> keys = recipe_overrides(c, job_for("llama3-8b", 128, 512, 8192));
  for (const char* expected : {"parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=4",
                               "parallel.virtual_pipeline_model_parallel_size=2", "parallel.sequence_parallel=true",
                               "parallel.zero_stage=1", "model.recompute_granularity=full", "data.seq_length=8192",
                               "train.micro_batch_size=2", "train.global_batch_size=512",
                               "train.cuda_graph=false"}) {  // graphs replay one process's step
    EXPECT_NE(std::find(keys.begin(), keys.end(), expected), keys.end()) << expected;
  }
  const std::vector<std::string> one_gpu = recipe_overrides(Candidate{}, job_for("gpt2-124m", 1, 16, 1024));
  EXPECT_EQ(std::find(one_gpu.begin(), one_gpu.end(), "train.cuda_graph=false"), one_gpu.end())
      << "one GPU keeps the recipe's train.cuda_graph";
}

}  // namespace
}  // namespace tessera::autoconfig
