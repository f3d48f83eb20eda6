// SPDX-License-Identifier: Apache-2.0
#include "hooks/runtime.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "hooks/resolver.hpp"
#include "platform/clock.hpp"
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
/// How often a reservation checks that the ledger's path still names the file this process mapped.
constexpr std::int64_t kIdentityIntervalNs = 100'000'000;
/// Driver memory per context assumed when NVML cannot measure it (H100, CUDA 13: ~518 MiB).
constexpr std::uint64_t kContextEstimate = 512ULL << 20U;

/// NVML's list of the processes on a GPU, as the driver accounts them. A stack array would have
/// to be small (threads may have small stacks): with more processes on the GPU than it holds NVML
/// refuses, and every context would then be charged the 512 MiB estimate (found by
/// tests/reliability, 256 processes in a job). One static list, taken with a flag; a measurement
/// that finds it busy uses a small stack list, an observation of the job waits for it.
constexpr unsigned kSmallList = 64;
constexpr unsigned kLargeList = 4096;
nvmlProcessInfo_t g_list[kLargeList];
std::atomic_flag g_list_busy = ATOMIC_FLAG_INIT;
/// The job's processes found by the last observation (see Observation), guarded by its own flag.
core::ObservedProcess g_observed[kLargeList];
std::atomic_flag g_observer_busy = ATOMIC_FLAG_INIT;

struct Process {
  std::atomic<pid_t> pid{0};
  pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
  platform::SharedRegion region;
  bool ledger_ok = false;
  std::atomic<unsigned> slot{core::kNoSlot};  ///< changes only under the ledger lock
  std::uint64_t start_time = 0;               ///< of this process, as claimed in its slot
  platform::ProcLiveness live;
  GpuState gpus[core::kMaxDevices];
  platform::PointerMap pointers;
  platform::PointerMap handles;
  std::atomic<bool> warned_fail_closed{false};
  std::atomic<bool> warned_unrecorded{false};
  /// Odd while a thread of this process holds the ledger lock (between its audit and its update
  /// of seen_used / seen_added), so that confirm() can read both without the lock.
  std::atomic<std::uint64_t> lock_epoch{0};
  // The file mapped, to notice the ledger's path being given another file (ledger_replaced).
  bool identity_known = false;
  dev_t ledger_fs = 0;
  ino_t ledger_ino = 0;
  std::atomic<std::int64_t> identity_checked_ns{0};
  std::atomic<bool> replaced{false};
};
platform::NoDestroy<Process> g_process;
Process& g = g_process.get();

using platform::monotonic_ns;

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
    // Odd until ~LedgerLock (a seqlock for confirm(); only lock holders write it).
    p.lock_epoch.store(p.lock_epoch.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    if (p.slot == core::kNoSlot) return;
    audit();
    const unsigned slot = p.slot;
    if (slot == core::kNoSlot) return;
    for (GpuState& gs : p.gpus) {
      if (gs.ledger_dev == core::kNoDevice) continue;
      if (const std::uint64_t b = gs.pending_release.exchange(0); b != 0) {
        ledger().release(slot, gs.ledger_dev, b);
        gs.charged -= b < gs.charged ? b : gs.charged;
      }
    }
  }
  ~LedgerLock() {
    if (!held_) return;
    // Whatever changed while this process held the lock, it did itself: the next holder compares
    // the totals with these (audit) to find changes made by anyone else.
    const core::Ledger l = ledger();
    for (GpuState& gs : p_.gpus) {
      if (gs.ledger_dev == core::kNoDevice) continue;
      gs.seen_used.store(l.read_used(gs.ledger_dev), std::memory_order_relaxed);
      gs.seen_added.store(l.read_added(gs.ledger_dev), std::memory_order_relaxed);
      gs.seen = true;
    }
    p_.lock_epoch.store(p_.lock_epoch.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // even
    p_.region.unlock();
  }
  LedgerLock(const LedgerLock&) = delete;
  LedgerLock& operator=(const LedgerLock&) = delete;
  explicit operator bool() const noexcept { return held_; }
  core::Ledger ledger() const noexcept { return {*p_.region.region(), p_.live}; }

 private:
  /// Compares the ledger with what this process knows: its own slot must hold what it charged
  /// (else it is restored), and each device's totals must only have grown since this process
  /// last held the lock (else something it cannot explain happened: another process freed
  /// memory, or the file was edited). Either finding makes the next reservation observe the job
  /// through NVML before trusting the ledger (see reserve()).
  void audit() noexcept {
    core::Ledger l = ledger();
    for (GpuState& gs : p_.gpus) {
      if (gs.ledger_dev == core::kNoDevice || !gs.seen) continue;
      if (!core::only_grew(gs.seen_used.load(std::memory_order_relaxed), gs.seen_added.load(std::memory_order_relaxed),
                           l.read_used(gs.ledger_dev), l.read_added(gs.ledger_dev))) {
        gs.suspicions.fetch_add(1);
      }
    }
    const auto pid = static_cast<std::uint64_t>(p_.pid.load(std::memory_order_relaxed));
    bool repaired = false;
    if (!l.holds(p_.slot, pid, p_.start_time)) {
      // The slot was emptied or given to another pid (an edit, or a reap after one): claim one
      // again and put back what this process holds.
      p_.slot = l.claim_slot(pid, p_.start_time, geteuid());
      platform::log_warning("this process's slot in the job's ledger was taken away; %s",
                            p_.slot == core::kNoSlot ? "no slot is free (allocations are refused)" : "claimed again");
      repaired = true;
      if (p_.slot == core::kNoSlot) return;
    }
    for (GpuState& gs : p_.gpus) {
      if (gs.ledger_dev == core::kNoDevice) continue;
      if (l.restore(p_.slot, gs.ledger_dev, gs.charged, gs.overhead_set)) {
        platform::log_warning("%s: this process's slot in the job's ledger did not hold its %llu + %llu bytes; restored",
                              gs.uuid, static_cast<unsigned long long>(gs.charged),
                              static_cast<unsigned long long>(gs.overhead_set));
        repaired = true;
      }
    }
    if (repaired) {
      for (GpuState& gs : p_.gpus) gs.suspicions.fetch_add(1);
    }
  }

  Process& p_;
  bool held_ = false;
};

/// Set in a forked child (pthread_atfork, registered when the process first joins a ledger), so
/// the hot path knows whether it is still the process that joined without a getpid() syscall.
std::atomic<bool> g_forked{false};
void on_fork_child() noexcept {
  g_forked.store(true, std::memory_order_release);
  // Held, if at all, by threads that do not exist in the child.
  g_list_busy.clear(std::memory_order_release);
  g_observer_busy.clear(std::memory_order_release);
  g.lock_epoch.store(0);
}

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
        gs.charged = 0;
        gs.overhead_set = 0;
        gs.seen = false;
        gs.observed = false;
        gs.foreign = false;
        gs.unrecorded = 0;
        gs.settled = gs.suspicions.load();
      }
      g.slot = core::kNoSlot;
    }
    if (g.pid.load(std::memory_order_relaxed) == 0) pthread_atfork(nullptr, nullptr, on_fork_child);
    const platform::Settings& s = platform::settings();
    if (limits_active() && s.ledger_path[0] != '\0') {
      if (g.region.region() == nullptr) {
        g.ledger_ok = g.region.attach(s.ledger_path, s.lock_path, s.ledger_key, /*create=*/true);
        struct stat st {};
        if (g.ledger_ok && stat(s.ledger_path, &st) == 0) {
          g.identity_known = true;
          g.ledger_fs = st.st_dev;
          g.ledger_ino = st.st_ino;
        }
      }
      if (g.ledger_ok) {
        g.start_time = platform::process_start_time(now);
        LedgerLock lock(g);
        if (lock) {
          g.slot = lock.ledger().claim_slot(static_cast<std::uint64_t>(now), g.start_time, geteuid());
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

/// NVML, initialised once for the library's own measurements. false if it is unavailable.
bool nvml_ready() noexcept {
  static platform::Once init_once;
  static bool nvml_ok = false;
  init_once.run([] {
    if (!load_for_internal_use(Library::kNvml)) return;
    auto* init = real<Sym::nvmlInit_v2>();
    nvml_ok = init != nullptr && init() == NVML_SUCCESS;
    if (!nvml_ok) platform::log_warning("NVML unavailable: driver memory is estimated, not measured");
  });
  return nvml_ok;
}


void spin_acquire(std::atomic_flag& f) noexcept {
  while (f.test_and_set(std::memory_order_acquire)) sched_yield();
}

/// Calls NVML's process list for the GPU with this UUID into `infos` (`capacity` entries); the
/// number listed is returned in `count`. false if NVML cannot tell.
bool nvml_list(const char* uuid, nvmlProcessInfo_t* infos, unsigned capacity, unsigned& count) noexcept {
  count = 0;
  if (!nvml_ready()) return false;
  auto* by_uuid = real<Sym::nvmlDeviceGetHandleByUUID>();
  auto* procs = real<Sym::nvmlDeviceGetComputeRunningProcesses_v3>();
  if (by_uuid == nullptr || procs == nullptr) return false;
  nvmlDevice_t dev = nullptr;
  if (by_uuid(uuid, &dev) != NVML_SUCCESS) return false;
  unsigned n = capacity;
  if (procs(dev, &n, infos) != NVML_SUCCESS) return false;
  count = n < capacity ? n : capacity;
  return true;
}

/// This process's bytes on the GPU as the driver accounts them (NVML), if NVML can tell.
bool nvml_self_used(const char* uuid, std::uint64_t& bytes) noexcept {
  nvmlProcessInfo_t small[kSmallList];
  const bool use_large = !g_list_busy.test_and_set(std::memory_order_acquire);
  nvmlProcessInfo_t* infos = use_large ? g_list : small;
  unsigned count = 0;
  const bool ok = nvml_list(uuid, infos, use_large ? kLargeList : kSmallList, count);
  const auto self = static_cast<unsigned>(getpid());
  bytes = 0;
  for (unsigned i = 0; i < count; ++i) {
    if (infos[i].pid == self && infos[i].usedGpuMemory != ~0ULL) bytes = infos[i].usedGpuMemory;
  }
  if (use_large) g_list_busy.clear(std::memory_order_release);
  return ok;
}

/// An observation of the job on one GPU, independent of the ledger: NVML's per-process usage of
/// the processes that belong to this job (pid_in_this_job: the job's cgroup inside SLURM). It is
/// taken before the ledger's lock (NVML and /proc are slow) and compared with the ledger under it
/// (core::Ledger::reconcile). One observation at a time per process; the storage is static.
class Observation {
 public:
  Observation() = default;
  ~Observation() {
    if (held_) g_observer_busy.clear(std::memory_order_release);
  }
  Observation(const Observation&) = delete;
  Observation& operator=(const Observation&) = delete;

  void take(const char* uuid) noexcept {
    spin_acquire(g_observer_busy);
    held_ = true;
    unsigned listed = 0;
    spin_acquire(g_list_busy);
    (void)nvml_list(uuid, g_list, kLargeList, listed);  // nothing listed if NVML cannot tell
    for (unsigned i = 0; i < listed; ++i) {
      if (g_list[i].usedGpuMemory == ~0ULL) continue;  // NVML_VALUE_NOT_AVAILABLE
      g_observed[n_++] = {g_list[i].pid, g_list[i].usedGpuMemory, core::kNoRecord};
    }
    g_list_busy.clear(std::memory_order_release);
    // Inside SLURM the job's processes are those of its cgroup, whatever the ledger says (one
    // /proc read each, outside the list's flag). Outside SLURM membership is the ledger's own, so
    // reconcile() ignores the processes without a slot.
    const core::JobIdentity& job = platform::job_identity();
    by_cgroup_ = job.in_slurm && job.has_job_id();
    if (!by_cgroup_) return;
    unsigned kept = 0;
    for (unsigned i = 0; i < n_; ++i) {
      if (pid_in_this_job(static_cast<unsigned>(g_observed[i].pid))) g_observed[kept++] = g_observed[i];
    }
    n_ = kept;
  }
  /// Compares the observation with the ledger (see core::Ledger::reconcile).
  [[nodiscard]] core::Reconciliation reconcile(const core::Ledger& l, unsigned dev) const noexcept {
    return l.reconcile(dev, g_observed, held_ ? n_ : 0, by_cgroup_);
  }
  /// True if job processes without a slot are counted (inside SLURM).
  [[nodiscard]] bool by_cgroup() const noexcept { return by_cgroup_; }

 private:
  bool held_ = false;
  bool by_cgroup_ = false;
  unsigned n_ = 0;
};

/// A read-only view of the ledger for processes that only report (nvidia-smi).
platform::NoDestroy<platform::SharedRegion> g_view_storage;
platform::SharedRegion& g_view = g_view_storage.get();
platform::Once g_view_once;

/// The ledger this process joined, or nullptr (none, or joined by the parent of a fork).
core::LedgerRegion* joined_region() noexcept {
  Process& p = g;
  return p.ledger_ok && p.pid.load(std::memory_order_acquire) == getpid() ? p.region.region() : nullptr;
}

const core::LedgerRegion* reporting_region() noexcept {
  if (const core::LedgerRegion* r = joined_region(); r != nullptr) return r;
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
      lock.ledger().note_limit(gs.ledger_dev, gs.limit.memory_bytes, gs.limit.sm_percent);
    }
  }
  platform::log_info("GPU %d is %s: memory limit %llu bytes, compute %u%%", ordinal, gs.uuid,
                     gs.limit.memory_bytes ? static_cast<unsigned long long>(*gs.limit.memory_bytes) : 0ULL,
                     gs.limit.sm_percent);
  gs.state.store(1, std::memory_order_release);
  return &gs;
}

namespace {

/// True if the ledger's path no longer names the file this process mapped (deleted, renamed or
/// replaced while it ran). Checked at most every 100 ms (one stat); once true, it stays true.
/// Processes that start afterwards use a new ledger that does not record this process, and this
/// process's ledger no longer records theirs: it refuses further allocations, while its memory
/// stays visible to the others through NVML.
bool ledger_replaced(Process& p) noexcept {
  if (p.replaced.load(std::memory_order_relaxed)) return true;
  if (!p.identity_known) return false;
  const std::int64_t now = monotonic_ns();
  if (now - p.identity_checked_ns.load(std::memory_order_relaxed) < kIdentityIntervalNs) return false;
  p.identity_checked_ns.store(now, std::memory_order_relaxed);
  struct stat st {};
  const char* path = platform::settings().ledger_path;
  if (stat(path, &st) == 0 && st.st_dev == p.ledger_fs && st.st_ino == p.ledger_ino) return false;
  if (!p.replaced.exchange(true)) {
    platform::log_error("the job's ledger %s was deleted or replaced while this process ran; refusing further GPU "
                        "memory to this process", path);
  }
  return true;
}

/// Whether the ledger alone may decide a reservation on `gs`: only once the job was observed, and
/// only while every change since has been one this process can explain (LedgerLock::audit) and
/// no process of the job on this GPU was missing from the ledger. REQUIRES: the ledger lock.
bool needs_observation(const GpuState& gs) noexcept {
  return !gs.observed || gs.foreign || gs.suspicions.load() != gs.settled;
}

/// Compares the ledger with an observation of the job. REQUIRES: the ledger lock.
void settle(GpuState& gs, const core::Ledger& l, const Observation& obs) noexcept {
  const core::Reconciliation rc = obs.reconcile(l, gs.ledger_dev);
  gs.unrecorded = rc.unrecorded;
  // Inside SLURM, a process of the job (its cgroup) with GPU memory but no slot is beyond this
  // ledger (no softmig, or an older ledger file): its growth would not show here, so every
  // reservation checks with NVML while there is one.
  gs.foreign = obs.by_cgroup() && rc.without_slot > 0;
  gs.observed = true;
  gs.settled = gs.suspicions.load();
  constexpr std::uint64_t kNotable = 64ULL << 20U;
  if ((rc.unrecorded >= kNotable || gs.foreign) && !proc().warned_unrecorded.exchange(true)) {
    platform::log_warning("%s: the driver shows %llu bytes of this job beyond its ledger (%u processes without a "
                          "slot); they are counted against the slice", gs.uuid,
                          static_cast<unsigned long long>(rc.unrecorded), rc.without_slot);
  }
}

/// The limit left for the ledger's own figures once what it does not record is counted.
std::optional<std::uint64_t> ledger_limit(const GpuState& gs) noexcept {
  if (!gs.limit.memory_bytes) return std::nullopt;
  return *gs.limit.memory_bytes > gs.unrecorded ? *gs.limit.memory_bytes - gs.unrecorded : 0;
}

}  // namespace

bool reserve(GpuState& gs, std::uint64_t bytes, Ticket* ticket) noexcept {
  Process& p = proc();
  if (!p.ledger_ok || p.slot == core::kNoSlot || gs.ledger_dev == core::kNoDevice) {
    // A limit applies but cannot be enforced across processes: refuse rather than lift it.
    if (!p.warned_fail_closed.exchange(true)) {
      platform::log_error("the job's ledger is unavailable; refusing GPU memory allocations");
    }
    return false;
  }
  if (ledger_replaced(p)) return false;
  const bool limited = gs.limit.memory_bytes.has_value();  // else only counted, never refused
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (attempt == 1) measure_overhead(gs, /*force=*/true);  // the driver may have given memory back since
    // The fast path trusts the ledger. An observation (NVML, outside the lock) is taken when the
    // ledger cannot be trusted, and always before a refusal.
    bool observe = attempt == 1;
    for (int pass = 0; pass < 2; ++pass) {
      Observation obs;
      if (observe) obs.take(gs.uuid);
      LedgerLock lock(p);
      if (!lock || p.slot == core::kNoSlot) return false;
      core::Ledger l = lock.ledger();
      if (!observe && limited && needs_observation(gs)) {
        observe = true;
        continue;
      }
      // Dead processes are reaped only here, after an observation: liveness comes from the
      // slots, which can be edited, and NVML still counts a live process whose slot was reaped.
      if (attempt == 1) l.reap_dead();
      if (observe) settle(gs, l, obs);
      const core::Reservation r = l.reserve(p.slot, gs.ledger_dev, bytes, ledger_limit(gs),
                                            /*count_refusal=*/attempt == 1, /*reap=*/false);
      if (r.granted) {
        gs.charged += bytes;
        if (ticket != nullptr) {
          ticket->verify = observe;
          ticket->suspicions = gs.suspicions.load();
        }
        return true;
      }
      if (attempt == 1) {
        const std::uint64_t holds = r.used_after + gs.unrecorded;
        platform::log_info("refused %llu bytes on %s: the job holds %llu (%llu beyond its ledger) of %llu",
                           static_cast<unsigned long long>(bytes), gs.uuid, static_cast<unsigned long long>(holds),
                           static_cast<unsigned long long>(gs.unrecorded),
                           static_cast<unsigned long long>(gs.limit.memory_bytes.value_or(0)));
        return false;
      }
      break;
    }
  }
  return false;
}

bool confirm(GpuState& gs, const Ticket& ticket) noexcept {
  Process& p = proc();
  if (!gs.limit.memory_bytes) return true;
  if (!ticket.verify) {
    // Without the lock: did the ledger change since the reservation in a way this process cannot
    // explain? Read between two equal, even values of lock_epoch, no thread of this process was
    // changing the ledger or what it saw of it. A change another thread of this process found
    // since shows in `suspicions`, raised before that thread updated what it saw.
    const core::LedgerRegion* r = p.region.region();
    for (int attempt = 0; attempt < 4; ++attempt) {
      const std::uint64_t epoch = p.lock_epoch.load(std::memory_order_acquire);
      if ((epoch & 1U) != 0) {
        sched_yield();
        continue;
      }
      const std::uint64_t used = core::load_u64(r->devices[gs.ledger_dev].used);
      const std::uint64_t added = core::load_u64(r->devices[gs.ledger_dev].added);
      const std::uint64_t seen_used = gs.seen_used.load(std::memory_order_relaxed);
      const std::uint64_t seen_added = gs.seen_added.load(std::memory_order_relaxed);
      const bool same = gs.suspicions.load(std::memory_order_relaxed) == ticket.suspicions;
      std::atomic_thread_fence(std::memory_order_acquire);
      if (p.lock_epoch.load(std::memory_order_relaxed) != epoch) continue;
      if (same && core::only_grew(seen_used, seen_added, used, added)) return true;
      break;
    }
  }
  // The allocation is in the driver now, so NVML shows it. Another allocation whose reservation
  // was erased from the ledger while in flight is seen here if it completed first; if it
  // completes later, its own confirm() sees this one (it finds the ledger changed). No lock: a
  // stopped lock holder must not stall this, and reading while another process updates the
  // ledger can only overcount (a slot is raised before the total, and lowered before it).
  Observation obs;
  obs.take(gs.uuid);
  const core::Ledger l{*p.region.region(), p.live};
  const core::Reconciliation rc = obs.reconcile(l, gs.ledger_dev);
  const std::uint64_t used = l.read_used(gs.ledger_dev);
  const std::uint64_t limit = *gs.limit.memory_bytes;
  if (used <= limit && rc.unrecorded <= limit - used) return true;
  if (LedgerLock lock(p, /*timeout_ms=*/0); lock) lock.ledger().count_refusal(gs.ledger_dev);
  const std::uint64_t holds = used + rc.unrecorded;
  platform::log_warning("%s: undoing an allocation: the job holds %llu bytes (%llu beyond its ledger) of %llu",
                        gs.uuid, static_cast<unsigned long long>(holds),
                        static_cast<unsigned long long>(rc.unrecorded), static_cast<unsigned long long>(limit));
  return false;
}

void release(GpuState& gs, std::uint64_t bytes) noexcept {
  Process& p = proc();
  if (!p.ledger_ok || p.slot == core::kNoSlot || gs.ledger_dev == core::kNoDevice || bytes == 0) return;
  LedgerLock lock(p);
  if (lock && p.slot != core::kNoSlot) {
    lock.ledger().release(p.slot, gs.ledger_dev, bytes);
    gs.charged -= bytes < gs.charged ? bytes : gs.charged;
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
  const std::int64_t now = monotonic_ns();
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
  if (!lock || p.slot == core::kNoSlot) return;
  if (!consistent && gs.overhead_set > overhead) overhead = gs.overhead_set;
  lock.ledger().set_overhead(p.slot, gs.ledger_dev, overhead);
  gs.overhead_set = overhead;
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

void note_held(const GpuState& gs, std::uint64_t ns) noexcept {
  if (ns == 0 || gs.ledger_dev >= core::kMaxDevices) return;
  if (core::LedgerRegion* r = joined_region(); r != nullptr) core::add_u64(r->devices[gs.ledger_dev].held_ns, ns);
}

unsigned job_processes_on(const GpuState& gs) noexcept {
  const core::LedgerRegion* r = joined_region();
  if (r == nullptr || gs.ledger_dev >= core::kMaxDevices) return UINT32_MAX;
  return core::read_holders(*r, gs.ledger_dev);
}

std::uint64_t* job_spill_record(const GpuState& gs) noexcept {
  if (gs.ledger_dev >= core::kMaxDevices) return nullptr;
  core::LedgerRegion* r = joined_region();
  return r != nullptr ? &r->devices[gs.ledger_dev].spill_until_ns : nullptr;
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

