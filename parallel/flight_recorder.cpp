// Ring buffer of communication records and its JSON dump format (see flight_recorder.h).
#include "parallel/flight_recorder.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"

namespace tessera {

namespace {

using Json = nlohmann::json;

int64_t unix_us_now() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

// Increments the count for `peer` in a {peer, count} list; returns the count before.
int64_t bump(std::vector<std::pair<int, int64_t>>& counts, int peer) {
  for (auto& [p, count] : counts) {
    if (p == peer) return count++;
  }
  counts.emplace_back(peer, 1);
  return 0;
}

Json pairs_to_json(const std::vector<std::pair<int, int64_t>>& counts) {
  Json out = Json::array();
  for (const auto& [peer, count] : counts) out.push_back({{"peer", peer}, {"count", count}});
  return out;
}

Json group_to_json(const GroupRecord& group) {
  return {{"key", group.key()},
          {"name", group.name},
          {"members", group.members},
          {"instance", group.instance},
          {"group_rank", group.group_rank},
          {"collectives", group.collectives},
          {"sends", pairs_to_json(group.sends)},
          {"recvs", pairs_to_json(group.recvs)}};
}

Json record_to_json(const OpRecord& record) {
  return {{"id", record.id},
          {"group", record.group},
          {"kind", record.p2p ? "p2p" : "collective"},
          {"seq", record.seq},
          {"op", record.op},
          {"reduce_op", record.reduce_op},
          {"dtype", record.dtype},
          {"shapes", record.shapes},
          {"peer", record.peer},
          {"tag", record.tag},
          {"state", op_state_name(record.state)},
          {"start_unix_us", record.start_unix_us},
          {"seconds", record.seconds},
          {"error", record.error}};
}

// Reads key `name` of `object`, naming the file and the key when it is missing or mistyped.
template <typename T>
T field(const Json& object, const char* name, const std::filesystem::path& path) {
  TS_CHECK(object.is_object() && object.contains(name), "flight recorder dump ", path.string(), ": missing key '", name,
           "'; is it a file written by tessera's flight recorder?");
  try {
    return object.at(name).get<T>();
  } catch (const Json::exception& error) {
    TS_CHECK(false, "flight recorder dump ", path.string(), ": key '", name, "' has the wrong type (", error.what(),
             ")");
  }
  return T{};  // unreachable
}

std::vector<std::pair<int, int64_t>> pairs_from_json(const Json& array, const std::filesystem::path& path) {
  std::vector<std::pair<int, int64_t>> counts;
  for (const Json& item : array)
    counts.emplace_back(field<int>(item, "peer", path), field<int64_t>(item, "count", path));
  return counts;
}

}  // namespace

std::string_view op_state_name(OpState state) {
  switch (state) {
    case OpState::Started:
      return "started";
    case OpState::Scheduled:
      return "scheduled";
    case OpState::Completed:
      return "completed";
    case OpState::Failed:
      return "failed";
  }
  return "unknown";
}

std::optional<OpState> op_state_from_name(std::string_view name) {
  for (OpState state : {OpState::Started, OpState::Scheduled, OpState::Completed, OpState::Failed}) {
    if (op_state_name(state) == name) return state;
  }
  return std::nullopt;
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::string text = "[";
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(ranks[i]);
  }
  return text + "]";
}

std::string GroupRecord::key() const {
  std::string key = name + ranks_text(members);
  if (instance > 0) {
    key += '#';
    key += std::to_string(instance);
  }
  return key;
}

std::vector<int64_t> OpRecord::numels() const {
  std::vector<int64_t> numels;
  for (const Shape& shape : shapes) numels.push_back(shape_numel(shape));
  return numels;
}

std::string describe_op(const OpRecord& record, bool with_seq) {
  std::ostringstream out;
  out << record.op;
  if (with_seq) out << " #" << record.seq;
  if (record.p2p) out << (record.op == "send" ? " to" : " from") << " group rank " << record.peer;
  std::vector<std::string> details;
  if (record.p2p) details.push_back("tag " + std::to_string(record.tag));
  if (!record.p2p && record.peer >= 0) details.push_back("root " + std::to_string(record.peer));
  if (!record.reduce_op.empty()) details.push_back(record.reduce_op);
  if (!record.dtype.empty()) {
    std::string tensors = record.dtype;
    for (size_t i = 0; i < record.shapes.size(); ++i) {
      tensors += i > 0 ? " -> " : " ";
      tensors += shape_str(record.shapes[i]);
    }
    details.push_back(tensors);
  }
  if (!details.empty()) {
    out << " (";
    for (size_t i = 0; i < details.size(); ++i) out << (i ? ", " : "") << details[i];
    out << ")";
  }
  return out.str();
}

FlightRecorder::FlightRecorder(int global_rank, int world_size, size_t capacity)
    : global_rank_(global_rank), world_size_(world_size) {
  TS_CHECK(world_size >= 1 && global_rank >= 0 && global_rank < world_size, "FlightRecorder: global rank ", global_rank,
           " is outside a world of ", world_size);
  TS_CHECK(capacity >= 1, "FlightRecorder: capacity must be >= 1");
  ring_.resize(capacity);
}

int FlightRecorder::add_group(std::string name, std::vector<int> members, int group_rank) {
  TS_CHECK(group_rank >= 0 && group_rank < static_cast<int>(members.size()) && members[group_rank] == global_rank_,
           "FlightRecorder: group '", name, "' lists members that do not hold global rank ", global_rank_,
           " at group rank ", group_rank);
  std::lock_guard lock(mutex_);
  GroupRecord group{std::move(name), std::move(members), 0, group_rank, 0, {}, {}};
  for (const GroupRecord& other : groups_) {
    if (other.name == group.name && other.members == group.members) ++group.instance;
  }
  groups_.push_back(std::move(group));
  return static_cast<int>(groups_.size()) - 1;
}

uint64_t FlightRecorder::start(int group, OpRecord record) {
  std::lock_guard lock(mutex_);
  TS_CHECK(group >= 0 && group < static_cast<int>(groups_.size()), "FlightRecorder: unknown group index ", group);
  GroupRecord& entry = groups_[group];
  record.group = group;
  if (!record.p2p) {
    record.seq = entry.collectives++;
  } else {
    record.seq = bump(record.op == "send" ? entry.sends : entry.recvs, record.peer);
  }
  record.id = next_id_++;
  record.state = OpState::Started;
  record.start_unix_us = unix_us_now();
  record.started_at = std::chrono::steady_clock::now();
  record.seconds = 0;
  ring_[record.id % ring_.size()] = std::move(record);
  return next_id_ - 1;
}

void FlightRecorder::set_state(uint64_t id, OpState state, std::string error) {
  std::lock_guard lock(mutex_);
  OpRecord& record = ring_[id % ring_.size()];
  if (record.id != id || id >= next_id_) return;  // evicted
  record.state = state;
  if (!in_flight(state)) {
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - record.started_at).count();
  }
  record.error = std::move(error);
}

void FlightRecorder::set_device_pending(uint64_t id, std::function<bool()> finished) {
  std::lock_guard lock(mutex_);
  OpRecord& record = ring_[id % ring_.size()];
  if (record.id != id || id >= next_id_) return;  // evicted
  record.state = OpState::Scheduled;
  device_pending_[id] = std::move(finished);
}

void FlightRecorder::poll_device_completions() {
  std::vector<std::pair<uint64_t, std::function<bool()>>> pending;
  {
    std::lock_guard lock(mutex_);
    pending.assign(device_pending_.begin(), device_pending_.end());
  }
  // The queries run outside the lock (they call into the driver).
  std::vector<uint64_t> finished;
  for (const auto& [id, query] : pending)
    if (query()) finished.push_back(id);
  std::lock_guard lock(mutex_);
  for (uint64_t id : finished) {
    device_pending_.erase(id);
    OpRecord& record = ring_[id % ring_.size()];
    if (record.id != id || record.state != OpState::Scheduled) continue;  // evicted or failed meanwhile
    record.state = OpState::Completed;
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - record.started_at).count();
  }
  // Entries the ring evicted are no longer watched.
  const uint64_t first = next_id_ > ring_.size() ? next_id_ - ring_.size() : 0;
  device_pending_.erase(device_pending_.begin(), device_pending_.lower_bound(first));
}

std::optional<std::pair<OpRecord, GroupRecord>> FlightRecorder::oldest_in_flight() const {
  std::lock_guard lock(mutex_);
  const OpRecord* oldest = nullptr;
  uint64_t first = next_id_ > ring_.size() ? next_id_ - ring_.size() : 0;
  for (uint64_t id = first; id < next_id_; ++id) {
    const OpRecord& record = ring_[id % ring_.size()];
    if (in_flight(record.state)) {
      oldest = &record;
      break;
    }
  }
  if (oldest == nullptr) return std::nullopt;
  return std::make_pair(*oldest, groups_[oldest->group]);
}

FlightDump FlightRecorder::snapshot(std::string reason) const {
  FlightDump dump;
  dump.global_rank = global_rank_;
  dump.world_size = world_size_;
  dump.hostname = host_name();
  dump.pid = static_cast<int64_t>(getpid());
  dump.reason = std::move(reason);
  dump.capacity = static_cast<int64_t>(ring_.size());
  std::lock_guard lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  dump.dump_unix_us = unix_us_now();
  dump.total_records = next_id_;
  dump.groups = groups_;
  uint64_t first = next_id_ > ring_.size() ? next_id_ - ring_.size() : 0;
  for (uint64_t id = first; id < next_id_; ++id) {
    OpRecord record = ring_[id % ring_.size()];
    if (in_flight(record.state)) record.seconds = std::chrono::duration<double>(now - record.started_at).count();
    dump.records.push_back(std::move(record));
  }
  return dump;
}

std::filesystem::path FlightRecorder::dump(const std::filesystem::path& dir, std::string reason) const {
  std::filesystem::path path = dir / flight_dump_file_name(global_rank_);
  write_flight_dump(snapshot(std::move(reason)), path);
  return path;
}

std::string flight_dump_file_name(int global_rank) { return "rank_" + std::to_string(global_rank) + ".json"; }

void write_flight_dump(const FlightDump& dump, const std::filesystem::path& path) {
  Json groups = Json::array();
  for (const GroupRecord& group : dump.groups) groups.push_back(group_to_json(group));
  Json records = Json::array();
  for (const OpRecord& record : dump.records) records.push_back(record_to_json(record));
  Json json = {{"format", "tessera-flight-recorder-1"},
               {"global_rank", dump.global_rank},
               {"world_size", dump.world_size},
               {"hostname", dump.hostname},
               {"pid", dump.pid},
               {"reason", dump.reason},
               {"dump_unix_us", dump.dump_unix_us},
               {"capacity", dump.capacity},
               {"total_records", dump.total_records},
               {"groups", groups},
               {"records", records}};
  std::error_code ignored;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ignored);
  // Written aside and renamed, so a reader never sees half a file.
  std::filesystem::path temporary = path;
  temporary += ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(temporary, std::ios::trunc);
    TS_CHECK(out.good(), "flight recorder: cannot write ", temporary.string(), "; is the folder writable?");
    out << json.dump(1) << '\n';
    out.close();
    TS_CHECK(out.good(), "flight recorder: writing ", temporary.string(), " failed (disk full?)");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  TS_CHECK(!error, "flight recorder: cannot rename ", temporary.string(), " to ", path.string(), ": ", error.message());
}

FlightDump read_flight_dump(const std::filesystem::path& path) {
  std::ifstream in(path);
  TS_CHECK(in.good(), "flight recorder dump ", path.string(), ": cannot open the file");
  Json json;
  try {
    json = Json::parse(in);
  } catch (const Json::exception& error) {
    TS_CHECK(false, "flight recorder dump ", path.string(), ": not valid JSON (", error.what(),
             "); was the rank killed while writing it?");
  }
  std::string format = field<std::string>(json, "format", path);
  TS_CHECK(format == "tessera-flight-recorder-1", "flight recorder dump ", path.string(), ": format '", format,
           "' is not tessera-flight-recorder-1; read it with the tessera version that wrote it");
  FlightDump dump;
  dump.global_rank = field<int>(json, "global_rank", path);
  dump.world_size = field<int>(json, "world_size", path);
  dump.hostname = field<std::string>(json, "hostname", path);
  dump.pid = field<int64_t>(json, "pid", path);
  dump.reason = field<std::string>(json, "reason", path);
  dump.dump_unix_us = field<int64_t>(json, "dump_unix_us", path);
  dump.capacity = field<int64_t>(json, "capacity", path);
  dump.total_records = field<uint64_t>(json, "total_records", path);
  for (const Json& item : field<Json>(json, "groups", path)) {
    GroupRecord group;
    group.name = field<std::string>(item, "name", path);
    group.members = field<std::vector<int>>(item, "members", path);
    group.instance = field<int>(item, "instance", path);
    group.group_rank = field<int>(item, "group_rank", path);
    group.collectives = field<int64_t>(item, "collectives", path);
    group.sends = pairs_from_json(field<Json>(item, "sends", path), path);
    group.recvs = pairs_from_json(field<Json>(item, "recvs", path), path);
    dump.groups.push_back(std::move(group));
  }
  for (const Json& item : field<Json>(json, "records", path)) {
    OpRecord record;
    record.id = field<uint64_t>(item, "id", path);
    record.group = field<int>(item, "group", path);
    TS_CHECK(record.group >= 0 && record.group < static_cast<int>(dump.groups.size()), "flight recorder dump ",
             path.string(), ": record ", record.id, " names group ", record.group, " but the file lists ",
             dump.groups.size(), " groups");
    record.p2p = field<std::string>(item, "kind", path) == "p2p";
    record.seq = field<int64_t>(item, "seq", path);
    record.op = field<std::string>(item, "op", path);
    record.reduce_op = field<std::string>(item, "reduce_op", path);
    record.dtype = field<std::string>(item, "dtype", path);
    record.shapes = field<std::vector<Shape>>(item, "shapes", path);
    record.peer = field<int>(item, "peer", path);
    record.tag = field<int>(item, "tag", path);
    std::string state = field<std::string>(item, "state", path);
    std::optional<OpState> parsed = op_state_from_name(state);
    TS_CHECK(parsed.has_value(), "flight recorder dump ", path.string(), ": record ", record.id, " has state '", state,
             "', not one of started, scheduled, completed, failed");
    record.state = *parsed;
    record.start_unix_us = field<int64_t>(item, "start_unix_us", path);
    record.seconds = field<double>(item, "seconds", path);
    record.error = field<std::string>(item, "error", path);
    dump.records.push_back(std::move(record));
  }
  return dump;
}

}  // namespace tessera
