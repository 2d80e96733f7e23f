// The diagnosis behind `tessera doctor hang RUN_DIR`: reads every rank's flight-recorder dump
// (parallel/flight_recorder.h) and names the ranks and collectives that diverged.
//
// Ranks are aligned per group by sequence number, as the backends match operations. Findings:
//   - op_mismatch / argument_mismatch: at the same sequence number of a group, ranks called
//     different operations, or the same one with a different dtype, element count, reduce op or
//     root. The odd ranks out are named: the minority within the group, or when the group is
//     split evenly, the minority across every group of that name at that sequence number (SPMD
//     ranks of one role do the same thing). Only the first mismatch of a group is reported:
//     what follows it is a consequence.
//   - never_entered: ranks of a group wait in collective #k and some members never called it;
//     each absent rank is described by where it is instead: waiting in another collective (then
//     it is a consequence), or in no collective at all (stuck in computation, I/O or a branch that
//     skipped the call: a likely cause).
//   - unmatched_p2p: a rank waits in send/recv #k with a peer that never posted the match.
//   - stuck_together: every member entered collective #k and it never completed (a broken
//     link, or a mismatch the dumps cannot show).
//   - failed_op: a call threw on a rank (its error is quoted).
//   - missing_dump: a rank of the world wrote no dump (dead, or never saw the dump request).
// Findings come most likely cause first: mismatches; ranks absent while in no collective,
// missing dumps and unmatched p2p with an idle peer; failed calls; the rest.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "parallel/flight_recorder.h"

namespace tessera {

enum class HangFindingKind {
  OpMismatch,
  ArgumentMismatch,
  NeverEntered,
  UnmatchedP2p,
  StuckTogether,
  FailedOp,
  MissingDump
};

std::string_view hang_finding_kind_name(HangFindingKind kind);  // "op_mismatch", ...

struct HangFinding {
  HangFindingKind kind = HangFindingKind::NeverEntered;
  std::string group;       // group key, e.g. "dp[1,3]"; empty for missing_dump
  std::string group_name;  // e.g. "dp"
  std::string op;          // the collective (or p2p op) concerned
  int64_t seq = -1;
  std::vector<int> culprits;  // global ranks at fault: odd ones out, absent, silent peers, dead
  std::vector<int> waiting;   // global ranks waiting on them
  bool likely_cause = false;  // the culprits are not themselves blocked on someone else
  std::string message;
};

struct HangDiagnosis {
  int world_size = 0;
  std::vector<int> dumped_ranks;
  std::vector<HangFinding> findings;  // most likely cause first
  std::vector<int> likely_culprits;   // culprits of the highest-priority findings
  std::string text;                   // the report `tessera doctor hang` prints
};

HangDiagnosis diagnose_hang(const std::vector<FlightDump>& dumps);

// The dump folder of `run_dir`: run_dir/flight_recorder, or run_dir itself when it holds the
// rank_*.json files. Throws naming what was looked for when neither has a dump.
std::filesystem::path find_flight_dump_dir(const std::filesystem::path& run_dir);
// Every rank_*.json in the dump folder of `run_dir`, read.
std::vector<FlightDump> load_flight_dumps(const std::filesystem::path& run_dir);

}  // namespace tessera
