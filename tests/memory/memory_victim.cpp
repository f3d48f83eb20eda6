// SPDX-License-Identifier: Apache-2.0
/// @file memory_victim.cpp
/// @brief memory_victim <scenario> [args...]: the memory-slice integration scenarios, run by
///        tests/memory/CMakeLists.txt with libsoftmig.so preloaded against the fake driver.
///
/// Before anything else the program removes the fake driver's shared usage file
/// (SOFTMIG_FAKE_STATE) and re-executes itself, so that every test starts from a machine on which
/// no process uses the GPU; then it removes the ledger of its session (SOFTMIG_SESSION).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "memory_common.hpp"
#include "scenarios.hpp"

namespace {

using Scenario = int (*)(const memtest::Args&);

const std::map<std::string, Scenario>& scenarios() {
  static const std::map<std::string, Scenario> table = {
      {"oom", memtest::oom},
      {"report", memtest::report},
      {"refuse", memtest::refuse},
      {"bad-free", memtest::bad_free},
      {"driver-failure", memtest::driver_failure},
      {"multi-gpu", memtest::multi_gpu},
      {"corrupt", memtest::corrupt},
      {"pid-reuse", memtest::pid_reuse},
      {"share", memtest::share},
      {"race", memtest::race},
      {"kill-loop", memtest::kill_loop},
      {"nvml-processes", memtest::nvml_processes},
      {"zombie", memtest::zombie},
      {"stopped-holder", memtest::stopped_holder},
  };
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || scenarios().count(argv[1]) == 0) {
    std::fprintf(stderr, "usage: memory_victim <scenario> [args...]; scenarios:");
    for (const auto& [name, fn] : scenarios()) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  if (std::getenv("MEMORY_VICTIM_FRESH") == nullptr) {
    // The fakes mapped the usage file when they were loaded: remove it and start again, so the
    // fresh process creates an empty one.
    if (const char* state = std::getenv("SOFTMIG_FAKE_STATE"); state != nullptr) {
      if (::unlink(state) != 0 && errno != ENOENT) {
        std::fprintf(stderr, "memory_victim: cannot remove %s: %s\n", state, std::strerror(errno));
        return 1;
      }
    }
    ::setenv("MEMORY_VICTIM_FRESH", "1", 1);
    ::execv("/proc/self/exe", argv);
    std::fprintf(stderr, "memory_victim: cannot re-execute itself: %s\n", std::strerror(errno));
    return 1;
  }
  std::string role = "memory_victim";
  for (int i = 1; i < argc; ++i) role += std::string(" ") + argv[i];
  memtest::set_role(role);
  memtest::remove_ledger(memtest::session());
  const memtest::Args args(argv + 2, argv + argc);
  const int rc = scenarios().at(argv[1])(args);
  if (rc == 0) {
    memtest::remove_ledger(memtest::session());
    memtest::note("PASS");
  }
  return rc;
}
