// FlightRecorder: every process keeps its last N communication operations, over all of its
// groups, in a ring buffer, so that when a job hangs each rank can say what it was doing.
// MonitoredCommunicator writes it (an entry when an operation starts, a state change when it
// ends); the Watchdog reads it and dumps it; `tessera doctor hang` reads the dumps of every rank.
//
// Sequence numbers are what ranks are aligned by, the way backends match operations: in order.
//   - collectives (every member calls them, split included): `seq` counts this group's
//     collectives on this rank (0, 1, 2, ...), so entry #k of one rank meets entry #k of every
//     other member;
//   - send/recv: `seq` counts this rank's sends to (or receives from) that peer in that group.
// The counters live in the group table, not in the ring, so they stay exact after old entries
// are evicted. An entry in flight that the ring evicts (more than N newer operations) is no
// longer watched; N defaults to far more than the operations a training step keeps in flight.
//
// States: started (a thread is inside a blocking call), scheduled (an async call returned its
// handle and completion has not been observed yet; for a stream-ordered backend, enqueued),
// completed, failed (the call threw; `error` holds the message).
//
// Dumps are JSON, one file per rank, `rank_<global rank>.json` in the dump folder (by
// convention RUN_DIR/flight_recorder), written to a temporary name and renamed. Every method is
// thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/shape.h"

namespace tessera {

enum class OpState { Started, Scheduled, Completed, Failed };

std::string_view op_state_name(OpState state);
std::optional<OpState> op_state_from_name(std::string_view name);  // nullopt for an unknown name
inline bool in_flight(OpState state) { return state == OpState::Started || state == OpState::Scheduled; }

// A group as every member sees it: its name, its members' global ranks in group-rank order, and
// an ordinal telling apart groups of this process with the same name and members (created by
// every member in the same order, so the ordinal agrees across ranks).
struct GroupRecord {
  std::string name;
  std::vector<int> members;
  int instance = 0;
  int group_rank = 0;       // this rank's place in `members`
  int64_t collectives = 0;  // collectives this rank has entered in this group
  // Point-to-point counts per peer group rank: {peer, count}.
  std::vector<std::pair<int, int64_t>> sends;
  std::vector<std::pair<int, int64_t>> recvs;

  // "dp[1,3]", or "dp[1,3]#1" for a later instance: the same on every member.
  std::string key() const;
  int size() const { return static_cast<int>(members.size()); }
};

struct OpRecord {
  uint64_t id = 0;  // this process's record counter: 0, 1, 2, ... in start order
  int group = 0;    // index into the recorder's (or dump's) group table
  bool p2p = false;
  int64_t seq = 0;            // see the header comment
  std::string op;             // "all_reduce", "all_gather", "reduce_scatter", "broadcast", "send", "recv", ...
  std::string reduce_op;      // "sum", "avg", "max" for reductions; empty otherwise
  std::string dtype;          // "f32", ...; empty for operations without tensors (barrier, split)
  std::vector<Shape> shapes;  // input, then output where it has its own tensor
  int peer = -1;              // group rank of the broadcast root or the send/recv peer; -1 if none
  int tag = 0;                // send/recv tag
  OpState state = OpState::Started;
  int64_t start_unix_us = 0;                         // wall clock at entry (comparable across hosts up to clock skew)
  double seconds = 0;                                // duration once finished; time in flight so far while in flight
  std::string error;                                 // the failure message of a failed call
  std::chrono::steady_clock::time_point started_at;  // for the watchdog; not dumped

  // Element count of each of `shapes`.
  std::vector<int64_t> numels() const;
};

// "[1,3]": a list of ranks as group keys and messages print it.
std::string ranks_text(const std::vector<int>& ranks);

// "all_reduce #17 (sum, f32 [1024])", "recv #3 from group rank 1 (tag 0, f32 [8])", "barrier #2";
// with_seq = false drops the " #17".
std::string describe_op(const OpRecord& record, bool with_seq = true);

// One rank's recorder contents at one moment, as dumped and read back.
struct FlightDump {
  int global_rank = 0;
  int world_size = 1;
  std::string hostname;
  int64_t pid = 0;
  std::string reason;  // why it was dumped: watchdog timeout, signal, request, ...
  int64_t dump_unix_us = 0;
  int64_t capacity = 0;        // ring size
  uint64_t total_records = 0;  // operations recorded since start (older ones were evicted)
  std::vector<GroupRecord> groups;
  std::vector<OpRecord> records;  // oldest first
};

class FlightRecorder {
 public:
  static constexpr size_t kDefaultCapacity = 2048;

  FlightRecorder(int global_rank, int world_size, size_t capacity = kDefaultCapacity);

  int global_rank() const { return global_rank_; }
  int world_size() const { return world_size_; }

  // Registers a group this rank belongs to; returns its index for start().
  int add_group(std::string name, std::vector<int> members, int group_rank);
  // Records the start of `record` in `group` (its descriptive fields filled in: op, p2p, peer,
  // shapes, ...); assigns id, seq, state Started and the timestamps. Returns the id.
  uint64_t start(int group, OpRecord record);
  // Moves an entry to Scheduled, Completed or Failed (`error` for Failed). An evicted id is
  // ignored.
  void set_state(uint64_t id, OpState state, std::string error = {});
  // Keeps an entry Scheduled until `finished` (WorkHandle::device_completion: non-blocking,
  // thread-safe) says the device has run it, as poll_device_completions() finds: a stream-
  // ordered backend's wait() returns before that, and a hang inside the operation shows only
  // on the device.
  void set_device_pending(uint64_t id, std::function<bool()> finished);
  // Completes every device-pending entry whose query says it has finished (the watchdog calls
  // this every poll; the recorded duration is then accurate to the poll interval).
  void poll_device_completions();

  // The oldest entry still in flight and its group, if any.
  std::optional<std::pair<OpRecord, GroupRecord>> oldest_in_flight() const;
  FlightDump snapshot(std::string reason) const;
  // Writes snapshot(reason) to dir/rank_<global rank>.json (creating dir); returns the path.
  std::filesystem::path dump(const std::filesystem::path& dir, std::string reason) const;

 private:
  int global_rank_;
  int world_size_;
  mutable std::mutex mutex_;
  std::vector<GroupRecord> groups_;
  std::vector<OpRecord> ring_;  // slot = id % capacity
  uint64_t next_id_ = 0;
  std::map<uint64_t, std::function<bool()>> device_pending_;  // id -> has the device finished it?
};

// "rank_<rank>.json"
std::string flight_dump_file_name(int global_rank);
void write_flight_dump(const FlightDump& dump, const std::filesystem::path& path);
// Throws tessera::Error naming the file and the missing or malformed key.
FlightDump read_flight_dump(const std::filesystem::path& path);

}  // namespace tessera
