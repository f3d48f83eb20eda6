// SPDX-License-Identifier: Apache-2.0
/// @file cmd_version.cpp
/// @brief `softmig version`: the tool's version and the library `softmig run` would preload.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tool/command.hpp"
#include "tool/library_lookup.hpp"
#include "tool/tool_error.hpp"

#ifndef SOFTMIG_VERSION
#define SOFTMIG_VERSION "unknown"
#endif

namespace softmig::tool {

Command add_version_command(CLI::App& parent) {
  CLI::App* app = parent.add_subcommand(
      "version", "Print the tool's version and the libsoftmig.so that `softmig run` would preload");
  return {app, [] {
            fmt::print("softmig {}\n", SOFTMIG_VERSION);
            try {
              fmt::print("library: {}\n", find_library(""));
            } catch (const ToolError& e) {
              fmt::print("library: not found ({})\n", e.what());
            }
            return kExitOk;
          }};
}

}  // namespace softmig::tool
