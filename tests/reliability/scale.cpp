// SPDX-License-Identifier: Apache-2.0
/// @file scale.cpp
/// @brief Load and scale: many processes in one job (and the library's start-up cost among
///        them), many threads of one process, and eight GPUs with limits of their own. Each ends
///        with no lost bytes: the ledger charges exactly what is live, and a fresh process gets
///        the whole slice.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "reliability.hpp"

extern char** environ;

namespace reltest {

using namespace memtest;  // NOLINT(google-build-using-namespace): the tests' shared helpers

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

/// The environment of a child, with LD_PRELOAD kept or removed.
std::vector<std::string> child_env(bool preload) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!preload && std::strncmp(*e, "LD_PRELOAD=", 11) == 0) continue;
    env.emplace_back(*e);
  }
  return env;
}

struct Started {
  pid_t pid = 0;
  double ms = 0;  // exec to first successful allocation
};

/// Starts `reliability_victim startup-child` and waits for its first allocation. The child then
/// holds its allocation until `release` reaches EOF.
Started start_one(bool preload, int report_w, int report_r, int release_r) {
  const std::vector<std::string> env = child_env(preload);
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string fd_arg = std::to_string(report_w);
  const std::string rel_arg = std::to_string(release_r);
  char* argv[] = {const_cast<char*>("reliability_victim"), const_cast<char*>("startup-child"),
                  const_cast<char*>(fd_arg.c_str()), const_cast<char*>(rel_arg.c_str()), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  Started s;
  const double t0 = now_ms();
  const int rc = posix_spawn(&s.pid, "/proc/self/exe", &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  MT_CHECK(rc == 0, "posix_spawn: %s", std::strerror(rc));
  double t1 = 0;
  std::size_t got = 0;
  auto* out = reinterpret_cast<char*>(&t1);
  while (got < sizeof t1) {
    pollfd p{report_r, POLLIN, 0};
    MT_CHECK(::poll(&p, 1, 30000) == 1, "a started process did not allocate within 30 s");
    const ssize_t n = ::read(report_r, out + got, sizeof t1 - got);
    MT_CHECK(n > 0, "report pipe closed");
    got += static_cast<std::size_t>(n);
  }
  MT_CHECK(t1 > 0, "a started process failed to allocate");
  s.ms = t1 - t0;
  return s;
}

}  // namespace

int startup_child(const Args& a) {
  MT_CHECK(a.size() == 2, "usage: startup-child <report fd> <release fd>");
  const int report = std::atoi(a[0].c_str());
  const int release = std::atoi(a[1].c_str());
  CUdeviceptr p = 0;
  double t = -1;
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  CUresult rc = cuInit(0);
  if (rc == CUDA_SUCCESS) rc = cuDeviceGet(&dev, 0);
  if (rc == CUDA_SUCCESS) rc = cuDevicePrimaryCtxRetain(&ctx, dev);
  if (rc == CUDA_SUCCESS) rc = cuCtxSetCurrent(ctx);
  if (rc == CUDA_SUCCESS) rc = cuMemAlloc_v2(&p, kMiB);
  if (rc == CUDA_SUCCESS) {
    t = now_ms();
  } else {
    std::fprintf(stderr, "startup-child %d (%s): a CUDA call returned %d\n", static_cast<int>(getpid()),
                 softmig_loaded() ? "preloaded" : "bare", rc);
  }
  MT_CHECK(::write(report, &t, sizeof t) == static_cast<ssize_t>(sizeof t), "report");
  char c = 0;
  while (::read(release, &c, 1) > 0) {
  }
  if (t > 0) MT_CU(cuMemFree_v2(p));
  return t > 0 ? 0 : 1;
}

int procs(const Args& a) {
  MT_CHECK(a.size() <= 1, "usage: procs [n]");
  const long n = env_count("SCALE_PROCS", a.empty() ? 256 : std::atol(a[0].c_str()));
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const std::uint64_t ctx = context_bytes();
  MT_CHECK(static_cast<std::uint64_t>(n) * (ctx + kMiB) <= limit, "the slice must hold %ld processes", n);
  int report[2];
  int release[2];
  MT_CHECK(::pipe(report) == 0 && ::pipe(release) == 0, "pipe");
  // The children inherit report[1] and release[0]; the rest is close-on-exec.
  ::fcntl(report[0], F_SETFD, FD_CLOEXEC);
  ::fcntl(release[1], F_SETFD, FD_CLOEXEC);
  std::vector<double> with, without;
  std::vector<pid_t> pids;
  const double t0 = now_ms();
  for (long i = 0; i < n; ++i) {
    // Alternate, so that drift in the machine's load affects both alike.
    for (const bool preload : {i % 2 == 0, i % 2 != 0}) {
      const Started s = start_one(preload, report[1], report[0], release[0]);
      (preload ? with : without).push_back(s.ms);
      pids.push_back(s.pid);
    }
  }
  const double start_all_ms = now_ms() - t0;
  // n preloaded processes live at once: each is a member of the ledger and charged exactly.
  const LedgerSnapshot snap = read_ledger(session());
  MT_CHECK(snap.ok, "no valid ledger with %ld processes", n);
  const std::size_t members = snap.members().size();
  const std::uint64_t used = snap.used(fake_uuid(0));
  const std::uint64_t want = static_cast<std::uint64_t>(n) * (ctx + kMiB);
  MT_CHECK(members == static_cast<std::size_t>(n), "%zu ledger members with %ld live processes", members, n);
  MT_CHECK(used == want && snap.slot_sum(fake_uuid(0)) == used, "%ld processes hold %s, the ledger charges %s", n,
           mib(want).c_str(), mib(used).c_str());
  ::close(release[1]);  // everyone frees and exits
  for (const pid_t p : pids) expect_success(p, "a started process", 60000);
  ::close(report[0]);
  ::close(report[1]);
  ::close(release[0]);
  const std::uint64_t again = fresh_fill(0, limit, kBlock, "after the processes exited");
  const std::uint64_t whole = (limit - ctx) / kBlock * kBlock;
  const double cost = median(with) - median(without);
  std::printf("scale: %ld processes in one job, bytes lost: %" PRIu64 "\n", n, whole - std::min(whole, again));
  std::printf("startup: library cost at %ld processes: %.2f ms (median exec-to-first-allocation %.2f ms preloaded, "
              "%.2f ms bare; p90 %.2f / %.2f ms; target < 50 ms)\n",
              n, cost, median(with), median(without), percentile(with, 0.9), percentile(without, 0.9));
  note("started %ld + %ld processes in %.1f s", n, n, start_all_ms / 1000);
  MT_CHECK(again == whole, "bytes lost");
  MT_CHECK(cost < 50, "start-up cost %.2f ms", cost);
  return 0;
}

int threads(const Args& a) {
  MT_CHECK(a.size() <= 1, "usage: threads [n]");
  const long n = env_count("SCALE_THREADS", a.empty() ? 64 : std::atol(a[0].c_str()));
  const long iters = env_count("SCALE_THREAD_ITERATIONS", 400);
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const std::uint64_t ctx_bytes = context_bytes();
  struct Totals {
    std::atomic<std::uint64_t> held{0}, peak{0}, allocations{0}, refusals{0};
    std::atomic<long> started{0};
  };
  auto* t = shared_object<Totals>();
  const pid_t pid = spawn(role() + " threads", [&] {
    CUcontext ctx = open_device(0);
    std::vector<std::thread> pool;
    for (long i = 0; i < n; ++i) {
      pool.emplace_back([&, i] {
        use_context(ctx);
        t->started.fetch_add(1);
        while (t->started.load() < n) std::this_thread::yield();  // all threads at once
        std::mt19937_64 rng(static_cast<std::uint64_t>(i) * 7919U + 1);
        std::vector<std::pair<CUdeviceptr, std::uint64_t>> live;
        auto note_held = [&](std::uint64_t bytes) {
          const std::uint64_t now = t->held.fetch_add(bytes) + bytes;
          std::uint64_t peak = t->peak.load();
          while (now > peak && !t->peak.compare_exchange_weak(peak, now)) {
          }
        };
        // First every thread allocates until it is refused, so the slice is full at least once
        // whatever the scheduling; then all churn together.
        for (int k = 0; k < 256; ++k) {
          const std::uint64_t bytes = 1 + rng() % (48 * kMiB);
          CUdeviceptr p = 0;
          const CUresult rc = cuMemAlloc_v2(&p, bytes);
          if (rc != CUDA_SUCCESS) {
            MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "allocation returned %d", rc);
            t->refusals.fetch_add(1);
            break;
          }
          note_held(bytes);
          live.emplace_back(p, bytes);
          t->allocations.fetch_add(1);
        }
        t->started.fetch_add(1);
        while (t->started.load() < 2 * n) std::this_thread::yield();
        for (long k = 0; k < iters; ++k) {
          if (live.size() < 64 && rng() % 2 == 0) {
            const std::uint64_t bytes = 1 + rng() % (48 * kMiB);
            CUdeviceptr p = 0;
            const CUresult rc = (k % 2 == 0) ? cuMemAlloc_v2(&p, bytes) : cuMemAllocManaged(&p, bytes, kAttachGlobal);
            if (rc == CUDA_SUCCESS) {
              note_held(bytes);
              live.emplace_back(p, bytes);
              t->allocations.fetch_add(1);
            } else {
              MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "allocation returned %d", rc);
              t->refusals.fetch_add(1);
            }
          } else if (!live.empty()) {
            const std::size_t j = rng() % live.size();
            t->held.fetch_sub(live[j].second);
            MT_CU(cuMemFree_v2(live[j].first));
            live[j] = live.back();
            live.pop_back();
          }
        }
        for (const auto& [p, bytes] : live) {
          t->held.fetch_sub(bytes);
          MT_CU(cuMemFree_v2(p));
        }
      });
    }
    for (std::thread& th : pool) th.join();
    const LedgerSnapshot snap = read_ledger(session());
    MT_CHECK(snap.ok, "no ledger");
    const core::LedgerSlot* slot = snap.slot_of(static_cast<std::uint64_t>(getpid()));
    MT_CHECK(slot != nullptr, "no slot");
    const int dev = snap.device(fake_uuid(0));
    MT_CHECK(slot->alloc[dev] == 0, "everything was freed, the slot still charges %s", mib(slot->alloc[dev]).c_str());
    MT_CHECK(snap.used(fake_uuid(0)) == slot->overhead[dev], "the device total %s is not the context's %s",
             mib(snap.used(fake_uuid(0))).c_str(), mib(slot->overhead[dev]).c_str());
    return 0;
  });
  expect_success(pid, "the threaded process", 120000);
  MT_CHECK(t->peak + ctx_bytes <= limit, "the threads held %s at once, above the slice less the context",
           mib(t->peak).c_str());
  MT_CHECK(t->refusals > 0, "no allocation was ever refused: the test did not reach the limit");
  const std::uint64_t again = fresh_fill(0, limit, kBlock, "after the threads");
  const std::uint64_t whole = (limit - ctx_bytes) / kBlock * kBlock;
  std::printf("threads: %ld threads, %" PRIu64 " allocations, %" PRIu64 " refused, peak %s of %s, bytes lost: %" PRIu64
              "\n",
              n, t->allocations.load(), t->refusals.load(), mib(t->peak + ctx_bytes).c_str(), mib(limit).c_str(),
              whole - std::min(whole, again));
  MT_CHECK(again == whole, "bytes lost");
  return 0;
}

int gpus(const Args& a) {
  MT_CHECK(a.empty(), "usage: gpus");
  check_environment(true);
  const int n = 8;
  const std::uint64_t ctx = context_bytes();
  std::uint64_t limits[n];
  for (int g = 0; g < n; ++g) {
    const std::string key = "CUDA_DEVICE_MEMORY_LIMIT_" + std::to_string(g);
    const char* v = std::getenv(key.c_str());
    MT_CHECK(v != nullptr, "the test must set %s", key.c_str());
    limits[g] = parse_size(v);
  }
  constexpr std::uint64_t kStep = 64 * kMiB;
  struct PerGpu {
    std::atomic<std::uint64_t> obtained[8];
    std::atomic<int> opened;
    std::atomic<int> full;
    std::atomic<int> go;
  };
  auto* sh = shared_object<PerGpu>();
  // Two processes per GPU, and every process also holds a context on every GPU, fill at once.
  std::vector<pid_t> pids;
  for (int p = 0; p < 2 * n; ++p) {
    pids.push_back(spawn(role() + " process " + std::to_string(p), [&, p] {
      CUcontext ctxs[n];
      for (int g = 0; g < n; ++g) ctxs[g] = open_device(g);
      // Contexts are measured, not reserved: fill only once every context exists.
      sh->opened.fetch_add(1);
      const double until = now_ms() + 60000;
      while (sh->opened.load() < 2 * n) {
        MT_CHECK(now_ms() < until, "the other processes did not open their contexts");
        sleep_ms(1);
      }
      const int g = p % n;
      use_context(ctxs[g]);
      std::vector<CUdeviceptr> mine;
      for (;;) {
        CUdeviceptr q = 0;
        const CUresult rc = cuMemAlloc_v2(&q, kStep);
        if (rc != CUDA_SUCCESS) {
          MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "GPU %d: allocation returned %d", g, rc);
          break;
        }
        mine.push_back(q);
        sh->obtained[g].fetch_add(kStep);
      }
      sh->full.fetch_add(1);
      while (sh->go.load() == 0) sleep_ms(1);
      for (const CUdeviceptr q : mine) MT_CU(cuMemFree_v2(q));
      return 0;
    }));
  }
  const double deadline = now_ms() + 60000;
  while (sh->full.load() < 2 * n) {
    MT_CHECK(now_ms() < deadline, "the processes did not fill their GPUs");
    sleep_ms(1);
  }
  std::uint64_t lost = 0;
  const LedgerSnapshot snap = read_ledger(session());
  MT_CHECK(snap.ok, "no ledger");
  for (int g = 0; g < n; ++g) {
    // Every one of the 16 processes has a context on every GPU.
    const std::uint64_t contexts = 2ULL * n * ctx;
    const std::uint64_t want = limits[g] > contexts ? (limits[g] - contexts) / kStep * kStep : 0;
    const std::uint64_t used = snap.used(fake_uuid(g));
    MT_CHECK(sh->obtained[g] == want, "GPU %d: the processes obtained %s, expected %s", g,
             mib(sh->obtained[g]).c_str(), mib(want).c_str());
    MT_CHECK(used == contexts + sh->obtained[g] && used <= limits[g], "GPU %d: the ledger charges %s for %s", g,
             mib(used).c_str(), mib(contexts + sh->obtained[g]).c_str());
    MT_CHECK(snap.slot_sum(fake_uuid(g)) == used, "GPU %d: total differs from the slots", g);
  }
  sh->go = 1;
  for (const pid_t p : pids) expect_success(p, "a process");
  // A fresh process per GPU gets the whole of that GPU's slice.
  for (int g = 0; g < n; ++g) {
    const std::uint64_t again = fresh_fill(g, limits[g], kStep, "after the 8-GPU fill");
    const std::uint64_t whole = (limits[g] - ctx) / kStep * kStep;
    lost += whole - std::min(whole, again);
  }
  std::printf("gpus: %d GPUs with per-GPU limits, %d processes, bytes lost: %" PRIu64 "\n", n, 2 * n, lost);
  MT_CHECK(lost == 0, "bytes lost");
  return 0;
}

}  // namespace reltest
