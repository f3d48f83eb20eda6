// SPDX-License-Identifier: Apache-2.0
#include "hooks/pace.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <utility>

#include "core/ledger.hpp"
#include "core/pacer.hpp"
#include "hooks/resolver.hpp"
#include "hooks/runtime.hpp"
#include "platform/board.hpp"
#include "platform/clock.hpp"
#include "platform/log.hpp"
#include "platform/settings.hpp"

namespace softmig::hooks {
namespace detail {
std::atomic<int> g_pacing{0};

int decide_pacing() noexcept {
  const int p = platform::settings().limits.any_share() ? 2 : 1;
  g_pacing.store(p, std::memory_order_relaxed);
  return p;
}
}  // namespace detail

namespace {

using core::StreamPace;
using core::WindowPacer;

constexpr std::int64_t kMs = core::kNsPerMs;
constexpr std::int64_t kPollNs = 20'000;            ///< between completion checks while waiting
/// Waits shorter than this yield instead of sleeping: a sleep, however short, overshoots by
/// 60-100 us on a VM (timer slack, vCPU wake-up); a drain's length is charged to the job's next
/// window, and a late wake-up is time lost from it.
constexpr std::int64_t kSpinNs = 200'000;
constexpr std::int64_t kSleepChunkNs = 5 * kMs;     ///< longest sleep between looks at the board
constexpr std::int64_t kStampEveryNs = 5 * kMs;     ///< activity stamps while the job wants the GPU
constexpr std::int64_t kScanEveryNs = 5 * kMs;      ///< burst mode: how often others are looked for
constexpr std::int64_t kFreshNs = 30 * kMs;         ///< a stamp this recent means "active"
constexpr std::int64_t kGiveUpNs = 1000 * kMs;      ///< never wait longer for queued work
constexpr std::uint64_t kFutureSlackNs = kMs;       ///< a job spill record this far ahead was edited
constexpr std::int64_t kBurstWindow = -2;           ///< launches made while bursting
constexpr unsigned kStreams = 8;                    ///< streams tracked per thread

using platform::sleep_ns;
std::int64_t now_ns() noexcept { return platform::monotonic_ns(); }

std::atomic<bool> g_warned_future{false};  ///< a job spill record in the future was logged

/// One GPU's pacing state in this process.
struct alignas(64) PaceDevice {
  // What every launch reads, in one cache line (a launch through the driver evicts much else).
  std::atomic<int> state{0};  ///< 0 unknown, 1 not paced, 2 paced, 3 being set up
  bool burst = false;
  bool stamps = false;        ///< board usable: the job's activity is stamped on it
  std::atomic<std::int64_t> go_from{0};
  std::atomic<std::int64_t> go_until{0};
  std::atomic<std::int64_t> window{-1};
  std::atomic<std::int64_t> next_stamp{0};
  /// The job's spill record in its ledger (nullptr: not shared; each process pays its own).
  std::uint64_t* job_spill = nullptr;
  /// The latest record already charged here; written with `mu` held, read without it.
  std::atomic<std::int64_t> job_spill_seen{0};

  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  WindowPacer pacer{core::ShareSchedule{}};
  platform::ActivityBoard board;
  std::atomic<std::int64_t> next_scan{0};
  std::atomic<bool> contended{true};
  GpuState* gpu_state = nullptr;  ///< where held-back time is recorded (nullptr: nowhere)
  pthread_t drainer{};            ///< the thread that last reported a drain (with `mu`)
  bool drainer_known = false;
  /// More than one thread has reported drains here (written with `mu`; read without it by
  /// alone_bound(), which then skips its look at the ledger and the board).
  std::atomic<bool> several_drainers{false};

  /// The pacer's decision for a launch at `now` (its lock held, the fast-path bounds updated).
  WindowPacer::Decision admit(std::int64_t now) noexcept {
    pthread_mutex_lock(&mu);
    const WindowPacer::Decision dec = pacer.admit(now);
    publish();
    pthread_mutex_unlock(&mu);
    return dec;
  }

  /// Reports a drained window to the pacer (see WindowPacer::drained) and, if its work ran past
  /// the window's end, to the job's other processes. `alone_ns` counts only while one thread of
  /// the process has ever drained here (a thread's queued work says nothing of another's).
  /// Returns that window's end and the time its work was charged until.
  struct Drained {
    std::int64_t end;
    std::int64_t idle_at;
  };
  Drained drained(std::int64_t w, std::int64_t stopped_at, std::int64_t idle_at, std::int64_t now,
                  std::int64_t alone_ns = WindowPacer::kUnbounded) noexcept {
    const pthread_t self = pthread_self();
    pthread_mutex_lock(&mu);
    if (drainer_known && pthread_equal(drainer, self) == 0) several_drainers.store(true, std::memory_order_relaxed);
    drainer = self;
    drainer_known = true;
    const bool alone_counts = !several_drainers.load(std::memory_order_relaxed);
    idle_at = pacer.drained(w, stopped_at, idle_at, now, alone_counts ? alone_ns : WindowPacer::kUnbounded);
    publish();
    const std::int64_t end = pacer.schedule().end(w);
    if (job_spill != nullptr && idle_at > end) {
      core::max_u64(*job_spill, static_cast<std::uint64_t>(idle_at));
      if (idle_at > job_spill_seen.load(std::memory_order_relaxed)) job_spill_seen.store(idle_at, std::memory_order_relaxed);
    }
    pthread_mutex_unlock(&mu);
    return {end, idle_at};
  }

  /// Charges a spill another process of the job reported (WindowPacer::job_spill). One relaxed
  /// load per launch while there is none.
  void follow_job(std::int64_t now) noexcept {
    if (job_spill == nullptr) return;
    std::uint64_t raw = __atomic_load_n(job_spill, __ATOMIC_RELAXED);
    if (raw <= static_cast<std::uint64_t>(job_spill_seen.load(std::memory_order_relaxed))) return;
    pthread_mutex_lock(&mu);
    if (raw > static_cast<std::uint64_t>(now) + kFutureSlackNs) {
      // No process reports a time still to come: the file was edited. Left there, the mark
      // would stop every later spill from raising it, and each process would pay only its own.
      __atomic_compare_exchange_n(job_spill, &raw, 0, /*weak=*/false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
      if (job_spill_seen.load(std::memory_order_relaxed) > now) job_spill_seen.store(now, std::memory_order_relaxed);
      if (!g_warned_future.exchange(true)) {
        platform::log_warning("compute share: the job's spill record in its ledger lies in the future "
                              "(edited?); reset");
      }
    } else if (const auto until = static_cast<std::int64_t>(raw); until > job_spill_seen.load(std::memory_order_relaxed)) {
      job_spill_seen.store(until, std::memory_order_relaxed);
      pacer.job_spill(until, now);
      publish();
    }
    pthread_mutex_unlock(&mu);
  }

 private:
  void publish() noexcept {  // with mu held
    go_from.store(pacer.go_from(), std::memory_order_relaxed);
    go_until.store(pacer.go_until(), std::memory_order_relaxed);
    window.store(pacer.window(), std::memory_order_relaxed);
  }
};
PaceDevice g_devices[core::kMaxDevices];
std::atomic<unsigned> g_epoch{1};  ///< bumped when contexts (and the markers in them) go away
std::atomic<bool> g_markers_broken{false};  ///< events unusable: drain by synchronising
std::atomic<bool> g_warned_stuck{false};

/// A thread's record of one stream it launches on.
struct StreamEntry {
  CUcontext ctx = nullptr;
  CUstream stream = nullptr;
  int ordinal = -1;
  bool used = false;
  std::int64_t last_use = 0;
  StreamPace pace;
  CUevent events[StreamPace::kSlots] = {};

  /// Forgets the events; destroys them first if their context is still alive (`alive`).
  void drop_events(bool alive) noexcept {
    auto* destroy = real<Sym::cuEventDestroy_v2>();
    for (CUevent& ev : events) {
      if (ev != nullptr && alive && destroy != nullptr) destroy(ev);
      ev = nullptr;
    }
  }
};

/// Everything a thread keeps, in one page mapped on its first paced launch (no malloc).
struct ThreadPace {
  /// The thread's launches on one GPU (both read on every launch: one cache line).
  struct Gpu {
    std::int64_t last_window = -1;   ///< window of launches not yet drained, or -1
    std::int64_t expected_idle = 0;  ///< when those launches should be finished
  };
  unsigned epoch = 0;
  CUcontext last_ctx = nullptr;  ///< the context of the thread's last launch...
  int last_ordinal = -1;         ///< ...and its device (a context never changes device)
  unsigned backlog_waits = 0;       ///< launches held for queued work since the last drain (debug log)
  std::int64_t backlog_wait_ns = 0; ///< time they were held
  Gpu gpus[core::kMaxDevices];
  StreamEntry entries[kStreams];

  /// When the thread's launches on `ordinal` should have finished, as far as known at `now`
  /// (what a window is charged when the thread did not see its work end).
  [[nodiscard]] std::int64_t estimated_idle(int ordinal, std::int64_t now) const noexcept {
    return std::min(gpus[ordinal].expected_idle, now);
  }

  /// The window of the thread's undrained launches on `ordinal` (-1: none), now forgotten.
  std::int64_t take_window(int ordinal) noexcept { return std::exchange(gpus[ordinal].last_window, -1); }

  /// A fresh thread, or one whose contexts went away: nothing tracked, no launches pending.
  void reset(unsigned new_epoch) noexcept {
    for (StreamEntry& entry : entries) entry = StreamEntry{};
    std::fill(std::begin(gpus), std::end(gpus), Gpu{});
    last_ctx = nullptr;
    last_ordinal = -1;
    backlog_waits = 0;
    backlog_wait_ns = 0;
    epoch = new_epoch;
  }
};
static_assert(sizeof(ThreadPace) <= 4096, "one page per thread");

pthread_key_t g_thread_key;
std::atomic<int> g_key_state{0};  // 0 none, 1 creating, 2 ready
__attribute__((tls_model("initial-exec"))) thread_local ThreadPace* t_pace = nullptr;

void thread_exit(void* p) noexcept {
  auto* tp = static_cast<ThreadPace*>(p);
  const bool alive = tp->epoch == g_epoch.load(std::memory_order_acquire);
  for (StreamEntry& e : tp->entries) e.drop_events(alive);
  if (t_pace == tp) t_pace = nullptr;
  munmap(tp, sizeof(ThreadPace));
}

void fork_child() noexcept { g_epoch.fetch_add(1, std::memory_order_acq_rel); }

ThreadPace* thread_pace() noexcept {
  ThreadPace* tp = t_pace;
  if (tp == nullptr) {
    int k = g_key_state.load(std::memory_order_acquire);
    if (k == 0 && g_key_state.compare_exchange_strong(k, 1)) {
      if (pthread_key_create(&g_thread_key, thread_exit) != 0) {
        g_key_state.store(0);
        return nullptr;
      }
      pthread_atfork(nullptr, nullptr, fork_child);
      g_key_state.store(2, std::memory_order_release);
    }
    while (g_key_state.load(std::memory_order_acquire) == 1) sched_yield();
    if (g_key_state.load(std::memory_order_acquire) != 2) return nullptr;
    void* mem = mmap(nullptr, sizeof(ThreadPace), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    tp = new (mem) ThreadPace();
    tp->reset(g_epoch.load(std::memory_order_acquire));
    pthread_setspecific(g_thread_key, tp);
    t_pace = tp;
  }
  // Contexts went away (or this is a forked child): markers and events are gone with them.
  if (const unsigned e = g_epoch.load(std::memory_order_acquire); tp->epoch != e) tp->reset(e);
  return tp;
}

PaceDevice* device(int ordinal) noexcept {
  if (ordinal < 0 || static_cast<unsigned>(ordinal) >= core::kMaxDevices) return nullptr;
  PaceDevice& d = g_devices[ordinal];
  for (;;) {
    int st = d.state.load(std::memory_order_acquire);
    if (st == 2) return &d;
    if (st == 1) return nullptr;
    if (st == 0 && d.state.compare_exchange_strong(st, 3, std::memory_order_acq_rel)) break;
    sched_yield();
  }
  const platform::Settings& s = platform::settings();
  core::DeviceLimit limit;
  const char* uuid = "";
  if (GpuState* g = gpu(ordinal)) {
    limit = g->limit;
    uuid = g->uuid;
    d.gpu_state = g;
    d.job_spill = job_spill_record(*g);
    // Spills from before this process are history: paid by the processes that were there. (A
    // record in the future was edited: follow_job() resets it.)
    if (d.job_spill != nullptr) {
      const auto now = static_cast<std::uint64_t>(now_ns());
      d.job_spill_seen.store(static_cast<std::int64_t>(std::min(core::load_u64(*d.job_spill), now)));
    }
  } else {
    limit = s.limits.resolve(ordinal, "");
    platform::log_error("compute share: GPU %d cannot be identified; applying its ordinal/global "
                        "share (%u %%)", ordinal, limit.sm_percent);
  }
  if (limit.sm_percent >= 100) {
    d.state.store(1, std::memory_order_release);
    return nullptr;
  }
  d.pacer = WindowPacer(core::ShareSchedule{s.sm_period_ns, limit.sm_percent, limit.sm_phase});
  d.burst = s.sm_burst;
  if (s.sm_board[0] != '\0' && uuid[0] != '\0') d.board.open(s.sm_board, uuid, s.ledger_key);
  d.stamps = d.board.usable();
  platform::log_info("compute share on GPU %d %s: %u %% of every %lld ms from %u %%, %s%s%s", ordinal,
                     uuid, limit.sm_percent, static_cast<long long>(s.sm_period_ns / kMs),
                     limit.sm_phase, d.burst ? "burst" : "strict",
                     d.board.usable() ? " (activity board in use)" : "",
                     d.job_spill != nullptr ? "" : " (no job ledger: each process pays only its own spills)");
  d.state.store(2, std::memory_order_release);
  return &d;
}

void maybe_stamp(PaceDevice& d, std::int64_t now) noexcept {
  if (!d.stamps || now < d.next_stamp.load(std::memory_order_relaxed)) return;
  d.next_stamp.store(now + kStampEveryNs, std::memory_order_relaxed);
  d.board.stamp();
}

/// Burst mode: true while another job on the GPU wants it (or nobody can tell).
bool contended(PaceDevice& d, std::int64_t now) noexcept {
  if (!d.board.usable()) return true;
  if (now >= d.next_scan.load(std::memory_order_relaxed)) {
    d.next_scan.store(now + kScanEveryNs, std::memory_order_relaxed);
    d.contended.store(d.board.others_active(kFreshNs), std::memory_order_relaxed);
  }
  return d.contended.load(std::memory_order_relaxed);
}

StreamEntry* entry_for(ThreadPace& tp, CUcontext ctx, CUstream stream, int ordinal, std::int64_t now) noexcept {
  StreamEntry* pick = nullptr;
  for (StreamEntry& e : tp.entries) {
    if (e.used && e.ctx == ctx && e.stream == stream) {
      e.last_use = now;
      return &e;
    }
    // Reuse: an unused entry, else the least recently used idle one, else the least recent.
    if (pick == nullptr || (!e.used && pick->used) ||
        (e.used == pick->used && e.pace.idle() && !pick->pace.idle()) ||
        (e.used == pick->used && e.pace.idle() == pick->pace.idle() && e.last_use < pick->last_use)) {
      pick = &e;
    }
  }
  // Events belong to their context: those of another (live) context are destroyed.
  if (pick->ctx != ctx) pick->drop_events(/*alive=*/true);
  pick->ctx = ctx;
  pick->stream = stream;
  pick->ordinal = ordinal;
  pick->used = true;
  pick->last_use = now;
  pick->pace = StreamPace{};
  return pick;
}

/// Notes every marker of `e` that has completed, with the GPU time between markers.
void poll(StreamEntry& e, std::int64_t now) noexcept {
  e.pace.polled(now);
  auto* query = real<Sym::cuEventQuery>();
  auto* elapsed = real<Sym::cuEventElapsedTime_v2>();
  if (elapsed == nullptr) elapsed = real<Sym::cuEventElapsedTime>();
  for (int slot = e.pace.oldest(); slot >= 0; slot = e.pace.oldest()) {
    const CUresult r = query == nullptr ? CUDA_ERROR_NOT_FOUND : query(e.events[slot]);
    if (r == CUDA_ERROR_NOT_READY) return;
    std::int64_t gpu_ns = -1;
    if (const int prev = e.pace.previous(); r == CUDA_SUCCESS && prev >= 0 && elapsed != nullptr) {
      float ms = 0;
      if (elapsed(&ms, e.events[prev], e.events[slot]) == CUDA_SUCCESS && ms >= 0) {
        gpu_ns = static_cast<std::int64_t>(static_cast<double>(ms) * 1e6);
      }
    }
    e.pace.completed(gpu_ns, now);  // a failed query counts as done: never wait on a broken marker
  }
}

void warn_markers(const char* what, CUresult r) noexcept {
  if (!g_markers_broken.exchange(true)) {
    platform::log_error("compute share: %s failed (%d); windows are now closed by "
                          "synchronising the context, and queued work is not bounded within them",
                          what, r);
  }
}

/// Records a completion marker behind the work just launched on `stream`.
void mark(StreamEntry& e, CUstream stream, std::int64_t now) noexcept {
  auto* capturing = real<Sym::cuStreamIsCapturing>();
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  if (capturing != nullptr && capturing(stream, &status) == CUDA_SUCCESS &&
      status != CU_STREAM_CAPTURE_STATUS_NONE) {
    // Captured work does not run now; a marker would become a node of the user's graph.
    e.pace = StreamPace{};
    return;
  }
  // Look at the markers first: the new one counts as queued straight behind the previous one
  // (its time a sample of pure GPU work) only if that one has really not completed yet.
  if (e.pace.outstanding_markers() != 0) poll(e, now);
  const int slot = e.pace.next_slot();
  if (slot < 0) return;
  auto* create = real<Sym::cuEventCreate>();
  auto* record = real<Sym::cuEventRecord>();
  if (create == nullptr || record == nullptr) return warn_markers("finding cuEventCreate/cuEventRecord", CUDA_ERROR_NOT_FOUND);
  if (e.events[slot] == nullptr) {
    if (const CUresult r = create(&e.events[slot], CU_EVENT_DEFAULT); r != CUDA_SUCCESS) {
      e.events[slot] = nullptr;
      return warn_markers("cuEventCreate", r);
    }
  }
  if (const CUresult r = record(e.events[slot], stream); r != CUDA_SUCCESS) return warn_markers("cuEventRecord", r);
  e.pace.marked(now);
}

/// Looks at the thread's markers on GPU `ordinal`; true if any is still outstanding.
bool polled_busy(ThreadPace& tp, int ordinal, std::int64_t now) noexcept {
  bool busy = false;
  for (StreamEntry& e : tp.entries) {
    if (!e.used || e.ordinal != ordinal) continue;
    poll(e, now);
    busy = busy || e.pace.outstanding_markers() != 0;
  }
  return busy;
}

/// GPU time of the thread's work queued on GPU `ordinal` had it the GPU to itself, from each
/// stream's learned cost per launch; kUnbounded if a stream with work queued has not learned it.
std::int64_t queued_work(const ThreadPace& tp, int ordinal) noexcept {
  std::int64_t sum = 0;
  for (const StreamEntry& e : tp.entries) {
    if (!e.used || e.ordinal != ordinal || e.pace.idle()) continue;
    if (e.pace.cost_per_launch() == 0) return WindowPacer::kUnbounded;
    sum += e.pace.backlog_ns();
  }
  return sum;
}

/// For a drain that took longer than the thread's queued work alone (`queued_ns`, at the stop)
/// would have: that work's length if another job wanted the GPU meanwhile and nothing else of
/// this job can have slowed it (the job's only process on the GPU; PaceDevice::drained checks
/// for other threads), else kUnbounded (the wall time is charged).
std::int64_t alone_bound(PaceDevice& d, std::int64_t queued_ns, std::int64_t took_ns) noexcept {
  const std::int64_t bound = WindowPacer::drain_bound(queued_ns, took_ns);
  // Where several threads drain, PaceDevice::drained discards the bound: no need to look.
  if (bound == WindowPacer::kUnbounded || d.several_drainers.load(std::memory_order_relaxed)) {
    return WindowPacer::kUnbounded;
  }
  if (d.gpu_state == nullptr || job_processes_on(*d.gpu_state) > 1) return WindowPacer::kUnbounded;
  if (!d.board.usable() || !d.board.others_active(kFreshNs)) return WindowPacer::kUnbounded;
  return bound;
}

/// Waits (bounded) until everything this thread queued on the GPU has finished; reports it.
void drain(ThreadPace& tp, PaceDevice& d, int ordinal, StreamEntry* current, CUstream stream,
           std::int64_t now) noexcept {
  const std::int64_t window = tp.take_window(ordinal);
  if (window == -1) return;
  const std::int64_t start = now;
  // The work was seen still running at the first look (a marker recorded before the drain was
  // outstanding, or the context took a while to synchronise): it ran on until it was seen done.
  bool running = false;
  if (g_markers_broken.load(std::memory_order_relaxed)) {
    // Without markers the simplest sound drain: wait for everything in the context.
    if (auto* sync = real<Sym::cuCtxSynchronize>(); sync != nullptr) sync();
    running = now_ns() - start > kPollNs;
  }
  running = polled_busy(tp, ordinal, now) || running;
  const std::int64_t queued_ns = queued_work(tp, ordinal);
  // The last launches, which no marker follows yet, get one now.
  if (current != nullptr && current->pace.unmarked()) mark(*current, stream, now);
  for (;;) {
    const bool busy = polled_busy(tp, ordinal, now);
    now = now_ns();
    if (!busy) break;
    // The job's work is on the GPU: it is active (a bursting job that took this for idleness
    // would slow the work down, and the drain with it).
    maybe_stamp(d, now);
    if (now - start > kGiveUpNs) {
      if (!g_warned_stuck.exchange(true)) {
        platform::log_warning("compute share: queued work did not finish within %lld ms (a kernel "
                              "waiting for the host?); going on without it",
                              static_cast<long long>(kGiveUpNs / kMs));
      }
      for (StreamEntry& e : tp.entries) {
        if (e.used && e.ordinal == ordinal) e.pace.forget_markers();
      }
      break;
    }
    if (now - start < kSpinNs) {
      sched_yield();
    } else {
      sleep_ns(kPollNs);
    }
  }
  if (window == kBurstWindow) return;
  // Otherwise the work may have ended long before (the thread was busy elsewhere, e.g. waiting
  // for another thread, when its window closed): it is charged what the queued work's estimate
  // says ran on, plus the time the drain's own marker took (an event behind no work takes
  // ~10-30 us, at times far more; what it waited behind ran now), never the time away.
  const std::int64_t idle_at = running ? now : std::min(now, tp.estimated_idle(ordinal, now) + (now - start));
  const auto [end, charged] = d.drained(window, start, idle_at, now, alone_bound(d, queued_ns, idle_at - start));
  platform::log_debug("pace: window %lld drained in %lld us (stopped %lld us before its end, idle %lld us "
                      "after, charged %lld us), cost/launch %lld ns, %u launches held %lld us for queued work",
                      static_cast<long long>(window), static_cast<long long>((now - start) / 1000),
                      static_cast<long long>((end - start) / 1000), static_cast<long long>((idle_at - end) / 1000),
                      static_cast<long long>((charged - end) / 1000),
                      static_cast<long long>(current != nullptr ? current->pace.cost_per_launch() : -1),
                      tp.backlog_waits, static_cast<long long>(tp.backlog_wait_ns / 1000));
  tp.backlog_waits = 0;
  tp.backlog_wait_ns = 0;
}

/// The thread's launches of an earlier window were never drained (it was busy elsewhere, e.g.
/// in a synchronise, while that window closed): charge what ran past the window's end, as far
/// as the queued work's estimate tells.
void settle_undrained(ThreadPace& tp, PaceDevice& d, int ordinal, std::int64_t now) noexcept {
  const std::int64_t window = tp.take_window(ordinal);
  if (window < 0) return;
  const std::int64_t idle = tp.estimated_idle(ordinal, now);
  const std::int64_t end = d.drained(window, /*stopped_at=*/INT64_MAX, idle, now).end;  // no drain sample
  platform::log_debug("pace: window %lld left undrained; charged %lld us past its end", static_cast<long long>(window),
                      static_cast<long long>((idle - end) / 1000));
}

/// Sleeps until `until`, keeping the job's activity stamp fresh; in burst mode wakes early
/// when the GPU is free.
void wait_for_window(PaceDevice& d, std::int64_t until) noexcept {
  for (std::int64_t now = now_ns(); now < until; now = now_ns()) {
    maybe_stamp(d, now);
    if (d.burst && !contended(d, now)) return;
    // Sleep to just before the window opens, then yield: a sleep overshoots by tens of us.
    if (until - now > kSpinNs) {
      sleep_ns(std::min(until - now - kSpinNs, kSleepChunkNs));
    } else {
      sched_yield();
    }
  }
}

/// Step 1 of a launch: waits (draining the thread's queued work first) until the job's window
/// admits it, or the GPU is free for a bursting job. True if it had to wait.
bool hold_for_window(ThreadPace& tp, PaceDevice& d, int ordinal, StreamEntry* e, CUstream stream,
                     std::int64_t& now, PaceTicket& t) noexcept {
  bool held = false;
  for (;;) {
    d.follow_job(now);
    if (d.burst && !contended(d, now)) {
      tp.gpus[ordinal].last_window = kBurstWindow;
      t.bursting = true;
      return held;
    }
    t.bursting = false;
    std::int64_t window = 0;
    if (now >= d.go_from.load(std::memory_order_relaxed) && now < d.go_until.load(std::memory_order_relaxed)) {
      window = d.window.load(std::memory_order_relaxed);
    } else {
      const WindowPacer::Decision dec = d.admit(now);
      window = dec.window;
      if (dec.verdict == WindowPacer::Verdict::kWait) {
        held = true;
        drain(tp, d, ordinal, e, stream, now);
        wait_for_window(d, dec.until);
        now = now_ns();
        continue;
      }
    }
    if (const std::int64_t last = tp.gpus[ordinal].last_window; last != window && last >= 0) {
      settle_undrained(tp, d, ordinal, now);
    }
    tp.gpus[ordinal].last_window = window;
    if (held) {
      const std::int64_t opened = d.go_from.load(std::memory_order_relaxed);
      platform::log_debug("pace: window %lld admitted %lld us after it opened (%lld us of it paid for spills)",
                          static_cast<long long>(window), static_cast<long long>((now - opened) / 1000),
                          static_cast<long long>((opened - d.pacer.schedule().start(window)) / 1000));
    }
    return held;
  }
}

/// Step 2 of a launch: waits while the thread's queued work on the stream is at its bound, or
/// until the window closes (`closes`; a launch then would run past its end). True if it waited.
bool wait_for_queue(ThreadPace& tp, PaceDevice& d, StreamEntry& e, std::int64_t closes, std::int64_t& now) noexcept {
  if (e.pace.want_poll(now)) poll(e, now);
  if (!e.pace.must_wait()) return false;
  const std::int64_t start = now;
  ++tp.backlog_waits;
  while (e.pace.must_wait() && now < closes) {
    if (now - start > kGiveUpNs) {
      e.pace.forget_markers();
      break;
    }
    sleep_ns(kPollNs);
    now = now_ns();
    maybe_stamp(d, now);
    poll(e, now);
  }
  tp.backlog_wait_ns += now - start;
  return true;
}

}  // namespace

PaceTicket pace_before(CUstream stream) noexcept {
  PaceTicket t;
  ThreadPace* tp = thread_pace();
  if (tp == nullptr) return t;
  CUcontext ctx = nullptr;
  if (auto* get = real<Sym::cuCtxGetCurrent>(); get == nullptr || get(&ctx) != CUDA_SUCCESS) return t;
  if (ctx != tp->last_ctx || tp->last_ordinal < 0) {
    tp->last_ctx = ctx;
    tp->last_ordinal = current_ordinal();
  }
  const int ordinal = tp->last_ordinal;
  PaceDevice* d = device(ordinal);
  if (d == nullptr) return t;
  std::int64_t now = now_ns();
  StreamEntry* e = entry_for(*tp, ctx, stream, ordinal, now);
  maybe_stamp(*d, now);
  // 1. The job's window, then 2. queued work under its bound. A launch that waited for its
  // queued work asks for the window again: the wait may have outlasted it, and a launch made
  // then would run past the window's end, into the time of the job whose window follows.
  std::int64_t held_ns = 0;  // time outside the job's windows (waiting for queued work is not)
  for (;;) {
    const std::int64_t asked = now;
    if (hold_for_window(*tp, *d, ordinal, e, stream, now, t)) held_ns += now - asked;
    const std::int64_t closes = t.bursting ? INT64_MAX : d->go_until.load(std::memory_order_relaxed);
    if (!wait_for_queue(*tp, *d, *e, closes, now) || now < closes) break;
  }
  if (held_ns > 0 && d->gpu_state != nullptr) note_held(*d->gpu_state, static_cast<std::uint64_t>(held_ns));
  t.entry = e;
  t.ordinal = ordinal;
  t.now = now;
  return t;
}

void pace_after(const PaceTicket& t, CUstream stream, CUresult rc) noexcept {
  if (t.entry == nullptr || rc != CUDA_SUCCESS) return;
  auto& e = *static_cast<StreamEntry*>(t.entry);
  e.pace.launched(t.now);
  if (ThreadPace* tp = t_pace; tp != nullptr) {
    std::int64_t& idle = tp->gpus[t.ordinal].expected_idle;
    idle = std::max<std::int64_t>(idle, t.now + e.pace.backlog_ns());
  }
  if (e.pace.want_marker(t.now)) mark(e, stream, t.now);
}

void pace_contexts_changed() noexcept {
  if (detail::g_pacing.load(std::memory_order_relaxed) == 2) g_epoch.fetch_add(1, std::memory_order_acq_rel);
}

}  // namespace softmig::hooks
