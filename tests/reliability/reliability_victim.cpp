// SPDX-License-Identifier: Apache-2.0
/// @file reliability_victim.cpp
/// @brief reliability_victim <scenario> [args...]: the reliability suites (label "reliability").
///        Like memory_victim, it starts from a machine on which no process uses the fake GPU:
///        when SOFTMIG_FAKE_STATE is set it removes that file and re-executes itself once.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "reliability.hpp"

namespace {

using Scenario = int (*)(const reltest::Args&);

const std::map<std::string, Scenario>& scenarios() {
  static const std::map<std::string, Scenario> table = {
      {"chaos", reltest::chaos},          {"stall", reltest::stall},
      {"procs", reltest::procs},          {"startup-child", reltest::startup_child},
      {"threads", reltest::threads},      {"gpus", reltest::gpus},
      {"tamper", reltest::tamper},        {"tamper-child", reltest::tamper_child},
  };
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || scenarios().count(argv[1]) == 0) {
    std::fprintf(stderr, "usage: reliability_victim <scenario> [args...]; scenarios:");
    for (const auto& [name, fn] : scenarios()) std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  const char* state = std::getenv("SOFTMIG_FAKE_STATE");
  if (state != nullptr && std::getenv("MEMORY_VICTIM_FRESH") == nullptr) {
    if (::unlink(state) != 0 && errno != ENOENT) {
      std::fprintf(stderr, "reliability_victim: cannot remove %s: %s\n", state, std::strerror(errno));
      return 1;
    }
    ::setenv("MEMORY_VICTIM_FRESH", "1", 1);
    ::execv("/proc/self/exe", argv);
    std::fprintf(stderr, "reliability_victim: cannot re-execute itself: %s\n", std::strerror(errno));
    return 1;
  }
  std::string role = "reliability_victim";
  for (int i = 1; i < argc; ++i) role += std::string(" ") + argv[i];
  memtest::set_role(role);
  const std::string name = argv[1];
  const bool owns_session = name != "tamper" && name != "tamper-child" && name != "startup-child";
  if (owns_session) memtest::remove_ledger(memtest::session());
  const reltest::Args args(argv + 2, argv + argc);
  const int rc = scenarios().at(name)(args);
  if (rc == 0 && owns_session) {
    memtest::remove_ledger(memtest::session());
    memtest::note("PASS");
  }
  return rc;
}
