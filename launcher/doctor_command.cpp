// `tessera doctor` and its checks (see doctor_command.h).
#include "launcher/doctor_command.h"

#include <fmt/format.h>

#include <cstdio>

#include "core/check.h"
#include "launcher/doctor_hang.h"

namespace tessera {

CLI::App* add_doctor_subcommand(CLI::App& app, DoctorOptions& options) {
  CLI::App* doctor = app.add_subcommand("doctor", "Diagnose a failed or hung run");
  doctor->require_subcommand(1);
  CLI::App* hang = doctor->add_subcommand(
      "hang", "Name the ranks and collectives that diverged, from the flight-recorder dumps of a hung run");
  hang->add_option("run_dir", options.hang_run_dir, "run folder holding flight_recorder/ (or that folder itself)")
      ->required();
  return doctor;
}

int run_doctor_command(const DoctorOptions& options) {
  TS_CHECK(!options.hang_run_dir.empty(), "doctor: name a check, e.g. `tessera doctor hang RUN_DIR`");
  std::filesystem::path dir = find_flight_dump_dir(options.hang_run_dir);
  HangDiagnosis diagnosis = diagnose_hang(load_flight_dumps(options.hang_run_dir));
  fmt::print("tessera doctor hang: dumps in {}\n{}", dir.string(), diagnosis.text);
  std::fflush(stdout);
  return 0;
}

}  // namespace tessera
