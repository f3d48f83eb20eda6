// SPDX-License-Identifier: Apache-2.0
#include "hooks/runtime.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "hooks/resolver.hpp"
#include "platform/log.hpp"
#include "platform/no_destroy.hpp"
#include "platform/once.hpp"
#include "platform/process.hpp"
#include "platform/settings.hpp"
#include "platform/shared_region.hpp"

namespace softmig::hooks {
namespace {

constexpr int kLockTimeoutMs = 2000;
constexpr std::int64_t kMeasureIntervalNs = 100'000'000;  // 100 ms between NVML measurements
/// Driver memory per context assumed when NVML cannot measure it (H100, CUDA 13: ~518 MiB).
constexpr std::uint64_t kContextEstimate = 512ULL << 20U;

struct Process {
  std::atomic<pid_t> pid{0};
  pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
  platform::SharedRegion region;
  bool ledger_ok = false;
  unsigned slot = core::kNoSlot;
  platform::ProcLiveness live;
  GpuState gpus[core::kMaxDevices];
  platform::PointerMap pointers;
  platform::PointerMap handles;
  std::atomic<bool> warned_fail_closed{false};
};
platform::NoDestroy<Process> g_process;
Process& g = g_process.get();

std::int64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

/// Holds the ledger lock; repairs the ledger if the previous holder died mid-update and
/// applies frees that could not be recorded earlier.
class LedgerLock {
 public:
  explicit LedgerLock(Process& p, int timeout_ms = kLockTimeoutMs) noexcept : p_(p) {
    if (!p.ledger_ok) return;
    switch (p.region.lock(timeout_ms)) {
      case platform::SharedRegion::LockResult::kLocked:
        held_ = true;
        break;
      case platform::SharedRegion::LockResult::kRepaired:
        ledger().rebuild_totals();
        p.region.mark_consistent();
        platform::log_warning("a process died while updating the job's ledger; totals rebuilt");
        held_ = true;
        break;
      case platform::SharedRegion::LockResult::kTimeout:
        platform::log_error("the job's ledger has been locked for %d ms (a stopped process?)", timeout_ms);
        return;
      case platform::SharedRegion::LockResult::kBroken:
        platform::log_error("the job's ledger lock is unusable");
        return;
    }
    if (p.slot == core::kNoSlot) return;
    for (GpuState& gs : p.gpus) {
      if (const std::uint64_t b = gs.pending_release.exchange(0); b != 0 && gs.ledger_dev != core::kNoDevice) {
        ledger().release(p.slot, gs.ledger_dev, b);
      }
    }
  }
  ~LedgerLock() {
    if (held_) p_.region.unlock();
  }
  LedgerLock(const LedgerLock&) = delete;
  LedgerLock& operator=(const LedgerLock&) = delete;
  explicit operator bool() const noexcept { return held_; }
  core::Ledger ledger() const noexcept { return {*p_.region.region(), p_.live}; }

 private:
  Process& p_;
  bool held_ = false;
};

/// Set in a forked child (pthread_atfork, registered when the process first joins a ledger), so
/// the hot path knows whether it is still the process that joined without a getpid() syscall.
std::atomic<bool> g_forked{false};
void on_fork_child() noexcept { g_forked.store(true, std::memory_order_release); }

/// Joins (or, after fork, re-joins) the job's ledger. Runs once per process id.
Process& proc() noexcept {
  if (g.pid.load(std::memory_order_acquire) != 0 && !g_forked.load(std::memory_order_acquire)) return g;
  const pid_t now = getpid();
  if (g.pid.load(std::memory_order_acquire) == now) {
    g_forked.store(false, std::memory_order_release);
    return g;
  }
  if (g_forked.load(std::memory_order_acquire)) {
    g.init_mu = PTHREAD_MUTEX_INITIALIZER;  // may have been held by a thread that is not in the child
  }
  pthread_mutex_lock(&g.init_mu);
  if (g.pid.load(std::memory_order_relaxed) != now) {
    if (g.pid.load(std::memory_order_relaxed) != 0) {
      // A forked child: it owns none of its parent's allocations or contexts.
      g.pointers.reset_after_fork();
      g.handles.reset_after_fork();
      for (GpuState& gs : g.gpus) {
        gs.committed = 0;
        gs.pending_release = 0;
        gs.contexts = 0;
        gs.last_measure_ns = 0;
      }
      g.slot = core::kNoSlot;
    }
    if (g.pid.load(std::memory_order_relaxed) == 0) pthread_atfork(nullptr, nullptr, on_fork_child);
    const platform::Settings& s = platform::settings();
    if (limits_active() && s.ledger_path[0] != '\0') {
      if (g.region.region() == nullptr) {
        g.ledger_ok = g.region.attach(s.ledger_path, s.lock_path, s.ledger_key, /*create=*/true);
      }
      if (g.ledger_ok) {
        LedgerLock lock(g);
        if (lock) {
          g.slot = lock.ledger().claim_slot(static_cast<std::uint64_t>(now),
                                            platform::process_start_time(now), geteuid());
          if (g.slot == core::kNoSlot) {
            platform::log_error("the job's ledger has no free process slot (%u live processes)", core::kMaxSlots);
          }
        }
      }
    }
    g.pid.store(now, std::memory_order_release);
    g_forked.store(false, std::memory_order_release);
  }
  pthread_mutex_unlock(&g.init_mu);
  return g;
}

void format_uuid(const CUuuid& u, char* out, std::size_t size) noexcept {
  const auto* b = reinterpret_cast<const unsigned char*>(u.bytes);
  std::snprintf(out, size,
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/// This process's bytes on the GPU as the driver accounts them (NVML), if NVML can tell.
bool nvml_self_used(const char* uuid, std::uint64_t& bytes) noexcept {
  static platform::Once init_once;
  static bool nvml_ok = false;
  init_once.run([] {
    if (!load_for_internal_use(Library::kNvml)) return;
    auto* init = real<Sym::nvmlInit_v2>();
    nvml_ok = init != nullptr && init() == NVML_SUCCESS;
    if (!nvml_ok) platform::log_warning("NVML unavailable: driver memory is estimated, not measured");
  });
  if (!nvml_ok) return false;
  auto* by_uuid = real<Sym::nvmlDeviceGetHandleByUUID>();
  auto* procs = real<Sym::nvmlDeviceGetComputeRunningProcesses_v3>();
  if (by_uuid == nullptr || procs == nullptr) return false;
  nvmlDevice_t dev = nullptr;
  if (by_uuid(uuid, &dev) != NVML_SUCCESS) return false;
  // The GPU's process list. A stack array would have to be small (threads may have small
  // stacks): with more processes on the GPU than it holds NVML refuses, and every context would
  // then be charged the 512 MiB estimate (found by tests/reliability, 256 processes in a job).
  // One static list, taken with a try-lock; a thread that finds it busy uses a small stack list.
  constexpr unsigned kSmall = 64;
  constexpr unsigned kLarge = 4096;
  static nvmlProcessInfo_t large[kLarge];
  static std::atomic_flag large_busy = ATOMIC_FLAG_INIT;
  nvmlProcessInfo_t small[kSmall];
  const bool use_large = !large_busy.test_and_set(std::memory_order_acquire);
  nvmlProcessInfo_t* infos = use_large ? large : small;
  unsigned count = use_large ? kLarge : kSmall;
  const unsigned capacity = count;
  const bool ok = procs(dev, &count, infos) == NVML_SUCCESS;
  const auto self = static_cast<unsigned>(getpid());
  bytes = 0;
  for (unsigned i = 0; ok && i < count && i < capacity; ++i) {
    if (infos[i].pid == self && infos[i].usedGpuMemory != ~0ULL) bytes = infos[i].usedGpuMemory;
  }
  if (use_large) large_busy.clear(std::memory_order_release);
  return ok;
}

/// A read-only view of the ledger for processes that only report (nvidia-smi).
platform::NoDestroy<platform::SharedRegion> g_view_storage;
platform::SharedRegion& g_view = g_view_storage.get();
platform::Once g_view_once;

const core::LedgerRegion* reporting_region() noexcept {
  Process& p = g;
  if (p.ledger_ok && p.pid.load(std::memory_order_acquire) == getpid()) return p.region.region();
  g_view_once.run([] {
    const platform::Settings& s = platform::settings();
    if (s.ledger_path[0] != '\0') g_view.attach(s.ledger_path, s.lock_path, s.ledger_key, /*create=*/false);
  });
  return g_view.region();
}

}  // namespace

bool limits_active() noexcept { return platform::settings().limits.any(); }

int current_ordinal() noexcept {
  auto* get_device = real<Sym::cuCtxGetDevice>();
  CUdevice d = -1;
  if (get_device == nullptr || get_device(&d) != CUDA_SUCCESS) return -1;
  return d;
}

GpuState* gpu(int ordinal) noexcept {
  if (ordinal < 0 || static_cast<unsigned>(ordinal) >= core::kMaxDevices) return nullptr;
  Process& p = proc();
  GpuState& gs = p.gpus[ordinal];
  for (;;) {
    int st = gs.state.load(std::memory_order_acquire);
    if (st == 1) return &gs;
    if (st == 2) return nullptr;
    if (st == 0 && gs.state.compare_exchange_strong(st, 3, std::memory_order_acq_rel)) break;
    sched_yield();  // another thread is resolving this GPU
  }
  auto* device_get = real<Sym::cuDeviceGet>();
  auto* get_uuid = real<Sym::cuDeviceGetUuid_v2>();
  if (get_uuid == nullptr) get_uuid = real<Sym::cuDeviceGetUuid>();
  CUdevice dev = 0;
  CUuuid u{};
  if (device_get == nullptr || get_uuid == nullptr || device_get(&dev, ordinal) != CUDA_SUCCESS ||
      get_uuid(&u, dev) != CUDA_SUCCESS) {
    gs.state.store(0, std::memory_order_release);  // not initialised yet: try again later
    return nullptr;
  }
  format_uuid(u, gs.uuid, sizeof(gs.uuid));
  gs.limit = platform::settings().limits.resolve(ordinal, gs.uuid);
  if (p.ledger_ok) {
    LedgerLock lock(p);
    if (lock) {
      gs.ledger_dev = lock.ledger().device_index(gs.uuid);
      lock.ledger().note_limit(gs.ledger_dev, gs.limit.memory_bytes);
    }
  }
  platform::log_info("GPU %d is %s: memory limit %llu bytes, compute %u%%", ordinal, gs.uuid,
                     gs.limit.memory_bytes ? static_cast<unsigned long long>(*gs.limit.memory_bytes) : 0ULL,
                     gs.limit.sm_percent);
  gs.state.store(1, std::memory_order_release);
  return &gs;
}

bool reserve(GpuState& gs, std::uint64_t bytes) noexcept {
  Process& p = proc();
  if (!p.ledger_ok || p.slot == core::kNoSlot || gs.ledger_dev == core::kNoDevice) {
    // A limit applies but cannot be enforced across processes: refuse rather than lift it.
    if (!p.warned_fail_closed.exchange(true)) {
      platform::log_error("the job's ledger is unavailable; refusing GPU memory allocations");
    }
    return false;
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      LedgerLock lock(p);
      if (!lock) return false;
      const core::Reservation r =
          lock.ledger().reserve(p.slot, gs.ledger_dev, bytes, gs.limit.memory_bytes, /*count_refusal=*/attempt == 1);
      if (r.granted) return true;
      if (attempt == 1) {
        platform::log_info("refused %llu bytes on %s: the job holds %llu of %llu",
                           static_cast<unsigned long long>(bytes), gs.uuid,
                           static_cast<unsigned long long>(r.used_after),
                           static_cast<unsigned long long>(gs.limit.memory_bytes.value_or(0)));
        return false;
      }
    }
    measure_overhead(gs, /*force=*/true);  // the driver may have given memory back since
  }
  return false;
}

void release(GpuState& gs, std::uint64_t bytes) noexcept {
  Process& p = proc();
  if (!p.ledger_ok || p.slot == core::kNoSlot || gs.ledger_dev == core::kNoDevice || bytes == 0) return;
  LedgerLock lock(p);
  if (lock) {
    lock.ledger().release(p.slot, gs.ledger_dev, bytes);
  } else {
    gs.pending_release.fetch_add(bytes);  // recorded by the next process-local lock holder
  }
}

void committed_add(GpuState& gs, std::uint64_t bytes) noexcept {
  gs.committed.fetch_add(bytes);
  gs.committed_changes.fetch_add(1);  // after the change: see measure_overhead
}

void committed_sub(GpuState& gs, std::uint64_t bytes) noexcept {
  std::uint64_t cur = gs.committed.load();
  while (!gs.committed.compare_exchange_weak(cur, cur > bytes ? cur - bytes : 0)) {
  }
  gs.committed_changes.fetch_add(1);
}

void measure_overhead(GpuState& gs, bool force) noexcept {
  Process& p = proc();
  if (!p.ledger_ok || p.slot == core::kNoSlot || gs.ledger_dev == core::kNoDevice) return;
  const std::int64_t now = now_ns();
  if (!force && now - gs.last_measure_ns.load() < kMeasureIntervalNs) return;
  gs.last_measure_ns = now;
  // Overhead = the driver's usage of this process (NVML) minus what its allocations hold. The
  // two are read at different instants while other threads allocate and free; `committed`
  // only ever holds allocations the driver holds too (it grows after the driver allocates and
  // shrinks before the driver frees), so a reading during which `committed` did not change can
  // only overestimate the overhead. A reading during which it changed (three tries) may
  // underestimate it, and is then not allowed to lower the recorded overhead: an undercounted
  // overhead would let the process allocate past its slice (tests/reliability, 64 threads).
  std::uint64_t used = 0;
  std::uint64_t overhead = 0;
  bool consistent = true;
  bool measured = false;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::uint64_t changes = gs.committed_changes.load();
    const std::uint64_t mine = gs.committed.load();
    measured = nvml_self_used(gs.uuid, used);
    if (!measured) break;
    overhead = used > mine ? used - mine : 0;
    consistent = gs.committed_changes.load() == changes;
    if (consistent) break;
  }
  if (!measured) overhead = kContextEstimate * gs.contexts.load();
  LedgerLock lock(p);
  if (lock && !consistent) {
    const std::uint64_t recorded = core::load_u64(p.region.region()->slots[p.slot].overhead[gs.ledger_dev]);
    if (recorded > overhead) overhead = recorded;
  }
  if (lock) lock.ledger().set_overhead(p.slot, gs.ledger_dev, overhead);
  platform::log_debug("%s: driver overhead of this process %llu bytes", gs.uuid,
                      static_cast<unsigned long long>(overhead));
}

std::uint64_t job_used(const GpuState& gs) noexcept {
  const core::LedgerRegion* r = reporting_region();
  if (r == nullptr || gs.ledger_dev >= core::kMaxDevices) return 0;
  return core::load_u64(r->devices[gs.ledger_dev].used);
}

std::uint64_t job_used_by_uuid(const char* uuid) noexcept {
  const core::LedgerRegion* r = reporting_region();
  if (r == nullptr || uuid == nullptr) return 0;
  for (const core::LedgerDevice& d : r->devices) {
    if (d.uuid[0] != '\0' && std::strncmp(d.uuid, uuid, core::kUuidChars) == 0) return core::load_u64(d.used);
  }
  return 0;
}

bool pid_in_this_job(unsigned pid) noexcept {
  if (pid == static_cast<unsigned>(getpid())) return true;
  const core::JobIdentity& job = platform::job_identity();
  if (job.in_slurm && job.has_job_id()) return platform::pid_in_job(static_cast<pid_t>(pid), job.job_id);
  const core::LedgerRegion* r = reporting_region();
  if (r == nullptr) return false;
  for (const core::LedgerSlot& s : r->slots) {
    if (core::load_u64(s.pid) == pid) return true;
  }
  return false;
}

namespace {
/// A process leaving normally gives its slot back at once if the ledger is free; otherwise (and
/// after _exit or a kill) the next process that needs the bytes reclaims them. Exit never waits.
__attribute__((destructor)) void leave_ledger() {
  if (g.pid.load(std::memory_order_acquire) != getpid() || !g.ledger_ok || g.slot == core::kNoSlot) return;
  LedgerLock lock(g, /*timeout_ms=*/0);
  if (lock) {
    lock.ledger().release_slot(g.slot);
    g.slot = core::kNoSlot;
  }
}
}  // namespace

platform::PointerMap& pointer_charges() noexcept { return g.pointers; }
platform::PointerMap& handle_charges() noexcept { return g.handles; }

}  // namespace softmig::hooks

