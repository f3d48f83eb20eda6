// SPDX-License-Identifier: Apache-2.0
/// victim_fork: process creation around CUDA, as in data-loader workers and launchers.
///  1. a parent that has not touched CUDA forks; the child initialises CUDA, allocates, frees,
///     checks softmig saw its calls and exits 0; then the parent uses CUDA itself;
///  2. after CUDA is initialised, children that only exit (through _exit and through exit)
///     must report their status unchanged;
///  3. a CUDA-using process runs /bin/true through fork + exec and through posix_spawn.
#include "victim_common.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <cerrno>

extern char** environ;

namespace {

/// Waits for `pid` and fails unless it exited normally with `code`.
void expect_exit(pid_t pid, int code, const char* what) {
  int status = 0;
  pid_t got = -1;
  do {
    got = ::waitpid(pid, &status, 0);
  } while (got < 0 && errno == EINTR);
  VICTIM_CHECK(got == pid, "%s: waitpid failed", what);
  if (WIFSIGNALED(status)) {
    victim::fail("%s: killed by signal %d", what, WTERMSIG(status));
  }
  VICTIM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == code, "%s: exit status %d, expected %d",
               what, WEXITSTATUS(status), code);
}

/// Initialises CUDA, allocates and frees through the linked driver, checking that softmig and
/// the driver saw each call once.
void use_cuda(const victim::Softmig& softmig, const victim::FakeCuda& fake, const char* who) {
  victim::Ledger ledger;
  struct {
    decltype(&::cuInit) cuInit = &::cuInit;
    decltype(&::cuDeviceGet) cuDeviceGet = &::cuDeviceGet;
    decltype(&::cuDevicePrimaryCtxRetain) cuDevicePrimaryCtxRetain = &::cuDevicePrimaryCtxRetain;
    decltype(&::cuCtxSetCurrent) cuCtxSetCurrent = &::cuCtxSetCurrent;
    decltype(&::cuMemAlloc_v2) cuMemAlloc_v2 = &::cuMemAlloc_v2;
    decltype(&::cuMemFree_v2) cuMemFree_v2 = &::cuMemFree_v2;
  } api;
  fake.reset();
  VICTIM_CU(ledger, api, cuInit, 0);
  CUdevice dev = -1;
  VICTIM_CU(ledger, api, cuDeviceGet, &dev, 0);
  CUcontext ctx = nullptr;
  VICTIM_CU(ledger, api, cuDevicePrimaryCtxRetain, &ctx, dev);
  VICTIM_CU(ledger, api, cuCtxSetCurrent, ctx);
  CUdeviceptr p = 0;
  VICTIM_CU(ledger, api, cuMemAlloc_v2, &p, 32ULL << 20U);
  VICTIM_CU(ledger, api, cuMemFree_v2, p);
  // Each process calling this has made no CUDA call before (softmig's counters are per process
  // and a fork copies them), so the absolute counts must equal the calls made here.
  ledger.verify(softmig, fake.count, who);
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_fork");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  const auto fake = victim::FakeCuda::find(RTLD_DEFAULT);
  VICTIM_CHECK(softmig.calls("cuInit") == 0 && softmig.calls("cuMemAlloc_v2") == 0,
               "softmig counted CUDA calls before the program made any");

  // 1. CUDA only in the child of a CUDA-free parent.
  const pid_t child = ::fork();
  VICTIM_CHECK(child >= 0, "fork failed");
  if (child == 0) {
    victim::g_program = "victim_fork (child of a CUDA-free parent)";
    use_cuda(softmig, fake, "child");
    ::_exit(0);
  }
  expect_exit(child, 0, "child using CUDA");
  use_cuda(softmig, fake, "parent after its child used CUDA");

  // 2. Children of a CUDA-using process that only exit.
  CUdeviceptr held = 0;
  victim::expect_cu("cuMemAlloc_v2", cuMemAlloc_v2(&held, 8ULL << 20U));
  const pid_t quick = ::fork();
  VICTIM_CHECK(quick >= 0, "fork failed");
  if (quick == 0) {
    ::_exit(42);
  }
  expect_exit(quick, 42, "child leaving through _exit(42)");
  const pid_t normal = ::fork();
  VICTIM_CHECK(normal >= 0, "fork failed");
  if (normal == 0) {
    std::exit(43);  // runs atexit handlers and library destructors in the child
  }
  expect_exit(normal, 43, "child leaving through exit(43)");

  // 3. Running another program from a CUDA-using process.
  const pid_t execer = ::fork();
  VICTIM_CHECK(execer >= 0, "fork failed");
  if (execer == 0) {
    char* const args[] = {const_cast<char*>("/bin/true"), nullptr};
    ::execve("/bin/true", args, environ);
    ::_exit(127);
  }
  expect_exit(execer, 0, "fork + exec of /bin/true");
  pid_t spawned = -1;
  char* const args[] = {const_cast<char*>("/bin/true"), nullptr};
  VICTIM_CHECK(::posix_spawn(&spawned, "/bin/true", nullptr, nullptr, args, environ) == 0,
               "posix_spawn(/bin/true) failed");
  expect_exit(spawned, 0, "posix_spawn of /bin/true");

  // The parent's CUDA state is intact.
  victim::expect_cu("cuMemFree_v2", cuMemFree_v2(held));
  size_t free_bytes = 0;
  size_t total = 0;
  victim::expect_cu("cuMemGetInfo_v2", cuMemGetInfo_v2(&free_bytes, &total));
  return 0;
}
