// SPDX-License-Identifier: Apache-2.0
#include "platform/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "platform/env.hpp"
#include "platform/once.hpp"
#include "platform/process.hpp"

namespace softmig::platform {
namespace {

constexpr unsigned kMaxLines = 10000;

std::atomic<int> g_level{-1};
Once g_open_once;
int g_fd = -1;
char g_path[512] = {};
std::atomic<unsigned> g_lines{0};

/// Opens `path` for appending if it is (or can be created as) a regular file of ours.
int open_log(const char* path) noexcept {
  // O_NONBLOCK: a FIFO planted at the path must not block the program in open().
  const int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0600);
  if (fd < 0) return -1;
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, O_APPEND);
  return fd;
}

void choose_and_open() noexcept {
  if (const char* p = path_env("SOFTMIG_LOG_FILE"); p != nullptr && p[0] != '\0') {
    g_fd = open_log(p);
    if (g_fd >= 0) std::snprintf(g_path, sizeof(g_path), "%s", p);
    return;  // an explicit path is honoured or nothing is logged; never a surprise location
  }
  const core::JobIdentity& job = job_identity();
  const char* job_id = job.has_job_id() ? job.job_id : "nojob";
  const char* array = job.array_task[0] != '\0' ? job.array_task : "none";
  char user[64];
  user_name(user, sizeof(user));
  char date[16];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(date, sizeof(date), "%Y%m%d", &tm);
  char path[512];
  std::snprintf(path, sizeof(path), "%s/%s_%s_%s_%s.log", SOFTMIG_LOG_DIR, user, job_id, array, date);
  g_fd = open_log(path);
  if (g_fd < 0 && job.in_slurm) {
    if (const char* tmp = path_env("SLURM_TMPDIR"); tmp != nullptr && tmp[0] == '/') {
      std::snprintf(path, sizeof(path), "%s/softmig_%s.log", tmp, job_id);
      g_fd = open_log(path);
    }
  }
  if (g_fd >= 0) std::snprintf(g_path, sizeof(g_path), "%s", path);
}

const char* level_name(LogLevel l) noexcept {
  switch (l) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

}  // namespace

int log_level() noexcept {
  int l = g_level.load(std::memory_order_relaxed);
  if (l >= 0) return l;
  l = 0;
  if (const char* v = env("LIBCUDA_LOG_LEVEL"); v != nullptr && v[0] >= '0' && v[0] <= '9' && v[1] == '\0') {
    l = v[0] - '0';
    if (l > 4) l = 4;
  }
  g_level.store(l, std::memory_order_relaxed);
  return l;
}

namespace {
__attribute__((format(printf, 2, 0))) void vlog(LogLevel level, const char* fmt, va_list ap) noexcept {
  const int saved_errno = errno;  // logging must never change what the program sees
  if (!g_open_once.run(choose_and_open) || g_fd < 0) {
    errno = saved_errno;
    return;
  }
  const unsigned n = g_lines.fetch_add(1, std::memory_order_relaxed);
  if (n > kMaxLines) {
    errno = saved_errno;
    return;
  }
  char line[1024];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  gmtime_r(&ts.tv_sec, &tm);
  int len = std::snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ softmig[%d]: %s: ",
                          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                          tm.tm_sec, ts.tv_nsec / 1000000L, static_cast<int>(getpid()), level_name(level));
  if (n == kMaxLines) {
    len += std::snprintf(line + len, sizeof(line) - static_cast<std::size_t>(len),
                         "log line limit (%u) reached; further lines from this process are dropped", kMaxLines);
  } else {
    const int m = std::vsnprintf(line + len, sizeof(line) - static_cast<std::size_t>(len) - 1, fmt, ap);
    if (m > 0) len += m;
  }
  if (len > static_cast<int>(sizeof(line)) - 2) len = static_cast<int>(sizeof(line)) - 2;
  line[len++] = '\n';
  ssize_t w = 0;
  do {
    w = write(g_fd, line, static_cast<std::size_t>(len));
  } while (w < 0 && errno == EINTR);
  errno = saved_errno;
}
}  // namespace

#define SOFTMIG_DEFINE_LOG(name, lvl)                 \
  void name(const char* fmt, ...) noexcept {          \
    if (log_level() < static_cast<int>(lvl)) return;  \
    va_list ap;                                       \
    va_start(ap, fmt);                                \
    vlog(lvl, fmt, ap);                               \
    va_end(ap);                                       \
  }
SOFTMIG_DEFINE_LOG(log_error, LogLevel::kError)
SOFTMIG_DEFINE_LOG(log_warning, LogLevel::kWarning)
SOFTMIG_DEFINE_LOG(log_info, LogLevel::kInfo)
SOFTMIG_DEFINE_LOG(log_debug, LogLevel::kDebug)
#undef SOFTMIG_DEFINE_LOG

const char* log_path() noexcept { return g_path; }

}  // namespace softmig::platform
