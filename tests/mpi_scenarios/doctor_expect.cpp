// Runs the diagnosis of `tessera doctor hang` (the same library calls) on a scenario's dumps,
// prints its report, and checks it against what the scenario did:
//   doctor_expect RUN_DIR KIND GROUP_NAME OP SEQ CULPRIT
// passes (exit 0) when the likely culprits are exactly {CULPRIT} and a finding of KIND
// (never_entered, argument_mismatch, ...) on a group named GROUP_NAME, about OP #SEQ, names
// CULPRIT among its culprits.
#include <cstdio>
#include <exception>
#include <string>

#include "launcher/doctor_hang.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: doctor_expect RUN_DIR KIND GROUP_NAME OP SEQ CULPRIT\n");
    return 2;
  }
  try {
    std::string kind = argv[2], group_name = argv[3], op = argv[4];
    int64_t seq = std::stoll(argv[5]);
    int culprit = std::stoi(argv[6]);
    tessera::HangDiagnosis diagnosis = tessera::diagnose_hang(tessera::load_flight_dumps(argv[1]));
    std::printf("%s", diagnosis.text.c_str());
    bool named = false;
    for (const tessera::HangFinding& finding : diagnosis.findings) {
      bool blames = false;
      for (int rank : finding.culprits) blames = blames || rank == culprit;
      named = named || (tessera::hang_finding_kind_name(finding.kind) == kind && finding.group_name == group_name &&
                        finding.op == op && finding.seq == seq && blames);
    }
    if (diagnosis.likely_culprits != std::vector<int>{culprit}) {
      std::fprintf(stderr, "doctor_expect: likely culprits are not exactly rank %d\n", culprit);
      return 1;
    }
    if (!named) {
      std::fprintf(stderr, "doctor_expect: no %s finding on group %s about %s #%lld naming rank %d\n", kind.c_str(),
                   group_name.c_str(), op.c_str(), static_cast<long long>(seq), culprit);
      return 1;
    }
    std::printf("doctor_expect: ok\n");
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "doctor_expect: %s\n", error.what());
    return 1;
  }
}
