// SPDX-License-Identifier: Apache-2.0
/// @file command.hpp
/// @brief How subcommands plug into the softmig tool. Each subcommand lives in its own
///        cmd_<name>.cpp and exposes one add_<name>_command() that declares its flags on the
///        parser and returns the action to run once parsing has succeeded. main.cpp only lists
///        the subcommands; it holds no command logic.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace softmig::tool {

struct Command {
  CLI::App* app = nullptr;      ///< the subcommand's parser, owned by the top-level App
  std::function<int()> action;  ///< runs the command; returns the exit code or throws ToolError
};

Command add_run_command(CLI::App& parent);
Command add_version_command(CLI::App& parent);
Command add_status_command(CLI::App& parent);
Command add_doctor_command(CLI::App& parent);
Command add_metrics_command(CLI::App& parent);
Command add_install_preload_command(CLI::App& parent);
Command add_remove_preload_command(CLI::App& parent);
Command add_slurm_command(CLI::App& parent);

}  // namespace softmig::tool
