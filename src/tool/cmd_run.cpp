// SPDX-License-Identifier: Apache-2.0
/// @file cmd_run.cpp
/// @brief `softmig run`: start a program inside a GPU slice, outside SLURM. The flags are turned
///        into the environment the preloaded library reads (run_environment.hpp), then the
///        program replaces this process, so it keeps this process's pid, its stdin/stdout and
///        its exit status.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/limits.hpp"
#include "core/units.hpp"
#include "tool/command.hpp"
#include "tool/library_lookup.hpp"
#include "tool/run_environment.hpp"
#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

/// The library reads per-device keys for CUDA devices 0..15.
constexpr unsigned kMaxDeviceKeys = core::kMaxDevices;

struct RunArgs {
  std::string memory;
  std::string sm;
  CLI::Option* memory_given = nullptr;  // set by add_run_command; count() tells if the flag was used
  CLI::Option* sm_given = nullptr;
  std::optional<unsigned> device;
  std::string library;
  bool verbose = false;
  std::vector<std::string> command;
};

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

std::string log_file_path(pid_t pid) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = (tmp != nullptr && tmp[0] != '\0') ? tmp : "/tmp";
  return fmt::format("{}/softmig-run-{}.log", dir, pid);
}

std::string describe(const RunOptions& o) {
  const std::string where = o.device ? fmt::format("on CUDA device {}", *o.device) : "on every GPU";
  std::string memory = "not set by this command";
  if (o.memory_bytes) {
    char buf[32];
    core::format_bytes(*o.memory_bytes, buf, sizeof buf);
    memory = *o.memory_bytes == 0 ? "unlimited" : fmt::format("{} ({} bytes)", buf, *o.memory_bytes);
  }
  std::string sm = "not set by this command";
  if (o.sm_percent) sm = *o.sm_percent == 100 ? "unlimited" : fmt::format("{} %", *o.sm_percent);
  return fmt::format("memory {}, compute share {}, {}", memory, sm, where);
}

int run(const RunArgs& args) {
  RunOptions options;
  if (args.memory_given->count() != 0) options.memory_bytes = parse_memory_flag(args.memory);
  if (args.sm_given->count() != 0) options.sm_percent = parse_sm_flag(args.sm);
  if (args.device && *args.device >= kMaxDeviceKeys) {
    throw ToolError(kExitUsage, fmt::format("--device {}: must be a CUDA device number from 0 to {}", *args.device,
                                            kMaxDeviceKeys - 1));
  }
  options.device = args.device;
  if (args.command.empty()) {
    throw ToolError(kExitUsage, "run: no program given (usage: softmig run [flags] -- PROGRAM [ARGS...])");
  }

  if (const char* job = std::getenv("SLURM_JOB_ID"); job != nullptr && job[0] != '\0') {
    fmt::print(stderr,
               "softmig: note: inside SLURM job {} the job's root-owned configuration decides the limits; "
               "the library ignores --memory/--sm here\n",
               job);
  }

  options.library = find_library(args.library);
  const pid_t pid = getpid();
  options.session = fmt::format("run-{}", pid);
  if (args.verbose) options.log_file = log_file_path(pid);

  const std::vector<std::string> env = build_run_environment(options, current_environment());

  if (args.verbose) {
    fmt::print(stderr, "softmig: slice: {}\n", describe(options));
    fmt::print(stderr, "softmig: library: {}\n", options.library);
    fmt::print(stderr, "softmig: session: {}\n", options.session);
    fmt::print(stderr, "softmig: log: {}\n", *options.log_file);
  }

  std::vector<char*> argv;
  argv.reserve(args.command.size() + 1);
  for (const auto& a : args.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  std::fflush(stdout);
  std::fflush(stderr);
  // execvpe searches PATH as execvp does; only the new environment differs.
  execvpe(argv[0], argv.data(), envp.data());
  const int err = errno;
  if (err == ENOENT) throw ToolError(kExitNotFound, fmt::format("{}: command not found", args.command[0]));
  throw ToolError(kExitCannotExecute, fmt::format("cannot run {}: {}", args.command[0], std::strerror(err)));
}

}  // namespace

Command add_run_command(CLI::App& parent) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* app = parent.add_subcommand("run", "Run a program inside a GPU slice (outside SLURM)");
  args->memory_given =
      app->add_option("-m,--memory", args->memory,
                      "GPU memory limit, binary units: 4G, 512MiB, 11517.0M, or bytes (0 = no limit)")
          ->type_name("SIZE");
  args->sm_given = app->add_option("-s,--sm", args->sm, "Compute share in percent, 1..100 (100 = no limit)")
                       ->type_name("PERCENT");
  app->add_option("-d,--device", args->device,
                  "Apply the limits to CUDA device N only (writes the _<N> keys); default: every GPU")
      ->type_name("N");
  app->add_option("--library", args->library,
                  "libsoftmig.so to preload (default: $SOFTMIG_LIBRARY, then next to the tool)")
      ->type_name("PATH");
  app->add_flag("-v,--verbose", args->verbose,
                "Log at info level (LIBCUDA_LOG_LEVEL=3) to $TMPDIR/softmig-run-<pid>.log and print its path");
  app->add_option("program", args->command, "The program to run and its arguments (after --)")
      ->type_name("PROGRAM [ARGS...]");
  app->positionals_at_end();
  app->footer(
      "Preloads libsoftmig.so and puts the slice's limits in the environment, then replaces this\n"
      "process with PROGRAM (same pid, same exit status). PROGRAM and every process it starts share\n"
      "one slice (SOFTMIG_SESSION=run-<pid>). Limits already in the environment that these flags do\n"
      "not set are kept. Inside a SLURM job the job's configuration decides the limits and the\n"
      "library ignores --memory/--sm.\n"
      "\n"
      "Examples:\n"
      "  softmig run --memory 4G -- python train.py\n"
      "  softmig run --memory 11517.0M --sm 50 --verbose -- ./my_cuda_app --epochs 3\n"
      "Exit status: the program's; 2 for malformed flags, 127 if PROGRAM is not found.");
  return {app, [args] { return run(*args); }};
}

}  // namespace softmig::tool
