// SPDX-License-Identifier: Apache-2.0
/// @file scenarios_multi.cpp
/// @brief Memory-slice scenarios with several processes: a shared slice, a race for the last
///        block, processes killed at random instants, stale slots of reused pids, and NVML process
///        lists. The parent of each scenario never uses CUDA; its children do, each in a fresh
///        process that has inherited no context.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
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
#include <set>

#include "memory_common.hpp"
#include "scenarios.hpp"

namespace memtest {
namespace {

/// 256 MiB blocks allocated with cuMemAlloc_v2 until the first failure.
struct Blocks {
  std::vector<CUdeviceptr> ptrs;
  std::uint64_t obtained = 0;
  CUresult last = CUDA_SUCCESS;
};

Blocks alloc_blocks(std::uint64_t block = kBlock) {
  Blocks b;
  for (int i = 0; i < 4096; ++i) {
    CUdeviceptr p = 0;
    b.last = cuMemAlloc_v2(&p, block);
    if (b.last != CUDA_SUCCESS) break;
    b.ptrs.push_back(p);
    b.obtained += block;
  }
  return b;
}

void free_blocks(Blocks& b) {
  for (const CUdeviceptr p : b.ptrs) MT_CU(cuMemFree_v2(p));
  b.ptrs.clear();
}

/// Waits until `pid` has exited but has not been waited for.
void wait_until_zombie(pid_t pid) {
  const double deadline = now_ms() + 10000;
  for (;;) {
    const std::string stat = read_bytes("/proc/" + std::to_string(pid) + "/stat");
    const std::size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z') return;
    MT_CHECK(now_ms() < deadline, "pid %d did not become a zombie", static_cast<int>(pid));
    sleep_ms(1);
  }
}

std::uint64_t whole_blocks(std::uint64_t limit, std::uint64_t block = kBlock) {
  return limit > kContext ? (limit - kContext) / block * block : 0;
}

/// A fresh process of `session_name` must be able to fill the whole slice (less its context)
/// and must then be the ledger's only member. Returns what it obtained.
std::uint64_t fresh_process_fills(const std::string& session_name, std::uint64_t limit, const char* when) {
  auto* obtained = shared_object<std::atomic<std::uint64_t>>();
  const pid_t pid = spawn(role() + " fresh process", [&] {
    ::setenv("SOFTMIG_SESSION", session_name.c_str(), 1);
    open_device(0);
    Blocks b = alloc_blocks();
    obtained->store(b.obtained);
    MT_CHECK(b.last == CUDA_ERROR_OUT_OF_MEMORY, "%s: allocation ended with %d, expected 2", when, b.last);
    MT_CHECK(b.obtained == whole_blocks(limit),
             "%s: a fresh process obtained %s, expected the whole slice less its context in 256 MiB blocks (%s)",
             when, mib(b.obtained).c_str(), mib(whole_blocks(limit)).c_str());
    const LedgerSnapshot snap = read_ledger(session_name);
    MT_CHECK(snap.ok, "no ledger");
    const std::vector<std::uint64_t> members = snap.members();
    MT_CHECK(members.size() == 1 && members[0] == static_cast<std::uint64_t>(getpid()),
             "%s: the ledger lists %zu processes, expected only the fresh one", when, members.size());
    MT_CHECK(snap.used(fake_uuid(0)) == kContext + b.obtained, "%s: ledger charges %s, the process holds %s", when,
             mib(snap.used(fake_uuid(0))).c_str(), mib(kContext + b.obtained).c_str());
    free_blocks(b);
    return 0;
  });
  expect_success(pid, "fresh process");
  return obtained->load();
}

}  // namespace

// ---- 10. stale slots of live pids with other start times --------------------------------------

namespace {

struct StaleSlot {
  std::uint64_t pid = 0;
  std::uint64_t start = 0;
  std::uint64_t bytes = 0;
};

class AssumeAlive final : public core::Liveness {
 public:
  bool alive(std::uint64_t, std::uint64_t) const noexcept override { return true; }
};

void add_stale_slot(core::LedgerRegion& r, void* ctx) {
  const auto* s = static_cast<const StaleSlot*>(ctx);
  const AssumeAlive live;
  core::Ledger ledger(r, live);
  const unsigned slot = ledger.claim_slot(s->pid, s->start, geteuid());
  const unsigned dev = ledger.device_index(fake_uuid(0));
  MT_CHECK(slot != core::kNoSlot && dev != core::kNoDevice, "cannot write the stale slot");
  MT_CHECK(ledger.reserve(slot, dev, s->bytes, std::nullopt).granted, "cannot charge the stale slot");
}

}  // namespace

int pid_reuse(const Args& a) {
  MT_CHECK(a.empty(), "usage: pid-reuse");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const pid_t parent = getpid();
  for (const std::string variant : {"pid1", "parent", "self"}) {
    const std::string s = session() + "-" + variant;
    remove_ledger(s);
    const pid_t child = spawn(role() + " " + variant, [&] {
      ::setenv("SOFTMIG_SESSION", s.c_str(), 1);
      StaleSlot stale;
      stale.pid = static_cast<std::uint64_t>(variant == "pid1" ? 1 : variant == "parent" ? parent : getpid());
      stale.start = start_time_of(static_cast<pid_t>(stale.pid)) + 1000;  // the pid exists, started otherwise
      stale.bytes = 3 * kGiB;
      write_ledger(ledger_path(s), "session-" + s, add_stale_slot, &stale);
      const LedgerSnapshot before = read_ledger(s);
      MT_CHECK(before.ok && before.used(fake_uuid(0)) == stale.bytes, "the prepared ledger does not charge 3 GiB");

      open_device(0);
      Blocks b = alloc_blocks();
      MT_CHECK(b.last == CUDA_ERROR_OUT_OF_MEMORY, "allocation ended with %d", b.last);
      MT_CHECK(b.obtained == whole_blocks(limit),
               "a stale slot of pid %" PRIu64 " (alive, other start time) still holds memory: obtained %s, expected %s",
               stale.pid, mib(b.obtained).c_str(), mib(whole_blocks(limit)).c_str());
      const LedgerSnapshot after = read_ledger(s);
      MT_CHECK(after.ok, "ledger invalid");
      for (const core::LedgerSlot& slot : after.region.slots) {
        MT_CHECK(!(slot.pid == stale.pid && slot.start_time == stale.start), "the stale slot of pid %" PRIu64 " is still there",
                 stale.pid);
      }
      MT_CHECK(after.used(fake_uuid(0)) == kContext + b.obtained, "ledger charges %s, expected %s",
               mib(after.used(fake_uuid(0))).c_str(), mib(kContext + b.obtained).c_str());
      free_blocks(b);
      note("stale 3 GiB slot of live pid %" PRIu64 " with a wrong start time reaped; %s obtained", stale.pid,
           mib(b.obtained).c_str());
      return 0;
    });
    expect_success(child, variant.c_str());
    remove_ledger(s);
  }
  return 0;
}

// ---- a killed process that was never waited for (a zombie) holds nothing ------------------------

int zombie(const Args& a) {
  MT_CHECK(a.empty(), "usage: zombie");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  Pipe full;
  const pid_t hog = spawn(role() + " hog", [&]() -> int {
    open_device(0);
    Blocks b = alloc_blocks();
    MT_CHECK(b.obtained == whole_blocks(limit), "the hog obtained %s", mib(b.obtained).c_str());
    full.signal();
    for (;;) ::pause();
  });
  full.wait(1, 30000);
  ::kill(hog, SIGKILL);
  // Not waited for: the hog stays a zombie until the fresh process has filled the slice.
  wait_until_zombie(hog);
  const std::uint64_t again = fresh_process_fills(session(), limit, "with the killed hog still a zombie");
  (void)reap(hog);
  note("a killed process left as a zombie held a full slice; a fresh process got %s", mib(again).c_str());
  return 0;
}

// ---- a process stopped while it holds the ledger's lock ------------------------------------------

int stopped_holder(const Args& a) {
  MT_CHECK(a.empty(), "usage: stopped-holder");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const std::string s = session();
  struct Shared {
    std::atomic<int> phase;   // set by the CUDA process
    std::atomic<int> go;      // set by the parent
    std::atomic<int> locked;  // set by the lock holder
    std::atomic<std::int64_t> free_ms, alloc_ms;
    std::atomic<int> alloc_rc;
  };
  auto* sh = shared_object<Shared>();
  auto wait_for = [](const std::atomic<int>& v, int value, const char* what) {
    const double deadline = now_ms() + 30000;
    while (v.load() < value) {
      MT_CHECK(now_ms() < deadline, "timed out waiting for %s", what);
      sleep_ms(1);
    }
  };
  const pid_t user = spawn(role() + " CUDA process", [&] {
    open_device(0);
    CUdeviceptr first = 0;
    CUdeviceptr second = 0;
    MT_CU(cuMemAlloc_v2(&first, kBlock));
    MT_CU(cuMemAlloc_v2(&second, kBlock));
    sh->phase = 1;
    wait_for(sh->go, 1, "the lock to be taken");
    double t = now_ms();
    MT_CU(cuMemFree_v2(first));  // the driver frees; the ledger is locked by a stopped process
    sh->free_ms = static_cast<std::int64_t>(now_ms() - t);
    t = now_ms();
    CUdeviceptr p = 0;
    sh->alloc_rc = cuMemAlloc_v2(&p, kBlock);
    sh->alloc_ms = static_cast<std::int64_t>(now_ms() - t);
    sh->phase = 2;
    wait_for(sh->go, 2, "the lock holder to be killed");
    MT_CU(cuMemAlloc_v2(&p, kBlock));
    const std::uint64_t used = ledger_used();
    MT_CHECK(used == kContext + 2 * kBlock,
             "after the stopped holder died the ledger charges %s; the process holds %s (the free made while the "
             "ledger was locked was not recorded)",
             mib(used).c_str(), mib(kContext + 2 * kBlock).c_str());
    MT_CU(cuMemFree_v2(p));
    MT_CU(cuMemFree_v2(second));
    MT_CHECK(ledger_used() == kContext, "the ledger charges %s after all frees", mib(ledger_used()).c_str());
    return 0;
  });
  wait_for(sh->phase, 1, "the CUDA process to allocate");
  const pid_t holder = spawn(role() + " lock holder", [&]() -> int {
    const std::string path = ledger_path(s);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    MT_CHECK(fd >= 0, "cannot open %s", path.c_str());
    void* m = ::mmap(nullptr, sizeof(core::LedgerRegion), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    MT_CHECK(m != MAP_FAILED, "mmap");
    auto* mutex = reinterpret_cast<pthread_mutex_t*>(static_cast<core::LedgerRegion*>(m)->header.lock);
    const int rc = pthread_mutex_lock(mutex);
    MT_CHECK(rc == 0, "pthread_mutex_lock returned %d", rc);
    sh->locked = 1;
    ::raise(SIGSTOP);  // stopped with the lock held, until killed
    for (;;) ::pause();
  });
  wait_for(sh->locked, 1, "the lock holder");
  sh->go = 1;
  wait_for(sh->phase, 2, "the CUDA process to free and allocate under the stopped holder");
  MT_CHECK(sh->free_ms < 10000, "a free took %lld ms while the ledger's lock holder was stopped",
           static_cast<long long>(sh->free_ms.load()));
  MT_CHECK(sh->alloc_rc == CUDA_ERROR_OUT_OF_MEMORY,
           "an allocation while the ledger is locked by a stopped process returned %d, expected 2 (refused)",
           sh->alloc_rc.load());
  MT_CHECK(sh->alloc_ms < 10000, "the refused allocation took %lld ms", static_cast<long long>(sh->alloc_ms.load()));
  kill_and_reap(holder);
  sh->go = 2;
  expect_success(user, "the CUDA process");
  const std::uint64_t again = fresh_process_fills(s, limit, "after the stopped lock holder was killed");
  note("lock holder stopped: free returned after %lld ms, allocation refused after %lld ms; after the holder was "
       "killed the delayed free was recorded and a fresh process got %s",
       static_cast<long long>(sh->free_ms.load()), static_cast<long long>(sh->alloc_ms.load()), mib(again).c_str());
  return 0;
}

// ---- 6. N processes share one slice ---------------------------------------------------------------

int share(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: share <N>");
  const int n = std::atoi(a[0].c_str());
  MT_CHECK(n >= 2 && n <= 8, "N must be 2..8");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const std::string s = session();
  struct Shared {
    std::atomic<std::uint64_t> obtained[8];
    std::atomic<std::uint64_t> context[8];
    std::atomic<int> last[8];
  };
  auto* sh = shared_object<Shared>();
  Pipe ready, go, done, quit;
  std::vector<pid_t> kids;
  for (int i = 0; i < n; ++i) {
    kids.push_back(spawn(role() + " child " + std::to_string(i), [&, i] {
      go.close_write();
      quit.close_write();
      open_device(0);
      sh->context[i] = fake_process_used(0);
      ready.signal();
      go.wait_eof();  // every child has its context before anyone allocates
      Blocks b = alloc_blocks();
      sh->obtained[i] = b.obtained;
      sh->last[i] = b.last;
      done.signal();
      quit.wait_eof();  // hold until the parent has looked
      free_blocks(b);
      return 0;
    }));
  }
  ready.wait(n, 30000);
  go.close_write();
  done.wait(n, 60000);

  std::uint64_t total = 0;
  for (int i = 0; i < n; ++i) {
    MT_CHECK(sh->last[i] == CUDA_ERROR_OUT_OF_MEMORY, "child %d stopped with %d, expected 2", i, sh->last[i].load());
    MT_CHECK(sh->context[i] == kContext, "child %d's context costs %s", i, mib(sh->context[i]).c_str());
    total += sh->obtained[i];
  }
  const std::uint64_t room = limit - static_cast<std::uint64_t>(n) * kContext;
  MT_CHECK(total <= room, "%d processes obtained %s together, more than the slice less %d contexts (%s)", n,
           mib(total).c_str(), n, mib(room).c_str());
  MT_CHECK(total + kBlock > room, "%d processes obtained only %s of %s: refused while a block still fitted", n,
           mib(total).c_str(), mib(room).c_str());
  const LedgerSnapshot snap = read_ledger(s);
  MT_CHECK(snap.ok, "no ledger");
  const std::uint64_t used = snap.used(fake_uuid(0));
  MT_CHECK(used <= limit, "the ledger charges %s, more than the %s slice", mib(used).c_str(), mib(limit).c_str());
  MT_CHECK(used == static_cast<std::uint64_t>(n) * kContext + total, "the ledger charges %s, the processes hold %s",
           mib(used).c_str(), mib(static_cast<std::uint64_t>(n) * kContext + total).c_str());
  MT_CHECK(snap.slot_sum(fake_uuid(0)) == used, "device total %s != sum of slots %s", mib(used).c_str(),
           mib(snap.slot_sum(fake_uuid(0))).c_str());
  std::vector<std::uint64_t> members = snap.members();
  std::vector<std::uint64_t> expected(kids.begin(), kids.end());
  std::sort(members.begin(), members.end());
  std::sort(expected.begin(), expected.end());
  MT_CHECK(members == expected, "the ledger lists %zu processes, expected the %d children", members.size(), n);
  quit.close_write();
  for (const pid_t k : kids) expect_success(k, "child");

  const std::uint64_t again = fresh_process_fills(s, limit, "after the children left");
  note("%d processes: %s obtained together (slice %s less %d contexts = %s), ledger %s; afterwards one process got %s",
       n, mib(total).c_str(), mib(limit).c_str(), n, mib(room).c_str(), mib(used).c_str(), mib(again).c_str());
  return 0;
}

// ---- 7. racing for the last block ---------------------------------------------------------------

int race(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: race <rounds>");
  const int rounds = std::atoi(a[0].c_str());
  MT_CHECK(rounds >= 1, "rounds >= 1");
  check_environment(true);
  constexpr int kRacers = 8;
  const std::uint64_t limit = expected_limit();
  const std::uint64_t room = limit - kRacers * kContext;
  MT_CHECK(limit > kRacers * kContext && room >= kBlock && room < 2 * kBlock,
           "the limit must leave room for exactly one 256 MiB block after %d contexts", kRacers);
  struct Shared {
    std::atomic<int> rc[kRacers];
  };
  auto* sh = shared_object<Shared>();
  for (int r = 0; r < rounds; ++r) {
    const std::string s = session() + "-r" + std::to_string(r);
    remove_ledger(s);
    for (auto& rc : sh->rc) rc = -1;
    Pipe ready, go, done, quit;
    std::vector<pid_t> kids;
    for (int i = 0; i < kRacers; ++i) {
      kids.push_back(spawn(role() + " round " + std::to_string(r) + " racer " + std::to_string(i), [&, i] {
        go.close_write();
        quit.close_write();
        ::setenv("SOFTMIG_SESSION", s.c_str(), 1);
        open_device(0);
        ready.signal();
        go.wait_eof();  // all racers are released by the same close()
        CUdeviceptr p = 0;
        const CUresult rc = cuMemAlloc_v2(&p, kBlock);
        sh->rc[i] = rc;
        done.signal();
        quit.wait_eof();
        if (rc == CUDA_SUCCESS) MT_CU(cuMemFree_v2(p));
        return 0;
      }));
    }
    ready.wait(kRacers, 30000);
    sleep_ms(2);  // let every racer block in read()
    go.close_write();
    done.wait(kRacers, 30000);
    int winners = 0;
    for (int i = 0; i < kRacers; ++i) {
      const int rc = sh->rc[i];
      MT_CHECK(rc == CUDA_SUCCESS || rc == CUDA_ERROR_OUT_OF_MEMORY, "round %d: racer %d got %d", r, i, rc);
      winners += rc == CUDA_SUCCESS ? 1 : 0;
    }
    MT_CHECK(winners == 1, "round %d: %d of %d racers obtained the last block (room %s for one %s block)", r, winners,
             kRacers, mib(room).c_str(), mib(kBlock).c_str());
    const LedgerSnapshot snap = read_ledger(s);
    MT_CHECK(snap.ok && snap.used(fake_uuid(0)) == kRacers * kContext + kBlock,
             "round %d: the ledger charges %s, expected %d contexts and one block", r,
             mib(snap.used(fake_uuid(0))).c_str(), kRacers);
    quit.close_write();
    for (const pid_t k : kids) expect_success(k, "racer");
    remove_ledger(s);
  }
  note("%d rounds of %d processes racing for room for one block: exactly one winner every round", rounds, kRacers);
  return 0;
}

// ---- 8. processes killed at random instants -----------------------------------------------------

namespace {

constexpr int kSurvivors = 2;
constexpr int kChurners = 4;

struct KillShared {
  std::atomic<std::uint64_t> progress[kSurvivors + kChurners];
  std::atomic<std::uint64_t> held[kSurvivors];
  std::atomic<std::uint64_t> context[kSurvivors];
  std::atomic<int> ready[kSurvivors];
  std::atomic<int> quiesce;
  std::atomic<int> quiesced[kSurvivors];
  std::atomic<std::uint64_t> allocations;
  std::atomic<std::uint64_t> refusals;
};

/// Allocates and frees random sizes through random paths until killed.
int churner(KillShared* sh, int index, std::uint64_t seed) {
  const ChurnDevice d = open_churn_device();
  std::mt19937_64 rng(seed);
  std::vector<Live> live;
  for (;;) {
    // Up to 12 live allocations of up to 128 MiB: four churners want more than the slice has
    // left, so refusals (and the reaping of killed processes' slots that precedes them) happen.
    const bool allocate = live.empty() || (live.size() < 12 && rng() % 3 != 0);
    if (allocate) {
      const auto kind = static_cast<Kind>(rng() % kKinds);
      const std::uint64_t bytes = 1 + rng() % (128 * kMiB);
      std::uint64_t key = 0;
      const CUresult rc = churn_alloc(d, kind, bytes, key);
      if (rc == CUDA_SUCCESS) {
        live.push_back({kind, key});
        sh->allocations.fetch_add(1);
      } else {
        MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "allocation kind %d of %" PRIu64 " bytes returned %d",
                 static_cast<int>(kind), bytes, rc);
        sh->refusals.fetch_add(1);
        if (!live.empty()) {
          MT_CU(churn_free(d, live.back()));
          live.pop_back();
        }
      }
    } else {
      const std::size_t i = rng() % live.size();
      MT_CU(churn_free(d, live[i]));
      live[i] = live.back();
      live.pop_back();
    }
    sh->progress[index].fetch_add(1);
  }
}

/// Holds a known amount, then allocates and frees 32 MiB in a loop until told to stop.
int survivor(KillShared* sh, int i) {
  const ChurnDevice d = open_churn_device();
  std::uint64_t held = 0;
  if (i == 0) {
    for (int k = 0; k < 2; ++k) {
      CUdeviceptr p = 0;
      MT_CU(cuMemAlloc_v2(&p, kBlock));
      held += kBlock;
    }
  } else {
    std::uint64_t key = 0;
    MT_CU(churn_alloc(d, kVmm, kBlock, key));
    MT_CU(churn_alloc(d, kManaged, 64 * kMiB, key));
    held = kBlock + 64 * kMiB;
  }
  sh->held[i] = held;
  sh->context[i] = fake_process_used(0) - held;
  sh->ready[i] = 1;
  constexpr Kind kLoop[] = {kLinear, kAsync, kVmm};
  for (std::uint64_t n = 0; sh->quiesce.load() == 0; ++n) {
    const Live l{kLoop[n % 3], 0};
    std::uint64_t key = 0;
    const CUresult rc = churn_alloc(d, l.kind, 32 * kMiB, key);
    if (rc == CUDA_ERROR_OUT_OF_MEMORY) {
      sleep_ms(1);
      continue;
    }
    MT_CHECK(rc == CUDA_SUCCESS, "survivor allocation returned %d", rc);
    MT_CU(churn_free(d, Live{l.kind, key}));
    sh->progress[i].fetch_add(1);
  }
  // A request larger than the slice: the ledger reaps the slots of dead processes before it
  // refuses (what any allocation does when the slice looks full).
  CUdeviceptr p = 0;
  const CUresult rc = cuMemAlloc_v2(&p, 8 * kGiB);
  MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "an 8 GiB request returned %d", rc);
  sh->quiesced[i] = 1;
  for (;;) ::pause();  // held until killed
}

}  // namespace

int kill_loop(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: kill-loop <kills>");
  const int target = std::atoi(a[0].c_str());
  MT_CHECK(target >= 1, "kills >= 1");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  const std::string s = session();
  const std::uint64_t seed = static_cast<std::uint64_t>(std::time(nullptr)) ^ (static_cast<std::uint64_t>(getpid()) << 20U);
  note("seed %" PRIu64, seed);
  std::mt19937_64 rng(seed);
  auto* sh = shared_object<KillShared>();
  const double t0 = now_ms();

  pid_t survivors[kSurvivors] = {};
  for (int i = 0; i < kSurvivors; ++i) {
    survivors[i] = spawn(role() + " survivor " + std::to_string(i), [&, i] { return survivor(sh, i); });
  }
  wait_until([&] { return sh->ready[0] == 1 && sh->ready[1] == 1; }, 20000, "the survivors");

  std::uint64_t spawned = 0;
  pid_t churners[kChurners] = {};
  auto start_churner = [&](int j) {
    sh->progress[kSurvivors + j] = 0;
    const std::uint64_t child_seed = seed + ++spawned;
    churners[j] = spawn(role() + " churner " + std::to_string(spawned),
                        [&, j, child_seed] { return churner(sh, kSurvivors + j, child_seed); });
  };
  for (int j = 0; j < kChurners; ++j) start_churner(j);

  int kills = 0;
  std::uniform_real_distribution<double> delay(0.0, 20.0);
  while (kills < target) {
    sleep_ms(delay(rng));
    const int j = static_cast<int>(rng() % kChurners);
    ::kill(churners[j], SIGKILL);
    const int status = reap(churners[j], 10000);
    MT_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
             "churner %d ended on its own (exit status %d) instead of being killed", static_cast<int>(churners[j]),
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ++kills;
    for (const pid_t sv : survivors) {
      int st = 0;
      MT_CHECK(::waitpid(sv, &st, WNOHANG) == 0, "survivor %d died (status %d)", static_cast<int>(sv), st);
    }
    start_churner(j);
  }
  const double loop_ms = now_ms() - t0;
  // Kill every churner, then the survivors must still make progress.
  for (const pid_t c : churners) kill_and_reap(c);
  std::uint64_t mark[kSurvivors];
  for (int i = 0; i < kSurvivors; ++i) mark[i] = sh->progress[i];
  wait_until([&] { return sh->progress[0] > mark[0] && sh->progress[1] > mark[1]; }, 20000,
             "each survivor to complete an allocation and a free after the last kill");

  // Survivors stop with known holdings; the ledger must charge exactly those and their contexts.
  sh->quiesce = 1;
  wait_until([&] { return sh->quiesced[0] == 1 && sh->quiesced[1] == 1; }, 20000, "the survivors to stop");
  const LedgerSnapshot snap = read_ledger(s);
  MT_CHECK(snap.ok, "the ledger is missing or invalid after the kills");
  const std::string uuid = fake_uuid(0);
  const std::uint64_t used = snap.used(uuid);
  MT_CHECK(snap.slot_sum(uuid) == used, "the device total %s differs from the sum of the slots %s", mib(used).c_str(),
           mib(snap.slot_sum(uuid)).c_str());
  std::uint64_t live_bytes = 0;
  for (int i = 0; i < kSurvivors; ++i) {
    MT_CHECK(sh->context[i] == kContext, "survivor %d's context is %s", i, mib(sh->context[i]).c_str());
    const core::LedgerSlot* slot = snap.slot_of(static_cast<std::uint64_t>(survivors[i]));
    MT_CHECK(slot != nullptr, "survivor %d has no slot", i);
    const int dev = snap.device(uuid);
    MT_CHECK(slot->alloc[dev] == sh->held[i] && slot->overhead[dev] == sh->context[i],
             "survivor %d holds %s + context %s, its slot says %s + %s", i, mib(sh->held[i]).c_str(),
             mib(sh->context[i]).c_str(), mib(slot->alloc[dev]).c_str(), mib(slot->overhead[dev]).c_str());
    live_bytes += sh->held[i] + sh->context[i];
  }
  const std::vector<std::uint64_t> members = snap.members();
  std::uint64_t lost = used > live_bytes ? used - live_bytes : live_bytes - used;
  const std::uint64_t ghost_slots = members.size() > kSurvivors ? members.size() - kSurvivors : 0;
  if (lost != 0 || ghost_slots != 0) {
    std::printf("after the kills: ledger charges %s, survivors hold %s, %zu slots claimed\n", mib(used).c_str(),
                mib(live_bytes).c_str(), members.size());
  }

  for (const pid_t sv : survivors) kill_and_reap(sv);
  const std::uint64_t again = fresh_process_fills(s, limit, "after killing everything");
  if (again < whole_blocks(limit)) lost += whole_blocks(limit) - again;
  std::printf("kills: %d survived, bytes lost: %" PRIu64 "\n", kills, lost);
  note("%d kills in %.1f s (%d more at the end), %" PRIu64 " churner allocations, %" PRIu64
       " refused with 2; %" PRIu64 " kills hit a process holding the ledger lock (repaired); survivors hold %s + "
       "contexts; afterwards a fresh process got %s",
       kills, loop_ms / 1000, kChurners + kSurvivors, sh->allocations.load(), sh->refusals.load(),
       snap.region.header.lock_repairs, mib(sh->held[0] + sh->held[1]).c_str(), mib(again).c_str());
  MT_CHECK(ghost_slots == 0, "%" PRIu64 " slots of killed processes were still claimed after a refused request",
           ghost_slots);
  MT_CHECK(lost == 0, "%s lost", mib(lost).c_str());
  return 0;
}

// ---- 12. NVML process lists ----------------------------------------------------------------------

namespace {

template <typename Info>
using ListFn = nvmlReturn_t (*)(nvmlDevice_t, unsigned int*, Info*);

template <typename Info>
void check_list(const char* name, ListFn<Info> fn, nvmlDevice_t dev, const std::set<unsigned>& expected,
                std::uint64_t holder_bytes) {
  const auto want = static_cast<unsigned>(expected.size());
  unsigned count = 0;
  nvmlReturn_t rc = fn(dev, &count, nullptr);
  if (want == 0) {
    MT_CHECK(rc == NVML_SUCCESS && count == 0, "%s size query: rc %d count %u, expected success and 0", name, rc, count);
  } else {
    MT_CHECK(rc == NVML_ERROR_INSUFFICIENT_SIZE, "%s(infos=NULL) returned %d, expected NVML_ERROR_INSUFFICIENT_SIZE",
             name, rc);
    MT_CHECK(count == want, "%s(infos=NULL) says %u processes, the job has %u", name, count, want);
  }
  if (want >= 2) {
    Info one[1] = {};
    count = 1;
    rc = fn(dev, &count, one);
    MT_CHECK(rc == NVML_ERROR_INSUFFICIENT_SIZE && count == want, "%s with room for 1: rc %d count %u, expected 7 and %u",
             name, rc, count, want);
  }
  Info infos[64] = {};
  count = 64;
  rc = fn(dev, &count, infos);
  MT_CHECK(rc == NVML_SUCCESS, "%s returned %d", name, rc);
  std::set<unsigned> got;
  for (unsigned i = 0; i < count && i < 64; ++i) {
    got.insert(infos[i].pid);
    if (infos[i].pid != static_cast<unsigned>(getpid())) {
      MT_CHECK(infos[i].usedGpuMemory == holder_bytes, "%s: pid %u uses %llu bytes, expected %s", name, infos[i].pid,
               infos[i].usedGpuMemory, mib(holder_bytes).c_str());
    }
  }
  std::string g;
  for (const unsigned p : got) g += " " + std::to_string(p);
  std::string e;
  for (const unsigned p : expected) e += " " + std::to_string(p);
  MT_CHECK(count == want && got == expected, "%s lists {%s }, expected {%s }", name, g.c_str(), e.c_str());
}

void check_lists(std::set<unsigned> expected) {
  MT_NVML(nvmlInit_v2());
  nvmlDevice_t dev = nullptr;
  MT_NVML(nvmlDeviceGetHandleByIndex_v2(0, &dev));
  const std::uint64_t holder = kContext + kBlock;
  check_list<nvmlProcessInfo_v1_t>("nvmlDeviceGetComputeRunningProcesses", nvmlDeviceGetComputeRunningProcesses, dev,
                                   expected, holder);
  check_list<nvmlProcessInfo_v2_t>("nvmlDeviceGetComputeRunningProcesses_v2", nvmlDeviceGetComputeRunningProcesses_v2,
                                   dev, expected, holder);
  check_list<nvmlProcessInfo_t>("nvmlDeviceGetComputeRunningProcesses_v3", nvmlDeviceGetComputeRunningProcesses_v3,
                                dev, expected, holder);
  MT_NVML(nvmlShutdown());
}

}  // namespace

int nvml_processes(const Args& a) {
  MT_CHECK(a.empty(), "usage: nvml-processes");
  check_environment(true);
  (void)expected_limit();
  const std::string sa = session() + "-A";
  const std::string sb = session() + "-B";
  remove_ledger(sa);
  remove_ledger(sb);
  Pipe ready, quit;
  auto holder = [&](const std::string& s, const char* name) {
    return spawn(role() + " holder " + name, [&] {
      quit.close_write();
      ::setenv("SOFTMIG_SESSION", s.c_str(), 1);
      open_device(0);
      CUdeviceptr p = 0;
      MT_CU(cuMemAlloc_v2(&p, kBlock));
      ready.signal();
      quit.wait_eof();
      MT_CU(cuMemFree_v2(p));
      return 0;
    });
  };
  const auto a1 = static_cast<unsigned>(holder(sa, "A1"));
  const auto a2 = static_cast<unsigned>(holder(sa, "A2"));
  const auto b1 = static_cast<unsigned>(holder(sb, "B1"));
  ready.wait(3, 30000);

  struct Query {
    const char* name;
    const std::string* session;
    bool limited;
    bool with_context;
    std::set<unsigned> expected;
  };
  const Query queries[] = {
      {"NVML-only process of job A", &sa, true, false, {a1, a2}},
      {"CUDA process of job A", &sa, true, true, {a1, a2}},
      {"NVML-only process of job B", &sb, true, false, {b1}},
      {"process of job A without a limit", &sa, false, false, {a1, a2, b1}},
  };
  for (const Query& q : queries) {
    const pid_t pid = spawn(role() + " query (" + q.name + ")", [&] {
      quit.close_write();
      ::setenv("SOFTMIG_SESSION", q.session->c_str(), 1);
      if (!q.limited) ::unsetenv("CUDA_DEVICE_MEMORY_LIMIT");
      std::set<unsigned> expected = q.expected;
      if (q.with_context) {
        open_device(0);
        expected.insert(static_cast<unsigned>(getpid()));
      }
      check_lists(expected);
      return 0;
    });
    expect_success(pid, q.name);
  }
  quit.close_write();
  expect_success(static_cast<pid_t>(a1), "A1");
  expect_success(static_cast<pid_t>(a2), "A2");
  expect_success(static_cast<pid_t>(b1), "B1");
  remove_ledger(sa);
  remove_ledger(sb);
  note("NVML v1/v2/v3 process lists: job A sees its 2 (3) processes, job B its 1, an unlimited process all 3");
  return 0;
}

}  // namespace memtest
