// SPDX-License-Identifier: Apache-2.0
/// @file cmd_status.cpp
/// @brief `softmig status`: every job's slice on this node, as a table, as JSON, or refreshed
///        like top (--watch).
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tool/command.hpp"
#include "tool/snapshot_source.hpp"
#include "tool/status_format.hpp"
#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

struct StatusArgs {
  SnapshotSource source;
  bool json = false;
  bool watch = false;
  double interval = 2.0;
  unsigned count = 0;  // --count: refreshes before --watch stops by itself (0 = until q)
};

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

/// Puts a terminal into "one key at a time, no echo" mode for the life of the object.
class RawTerminal {
 public:
  RawTerminal() {
    if (isatty(STDIN_FILENO) == 0 || tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  [[nodiscard]] bool active() const noexcept { return active_; }

 private:
  termios saved_{};
  bool active_ = false;
};

std::string header(double interval) {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  char when[32] = "";
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("softmig status on {} at {} (every {:g} s; q or Ctrl-C quits)\n\n", host, when, interval);
}

/// Waits up to `ms`; true if the user asked to quit (q, Ctrl-C, SIGTERM).
bool wait_for_quit(int ms, bool keys) {
  pollfd fd{STDIN_FILENO, POLLIN, 0};
  int left = ms;
  while (left > 0 && g_stop == 0) {
    const int step = left < 100 ? left : 100;
    const int rc = keys ? poll(&fd, 1, step) : poll(nullptr, 0, step);
    if (rc > 0 && (fd.revents & POLLIN) != 0) {
      char c = 0;
      if (read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q' || c == 3)) return true;
    }
    left -= step;
  }
  return g_stop != 0;
}

int watch(const StatusArgs& a) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const bool screen = isatty(STDOUT_FILENO) != 0;
  RawTerminal term;
  if (screen) fmt::print("\x1b[?1049h\x1b[?25l");  // alternate screen, hide the cursor
  const int ms = static_cast<int>(a.interval * 1000.0);
  for (unsigned n = 1;; ++n) {
    const Snapshot s = a.source.take();
    std::string frame = "\x1b[H\x1b[2J" + header(a.interval) + format_table(s);
    std::fwrite(frame.data(), 1, frame.size(), stdout);
    std::fflush(stdout);
    if ((a.count != 0 && n >= a.count) || wait_for_quit(ms, term.active())) break;
  }
  if (screen) fmt::print("\x1b[?25h\x1b[?1049l");
  std::fflush(stdout);
  return kExitOk;
}

int status(const StatusArgs& a) {
  if (a.watch && a.json) throw ToolError(kExitUsage, "status: --watch and --json cannot be combined");
  if (a.interval < 0.1 || a.interval > 3600) throw ToolError(kExitUsage, "status: --interval must be 0.1 to 3600 seconds");
  if (a.watch) return watch(a);
  const Snapshot s = a.source.take();
  if (a.json) {
    fmt::print("{}", format_json(s));
  } else {
    fmt::print("{}", format_table(s));
    if (s.jobs.empty() && s.problems.empty()) fmt::print("looked in: {}\n", a.source.searched());
    if (geteuid() != 0) fmt::print("(only your own jobs are shown; root sees every job on the node)\n");
  }
  return s.problems.empty() ? kExitOk : kExitFailure;
}

}  // namespace

Command add_status_command(CLI::App& parent) {
  auto args = std::make_shared<StatusArgs>();
  CLI::App* app = parent.add_subcommand("status", "Show every job's GPU slice on this node: limits, use, processes");
  app->add_flag("--json", args->json, "Print one JSON document instead of the table");
  app->add_flag("-w,--watch", args->watch, "Refresh the table like top until q or Ctrl-C");
  app->add_option("-i,--interval", args->interval, "Seconds between refreshes with --watch (default 2)")
      ->type_name("S");
  app->add_option("--count", args->count, "With --watch: stop after N refreshes (0 = run until q)")->type_name("N");
  args->source.add_flags(*app);
  app->footer(
      "Reads the per-job ledgers the library keeps (read-only; nothing is locked or changed). Root\n"
      "sees every job on the node; other users see only the jobs they own. Ledgers are found through\n"
      "the SOFTMIG_LEDGER_DIR of the job files in /var/run/softmig, your $SLURM_TMPDIR,\n"
      "/tmp/softmig-<uid>/ and $XDG_RUNTIME_DIR/softmig/ (root: also /run/user/*/softmig/).\n"
      "\n"
      "Columns: LIMIT memory limit of the slice (none = whole GPU); USED bytes the job holds now\n"
      "(allocations + driver overhead of each process); PEAK the highest USED; OOM allocations\n"
      "refused at the limit; SM compute share in percent (from the job's file or, outside SLURM, a\n"
      "live process's environment, else the share its last process enforced; n/a if unknown);\n"
      "THROTTLED thread-time the compute share held the job's launches back, summed over its\n"
      "processes (n/a: no share and never held); SHARE (the share of the GPU's time the job\n"
      "actually got) is n/a: not measured yet. Each live\n"
      "process is listed under the GPU it uses with its pid, user and bytes; processes that exited\n"
      "without freeing are counted until the next allocation that needs their room reclaims them.\n"
      "\n"
      "Exit status: 0; 1 if a ledger was found but could not be read (listed); 2 for bad flags.\n"
      "Examples:\n"
      "  softmig status\n"
      "  softmig status --json | jq '.jobs[].gpus[].memory_used_bytes'\n"
      "  softmig status --watch --interval 1");
  return {app, [args] { return status(*args); }};
}

}  // namespace softmig::tool
