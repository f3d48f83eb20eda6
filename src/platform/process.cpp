// SPDX-License-Identifier: Apache-2.0
#include "platform/process.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "platform/env.hpp"
#include "platform/files.hpp"
#include "platform/once.hpp"

namespace softmig::platform {
namespace {

Once g_job_once;
core::JobIdentity g_job;

}  // namespace

const core::JobIdentity& job_identity() noexcept {
  g_job_once.run([] {
    char cgroup[4096];
    if (read_file("/proc/self/cgroup", cgroup, sizeof(cgroup)) < 0) cgroup[0] = '\0';
    g_job = core::identify_job(cgroup, env("SLURM_JOB_ID"), env("SLURM_ARRAY_TASK_ID"));
  });
  return g_job;
}

namespace {
/// Reads the state letter (field 3) and start time (field 22) of /proc/<pid>/stat.
bool read_stat(pid_t pid, char* state, std::uint64_t* start) noexcept {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  char buf[1024];
  if (read_file(path, buf, sizeof(buf)) <= 0) return false;
  // The command name (field 2) may contain spaces and parentheses: fields resume after the
  // last ')'. Field 3 is the state; start time is field 22, i.e. the 20th after the ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return false;
  ++p;
  while (*p == ' ') ++p;
  *state = *p;
  for (int field = 3; field < 22 && *p != '\0'; ++field) {
    while (*p == ' ') ++p;
    while (*p != ' ' && *p != '\0') ++p;
  }
  while (*p == ' ') ++p;
  std::uint64_t v = 0;
  while (*p >= '0' && *p <= '9') v = v * 10U + static_cast<std::uint64_t>(*p++ - '0');
  *start = v;
  return true;
}
}  // namespace

std::uint64_t process_start_time(pid_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, &state, &start) ? start : 0;
}

bool pid_in_job(pid_t pid, const char* job_id) noexcept {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/cgroup", static_cast<int>(pid));
  char buf[4096];
  if (read_file(path, buf, sizeof(buf)) <= 0) return false;
  char found[24];
  return core::job_id_from_cgroup(buf, found, sizeof(found)) && std::strcmp(found, job_id) == 0;
}

void user_name(char* out, std::size_t size) noexcept {
  passwd pw{};
  passwd* result = nullptr;
  char buf[1024];
  if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &result) == 0 && result != nullptr &&
      result->pw_name != nullptr) {
    std::snprintf(out, size, "%s", result->pw_name);
  } else {
    std::snprintf(out, size, "%u", static_cast<unsigned>(geteuid()));
  }
}

bool ProcLiveness::alive(std::uint64_t pid, std::uint64_t start_time) const noexcept {
  if (pid == 0 || pid > 0x7fffffffULL) return false;
  const auto p = static_cast<pid_t>(pid);
  char state = 0;
  std::uint64_t now = 0;
  if (!read_stat(p, &state, &now)) {
    // No /proc entry we can read: gone, or /proc is hidden from us (hidepid). kill(0) decides.
    return kill(p, 0) == 0 || errno == EPERM;
  }
  // A zombie has released its GPU memory already; a reused pid has another start time.
  return state != 'Z' && state != 'X' && now == start_time;
}

}  // namespace softmig::platform
