// `tessera doctor hang RUN_DIR`: reads the flight-recorder dumps the watchdog (or SIGUSR1) left
// in RUN_DIR/flight_recorder (or in RUN_DIR itself) and prints which ranks and collectives
// diverged (launcher/doctor_hang.h). Exits 0 once the report is printed, whatever it finds.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace tessera {

struct DoctorOptions {
  std::string hang_run_dir;  // set by `doctor hang RUN_DIR`
};

// Adds `doctor` with its `hang` subcommand to `app`; returns the `doctor` subcommand.
CLI::App* add_doctor_subcommand(CLI::App& app, DoctorOptions& options);
int run_doctor_command(const DoctorOptions& options);

}  // namespace tessera
