// Hang diagnosis from flight-recorder dumps (see doctor_hang.h).
#include "launcher/doctor_hang.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>
#include <regex>
#include <set>

#include "core/check.h"

namespace tessera {

namespace {

// One rank's view of one group: its counters and its records in that group, in id order.
struct RankInGroup {
  const FlightDump* dump = nullptr;
  const GroupRecord* group = nullptr;
  std::vector<const OpRecord*> collectives;
  std::vector<const OpRecord*> p2p;
};

// A group as every member's dump describes it.
struct GroupView {
  std::string key;
  std::string name;
  std::vector<int> members;
  std::map<int, RankInGroup> ranks;  // by global rank; members without a dump are absent

  int group_rank_of(int global_rank) const {
    auto found = std::find(members.begin(), members.end(), global_rank);
    return static_cast<int>(found - members.begin());
  }
};

struct Dumps {
  std::map<int, const FlightDump*> by_rank;
  std::map<std::string, GroupView> groups;  // by key
  int world_size = 0;
};

Dumps index_dumps(const std::vector<FlightDump>& dumps) {
  Dumps index;
  for (const FlightDump& dump : dumps) {
    TS_CHECK(!index.by_rank.count(dump.global_rank), "doctor hang: two dumps claim global rank ", dump.global_rank);
    index.by_rank[dump.global_rank] = &dump;
    index.world_size = std::max(index.world_size, dump.world_size);
    std::vector<std::string> keys;
    for (const GroupRecord& group : dump.groups) {
      keys.push_back(group.key());
      GroupView& view = index.groups[keys.back()];
      view.key = keys.back();
      view.name = group.name;
      view.members = group.members;
      view.ranks[dump.global_rank].dump = &dump;
      view.ranks[dump.global_rank].group = &group;
    }
    for (const OpRecord& record : dump.records) {
      RankInGroup& mine = index.groups[keys[record.group]].ranks[dump.global_rank];
      (record.p2p ? mine.p2p : mine.collectives).push_back(&record);
    }
  }
  return index;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string text;
  for (size_t i = 0; i < ranks.size(); ++i) text += fmt::format("{}{}", i ? "," : "", ranks[i]);
  return text;
}

std::string ranks_phrase(const std::vector<int>& ranks) {
  return fmt::format("{} {}", ranks.size() == 1 ? "rank" : "ranks", rank_list(ranks));
}

// The oldest operation this rank is in, over all its groups.
const OpRecord* oldest_in_flight(const FlightDump& dump) {
  for (const OpRecord& record : dump.records) {
    if (in_flight(record.state)) return &record;
  }
  return nullptr;
}

// Where a rank is: "waits in all_reduce #3 (...) of group dp[1,3]" or "is in no collective ...".
std::string whereabouts(const FlightDump& dump) {
  const OpRecord* record = oldest_in_flight(dump);
  if (record == nullptr && !dump.records.empty() && dump.records.back().state == OpState::Failed) {
    const OpRecord& failed = dump.records.back();
    return fmt::format("is in no communication call: its {} of group {} failed ({})", describe_op(failed),
                       dump.groups[failed.group].key(), failed.error);
  }
  if (record == nullptr) {
    return "is in no communication call: stuck in computation or I/O, or a branch skipped the call";
  }
  return fmt::format("itself waits in {} of group {}", describe_op(*record), dump.groups[record->group].key());
}

// What must agree across ranks at one sequence number: the bytes on the wire.
std::string signature(const OpRecord& record) {
  std::string numels;
  for (int64_t n : record.numels()) numels += std::to_string(n) + ",";
  return fmt::format("{}|{}|{}|{}|{}", record.op, record.reduce_op, record.dtype, numels, record.peer);
}

std::string differences(const std::vector<const OpRecord*>& records) {
  auto differ = [&](auto field) {
    for (const OpRecord* record : records) {
      if (field(*record) != field(*records.front())) return true;
    }
    return false;
  };
  std::vector<std::string> parts;
  if (differ([](const OpRecord& r) { return r.dtype; })) parts.push_back("dtypes");
  if (differ([](const OpRecord& r) { return r.numels(); })) parts.push_back("element counts");
  if (differ([](const OpRecord& r) { return r.reduce_op; })) parts.push_back("reduce ops");
  if (differ([](const OpRecord& r) { return r.peer; })) parts.push_back("roots");
  std::string text;
  for (size_t i = 0; i < parts.size(); ++i) text += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
  return text + " differ";
}

// The signature most ranks used, if one did: within the group, else across every group of the
// same name at that sequence number.
std::optional<std::string> majority(const std::map<std::string, int>& counts) {
  std::optional<std::string> best;
  int best_count = 0;
  bool tied = false;
  for (const auto& [sig, count] : counts) {
    if (count > best_count) {
      best = sig;
      best_count = count;
      tied = false;
    } else if (count == best_count) {
      tied = true;
    }
  }
  if (tied) return std::nullopt;
  return best;
}

std::optional<HangFinding> first_mismatch(const Dumps& index, const GroupView& group) {
  std::map<int64_t, std::vector<std::pair<int, const OpRecord*>>> by_seq;
  for (const auto& [rank, mine] : group.ranks) {
    for (const OpRecord* record : mine.collectives) by_seq[record->seq].emplace_back(rank, record);
  }
  for (const auto& [seq, calls] : by_seq) {
    std::map<std::string, int> counts;
    for (const auto& [rank, record] : calls) ++counts[signature(*record)];
    if (counts.size() < 2) continue;
    std::optional<std::string> usual = majority(counts);
    if (!usual) {
      std::map<std::string, int> role_counts;  // every group of this name, at this seq
      for (const auto& [key, other] : index.groups) {
        if (other.name != group.name) continue;
        for (const auto& [rank, mine] : other.ranks) {
          for (const OpRecord* record : mine.collectives) {
            if (record->seq == seq) ++role_counts[signature(*record)];
          }
        }
      }
      usual = majority(role_counts);
    }
    HangFinding finding;
    finding.group = group.key;
    finding.group_name = group.name;
    finding.seq = seq;
    std::vector<const OpRecord*> records;
    std::set<std::string> ops;
    for (const auto& [rank, record] : calls) {
      records.push_back(record);
      ops.insert(record->op);
    }
    finding.kind = ops.size() > 1 ? HangFindingKind::OpMismatch : HangFindingKind::ArgumentMismatch;
    std::string what = ops.size() > 1 ? "the operations differ" : differences(records);
    std::vector<int> usual_ranks;
    std::string odd;
    for (const auto& [rank, record] : calls) {
      if (usual && signature(*record) == *usual) {
        usual_ranks.push_back(rank);
        finding.waiting.push_back(rank);
        finding.op = record->op;
        continue;
      }
      finding.culprits.push_back(rank);
      odd += fmt::format("{}rank {} (group rank {}) called {}", odd.empty() ? "" : "; ", rank,
                         group.group_rank_of(rank), describe_op(*record, false));
    }
    if (usual) {
      const OpRecord* typical = nullptr;
      for (const auto& [rank, record] : calls) {
        if (signature(*record) == *usual) typical = record;
      }
      finding.message = fmt::format("{} #{} of group {}: {} while {} called {}: {}", typical->op, seq, group.key, odd,
                                    ranks_phrase(usual_ranks), describe_op(*typical, false), what);
    } else {
      finding.op = calls.front().second->op;
      finding.message =
          fmt::format("call #{} of group {}: the ranks disagree and no majority tells which is odd: {}; {}", seq,
                      group.key, odd, what);
    }
    return finding;
  }
  return std::nullopt;
}

// The group's earliest collective that some member waits in, and who is missing from it.
std::optional<HangFinding> stuck_collective(const GroupView& group) {
  std::optional<int64_t> stuck_seq;
  for (const auto& [rank, mine] : group.ranks) {
    for (const OpRecord* record : mine.collectives) {
      if (in_flight(record->state) && (!stuck_seq || record->seq < *stuck_seq)) stuck_seq = record->seq;
    }
  }
  if (!stuck_seq) return std::nullopt;
  HangFinding finding;
  finding.group = group.key;
  finding.group_name = group.name;
  finding.seq = *stuck_seq;
  const OpRecord* stuck = nullptr;
  double waited = 0;
  for (const auto& [rank, mine] : group.ranks) {
    for (const OpRecord* record : mine.collectives) {
      if (record->seq == *stuck_seq && in_flight(record->state)) {
        finding.waiting.push_back(rank);
        stuck = record;
        waited = std::max(waited, record->seconds);
      }
    }
  }
  finding.op = stuck->op;
  std::string absent;
  bool all_idle = true;
  for (int member : group.members) {
    auto mine = group.ranks.find(member);
    if (mine == group.ranks.end()) {
      finding.culprits.push_back(member);
      absent += fmt::format("; rank {} (group rank {}) left no dump", member, group.group_rank_of(member));
      continue;
    }
    if (mine->second.group->collectives > *stuck_seq) continue;
    finding.culprits.push_back(member);
    const OpRecord* last = mine->second.collectives.empty() ? nullptr : mine->second.collectives.back();
    all_idle = all_idle && oldest_in_flight(*mine->second.dump) == nullptr;
    absent += fmt::format(
        "; rank {} (group rank {}) {}{}", member, group.group_rank_of(member), whereabouts(*mine->second.dump),
        last ? fmt::format(" (its last call in this group: {}, {})", describe_op(*last), op_state_name(last->state))
             : std::string());
  }
  std::string what = fmt::format("{} of group {}", describe_op(*stuck), group.key);
  if (finding.culprits.empty()) {
    finding.kind = HangFindingKind::StuckTogether;
    finding.message = fmt::format("{}: {} entered it and it has not completed after {:.1f} s", what,
                                  ranks_phrase(finding.waiting), waited);
    return finding;
  }
  finding.kind = HangFindingKind::NeverEntered;
  finding.likely_cause = all_idle;
  finding.message =
      fmt::format("{} never entered {}; {} {} in it (for {:.1f} s){}", ranks_phrase(finding.culprits), what,
                  ranks_phrase(finding.waiting), finding.waiting.size() == 1 ? "waits" : "wait", waited, absent);
  return finding;
}

std::vector<HangFinding> unmatched_p2p(const Dumps& index) {
  std::vector<HangFinding> findings;
  for (const auto& [key, group] : index.groups) {
    for (const auto& [rank, mine] : group.ranks) {
      for (const OpRecord* record : mine.p2p) {
        if (!in_flight(record->state) || record->peer < 0 || record->peer >= static_cast<int>(group.members.size())) {
          continue;
        }
        int peer = group.members[record->peer];
        auto theirs = group.ranks.find(peer);
        if (theirs == group.ranks.end()) continue;  // reported as a missing dump
        bool receiving = record->op == "recv";
        const auto& counts = receiving ? theirs->second.group->sends : theirs->second.group->recvs;
        int64_t matched = 0;
        for (const auto& [to, count] : counts) {
          if (to == mine.group->group_rank) matched = count;
        }
        if (matched > record->seq) continue;
        HangFinding finding;
        finding.kind = HangFindingKind::UnmatchedP2p;
        finding.group = key;
        finding.group_name = group.name;
        finding.op = record->op;
        finding.seq = record->seq;
        finding.culprits = {peer};
        finding.waiting = {rank};
        finding.likely_cause = oldest_in_flight(*theirs->second.dump) == nullptr;
        finding.message = fmt::format(
            "rank {} waits in {} of group {} (for {:.1f} s); rank {} (group rank {}) has {} only {} {} it and {}", rank,
            describe_op(*record), key, record->seconds, peer, record->peer, receiving ? "sent" : "received", matched,
            receiving ? "messages to" : "messages from", whereabouts(*theirs->second.dump));
        findings.push_back(std::move(finding));
      }
    }
  }
  return findings;
}

std::vector<HangFinding> failed_ops(const Dumps& index) {
  std::vector<HangFinding> findings;
  for (const auto& [rank, dump] : index.by_rank) {
    for (const OpRecord& record : dump->records) {
      if (record.state != OpState::Failed) continue;
      HangFinding finding;
      finding.kind = HangFindingKind::FailedOp;
      finding.group = dump->groups[record.group].key();
      finding.group_name = dump->groups[record.group].name;
      finding.op = record.op;
      finding.seq = record.seq;
      finding.culprits = {rank};
      finding.message =
          fmt::format("rank {}: {} of group {} failed: {}", rank, describe_op(record), finding.group, record.error);
      findings.push_back(std::move(finding));
      break;  // the first failure of a rank; later ones follow from it
    }
  }
  return findings;
}

// 0: mismatches; 1: idle culprits and dead ranks; 2: failures; 3: consequences.
int tier(const HangFinding& finding) {
  switch (finding.kind) {
    case HangFindingKind::OpMismatch:
    case HangFindingKind::ArgumentMismatch:
      return 0;
    case HangFindingKind::MissingDump:
      return 1;
    case HangFindingKind::NeverEntered:
    case HangFindingKind::UnmatchedP2p:
      return finding.likely_cause ? 1 : 3;
    case HangFindingKind::FailedOp:
      return 2;
    case HangFindingKind::StuckTogether:
      return 3;
  }
  return 3;
}

std::string rank_summary(const FlightDump& dump) {
  const OpRecord* record = oldest_in_flight(dump);
  std::string where = record ? fmt::format("waits in {} of group {} for {:.1f} s", describe_op(*record),
                                           dump.groups[record->group].key(), record->seconds)
                             : "in no communication call";
  std::string last;
  if (!record && !dump.records.empty()) {
    const OpRecord& latest = dump.records.back();
    last = fmt::format("; last: {} of group {}, {}", describe_op(latest), dump.groups[latest.group].key(),
                       op_state_name(latest.state));
  }
  return fmt::format("  rank {} ({}, pid {}): {}{}; dumped on: {}", dump.global_rank, dump.hostname, dump.pid, where,
                     last, dump.reason);
}

}  // namespace

std::string_view hang_finding_kind_name(HangFindingKind kind) {
  switch (kind) {
    case HangFindingKind::OpMismatch:
      return "op_mismatch";
    case HangFindingKind::ArgumentMismatch:
      return "argument_mismatch";
    case HangFindingKind::NeverEntered:
      return "never_entered";
    case HangFindingKind::UnmatchedP2p:
      return "unmatched_p2p";
    case HangFindingKind::StuckTogether:
      return "stuck_together";
    case HangFindingKind::FailedOp:
      return "failed_op";
    case HangFindingKind::MissingDump:
      return "missing_dump";
  }
  return "unknown";
}

HangDiagnosis diagnose_hang(const std::vector<FlightDump>& dumps) {
  TS_CHECK(!dumps.empty(), "doctor hang: no flight-recorder dumps to diagnose");
  Dumps index = index_dumps(dumps);
  HangDiagnosis diagnosis;
  diagnosis.world_size = index.world_size;
  for (const auto& [rank, dump] : index.by_rank) diagnosis.dumped_ranks.push_back(rank);

  std::vector<HangFinding> findings;
  for (int rank = 0; rank < index.world_size; ++rank) {
    if (index.by_rank.count(rank)) continue;
    HangFinding finding;
    finding.kind = HangFindingKind::MissingDump;
    finding.culprits = {rank};
    finding.message = fmt::format(
        "rank {} wrote no dump: it died, or never saw the dump request (is the dump folder "
        "on a filesystem every node shares?); read its log first",
        rank);
    findings.push_back(std::move(finding));
  }
  for (const auto& [key, group] : index.groups) {
    std::optional<HangFinding> mismatch = first_mismatch(index, group);
    std::optional<HangFinding> stuck = stuck_collective(group);
    // A hang after a mismatch in the same group is its consequence, not a second cause.
    if (stuck && mismatch && stuck->seq >= mismatch->seq) {
      stuck->likely_cause = false;
      stuck->message += fmt::format("; it follows from the mismatch at call #{} of this group", mismatch->seq);
    } else if (stuck && stuck->kind == HangFindingKind::StuckTogether) {
      stuck->message += ": a broken link, or a mismatch the dumps cannot show";
    }
    if (mismatch) findings.push_back(std::move(*mismatch));
    if (stuck) findings.push_back(std::move(*stuck));
  }
  for (HangFinding& finding : unmatched_p2p(index)) findings.push_back(std::move(finding));
  for (HangFinding& finding : failed_ops(index)) findings.push_back(std::move(finding));
  std::stable_sort(findings.begin(), findings.end(),
                   [](const HangFinding& a, const HangFinding& b) { return tier(a) < tier(b); });

  int best_tier = findings.empty() ? 3 : tier(findings.front());
  std::set<int> culprits;
  for (HangFinding& finding : findings) {
    finding.likely_cause = best_tier < 3 && tier(finding) == best_tier;
    if (finding.likely_cause) culprits.insert(finding.culprits.begin(), finding.culprits.end());
  }
  diagnosis.likely_culprits.assign(culprits.begin(), culprits.end());
  diagnosis.findings = std::move(findings);

  std::string text =
      fmt::format("{} of {} ranks dumped their flight recorder\n", diagnosis.dumped_ranks.size(), diagnosis.world_size);
  if (diagnosis.findings.empty()) {
    text += "no rank waits in a communication call and the ranks' records agree: the dumps show no hang\n";
  } else {
    text += diagnosis.likely_culprits.empty()
                ? std::string("likely cause: unclear; every rank waits on another (see the findings)\n")
                : fmt::format("likely cause: {}\n", ranks_phrase(diagnosis.likely_culprits));
    text += "findings (most likely cause first):\n";
    for (size_t i = 0; i < diagnosis.findings.size(); ++i) {
      const HangFinding& finding = diagnosis.findings[i];
      text += fmt::format("  {}. [{}{}] {}\n", i + 1, hang_finding_kind_name(finding.kind),
                          finding.likely_cause ? ", likely cause" : "", finding.message);
    }
  }
  text += "ranks:\n";
  for (const auto& [rank, dump] : index.by_rank) text += rank_summary(*dump) + "\n";
  diagnosis.text = std::move(text);
  return diagnosis;
}

std::filesystem::path find_flight_dump_dir(const std::filesystem::path& run_dir) {
  TS_CHECK(std::filesystem::is_directory(run_dir), "doctor hang: ", run_dir.string(),
           " is not a folder; pass the run folder (the one holding flight_recorder/)");
  static const std::regex dump_name(R"(rank_\d+\.json)");
  for (const std::filesystem::path& dir : {run_dir / "flight_recorder", run_dir}) {
    if (!std::filesystem::is_directory(dir)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (std::regex_match(entry.path().filename().string(), dump_name)) return dir;
    }
  }
  TS_CHECK(false, "doctor hang: no flight-recorder dumps (rank_<N>.json) in ", (run_dir / "flight_recorder").string(),
           " or ", run_dir.string(),
           "; the watchdog writes them when a collective times out, and `kill -USR1` (or "
           "`scancel --signal=USR1`) makes a running job write them");
  return {};  // unreachable
}

std::vector<FlightDump> load_flight_dumps(const std::filesystem::path& run_dir) {
  std::filesystem::path dir = find_flight_dump_dir(run_dir);
  static const std::regex dump_name(R"(rank_(\d+)\.json)");
  std::vector<FlightDump> dumps;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    std::smatch match;
    if (!std::regex_match(name, match, dump_name)) continue;
    FlightDump dump = read_flight_dump(entry.path());
    TS_CHECK(std::to_string(dump.global_rank) == match[1].str(), "doctor hang: ", entry.path().string(),
             " holds the dump of rank ", dump.global_rank, "; was it renamed or copied from another run?");
    dumps.push_back(std::move(dump));
  }
  std::sort(dumps.begin(), dumps.end(),
            [](const FlightDump& a, const FlightDump& b) { return a.global_rank < b.global_rank; });
  return dumps;
}

}  // namespace tessera
