// The tensor-parallel RNG tracker (see rng_tracker.h).
#include "parallel/rng_tracker.h"

#include "core/check.h"

namespace tessera {

namespace {

constexpr const char* kDefault = "default";

// "a, b, c" of a map's keys.
template <typename Map>
std::string names_of(const Map& map) {
  std::string names;
  for (const auto& entry : map) names += (names.empty() ? "" : ", ") + entry.first;
  return names;
}

}  // namespace

RngTracker::RngTracker(uint64_t seed, int tp_rank) : default_(seed) {
  TS_CHECK(tp_rank >= 0, "RngTracker: tp_rank must be >= 0, got ", tp_rank);
  add(kModelParallel, seed + kModelParallelSeedOffset + static_cast<uint64_t>(tp_rank));
}

void RngTracker::add(const std::string& name, uint64_t seed) {
  TS_CHECK(name != kDefault && !streams_.contains(name), "RngTracker: a stream named '", name,
           "' already exists; pick another name");
  TS_CHECK(seed != default_.seed(), "RngTracker: seed ", seed, " of stream '", name,
           "' is the default stream's; pick another seed");
  for (const auto& [other, generator] : streams_) {
    TS_CHECK(generator.seed() != seed, "RngTracker: seed ", seed, " of stream '", name, "' is already used by '", other,
             "'; pick another seed");
  }
  streams_.emplace(name, Generator(seed));
}

Generator& RngTracker::fork(const std::string& name) {
  auto it = streams_.find(name);
  TS_CHECK(it != streams_.end(), "RngTracker: no stream named '", name, "'; known streams: ", names_of(streams_));
  return it->second;
}

std::map<std::string, PhiloxState> RngTracker::states() const {
  std::map<std::string, PhiloxState> states{{kDefault, default_.state()}};
  for (const auto& [name, generator] : streams_) states.emplace(name, generator.state());
  return states;
}

void RngTracker::set_states(const std::map<std::string, PhiloxState>& states) {
  bool same_names = states.size() == streams_.size() + 1 && states.contains(kDefault);
  for (const auto& [name, state] : streams_) same_names = same_names && states.contains(name);
  TS_CHECK(same_names, "RngTracker: set_states needs exactly the streams ", kDefault, ", ", names_of(streams_),
           "; got ", names_of(states));
  default_.set_state(states.at(kDefault));
  for (auto& [name, generator] : streams_) generator.set_state(states.at(name));
}

}  // namespace tessera
