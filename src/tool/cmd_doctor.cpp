// SPDX-License-Identifier: Apache-2.0
/// @file cmd_doctor.cpp
/// @brief `softmig doctor`: checks an install and says exactly what is wrong and how to fix it.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tool/command.hpp"
#include "tool/doctor.hpp"
#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

struct DoctorArgs {
  DoctorOptions options;
  std::vector<std::string> skip;
  double timeout = 10;
};

int doctor(DoctorArgs& a) {
  for (const auto& s : a.skip) a.options.skip.insert(s);
  if (const char* p = std::getenv("LD_PRELOAD")) a.options.ld_preload_env = p;
  a.options.timeout_ms = static_cast<int>(a.timeout * 1000);
  fmt::print("softmig doctor: checking the install{}\n\n",
             a.options.root == "/" ? std::string() : fmt::format(" under {}", a.options.root));
  const std::vector<Finding> findings = run_doctor(a.options);
  fmt::print("{}", format_findings(findings));
  return doctor_exit_code(findings);
}

}  // namespace

Command add_doctor_command(CLI::App& parent) {
  auto args = std::make_shared<DoctorArgs>();
  CLI::App* app = parent.add_subcommand("doctor", "Check this node's softmig install and say how to fix what is wrong");
  app->add_option("--root", args->options.root, "Check the tree under DIR instead of / (images, tests)")
      ->type_name("DIR");
  app->add_option("--library", args->options.library,
                  "The libsoftmig.so to check, as the node sees it (default: the one in /etc/ld.so.preload, "
                  "else the installed one)")
      ->type_name("PATH");
  app->add_option("--skip", args->skip, "Do not run this check (repeatable)")
      ->type_name("CHECK")
      ->check(CLI::IsMember(doctor_checks()));
  app->add_option("--timeout", args->timeout, "Seconds each load test may take (default 10)")
      ->type_name("S")
      ->check(CLI::Range(0.1, 600.0));
  app->footer(
      "Checks, in order:\n"
      "  library      libsoftmig.so present, a 64-bit ELF shared library for this machine, root-owned,\n"
      "               not writable by others, and loadable (dlopen in a child process)\n"
      "  preload      /etc/ld.so.preload names it exactly once (else LD_PRELOAD: a warning), and names\n"
      "               no missing file\n"
      "  config-dir   /var/run/softmig exists, root-owned, not writable by group or others\n"
      "  job-files    every /var/run/softmig/*.conf is root-owned and parses (the library's own parser)\n"
      "  log-dir      /var/log/softmig exists, root-owned, mode 1733 (sticky and user-writable)\n"
      "  driver       libcuda.so.1 loads and cuInit(0) succeeds (in a child process)\n"
      "  nvml         libnvidia-ml.so.1 loads, nvmlInit_v2 succeeds; lists the GPU models\n"
      "  slice-table  /etc/softmig/slices.conf has a [gpu <type>] section whose `match` (or type) is a\n"
      "               piece of every GPU's NVML name; skipped with a note when no table is installed\n"
      "With --root every path is taken under DIR; driver and NVML are always the running system's.\n"
      "Exit status: 0 no problems (warnings allowed), 1 problems found, 2 bad flags.");
  return {app, [args] { return doctor(*args); }};
}

}  // namespace softmig::tool
