// SPDX-License-Identifier: Apache-2.0
/// victim_no_cuda: a program that never touches CUDA must not notice the preloaded library.
///
///   victim_no_cuda <umask> <exit-code> <exit|_exit|return> [--no-softmig-expected]
///
/// runs as a launcher: it forks a child with a clean slate (only fds 0-2 open, all signals at
/// SIG_DFL and unblocked, the given umask), which re-executes this program in check mode with
/// the inherited environment (so LD_PRELOAD applies afresh). The child checks, before it calls
/// anything that could reach softmig, that it has one thread, default signal dispositions and
/// an empty signal mask, the umask it was given, no descriptors beyond 0-2 and no driver
/// library mapped, then leaves with the exit code through exit(), _exit() or return from main.
/// The launcher passes if the child's status is exactly that code and the child printed nothing.
#include "victim_common.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cerrno>
#include <csignal>
#include <set>

namespace {

int count_entries(const char* dir, bool skip_own_fd) {
  DIR* d = ::opendir(dir);
  VICTIM_CHECK(d != nullptr, "cannot open %s", dir);
  int n = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') {
      continue;
    }
    if (skip_own_fd && std::atoi(e->d_name) == ::dirfd(d)) {
      continue;
    }
    ++n;
  }
  ::closedir(d);
  return n;
}

std::set<int> open_fds() {
  DIR* d = ::opendir("/proc/self/fd");
  VICTIM_CHECK(d != nullptr, "cannot open /proc/self/fd");
  std::set<int> fds;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.' && std::atoi(e->d_name) != ::dirfd(d)) {
      fds.insert(std::atoi(e->d_name));
    }
  }
  ::closedir(d);
  return fds;
}

unsigned current_umask() {
  FILE* f = std::fopen("/proc/self/status", "re");
  VICTIM_CHECK(f != nullptr, "cannot read /proc/self/status");
  char line[256];
  unsigned mask = 01000;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "Umask: %o", &mask) == 1) {
      break;
    }
  }
  std::fclose(f);
  VICTIM_CHECK(mask != 01000, "no Umask line in /proc/self/status");
  return mask;
}

int check_mode(unsigned want_umask, int code, const std::string& how, bool softmig_expected) {
  victim::g_program = "victim_no_cuda (check)";
  const int threads = count_entries("/proc/self/task", false);
  VICTIM_CHECK(threads == 1, "%d threads at the start of main, expected 1", threads);
  for (int sig = 1; sig <= 64; ++sig) {
    struct sigaction sa {};
    if (::sigaction(sig, nullptr, &sa) != 0) {
      continue;  // signals reserved by the C library
    }
    VICTIM_CHECK(sa.sa_handler == SIG_DFL, "signal %d (%s) has a handler or is ignored", sig,
                 strsignal(sig));
  }
  sigset_t blocked;
  sigemptyset(&blocked);
  ::sigprocmask(SIG_BLOCK, nullptr, &blocked);
  for (int sig = 1; sig <= 64; ++sig) {
    VICTIM_CHECK(sigismember(&blocked, sig) != 1, "signal %d is blocked", sig);
  }
  const unsigned mask = current_umask();
  VICTIM_CHECK(mask == want_umask, "umask is %03o, expected %03o", mask, want_umask);
  const auto fds = open_fds();
  VICTIM_CHECK(fds == std::set<int>({0, 1, 2}),
               "%zu descriptors open (highest %d), expected 0, 1, 2", fds.size(),
               fds.empty() ? -1 : *fds.rbegin());
  VICTIM_CHECK(!victim::mapped("libcuda.so"), "libcuda is mapped");
  VICTIM_CHECK(!victim::mapped("libnvidia-ml.so"), "libnvidia-ml is mapped");
  // Looked up in the maps rather than with dlsym so that no softmig code runs.
  const bool loaded = victim::mapped("libsoftmig");
  VICTIM_CHECK(loaded == softmig_expected, softmig_expected ? "library not loaded"
                                                            : "libsoftmig is loaded although "
                                                              "--no-softmig-expected was given");
  if (how == "_exit") {
    ::_exit(code);
  }
  if (how == "exit") {
    std::exit(code);
  }
  return code;  // "return"
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_no_cuda");
  const bool check = !opts.args.empty() && opts.args[0] == "--check";
  const std::size_t base = check ? 1 : 0;
  VICTIM_CHECK(
      opts.args.size() == base + 3,
      "usage: victim_no_cuda <umask> <exit-code> <exit|_exit|return> [--no-softmig-expected]");
  const unsigned want_umask =
      static_cast<unsigned>(std::strtoul(opts.args[base].c_str(), nullptr, 8));
  const int code = std::atoi(opts.args[base + 1].c_str());
  const std::string how = opts.args[base + 2];
  VICTIM_CHECK(code != 1 && code >= 0 && code < 256,
               "pick an exit code other than 1 (the failure code)");
  VICTIM_CHECK(how == "exit" || how == "_exit" || how == "return", "unknown exit mode %s",
               how.c_str());
  if (check) {
    return check_mode(want_umask, code, how, opts.softmig_expected);
  }

  // Launcher.
  int out[2];
  VICTIM_CHECK(::pipe2(out, O_CLOEXEC) == 0, "pipe failed");
  const pid_t child = ::fork();
  VICTIM_CHECK(child >= 0, "fork failed");
  if (child == 0) {
    const int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(out[1], 2) < 0) {
      ::_exit(126);
    }
    ::close_range(3, ~0U, 0);
    for (int sig = 1; sig <= 64; ++sig) {
      ::signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::umask(static_cast<mode_t>(want_umask));
    std::vector<std::string> args = {argv[0], "--check", opts.args[0], opts.args[1], opts.args[2]};
    if (!opts.softmig_expected) {
      args.emplace_back("--no-softmig-expected");
    }
    std::vector<char*> cargs;
    for (auto& a : args) {
      cargs.push_back(a.data());
    }
    cargs.push_back(nullptr);
    ::execv("/proc/self/exe", cargs.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string output;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::read(out[0], buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) {
      continue;
    }
    VICTIM_CHECK(n > 0, "reading the child's output failed");
    output.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    VICTIM_CHECK(errno == EINTR, "waitpid failed");
  }
  while (!output.empty() && output.back() == '\n') {
    output.pop_back();
  }
  if (WIFSIGNALED(status)) {
    victim::fail("the check process was killed by signal %d; output: %s", WTERMSIG(status),
                 output.c_str());
  }
  VICTIM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == code,
               "the check process exited with %d, expected %d (via %s); output: %s",
               WEXITSTATUS(status), code, how.c_str(), output.c_str());
  VICTIM_CHECK(output.empty(), "the check process printed: %s", output.c_str());
  return 0;
}
