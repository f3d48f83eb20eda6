// SPDX-License-Identifier: Apache-2.0
// File-only logging: lines go to the configured file with a fixed prefix, never to the
// program's stdout or stderr, never through a symlink, and never change errno.
//
// The level and the file are decided on the first log call of a process and kept. ctest runs
// this executable with LIBCUDA_LOG_LEVEL=4 and SOFTMIG_LOG_FILE set (see CMakeLists.txt); each
// case also runs in a forked child that sets its own environment before its first log call,
// so the cases are independent whatever order or process they run in. This executable's own
// process never logs.
#include "platform/log.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace softmig::platform {
namespace {

using test::TempDir;

struct ChildReport {
  int errno_ok = 0;         ///< 1 if every log call left errno as it was
  int level = -1;
  char path[512] = {};      ///< log_path() at the end
  int pid = 0;
};

struct Outcome {
  int exit_code = -1;
  ChildReport report;
  std::string console;  ///< everything the child wrote to fds 1 and 2
};

/// Forks a child that sets LIBCUDA_LOG_LEVEL=`level` (unset if null) and SOFTMIG_LOG_FILE=`file`,
/// points fds 1 and 2 at a pipe, runs `body`, and reports back.
Outcome run_logging(const char* level, const std::string& file, const std::function<void()>& body) {
  test::SharedBox<ChildReport> report;
  int console[2];
  if (pipe(console) != 0) std::abort();
  const pid_t pid = test::spawn([&] {
    close(console[0]);
    if (level != nullptr) {
      setenv("LIBCUDA_LOG_LEVEL", level, 1);
    } else {
      unsetenv("LIBCUDA_LOG_LEVEL");
    }
    setenv("SOFTMIG_LOG_FILE", file.c_str(), 1);
    dup2(console[1], 1);
    dup2(console[1], 2);
    close(console[1]);
    report->pid = static_cast<int>(getpid());
    body();
    report->level = log_level();
    std::snprintf(report->path, sizeof(report->path), "%s", log_path());
    return 0;
  });
  close(console[1]);
  Outcome out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(console[0], buf, sizeof(buf));
    if (n <= 0) break;
    out.console.append(buf, static_cast<std::size_t>(n));
  }
  close(console[0]);
  out.exit_code = test::wait_exit(pid);
  out.report = *report;
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

std::regex line_pattern(int pid, const std::string& level, const std::string& message) {
  return std::regex(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z softmig\[)" + std::to_string(pid) +
                    R"(\]: )" + level + ": " + message + "$");
}

void log_all_levels() {
  log_error("disk %s is %d%% full", "scratch", 90);
  log_warning("warned %u", 7U);
  log_info("informed");
  log_debug("debugged %s", "x");
}

TEST(Log, WritesPrefixedLinesToTheConfiguredFile) {
  TempDir d;
  const std::string file = d.file("softmig.log");
  const Outcome o = run_logging("4", file, log_all_levels);
  ASSERT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.report.level, 4);
  EXPECT_EQ(std::string(o.report.path), file);
  const auto lines = lines_of(test::slurp(file));
  ASSERT_EQ(lines.size(), 4U) << test::slurp(file);
  EXPECT_TRUE(std::regex_match(lines[0], line_pattern(o.report.pid, "error", "disk scratch is 90% full"))) << lines[0];
  EXPECT_TRUE(std::regex_match(lines[1], line_pattern(o.report.pid, "warning", "warned 7"))) << lines[1];
  EXPECT_TRUE(std::regex_match(lines[2], line_pattern(o.report.pid, "info", "informed"))) << lines[2];
  EXPECT_TRUE(std::regex_match(lines[3], line_pattern(o.report.pid, "debug", "debugged x"))) << lines[3];
  EXPECT_NE(lines[0].find("softmig[" + std::to_string(o.report.pid) + "]: error: "), std::string::npos);
  EXPECT_EQ(o.console, "");
}

TEST(Log, NewFileIsPrivate) {
  TempDir d;
  const std::string file = d.file("softmig.log");
  const mode_t old = umask(0);
  const Outcome o = run_logging("1", file, [] { log_error("x"); });
  umask(old);
  ASSERT_EQ(o.exit_code, 0);
  struct stat st {};
  ASSERT_EQ(lstat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600U);
  EXPECT_EQ(st.st_uid, geteuid());
}

TEST(Log, AppendsToAnExistingFile) {
  TempDir d;
  const std::string file = d.file("softmig.log");
  ASSERT_TRUE(test::write_file(file, "earlier line\n"));
  const Outcome first = run_logging("1", file, [] { log_error("first"); });
  const Outcome second = run_logging("1", file, [] { log_error("second"); });
  ASSERT_EQ(first.exit_code, 0);
  ASSERT_EQ(second.exit_code, 0);
  const auto lines = lines_of(test::slurp(file));
  ASSERT_EQ(lines.size(), 3U);
  EXPECT_EQ(lines[0], "earlier line");
  EXPECT_TRUE(std::regex_match(lines[1], line_pattern(first.report.pid, "error", "first"))) << lines[1];
  EXPECT_TRUE(std::regex_match(lines[2], line_pattern(second.report.pid, "error", "second"))) << lines[2];
}

TEST(Log, LevelSelectsWhatIsWritten) {
  struct Case {
    const char* level;
    int expected_level;
    std::size_t lines;
  };
  for (const Case c : {Case{"1", 1, 1}, Case{"2", 2, 2}, Case{"3", 3, 3}, Case{"4", 4, 4}, Case{"9", 4, 4}}) {
    TempDir d;
    const std::string file = d.file("softmig.log");
    const Outcome o = run_logging(c.level, file, log_all_levels);
    ASSERT_EQ(o.exit_code, 0);
    EXPECT_EQ(o.report.level, c.expected_level) << c.level;
    EXPECT_EQ(lines_of(test::slurp(file)).size(), c.lines) << "LIBCUDA_LOG_LEVEL=" << c.level;
    EXPECT_EQ(o.console, "");
  }
}

TEST(Log, SilentByDefaultAndForMalformedLevels) {
  for (const char* level : {static_cast<const char*>(nullptr), "0", "", "12", "x", "-1", " 4", "4 "}) {
    TempDir d;
    const std::string file = d.file("softmig.log");
    const Outcome o = run_logging(level, file, log_all_levels);
    ASSERT_EQ(o.exit_code, 0);
    EXPECT_EQ(o.report.level, 0) << (level ? level : "(unset)");
    EXPECT_FALSE(test::exists(file)) << "a silent process must not even create the file";
    EXPECT_EQ(o.console, "");
  }
}

TEST(Log, ErrnoIsPreserved) {
  TempDir d;
  for (const char* level : {"4", "0"}) {
    for (const std::string& file : {d.file("ok.log"), d.file("no/such/dir/x.log")}) {
      const Outcome o = run_logging(level, file, [] {
        bool ok = true;
        errno = EDOM;
        log_error("e %d", 1);
        ok = ok && errno == EDOM;
        errno = ENOSPC;
        log_warning("w");
        ok = ok && errno == ENOSPC;
        errno = 0;
        log_info("i");
        ok = ok && errno == 0;
        errno = EAGAIN;
        log_debug("d");
        ok = ok && errno == EAGAIN;
        const std::string long_text(2000, 'y');  // a truncated line
        errno = EINTR;
        log_error("%s", long_text.c_str());
        ok = ok && errno == EINTR;
        std::_Exit(ok ? 0 : 3);
      });
      EXPECT_EQ(o.exit_code, 0) << "errno changed by a log call (level " << level << ", " << file << ")";
    }
  }
}

TEST(Log, SymlinkAtTheLogPathIsRefused) {
  TempDir d;
  const std::string target = d.file("victim");
  const std::string link = d.file("softmig.log");
  ASSERT_TRUE(test::write_file(target, "precious\n"));
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  const Outcome o = run_logging("4", link, log_all_levels);
  ASSERT_EQ(o.exit_code, 0);
  EXPECT_EQ(test::slurp(target), "precious\n") << "a line was written through the symlink";
  EXPECT_STREQ(o.report.path, "");
  EXPECT_EQ(o.console, "") << "a refused log file must not fall back to the console";
  struct stat st {};
  ASSERT_EQ(lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST(Log, DanglingSymlinkIsNotFollowedToCreateAFile) {
  TempDir d;
  const std::string target = d.file("created-elsewhere");
  const std::string link = d.file("softmig.log");
  ASSERT_EQ(symlink(target.c_str(), link.c_str()), 0);
  const Outcome o = run_logging("4", link, log_all_levels);
  ASSERT_EQ(o.exit_code, 0);
  EXPECT_FALSE(test::exists(target));
  EXPECT_EQ(o.console, "");
}

TEST(Log, FileOfAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  TempDir d;
  const std::string file = d.file("softmig.log");
  ASSERT_TRUE(test::write_file(file, "theirs\n", 0666));
  ASSERT_EQ(chown(file.c_str(), 65534, 65534), 0);
  const Outcome o = run_logging("4", file, log_all_levels);
  ASSERT_EQ(o.exit_code, 0);
  EXPECT_EQ(test::slurp(file), "theirs\n");
  EXPECT_STREQ(o.report.path, "");
  EXPECT_EQ(o.console, "");
}

TEST(Log, UnopenablePathsWriteNothingAnywhere) {
  TempDir d;
  ASSERT_EQ(mkdir(d.file("adir").c_str(), 0700), 0);
  for (const std::string& file : {d.file("adir"), d.file("missing/dir/x.log")}) {
    const Outcome o = run_logging("4", file, log_all_levels);
    EXPECT_EQ(o.exit_code, 0) << file;
    EXPECT_STREQ(o.report.path, "") << file;
    EXPECT_EQ(o.console, "") << file;
  }
}

// Regression: the log file was once opened without O_NONBLOCK, so a FIFO at the log path
// blocked open() until some process read it, and the program hung forever in its first log
// call (an intercepted CUDA call). Whoever can create a file at the log path (a shared
// SOFTMIG_LOG_DIR, SLURM_TMPDIR) could hang another user's job.
TEST(Log, FifoAtTheLogPathDoesNotHangTheProgram) {
  TempDir d;
  const std::string fifo = d.file("softmig.log");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const pid_t child = test::spawn([&] {
    setenv("LIBCUDA_LOG_LEVEL", "4", 1);
    setenv("SOFTMIG_LOG_FILE", fifo.c_str(), 1);
    log_error("first line");
    return 0;
  });
  ASSERT_GT(child, 0);
  bool returned = false;
  int status = 0;
  for (int i = 0; i < 300 && !returned; ++i) {  // 3 s
    returned = waitpid(child, &status, WNOHANG) == child;
    if (!returned) usleep(10000);
  }
  if (!returned) {
    kill(child, SIGKILL);
    test::wait_exit(child);
  }
  EXPECT_TRUE(returned) << "log_error() blocked for 3 s opening a FIFO at the log path";
  if (returned) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
}

TEST(Log, NothingReachesStdoutOrStderr) {
  TempDir d;
  const std::string file = d.file("softmig.log");
  const Outcome o = run_logging("4", file, [] {
    for (int i = 0; i < 100; ++i) log_all_levels();
  });
  ASSERT_EQ(o.exit_code, 0);
  EXPECT_EQ(o.console, "");
  EXPECT_EQ(lines_of(test::slurp(file)).size(), 400U);
}

TEST(Log, LongMessageIsOneTruncatedLine) {
  TempDir d;
  const std::string file = d.file("softmig.log");
  const Outcome o = run_logging("1", file, [] { log_error("start %s end", std::string(5000, 'x').c_str()); });
  ASSERT_EQ(o.exit_code, 0);
  const std::string text = test::slurp(file);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(lines_of(text).size(), 1U);
  EXPECT_LE(text.size(), 1024U);
  EXPECT_NE(text.find(": error: start xxx"), std::string::npos);
}

TEST(Log, LineLimitIsReportedOnceThenLinesAreDropped) {
  TempDir d;
  const std::string file = d.file("softmig.log");
  const Outcome o = run_logging("1", file, [] {
    for (int i = 0; i < 10005; ++i) log_error("line %d", i);
  });
  ASSERT_EQ(o.exit_code, 0);
  const auto lines = lines_of(test::slurp(file));
  ASSERT_EQ(lines.size(), 10001U);
  EXPECT_NE(lines[9999].find(": error: line 9999"), std::string::npos) << lines[9999];
  EXPECT_NE(lines[10000].find("log line limit (10000) reached"), std::string::npos) << lines[10000];
}

TEST(Log, ConcurrentThreadsWriteWholeLines) {
  TempDir d;
  const std::string file = d.file("softmig.log");
  constexpr int kThreads = 8;
  constexpr int kPer = 200;
  const Outcome o = run_logging("4", file, [] {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([t] {
        for (int i = 0; i < kPer; ++i) log_info("thread %d line %d %s", t, i, "payload-payload-payload");
      });
    }
    for (auto& th : threads) th.join();
  });
  ASSERT_EQ(o.exit_code, 0);
  const auto lines = lines_of(test::slurp(file));
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kThreads * kPer));
  const std::regex pat(R"(^\S+ softmig\[\d+\]: info: thread \d line \d+ payload-payload-payload$)");
  for (const auto& l : lines) ASSERT_TRUE(std::regex_match(l, pat)) << l;
  EXPECT_EQ(o.console, "");
}

TEST(Log, EnvironmentGivenByCtest) {
  const char* level = std::getenv("LIBCUDA_LOG_LEVEL");
  const char* file = std::getenv("SOFTMIG_LOG_FILE");
  if (level == nullptr || file == nullptr) GTEST_SKIP() << "run through ctest to get its environment";
  EXPECT_STREQ(level, "4");
  const std::string path = file;
  const std::string before = test::slurp(path);
  test::SharedBox<ChildReport> report;
  const int rc = test::run_in_child([&] {
    // No changes: the environment ctest gave this process.
    log_debug("ctest environment check from %d", static_cast<int>(getpid()));
    report->pid = static_cast<int>(getpid());
    report->level = log_level();
    std::snprintf(report->path, sizeof(report->path), "%s", log_path());
    return 0;
  });
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(report->level, 4);
  EXPECT_EQ(std::string(report->path), path);
  EXPECT_NE(test::slurp(path).find("softmig[" + std::to_string(report->pid) + "]: debug: ctest environment check from " +
                                   std::to_string(report->pid)),
            std::string::npos);
}

}  // namespace
}  // namespace softmig::platform
