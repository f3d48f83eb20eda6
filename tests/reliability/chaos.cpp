// SPDX-License-Identifier: Apache-2.0
/// @file chaos.cpp
/// @brief Faults: processes of one job killed at random instants (SIGKILL, SIGSEGV sent with
///        kill(2), and processes that call _exit on their own) while they allocate, free, launch
///        kernels or shut down; and a process stopped (SIGSTOP) while it holds the ledger's lock.
///
/// chaos [kills]: two survivors hold known amounts and keep allocating; six workers churn
/// through allocation paths and kernel launches and are killed, or end themselves, at random
/// points. Afterwards no process has hung (every wait is bounded), the survivors still make
/// progress, the ledger's total equals the sum of its slots and the survivors' real usage, no
/// slot of a dead process is left once a request reaps, and a fresh process gets the whole slice.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>

#include "reliability.hpp"

namespace reltest {

using namespace memtest;  // NOLINT(google-build-using-namespace): the tests' shared helpers

long env_count(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  MT_CHECK(end != nullptr && *end == '\0' && n > 0, "%s=%s is not a positive number", name, v);
  return n;
}

std::uint64_t context_bytes() {
  const char* v = std::getenv("SOFTMIG_FAKE_CONTEXT_BYTES");
  return v == nullptr ? kContext : parse_size(v);
}

std::uint64_t fresh_fill(int ordinal, std::uint64_t limit, std::uint64_t block, const char* when) {
  auto* obtained = shared_object<std::atomic<std::uint64_t>>();
  const std::uint64_t ctx = context_bytes();
  const pid_t pid = spawn(role() + " fresh process", [&] {
    open_device(ordinal);
    std::vector<CUdeviceptr> ptrs;
    std::uint64_t got = 0;
    CUresult rc = CUDA_SUCCESS;
    for (int i = 0; i < 100000; ++i) {
      CUdeviceptr p = 0;
      rc = cuMemAlloc_v2(&p, block);
      if (rc != CUDA_SUCCESS) break;
      ptrs.push_back(p);
      got += block;
    }
    obtained->store(got);
    const std::uint64_t want = limit > ctx ? (limit - ctx) / block * block : 0;
    MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "%s: allocation ended with %d, expected 2", when, rc);
    MT_CHECK(got == want, "%s: a fresh process obtained %s of GPU %d, expected the slice less its context (%s)", when,
             mib(got).c_str(), ordinal, mib(want).c_str());
    const LedgerSnapshot snap = read_ledger(session());
    MT_CHECK(snap.ok, "%s: no valid ledger", when);
    const std::vector<std::uint64_t> members = snap.members();
    MT_CHECK(members.size() == 1 && members[0] == static_cast<std::uint64_t>(getpid()),
             "%s: the ledger lists %zu processes, expected only the fresh one", when, members.size());
    CUdevice dev = 0;
    MT_CU(cuDeviceGet(&dev, ordinal));
    CUuuid u{};
    MT_CU(cuDeviceGetUuid(&u, dev));
    int phys = u.bytes[15];
    const std::uint64_t used = snap.used(fake_uuid(phys));
    MT_CHECK(used == ctx + got, "%s: the ledger charges %s, the process holds %s", when, mib(used).c_str(),
             mib(ctx + got).c_str());
    for (const CUdeviceptr p : ptrs) MT_CU(cuMemFree_v2(p));
    return 0;
  });
  expect_success(pid, "fresh process");
  return obtained->load();
}

namespace {

constexpr int kSurvivors = 2;
constexpr int kWorkers = 6;

/// What a worker is doing, published for the parent to tally the instant of each kill.
enum Phase : int { kIdle = 0, kAlloc, kFree, kLaunch, kShutdown, kPhases };
const char* const kPhaseNames[kPhases] = {"other", "allocation", "free", "launch", "shutdown"};

/// How a worker ends: killed by the parent, _exit at a random point, or exit() at a random point
/// (the library's exit path runs; the parent may kill it in the middle).
enum Mode : int { kKilled = 0, kSelfExit, kShutdownExit };

struct Shared {
  std::atomic<std::uint64_t> progress[kSurvivors + kWorkers];
  std::atomic<int> phase[kWorkers];
  std::atomic<std::uint64_t> held[kSurvivors];
  std::atomic<int> ready[kSurvivors];
  std::atomic<int> quiesce;
  std::atomic<int> quiesced[kSurvivors];
  std::atomic<std::uint64_t> expected_charge[kSurvivors];
  std::atomic<std::uint64_t> allocations, refusals, launches;
};

/// The allocation paths the chaos workers use (tests/memory's churn_alloc / churn_free).
constexpr Kind kChaosKinds[] = {kLinear, kManaged, kAsync, kVmm, kPitch};

/// A churning device plus the module whose kernel the workers launch.
struct Gpu {
  ChurnDevice dev;
  CUmodule module = nullptr;
  CUfunction fn = nullptr;
};

Gpu open_gpu() { return Gpu{open_churn_device()}; }

/// A kernel launch on the fake: load a module once, then launch its function.
void launch(Gpu& g, Shared* sh) {
  if (g.module == nullptr) {
    MT_CU(cuModuleLoadData(&g.module, "chaos-image"));
    MT_CU(cuModuleGetFunction(&g.fn, g.module, "kernel"));
  }
  MT_CU(cuLaunchKernel(g.fn, 4, 1, 1, 128, 1, 1, 0, g.dev.stream, nullptr, nullptr));
  sh->launches.fetch_add(1);
}

/// Churns until killed, or ends itself after `ops` operations as `mode` says.
int worker(Shared* sh, int w, std::uint64_t seed, Mode mode, int ops) {
  struct rlimit no_core {0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // SIGSEGV must not leave core files behind
  std::mt19937_64 rng(seed);
  Gpu g = open_gpu();
  std::vector<Live> live;
  for (int n = 0;; ++n) {
    if (mode != kKilled && n >= ops) {
      sh->phase[w] = kShutdown;
      if (mode == kSelfExit) ::_exit(42);  // no exit handlers, allocations still held
      // exit(): the library's exit path (leave the ledger) runs, with allocations still held,
      // and the parent may kill the process in the middle of it.
      std::exit(0);
    }
    const unsigned what = static_cast<unsigned>(rng() % 8);
    if (what < 4 && live.size() < 10) {
      const Kind kind = kChaosKinds[rng() % 5];
      const std::uint64_t bytes = 1 + rng() % (96 * kMiB);
      std::uint64_t key = 0;
      sh->phase[w] = kAlloc;
      const CUresult rc = churn_alloc(g.dev, kind, bytes, key);
      sh->phase[w] = kIdle;
      if (rc == CUDA_SUCCESS) {
        live.push_back({kind, key});
        sh->allocations.fetch_add(1);
      } else {
        MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "allocation kind %d of %" PRIu64 " bytes returned %d", static_cast<int>(kind), bytes, rc);
        sh->refusals.fetch_add(1);
      }
    } else if (what < 6 && !live.empty()) {
      const std::size_t i = rng() % live.size();
      sh->phase[w] = kFree;
      MT_CU(churn_free(g.dev, live[i]));
      sh->phase[w] = kIdle;
      live[i] = live.back();
      live.pop_back();
    } else {
      sh->phase[w] = kLaunch;
      launch(g, sh);
      sh->phase[w] = kIdle;
    }
    sh->progress[kSurvivors + w].fetch_add(1);
  }
}

/// Holds a known amount, allocates, frees and launches until told to stop.
int survivor(Shared* sh, int i) {
  Gpu g = open_gpu();
  std::uint64_t key = 0;
  MT_CU(churn_alloc(g.dev, i == 0 ? kLinear : kVmm, kBlock, key));
  MT_CU(churn_alloc(g.dev, kManaged, 64 * kMiB, key));
  sh->held[i] = kBlock + 64 * kMiB;
  launch(g, sh);
  sh->ready[i] = 1;
  for (std::uint64_t n = 0; sh->quiesce.load() == 0; ++n) {
    const Kind kind = kChaosKinds[n % 4];
    const CUresult rc = churn_alloc(g.dev, kind, 16 * kMiB, key);
    if (rc == CUDA_ERROR_OUT_OF_MEMORY) {
      sleep_ms(1);
      continue;
    }
    MT_CHECK(rc == CUDA_SUCCESS, "survivor allocation returned %d", rc);
    MT_CU(churn_free(g.dev, Live{kind, key}));
    if (n % 8 == 0) launch(g, sh);
    sh->progress[i].fetch_add(1);
  }
  // Larger than the slice: refused, after the ledger reaped every dead process's slot and this
  // process re-measured its driver memory.
  CUdeviceptr p = 0;
  const CUresult rc = cuMemAlloc_v2(&p, 64 * kGiB);
  MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "a 64 GiB request returned %d", rc);
  sh->expected_charge[i] = fake_process_used(0);  // allocations + context + module, as the driver says
  sh->quiesced[i] = 1;
  for (;;) ::pause();
}

}  // namespace

int chaos(const Args& a) {
  MT_CHECK(a.size() <= 1, "usage: chaos [kills]");
  const long target = env_count("CHAOS_KILLS", a.empty() ? 1000 : std::atol(a[0].c_str()));
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const std::string s = session();
  const std::uint64_t seed = env_count("CHAOS_SEED", static_cast<long>(static_cast<std::uint64_t>(std::time(nullptr)) ^
                                                                        (static_cast<std::uint64_t>(getpid()) << 16U)));
  note("seed %" PRIu64 " (rerun with CHAOS_SEED=%" PRIu64 ")", seed, seed);
  std::mt19937_64 rng(seed);
  auto* sh = shared_object<Shared>();
  const double t0 = now_ms();

  pid_t survivors[kSurvivors] = {};
  for (int i = 0; i < kSurvivors; ++i) {
    survivors[i] = spawn(role() + " survivor " + std::to_string(i), [&, i] { return survivor(sh, i); });
  }
  wait_until([&] { return sh->ready[0] == 1 && sh->ready[1] == 1; }, 20000, "the survivors");

  pid_t pids[kWorkers] = {};
  Mode modes[kWorkers] = {};
  std::uint64_t spawned = 0;
  auto start = [&](int w) {
    sh->progress[kSurvivors + w] = 0;
    sh->phase[w] = kIdle;
    const unsigned r = static_cast<unsigned>(rng() % 10);
    modes[w] = r < 6 ? kKilled : (r < 8 ? kSelfExit : kShutdownExit);
    const int ops = static_cast<int>(rng() % 40);
    const std::uint64_t child_seed = seed + ++spawned;
    const Mode m = modes[w];
    pids[w] = spawn(role() + " worker " + std::to_string(spawned),
                    [&, w, child_seed, m, ops] { return worker(sh, w, child_seed, m, ops); });
  };
  for (int w = 0; w < kWorkers; ++w) start(w);

  long sigkills = 0, sigsegvs = 0, self_exits = 0, clean_exits = 0;
  long by_phase[kPhases] = {};
  auto killed = [&] { return sigkills + sigsegvs + self_exits; };
  std::uniform_real_distribution<double> delay(0.0, 4.0);
  while (killed() < target) {
    const int w = static_cast<int>(rng() % kWorkers);
    // Let a fresh worker get going (cuInit, context) before aiming at its calls, mostly.
    if (rng() % 4 != 0) {
      const double until = now_ms() + 2000;
      while (sh->progress[kSurvivors + w] == 0 && now_ms() < until) {
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pids[w]), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0) {
          break;  // it ended by itself; reaped below
        }
        sleep_ms(0.2);
      }
    }
    sleep_ms(delay(rng));
    // Aim at one kind of call: wait (briefly, spinning) until the worker is inside it. A worker
    // that ends itself is aimed at its shutdown.
    const int aim = modes[w] == kShutdownExit ? kShutdown : static_cast<int>(kAlloc + rng() % 3);
    for (const double until = now_ms() + 20; sh->phase[w].load() != aim && now_ms() < until;) {
    }
    const int sig = rng() % 3 == 0 ? SIGSEGV : SIGKILL;
    const int phase_at_kill = sh->phase[w].load();
    ::kill(pids[w], sig);
    const int status = reap(pids[w], 10000);  // bounded: a hang fails the test
    if (WIFSIGNALED(status)) {
      MT_CHECK(WTERMSIG(status) == sig, "worker %d died of signal %d, not the %d sent", static_cast<int>(pids[w]),
               WTERMSIG(status), sig);
      (sig == SIGKILL ? sigkills : sigsegvs) += 1;
      by_phase[phase_at_kill] += 1;
    } else {
      MT_CHECK(WIFEXITED(status), "worker %d: unexpected status %d", static_cast<int>(pids[w]), status);
      const int code = WEXITSTATUS(status);
      MT_CHECK((code == 42 && modes[w] == kSelfExit) || (code == 0 && modes[w] == kShutdownExit),
               "worker %d (mode %d) exited with status %d before it was killed", static_cast<int>(pids[w]),
               static_cast<int>(modes[w]), code);
      (code == 42 ? self_exits : clean_exits) += 1;
    }
    for (const pid_t sv : survivors) {
      int st = 0;
      MT_CHECK(::waitpid(sv, &st, WNOHANG) == 0, "survivor %d died (status %d)", static_cast<int>(sv), st);
    }
    start(w);
  }
  const double loop_ms = now_ms() - t0;
  for (const pid_t p : pids) kill_and_reap(p);

  std::uint64_t mark[kSurvivors];
  for (int i = 0; i < kSurvivors; ++i) mark[i] = sh->progress[i];
  wait_until([&] { return sh->progress[0] > mark[0] + 2 && sh->progress[1] > mark[1] + 2; }, 20000,
             "each survivor to allocate and free after the last kill");
  sh->quiesce = 1;
  wait_until([&] { return sh->quiesced[0] == 1 && sh->quiesced[1] == 1; }, 20000, "the survivors to stop");

  const LedgerSnapshot snap = read_ledger(s);
  MT_CHECK(snap.ok, "the ledger is missing or invalid after the kills");
  const std::string uuid = fake_uuid(0);
  const int dev = snap.device(uuid);
  const std::uint64_t used = snap.used(uuid);
  MT_CHECK(snap.slot_sum(uuid) == used, "the device total %s differs from the sum of the slots %s", mib(used).c_str(),
           mib(snap.slot_sum(uuid)).c_str());
  std::uint64_t live_bytes = 0;
  for (int i = 0; i < kSurvivors; ++i) {
    const core::LedgerSlot* slot = snap.slot_of(static_cast<std::uint64_t>(survivors[i]));
    MT_CHECK(slot != nullptr, "survivor %d has no slot", i);
    MT_CHECK(slot->alloc[dev] + slot->overhead[dev] == sh->expected_charge[i],
             "survivor %d uses %s on the driver, its slot says %s + %s", i, mib(sh->expected_charge[i]).c_str(),
             mib(slot->alloc[dev]).c_str(), mib(slot->overhead[dev]).c_str());
    MT_CHECK(slot->alloc[dev] == sh->held[i], "survivor %d holds %s, its slot charges %s", i,
             mib(sh->held[i]).c_str(), mib(slot->alloc[dev]).c_str());
    live_bytes += sh->expected_charge[i];
  }
  std::uint64_t lost = used > live_bytes ? used - live_bytes : live_bytes - used;
  const std::size_t members = snap.members().size();
  MT_CHECK(members == kSurvivors, "%zu slots claimed after a refused request reaped; %d processes live", members,
           kSurvivors);
  for (const pid_t sv : survivors) kill_and_reap(sv);
  const std::uint64_t again = fresh_fill(0, limit, kBlock, "after the chaos");
  const std::uint64_t whole = (limit - context_bytes()) / kBlock * kBlock;
  if (again < whole) lost += whole - again;
  note("%.1f s, seed %" PRIu64 ": SIGKILL %ld, SIGSEGV %ld, _exit %ld (clean exits %ld, not counted); signal kills "
       "during allocation %ld, free %ld, launch %ld, shutdown %ld, elsewhere %ld; %" PRIu64 " allocations, %" PRIu64
       " refusals, %" PRIu64 " launches; lock repairs %" PRIu64,
       loop_ms / 1000, seed, sigkills, sigsegvs, self_exits, clean_exits, by_phase[kAlloc], by_phase[kFree],
       by_phase[kLaunch], by_phase[kShutdown], by_phase[kIdle], sh->allocations.load(), sh->refusals.load(),
       sh->launches.load(), snap.region.header.lock_repairs);
  std::printf("chaos: %ld kills survived, bytes lost: %" PRIu64 "\n", killed(), lost);
  MT_CHECK(lost == 0, "%s lost", mib(lost).c_str());
  return 0;
}

// ---- a process stopped while it holds the ledger's lock ------------------------------------------

int stall(const Args& a) {
  MT_CHECK(a.empty(), "usage: stall");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const std::string s = session();
  constexpr int kUsers = 4;
  struct Shared2 {
    std::atomic<int> ready;
    std::atomic<int> go;
    std::atomic<int> done;
    std::atomic<int> locked;
    std::atomic<std::int64_t> worst_ms[kUsers];
    std::atomic<int> refused[kUsers];
  };
  auto* sh = shared_object<Shared2>();
  auto wait_for = [](const std::atomic<int>& v, int value, const char* what) {
    wait_until([&] { return v.load() >= value; }, 60000, what);
  };
  pid_t users[kUsers] = {};
  for (int u = 0; u < kUsers; ++u) {
    users[u] = spawn(role() + " user " + std::to_string(u), [&, u] {
      open_device(0);
      CUdeviceptr keep = 0;
      MT_CU(cuMemAlloc_v2(&keep, 64 * kMiB));
      sh->ready.fetch_add(1);
      wait_for(sh->go, 1, "the stopped holder");
      // An allocation, a free and a second allocation while the holder is stopped.
      std::int64_t worst = 0;
      CUdeviceptr p = 0;
      double t = now_ms();
      const CUresult rc = cuMemAlloc_v2(&p, 64 * kMiB);
      worst = std::max(worst, static_cast<std::int64_t>(now_ms() - t));
      if (rc == CUDA_SUCCESS) MT_CU(cuMemFree_v2(p));
      sh->refused[u] = rc == CUDA_ERROR_OUT_OF_MEMORY ? 1 : 0;
      t = now_ms();
      MT_CU(cuMemFree_v2(keep));
      worst = std::max(worst, static_cast<std::int64_t>(now_ms() - t));
      sh->worst_ms[u] = worst;
      sh->done.fetch_add(1);
      wait_for(sh->go, 2, "the holder to be killed");
      MT_CU(cuMemAlloc_v2(&p, 64 * kMiB));  // works again
      MT_CU(cuMemFree_v2(p));
      return 0;
    });
  }
  wait_for(sh->ready, kUsers, "the users to allocate");
  const pid_t holder = spawn(role() + " lock holder", [&]() -> int {
    const std::string path = ledger_path(s);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    MT_CHECK(fd >= 0, "cannot open %s", path.c_str());
    void* m = ::mmap(nullptr, sizeof(core::LedgerRegion), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    MT_CHECK(m != MAP_FAILED, "mmap");
    auto* mutex = reinterpret_cast<pthread_mutex_t*>(static_cast<core::LedgerRegion*>(m)->header.lock);
    MT_CHECK(pthread_mutex_lock(mutex) == 0, "pthread_mutex_lock");
    sh->locked = 1;
    ::raise(SIGSTOP);
    for (;;) ::pause();
  });
  wait_for(sh->locked, 1, "the lock holder");
  const double t0 = now_ms();
  sh->go = 1;
  wait_for(sh->done, kUsers, "the users' calls under the stopped holder");
  const double all_ms = now_ms() - t0;
  std::int64_t worst = 0;
  int refused = 0;
  for (int u = 0; u < kUsers; ++u) {
    worst = std::max(worst, sh->worst_ms[u].load());
    refused += sh->refused[u];
  }
  kill_and_reap(holder);
  sh->go = 2;
  for (const pid_t u : users) expect_success(u, "a user");
  const std::uint64_t again = fresh_fill(0, limit, kBlock, "after the stopped holder was killed");
  const std::uint64_t whole = (limit - context_bytes()) / kBlock * kBlock;
  std::printf("stall: a SIGSTOPped lock holder delayed %d processes' calls by at most %lld ms each (bound: 2000 ms "
              "lock timeout), %d of %d allocations refused meanwhile, bytes lost: %" PRIu64 "\n",
              kUsers, static_cast<long long>(worst), refused, kUsers, whole - std::min(whole, again));
  note("all users done %.0f ms after the holder stopped", all_ms);
  MT_CHECK(worst <= 4000, "a call waited %lld ms behind a stopped lock holder", static_cast<long long>(worst));
  MT_CHECK(refused == kUsers, "an allocation succeeded while the ledger was locked");
  MT_CHECK(again == whole, "bytes lost after the holder died");
  return 0;
}

}  // namespace reltest
