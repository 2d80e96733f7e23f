#include "launcher/import_command.h"

#include <fmt/format.h>

#include "core/check.h"
#include "launcher/hf_import.h"

namespace tessera {

CLI::App* add_import_subcommand(CLI::App& app, ImportCommandOptions& options) {
  CLI::App* command = app.add_subcommand("import", "Turn a Hugging Face model folder into a Tessera checkpoint");
  command->add_option("--format", options.format, "hf")->capture_default_str()->check(CLI::IsMember({"hf"}));
  command->add_option("--input", options.input, "the folder save_pretrained wrote")->required();
  command->add_option("--output", options.output, "checkpoint directory to write iter_0000000.h5 into")->required();
  command->add_flag("--quiet", options.quiet, "no progress line");
  return command;
}

int run_import_command(const ImportCommandOptions& options) {
  TS_CHECK(options.format == "hf", "import: --format ", options.format, " is not one of hf");
  const ImportResult result = import_hf(options.input, options.output, options.quiet ? nullptr : stderr);
  if (!options.quiet)
    fmt::print("tessera import: {} ({}, {:.1f}M parameters) -> {}\n", options.input, result.config.name,
               double(result.config.parameter_count()) / 1e6, result.checkpoint);
  return 0;
}

}  // namespace tessera
