// SPDX-License-Identifier: Apache-2.0
/// @file main.cpp
/// @brief Entry point of the `softmig` command-line tool: declares the subcommands, parses the
///        command line and runs the chosen one. Command logic lives in cmd_<name>.cpp; errors a
///        user can fix arrive as ToolError and are printed as "softmig: <message>".
#include <cstdio>
#include <exception>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tool/command.hpp"
#include "tool/tool_error.hpp"

int main(int argc, char** argv) {
  using namespace softmig::tool;
  CLI::App app(
      "softmig: software GPU slices. Runs CUDA programs with a GPU memory limit and a compute share\n"
      "enforced by the preloaded library libsoftmig.so. Inside SLURM the job's configuration\n"
      "sets the limits; outside SLURM, `softmig run` sets them.",
      "softmig");
  app.require_subcommand(0, 1);
  app.footer("Run 'softmig <command> --help' for a command's flags.");

  std::vector<Command> commands;
  commands.push_back(add_run_command(app));
  commands.push_back(add_version_command(app));
  commands.push_back(add_status_command(app));
  commands.push_back(add_doctor_command(app));
  commands.push_back(add_metrics_command(app));
  commands.push_back(add_install_preload_command(app));
  commands.push_back(add_remove_preload_command(app));
  commands.push_back(add_slurm_command(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help
    fmt::print(stderr, "softmig: {}\nRun 'softmig --help' for usage.\n", e.what());
    return kExitUsage;
  }

  for (const auto& command : commands) {
    if (!command.app->parsed()) continue;
    try {
      return command.action();
    } catch (const ToolError& e) {
      fmt::print(stderr, "softmig: {}\n", e.what());
      return e.exit_code();
    } catch (const std::exception& e) {
      fmt::print(stderr, "softmig: error: {}\n", e.what());
      return kExitFailure;
    }
  }
  fmt::print(stderr, "{}", app.help());
  return kExitUsage;
}
