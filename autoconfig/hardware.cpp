#include "autoconfig/hardware.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace tessera::autoconfig {

namespace {

// A positive number at `key` of `node`, or a one-line error naming the file and the key.
double positive(const YAML::Node& node, const std::string& key, const std::string& where) {
  const YAML::Node value = node[key];
  TS_CHECK(value && value.IsScalar(), where, ": missing key '", key, "' (a positive number)");
  double number = 0;
  try {
    number = value.as<double>();
  } catch (const YAML::Exception&) {
    TS_CHECK(false, where, ": '", key, "' must be a number, got '", value.Scalar(), "'");
  }
  TS_CHECK(number > 0, where, ": '", key, "' must be positive, got ", number);
  return number;
}

int64_t positive_int(const YAML::Node& node, const std::string& key, const std::string& where) {
  double number = positive(node, key, where);
  TS_CHECK(number == double(int64_t(number)), where, ": '", key, "' must be an integer, got ", number);
  return int64_t(number);
}

YAML::Node sequence(const YAML::Node& root, const std::string& key, const std::string& where) {
  const YAML::Node list = root[key];
  TS_CHECK(list && list.IsSequence() && list.size() > 0, where, ": '", key,
           "' must be a non-empty list (run bench/calibrate_hardware.py on the GPU to measure it)");
  return list;
}

LinkSpec link(const YAML::Node& root, const std::string& key, const std::string& where) {
  const YAML::Node node = root[key];
  TS_CHECK(node && node.IsMap(), where, ": missing section '", key, "' (bandwidth_gbs, latency_us)");
  return {positive(node, "bandwidth_gbs", where + ": " + key), positive(node, "latency_us", where + ": " + key)};
}

}  // namespace

double GpuSpec::usable_bytes() const { return (memory_gib - reserved_gib) * double(int64_t{1} << 30); }

std::string default_hardware_dir() { return TESSERA_AUTOCONFIG_HARDWARE_DIR; }

std::vector<std::string> known_gpus(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

GpuSpec parse_gpu_spec(const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    TS_CHECK(false, origin, ": not valid YAML: ", e.what());
  }
  TS_CHECK(root.IsMap(), origin, ": expected a mapping of keys (name, memory_gib, ...)");
  GpuSpec spec;
  spec.file = origin;
  TS_CHECK(root["name"] && root["name"].IsScalar(), origin, ": missing key 'name'");
  spec.name = root["name"].as<std::string>();
  spec.memory_gib = positive(root, "memory_gib", origin);
  spec.reserved_gib = positive(root, "reserved_gib", origin);
  TS_CHECK(spec.reserved_gib < spec.memory_gib, origin, ": reserved_gib ", spec.reserved_gib,
           " must be below memory_gib ", spec.memory_gib);
  spec.fragmentation = positive(root, "fragmentation", origin);
  spec.peak_bf16_tflops = positive(root, "peak_bf16_tflops", origin);
  spec.hbm_gbs = positive(root, "hbm_gbs", origin);
  spec.kernel_overhead_us = positive(root, "kernel_overhead_us", origin);
  spec.elementwise_passes = positive(root, "elementwise_passes", origin);
  for (const YAML::Node& point : sequence(root, "gemm", origin)) {
    const std::string where = origin + ": gemm entry";
    spec.gemm.push_back({positive_int(point, "m", where), positive_int(point, "n", where),
                         positive_int(point, "k", where), positive(point, "tflops", where)});
  }
  for (const YAML::Node& point : sequence(root, "attention", origin)) {
    const std::string where = origin + ": attention entry";
    spec.attention.push_back({positive_int(point, "batch", where), positive_int(point, "heads", where),
                              positive_int(point, "seq", where), positive_int(point, "head_dim", where),
                              positive(point, "forward_tflops", where), positive(point, "backward_tflops", where)});
  }
  spec.nvlink = link(root, "nvlink", origin);
  spec.network = link(root, "network", origin);
  return spec;
}

GpuSpec load_gpu_spec(const std::string& name, const std::string& dir) {
  const std::filesystem::path file = std::filesystem::path(dir) / (name + ".yaml");
  if (!std::filesystem::exists(file)) {
    std::string known;
    for (const std::string& gpu : known_gpus(dir)) known += (known.empty() ? "" : ", ") + gpu;
    TS_CHECK(false, "unknown --gpu '", name, "'; known: ", known.empty() ? "none" : known, " (tables in ", dir,
             "); pick one of them, or add ", file.string(), " (bench/calibrate_hardware.py writes one)");
  }
  std::ifstream in(file);
  TS_CHECK(in.good(), "cannot read ", file.string());
  std::stringstream text;
  text << in.rdbuf();
  return parse_gpu_spec(text.str(), file.string());
}

}  // namespace tessera::autoconfig
