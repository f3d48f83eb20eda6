// SPDX-License-Identifier: Apache-2.0
/// @file pacer.hpp
/// @brief The compute share as a time-division schedule, and the two controllers that hold a
///        job to it. Pure: every function takes the time it is asked about; no clock, no CUDA.
///
/// A job with a share of P % on a GPU may submit work during one window of P % of every
/// period; windows are aligned to the node's monotonic clock, so every process of every job
/// on the node agrees on them, and jobs sharing a GPU get windows at different phases (from
/// the prolog) so that they take turns instead of time-slicing each other.
///
/// Two controllers keep the job's GPU time inside its window:
///  - WindowPacer (one per process and GPU) admits launches while the window is open, closes
///    it early by the time the job's queued work has been taking to finish (learned from the
///    last drains without the longest and the shortest, so that one drain slowed by something
///    else, such as another job's turns on the GPU where the windows meet, does not move it), and
///    charges any spill past the window end to the next windows (debt), so the share holds
///    on average whatever the kernels' length.
///  - StreamPace (one per thread and stream) bounds how far the host may run ahead of the
///    GPU: it places completion markers (events) after launches and learns the GPU time per
///    launch from them, so that at most about `kMaxBacklogNs` of work is queued when a window
///    closes. Without it a program could queue seconds of work in one millisecond.
#pragma once

#include <cstdint>

namespace softmig::core {

inline constexpr std::int64_t kNsPerMs = 1'000'000;
inline constexpr std::int64_t kDefaultPeriodNs = 200 * kNsPerMs;
inline constexpr std::int64_t kMinPeriodNs = 10 * kNsPerMs;
inline constexpr std::int64_t kMaxPeriodNs = 1000 * kNsPerMs;
/// Queued GPU work a thread may have (StreamPace); also how long after a window's end a refusal
/// still counts as stopping launches that ran into it (WindowPacer).
inline constexpr std::int64_t kMaxBacklogNs = 2 * kNsPerMs;

/// When a job may use one GPU: the window [start(k), start(k) + window_ns()) of every period k.
struct ShareSchedule {
  std::int64_t period_ns = kDefaultPeriodNs;
  unsigned percent = 100;  ///< 1..100
  unsigned phase = 0;      ///< 0..99, percent of the period at which the window opens

  [[nodiscard]] std::int64_t window_ns() const noexcept { return period_ns * percent / 100; }
  [[nodiscard]] std::int64_t start(std::int64_t k) const noexcept {
    return k * period_ns + period_ns * phase / 100;
  }
  [[nodiscard]] std::int64_t end(std::int64_t k) const noexcept { return start(k) + window_ns(); }
  /// The first window that has not ended at `t` (the one containing t, or the next one).
  [[nodiscard]] std::int64_t current_or_next(std::int64_t t) const noexcept;
};

/// Admits a process's launches on one GPU during its windows. Not thread-safe: the caller
/// serialises calls (they happen only at window edges; the open-window test is lock-free on
/// the caller's side through go_from()/go_until()).
class WindowPacer {
 public:
  enum class Verdict {
    kGo,     ///< submit now
    kWait,   ///< the window is not open: finish (drain) queued work, then wait until `until`
  };
  struct Decision {
    Verdict verdict;
    std::int64_t until;  ///< for kWait: when to ask again
    std::int64_t window; ///< the window the decision is about
  };

  static constexpr std::int64_t kUnbounded = INT64_MAX;

  explicit WindowPacer(const ShareSchedule& s) noexcept : s_(s) {}

  /// Decides whether a launch at `now` may go ahead. A window always admits its first
  /// launch, however late, so a job can never be starved by its own estimates.
  Decision admit(std::int64_t now) noexcept;

  /// Reports that work submitted in `window` (stopped at `stopped_at`) was all finished by
  /// `idle_at`: learns how early to stop, and charges time past the window end as debt.
  /// `alone_ns`: the longest the work queued at the stop could have run on, had it had the GPU
  /// to itself, when another job's work took turns with it meanwhile (the drain's wall time then
  /// holds that job's turns, which are that job's GPU time, charged to it); kUnbounded when that
  /// is not known, or when other work of this job (another thread's or process's) may have
  /// taken turns with it too.
  /// Returns the time the work was charged until.
  std::int64_t drained(std::int64_t window, std::int64_t stopped_at, std::int64_t idle_at, std::int64_t now,
                       std::int64_t alone_ns = kUnbounded) noexcept;
  /// How long is seen of a drain beyond its work (the polls' sleeps, the markers' own time).
  static constexpr std::int64_t kDrainSlackNs = 200'000;
  /// `alone_ns` for drained() from the GPU time of the work queued at the stop, alone
  /// (kUnbounded: not known), and how long the drain took: kUnbounded unless the drain took
  /// longer than that work could have. The caller passes it only where another job took turns.
  [[nodiscard]] static constexpr std::int64_t drain_bound(std::int64_t queued_ns, std::int64_t took_ns) noexcept {
    return queued_ns != kUnbounded && took_ns > queued_ns + kDrainSlackNs ? queued_ns + kDrainSlackNs : kUnbounded;
  }
  /// Drains the close is learned from: their mean without the longest and the shortest.
  static constexpr unsigned kDrainSamples = 5;

  /// Another process of the job saw the job's work run until `idle_at`, past the end of the
  /// window before it: that window's spill is charged here too (once, the longest report), so
  /// that the processes of a job, each holding its own launches, pay one another's spills
  /// instead of refilling the GPU time one of them owes.
  void job_spill(std::int64_t idle_at, std::int64_t now) noexcept;

  /// Launches at t with go_from() <= t < go_until() may go ahead without asking.
  [[nodiscard]] std::int64_t go_from() const noexcept { return open_from_; }
  [[nodiscard]] std::int64_t go_until() const noexcept { return close_at_; }
  [[nodiscard]] std::int64_t drain_estimate() const noexcept { return drain_est_; }
  [[nodiscard]] std::int64_t debt() const noexcept { return debt_; }
  [[nodiscard]] std::int64_t window() const noexcept { return k_; }
  [[nodiscard]] const ShareSchedule& schedule() const noexcept { return s_; }

 private:
  void enter(std::int64_t k) noexcept;
  void recompute_close() noexcept;
  /// Adds `window`'s spill (if any) to the debt, then recomputes the close.
  void charge_spill(std::int64_t window, std::int64_t spill, std::int64_t now) noexcept;

  ShareSchedule s_;
  std::int64_t k_ = -1;          ///< current window index (-1: none yet)
  std::int64_t open_from_ = 0;   ///< launches admitted from here (window start + debt paid)...
  std::int64_t close_at_ = 0;    ///< ...until here (window end - drain estimate)
  std::int64_t drain_est_ = 0;   ///< how long queued work takes to finish after launches stop
  std::int64_t debt_ = 0;        ///< GPU time used past window ends, to be paid from windows
  bool admitted_ = false;        ///< the current window admitted a launch
  std::int64_t spill_window_ = -1;
  std::int64_t spill_max_ = 0;
  std::int64_t learn_window_ = -1;  ///< the window the drain estimate last learned from
  std::int64_t drains_[kDrainSamples] = {};  ///< the last drains learned from (a ring)
  unsigned drain_count_ = 0;                 ///< drains learned from so far
  void learn_drain(std::int64_t sample) noexcept;
};

/// Bounds the work a thread has queued on one stream, from completion markers.
/// The caller owns the markers (CUDA events) in a ring of kSlots, indexed as this class says.
class StreamPace {
 public:
  static constexpr unsigned kSlots = 8;                        ///< marker ring size
  static constexpr std::int64_t kMaxBacklogNs = core::kMaxBacklogNs;  ///< queued work allowed
  static constexpr std::int64_t kMarkEveryNs = 2'000'000;      ///< marker at least this often
  static constexpr std::int64_t kPollEveryNs = 1'000'000;      ///< look at markers this often
  static constexpr unsigned kCostSamples = 4;  ///< the cost is the least of the last samples

  /// Records a launch at `now` (after it was submitted).
  void launched(std::int64_t now) noexcept;

  /// True if a marker should follow the launch just recorded.
  [[nodiscard]] bool want_marker(std::int64_t now) const noexcept;

  /// True if outstanding markers are worth querying before the next launch (queries cost a
  /// driver call: while little work is queued they are made only every kPollEveryNs).
  [[nodiscard]] bool want_poll(std::int64_t now) const noexcept;
  void polled(std::int64_t now) noexcept { last_poll_ns_ = now; }

  /// The ring slot for a new marker, or -1 if the ring is full (wait for the oldest first).
  [[nodiscard]] int next_slot() const noexcept;
  /// The marker in next_slot() was recorded at `now`. The caller reports completed markers
  /// (completed()) just before, so that "the previous marker was still queued" is true.
  void marked(std::int64_t now) noexcept;

  /// The oldest outstanding marker's slot, or -1 if none.
  [[nodiscard]] int oldest() const noexcept;
  /// The slot of the marker that completed before oldest() (for elapsed time), or -1.
  [[nodiscard]] int previous() const noexcept;
  /// oldest() completed, as seen at `seen_ns`. `gpu_ns`: GPU time since previous() completed,
  /// or < 0 if unknown.
  void completed(std::int64_t gpu_ns, std::int64_t seen_ns) noexcept;

  /// True if the queued work is at its bound: wait for oldest() before launching more.
  [[nodiscard]] bool must_wait() const noexcept;
  /// True if launches were made that no marker follows yet.
  [[nodiscard]] bool unmarked() const noexcept { return unmarked_ != 0; }
  [[nodiscard]] bool idle() const noexcept { return count_ == 0 && unmarked_ == 0; }
  [[nodiscard]] unsigned outstanding_markers() const noexcept { return count_; }
  /// Estimated GPU time of the work queued behind the last completed marker.
  [[nodiscard]] std::int64_t backlog_ns() const noexcept {
    return cost_ns_ * static_cast<std::int64_t>(queued_launches());
  }
  /// GPU time per launch learned so far (0: not known yet).
  [[nodiscard]] std::int64_t cost_per_launch() const noexcept { return cost_ns_; }
  /// An upper bound of the cost per launch at least this long bounds the queue until the cost
  /// is measured. A shorter one is most often a host-bound stream's time between launches: the
  /// GPU keeps up there, and the queue needs no bound (nor the thread waits for markers).
  static constexpr std::int64_t kLongLaunchNs = kMaxBacklogNs / 8;
  /// GPU time per launch the queue is bounded with: the cost, or while that is only provisional,
  /// half a long upper bound the markers gave (ceiling_ns_), if more. Half: the work it bounds
  /// may be far less, so the queue may reach twice its bound there before the thread waits,
  /// rather than a thread waiting for every marker it has just placed.
  [[nodiscard]] std::int64_t bound_per_launch() const noexcept {
    const std::int64_t ceiling = ceiling_ns_ >= kLongLaunchNs ? ceiling_ns_ / 2 : 0;
    return cost_ns_ > ceiling ? cost_ns_ : ceiling;
  }
  /// Forgets markers (their events are gone, e.g. the context was destroyed); keeps the cost.
  void forget_markers() noexcept;

 private:
  struct Marker {
    std::int64_t host_ns = 0;
    std::int64_t first_launch_ns = 0;  ///< the first launch this marker follows
    std::uint32_t launches = 0;        ///< launches since the previous marker
    bool chained = false;  ///< the previous marker was still queued when this was recorded
  };
  [[nodiscard]] std::uint64_t queued_launches() const noexcept { return queued_; }
  /// The queued work as the queue is bounded: its launches at bound_per_launch().
  [[nodiscard]] std::int64_t bounded_backlog_ns() const noexcept {
    return bound_per_launch() * static_cast<std::int64_t>(queued_launches());
  }

  // Read on every launch: kept together, ahead of the ring (touched only at markers).
  unsigned head_ = 0;   ///< oldest outstanding marker
  unsigned count_ = 0;  ///< outstanding markers
  std::uint32_t unmarked_ = 0;
  bool has_previous_ = false;
  std::uint64_t queued_ = 0;  ///< unmarked_ plus the launches of the outstanding markers
  std::int64_t first_unmarked_ns_ = 0;
  std::int64_t last_mark_ns_ = INT64_MIN / 2;
  std::int64_t last_poll_ns_ = INT64_MIN / 2;
  std::int64_t cost_ns_ = 0;
  /// Until a marker queued behind another gives a measured cost: an upper bound on the GPU time
  /// per launch, from markers the GPU may have idled before (their launches ran between the
  /// first of them and when the marker was seen done, and within the time since the previous
  /// marker); 0 once a cost is measured. The provisional cost can be far too small (a thread
  /// held off the CPU between its first launches sees its first kernel done before it makes the
  /// next, whatever its length); bounding the queue with it alone let such a thread queue
  /// hundreds of kernels. The cost itself stays the estimate (what the queued work is expected
  /// to take): a host-bound stream, whose markers are never queued behind one another, keeps
  /// an upper bound near its time between launches, which as an estimate would make its work
  /// seem to run on after it ended (and which bounds nothing unless long: kLongLaunchNs).
  std::int64_t ceiling_ns_ = 0;
  Marker ring_[kSlots]{};
  // Samples of GPU time per launch; their least is the cost. Time between markers can include
  // other contexts' turns on the GPU (time-slicing), which only ever makes a sample larger.
  std::int64_t samples_[kCostSamples] = {};
  unsigned next_sample_ = 0;
  void add_sample(std::int64_t sample) noexcept;
};

}  // namespace softmig::core
