// SPDX-License-Identifier: Apache-2.0
// The compute-share controllers against a simulated clock and a simulated GPU: a host loop per
// job that launches kernels as fast as it is allowed, and a GPU that runs each job's queue in
// order and divides its time equally between jobs that have work (as contexts time-slice).
#include "core/pacer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

namespace softmig::core {
namespace {

constexpr std::int64_t kUs = 1000;
constexpr std::int64_t kMs = 1000 * kUs;

struct JobSpec {
  unsigned percent = 100;  ///< 100: not paced at all (the bare reference)
  unsigned phase = 0;
  std::int64_t kernel_ns = 1600 * kUs;  ///< GPU time of one launch
  std::int64_t host_ns = 3 * kUs;       ///< host time of one launch
  std::int64_t start_ns = 0;            ///< when the job starts launching
  std::int64_t stop_ns = INT64_MAX;     ///< when it stops (killed)
  int job = -1;  ///< >= 0: a process of that job; its processes share their spills (the ledger's record)
};

struct Job {
  explicit Job(const JobSpec& s)
      : spec(s), pacer(ShareSchedule{kDefaultPeriodNs, s.percent, s.phase}) {}
  JobSpec spec;
  WindowPacer pacer;
  StreamPace stream;
  std::deque<std::int64_t> queue;  ///< remaining GPU ns of each queued kernel
  std::uint64_t launched = 0;
  std::uint64_t completed = 0;
  std::vector<std::int64_t> completion_ns;  ///< when kernel i completed
  struct MarkerSim {
    std::uint64_t seq = 0;  ///< completes when this many kernels have completed
  } markers[StreamPace::kSlots];
  std::int64_t host_free_at = 0;
  bool draining = false;
  std::int64_t stop_at = 0;
  std::int64_t stop_queued_ns = 0;  ///< its queued work's GPU time alone at the stop (or kUnbounded)
  bool others_active = false;       ///< another job is there (its activity stamp is fresh)
  bool sole = false;                ///< the job's ledger lists no other process of it
  std::int64_t resume_at = 0;
  std::int64_t last_window = -1;
  std::uint64_t waits_for_backlog = 0;
  std::int64_t max_backlog_ns = 0;  ///< most queued GPU time seen at a launch
  std::int64_t busy_ns = 0;         ///< GPU time its kernels got
  std::int64_t outside_ns = 0;      ///< ...of which outside its windows (taken from other jobs)
  std::int64_t* job_spill = nullptr;  ///< the job's spill record (shared by its processes), if any
  std::int64_t job_spill_seen = 0;

  [[nodiscard]] bool paced() const { return spec.percent < 100; }
  [[nodiscard]] bool alive(std::int64_t t) const { return t >= spec.start_ns && t < spec.stop_ns; }

  /// Kernels completed in [from, to).
  [[nodiscard]] std::uint64_t completed_between(std::int64_t from, std::int64_t to) const {
    return static_cast<std::uint64_t>(std::count_if(completion_ns.begin(), completion_ns.end(),
                                                    [&](std::int64_t c) { return c >= from && c < to; }));
  }

  void poll_markers(std::int64_t t) {
    for (int slot = stream.oldest(); slot >= 0; slot = stream.oldest()) {
      const std::uint64_t seq = markers[slot].seq;
      if (completed < seq) break;
      std::int64_t gpu_ns = -1;
      if (const int prev = stream.previous(); prev >= 0 && markers[prev].seq > 0) {
        gpu_ns = completion_ns[seq - 1] - completion_ns[markers[prev].seq - 1];
      }
      stream.completed(gpu_ns, t);
    }
  }

  void mark(std::int64_t t) {
    const int slot = stream.next_slot();
    if (slot < 0) return;
    markers[slot].seq = launched;
    stream.marked(t);
  }

  void host_step(std::int64_t t) {
    if (t < host_free_at || !alive(t)) return;
    poll_markers(t);
    if (draining) {
      if (completed < launched) {
        host_free_at = t + 20 * kUs;  // poll interval
        return;
      }
      // As the library does: a drain longer than its queued work alone, while another job is
      // there, is charged that work only, if the ledger says this is the job's only process.
      const std::int64_t alone =
          sole && others_active ? WindowPacer::drain_bound(stop_queued_ns, t - stop_at) : WindowPacer::kUnbounded;
      pacer.drained(last_window, stop_at, t, t, alone);
      if (job_spill != nullptr && t > pacer.schedule().end(last_window)) {
        *job_spill = std::max(*job_spill, t);
        job_spill_seen = std::max(job_spill_seen, t);
      }
      draining = false;
      host_free_at = std::max(resume_at, t);
      return;
    }
    if (paced()) {
      if (job_spill != nullptr && *job_spill > job_spill_seen) {
        job_spill_seen = *job_spill;
        pacer.job_spill(*job_spill, t);
      }
      const auto d = pacer.admit(t);
      if (d.verdict == WindowPacer::Verdict::kWait) {
        if (completed < launched) {
          if (stream.unmarked()) mark(t);
          draining = true;
          stop_at = t;
          stop_queued_ns = stream.cost_per_launch() > 0 ? stream.backlog_ns() : WindowPacer::kUnbounded;
          resume_at = d.until;
        } else {
          host_free_at = d.until;
        }
        return;
      }
      last_window = d.window;
      if (stream.must_wait()) {
        ++waits_for_backlog;
        host_free_at = t + 20 * kUs;
        return;
      }
    } else if (queue.size() >= 1024) {  // the driver's launch queue is full
      host_free_at = t + 5 * kUs;
      return;
    }
    std::int64_t backlog = 0;
    for (const auto q : queue) backlog += q;
    max_backlog_ns = std::max(max_backlog_ns, backlog);
    queue.push_back(spec.kernel_ns);
    ++launched;
    stream.launched(t);
    if (paced() && stream.want_marker(t)) mark(t);
    host_free_at = t + spec.host_ns;
  }
};

/// Runs the front kernel of `j` for `ns` of GPU time, from `t_end - ns`.
void run_front(Job& j, std::int64_t ns, std::int64_t t_end) {
  const ShareSchedule& s = j.pacer.schedule();
  j.busy_ns += ns;
  if (j.paced() && t_end - ns < s.start(s.current_or_next(t_end - ns))) j.outside_ns += ns;
  j.queue.front() -= ns;
  if (j.queue.front() <= 0) {
    j.queue.pop_front();
    ++j.completed;
    j.completion_ns.push_back(t_end);
  }
}

/// Runs the jobs from `from` to `to` of simulated time in steps of `dt`. The GPU divides its time
/// equally between the jobs that have work; or, with `slice_ns`, gives it to one at a time, for up
/// to `slice_ns` or until its queue is empty, in turn (contexts of different processes on a GPU
/// without MPS).
void simulate(std::vector<Job>& jobs, std::int64_t from, std::int64_t to, std::int64_t dt = kUs,
              std::int64_t slice_ns = 0) {
  std::size_t turn = 0;
  std::int64_t slice_left = 0;
  for (std::int64_t t = from; t < to; t += dt) {
    if (slice_ns > 0) {
      if (jobs[turn].queue.empty() || slice_left <= 0) {
        for (std::size_t i = 1; i <= jobs.size(); ++i) {
          const std::size_t next = (turn + i) % jobs.size();
          if (!jobs[next].queue.empty()) {
            turn = next;
            break;
          }
        }
        slice_left = slice_ns;
      }
      if (!jobs[turn].queue.empty()) {
        run_front(jobs[turn], dt, t + dt);
        slice_left -= dt;
      }
    } else {
      unsigned active = 0;
      for (const auto& j : jobs) active += j.queue.empty() ? 0U : 1U;
      for (auto& j : jobs) {
        if (!j.queue.empty()) run_front(j, dt / active, t + dt);
      }
    }
    for (auto& j : jobs) {
      // Processes without a job (-1) have no ledger: whether they are alone is not known.
      j.others_active = std::any_of(jobs.begin(), jobs.end(), [&](const Job& o) {
        return &o != &j && o.alive(t) && (o.spec.job < 0 || o.spec.job != j.spec.job);
      });
      j.sole = j.spec.job >= 0 && std::none_of(jobs.begin(), jobs.end(), [&](const Job& o) {
        return &o != &j && o.alive(t) && o.spec.job == j.spec.job;
      });
      j.host_step(t);
    }
  }
}

/// Throughput of one job in [from, to) relative to the same job alone and unpaced.
double relative_share(const JobSpec& spec, unsigned percent, std::int64_t from, std::int64_t to) {
  JobSpec bare = spec;
  bare.percent = 100;
  std::vector<Job> a{Job(bare)};
  simulate(a, 0, to);
  JobSpec paced = spec;
  paced.percent = percent;
  std::vector<Job> b{Job(paced)};
  simulate(b, 0, to);
  return static_cast<double>(b[0].completed_between(from, to)) /
         static_cast<double>(a[0].completed_between(from, to));
}

/// Runs the jobs together and returns each one's completions in [from, to) relative to the first
/// job's spec running alone, unpaced.
std::vector<double> shares_together(const std::vector<JobSpec>& specs, std::int64_t from, std::int64_t to,
                                    std::int64_t slice_ns = 0) {
  std::vector<Job> jobs(specs.begin(), specs.end());
  std::vector<std::int64_t> spill_records(specs.size(), 0);
  for (auto& j : jobs) {
    if (j.spec.job >= 0) j.job_spill = &spill_records.at(static_cast<std::size_t>(j.spec.job));
  }
  simulate(jobs, 0, to, kUs, slice_ns);
  JobSpec bare = specs.front();
  bare.percent = 100;
  bare.stop_ns = INT64_MAX;
  std::vector<Job> alone{Job(bare)};
  simulate(alone, 0, to);
  const double base = static_cast<double>(alone[0].completed_between(from, to));
  std::vector<double> out;
  for (const auto& j : jobs) out.push_back(static_cast<double>(j.completed_between(from, to)) / base);
  return out;
}

TEST(ShareSchedule, WindowsFollowPeriodPhaseAndShare) {
  const ShareSchedule s{50 * kMs, 25, 50};
  EXPECT_EQ(s.window_ns(), 12500 * kUs);
  EXPECT_EQ(s.start(0), 25 * kMs);
  EXPECT_EQ(s.end(0), 37500 * kUs);
  EXPECT_EQ(s.current_or_next(0), 0);             // before window 0: window 0 is next
  EXPECT_EQ(s.current_or_next(30 * kMs), 0);      // inside window 0
  EXPECT_EQ(s.current_or_next(40 * kMs), 1);      // after it: window 1
  EXPECT_EQ(s.current_or_next(-20 * kMs), -1);    // negative times floor correctly
  EXPECT_EQ(s.current_or_next(-10 * kMs), 0);     // (window -1 ended at -12.5 ms)
}

TEST(WindowPacer, AdmitsOnlyInsideTheWindow) {
  WindowPacer p(ShareSchedule{50 * kMs, 20, 0});
  EXPECT_EQ(p.admit(1 * kMs).verdict, WindowPacer::Verdict::kGo);
  EXPECT_EQ(p.admit(9 * kMs).verdict, WindowPacer::Verdict::kGo);
  const auto d = p.admit(10 * kMs);
  EXPECT_EQ(d.verdict, WindowPacer::Verdict::kWait);
  EXPECT_EQ(d.until, 50 * kMs);
  EXPECT_EQ(p.admit(50 * kMs).verdict, WindowPacer::Verdict::kGo);
}

TEST(WindowPacer, SpillBecomesDebtAndEarlierClosing) {
  WindowPacer p(ShareSchedule{50 * kMs, 20, 0});
  ASSERT_EQ(p.admit(0).verdict, WindowPacer::Verdict::kGo);
  // Work stopped at the window end but ran 4 ms longer.
  p.drained(0, 10 * kMs, 14 * kMs, 14 * kMs);
  EXPECT_EQ(p.debt(), 4 * kMs);
  const auto d = p.admit(20 * kMs);
  EXPECT_EQ(d.verdict, WindowPacer::Verdict::kWait);
  EXPECT_EQ(d.until, 54 * kMs);  // the next window opens 4 ms late: the debt is paid
  EXPECT_EQ(p.go_until(), 60 * kMs - p.drain_estimate());
  EXPECT_GT(p.drain_estimate(), 0);
}

TEST(WindowPacer, LearnsToCloseEarlyFromAThreadRefusedJustAfterTheEnd) {
  // A real thread is rarely refused exactly at the end: it was in a launch or waiting for queued
  // work when the window closed. Its queue running 3 ms past the end must still teach the close.
  WindowPacer p(ShareSchedule{50 * kMs, 20, 0});
  for (int k = 0; k < 8; ++k) {
    const std::int64_t end = k * 50 * kMs + 10 * kMs;
    ASSERT_EQ(p.admit(end - 5 * kMs).verdict, WindowPacer::Verdict::kGo) << "window " << k;
    const std::int64_t stopped = std::max(end, p.go_until()) + 300 * kUs;
    p.drained(k, stopped, stopped + 3 * kMs, stopped + 3 * kMs);
  }
  EXPECT_GT(p.drain_estimate(), 2 * kMs);
  // A thread refused long after the end (busy elsewhere) teaches nothing.
  const std::int64_t before = p.drain_estimate();
  ASSERT_EQ(p.admit(8 * 50 * kMs + 6 * kMs).verdict, WindowPacer::Verdict::kGo);
  p.drained(8, 8 * 50 * kMs + 30 * kMs, 8 * 50 * kMs + 40 * kMs, 8 * 50 * kMs + 40 * kMs);
  EXPECT_EQ(p.drain_estimate(), before);
}

TEST(WindowPacer, OneSlowDrainDoesNotMoveTheClose) {
  // Where two jobs' windows meet, the GPU now and then gives the next job's first kernels turns
  // while this job's queued work drains (a drain measured 5.7 ms where its work took 2 ms, and a
  // job's first drain 74 ms, on the H100). Learned as it was, such a drain closed the next
  // windows far too early, for many windows.
  const ShareSchedule s{100 * kMs, 25, 0};
  const auto drain = [&](WindowPacer& p, std::int64_t k, std::int64_t took) {
    const std::int64_t stopped = s.end(k) - 2 * kMs;
    p.drained(k, stopped, stopped + took, stopped + took);
  };
  WindowPacer steady(s);
  for (std::int64_t k = 0; k < 6; ++k) drain(steady, k, 2 * kMs);
  EXPECT_EQ(steady.drain_estimate(), 2 * kMs);
  drain(steady, 6, 50 * kMs);
  EXPECT_EQ(steady.drain_estimate(), 2 * kMs);
  // Its spill is still charged in full: the work did run past the end.
  EXPECT_EQ(steady.debt(), 48 * kMs);
  // A job's first drain was the slow one: the second sets the close.
  WindowPacer first(s);
  drain(first, 0, 74 * kMs);
  drain(first, 1, 2 * kMs);
  EXPECT_EQ(first.drain_estimate(), 2 * kMs);
  // A drain time that lasts is learned within a few windows.
  for (std::int64_t k = 2; k < 5; ++k) drain(first, k, 4 * kMs);
  EXPECT_EQ(first.drain_estimate(), 4 * kMs);
}

TEST(WindowPacer, AnotherJobsTurnsInADrainAreNotCharged) {
  // A matmul job at 25 % stopped 2 ms before its end with two 1.5 ms GEMMs queued; the next
  // job's first GEMMs took turns with them, and they were done 5.5 ms later (H100 debug logs).
  const ShareSchedule s{100 * kMs, 25, 0};
  const std::int64_t stopped = s.end(0) - 2 * kMs;
  WindowPacer wall(s);
  EXPECT_EQ(wall.drained(0, stopped, stopped + 5500 * kUs, stopped + 5500 * kUs), stopped + 5500 * kUs);
  EXPECT_EQ(wall.debt(), 3500 * kUs);
  // What its queued work takes alone is charged: the other job's turns are that job's time.
  WindowPacer shared(s);
  const std::int64_t alone = WindowPacer::drain_bound(3 * kMs, 5500 * kUs);  // the GEMMs, plus the slack
  EXPECT_EQ(alone, 3200 * kUs);
  EXPECT_EQ(WindowPacer::drain_bound(3 * kMs, 3100 * kUs), WindowPacer::kUnbounded);  // within the slack
  EXPECT_EQ(WindowPacer::drain_bound(WindowPacer::kUnbounded, 5500 * kUs), WindowPacer::kUnbounded);
  EXPECT_EQ(shared.drained(0, stopped, stopped + 5500 * kUs, stopped + 5500 * kUs, alone), stopped + alone);
  EXPECT_EQ(shared.debt(), 1200 * kUs);
  EXPECT_EQ(shared.drain_estimate(), alone);
  // A drain within that bound is charged as it was.
  WindowPacer within(s);
  EXPECT_EQ(within.drained(0, stopped, stopped + 2500 * kUs, stopped + 2500 * kUs, alone), stopped + 2500 * kUs);
  EXPECT_EQ(within.debt(), 500 * kUs);
}

TEST(WindowPacer, AWindowAlwaysAdmitsItsFirstLaunch) {
  WindowPacer p(ShareSchedule{50 * kMs, 10, 0});
  // Kernels far longer than the 5 ms window teach it to close at once...
  for (int k = 0; k < 8; ++k) {
    const std::int64_t base = k * 50 * kMs;
    ASSERT_EQ(p.admit(base).verdict, WindowPacer::Verdict::kGo);
    p.drained(p.window(), base, base + 5 * kMs, base + 5 * kMs);
  }
  EXPECT_LE(p.go_until() - p.go_from(), kMs);
  // ...yet the next window still admits one launch.
  const auto d = p.admit(400 * kMs + kMs);
  EXPECT_EQ(d.verdict, WindowPacer::Verdict::kGo);
}

TEST(WindowPacer, AnotherProcesssSpillIsChargedOnceAndHistoryIsNot) {
  const ShareSchedule sched{50 * kMs, 25, 0};  // windows [0, 12.5 ms), [50, 62.5 ms), ...
  WindowPacer p(sched);
  EXPECT_EQ(p.admit(1 * kMs).verdict, WindowPacer::Verdict::kGo);
  // Another process of the job saw the job's work of window 0 run until 14.5 ms.
  p.job_spill(14500 * kUs, 15 * kMs);
  EXPECT_EQ(p.debt(), 2 * kMs);
  // This process's own, shorter spill of the same window adds nothing; the same report again neither.
  p.drained(0, 12 * kMs, 13500 * kUs, 15 * kMs);
  p.job_spill(14500 * kUs, 16 * kMs);
  EXPECT_EQ(p.debt(), 2 * kMs);
  const auto d = p.admit(50 * kMs);
  EXPECT_EQ(d.verdict, WindowPacer::Verdict::kWait);
  EXPECT_EQ(d.until, 52 * kMs);
  // The next window's spill, reported by another process, delays the one after it.
  p.job_spill(64500 * kUs, 65 * kMs);
  EXPECT_EQ(p.admit(100 * kMs).until, 102 * kMs);
  // A record older than a period is history (paid by the processes that were there then).
  WindowPacer q(sched);
  EXPECT_EQ(q.admit(1000 * kMs).verdict, WindowPacer::Verdict::kGo);
  q.job_spill(14500 * kUs, 1000 * kMs);
  EXPECT_EQ(q.debt(), 0);
  EXPECT_EQ(q.admit(1001 * kMs).verdict, WindowPacer::Verdict::kGo);
}

TEST(WindowPacer, LongDebtSkipsWholeWindows) {
  WindowPacer p(ShareSchedule{50 * kMs, 10, 0});
  ASSERT_EQ(p.admit(0).verdict, WindowPacer::Verdict::kGo);
  p.drained(0, 5 * kMs, 30 * kMs, 30 * kMs);  // one launch ran 25 ms past its 5 ms window
  // 25 ms of debt = five whole windows: the next launch goes in window 6.
  const auto d = p.admit(40 * kMs);
  EXPECT_EQ(d.verdict, WindowPacer::Verdict::kWait);
  EXPECT_EQ(d.until, 6 * 50 * kMs);
}

TEST(StreamPace, LearnsCostAndBoundsBacklog) {
  StreamPace s;
  std::int64_t t = 0;
  // Launch 1 and its marker; launch 2 while the GPU is still on launch 1.
  s.launched(t);
  ASSERT_TRUE(s.want_marker(t));  // first marker at once
  s.marked(t);
  t += 60 * kUs;
  s.launched(t);
  EXPECT_TRUE(s.want_marker(t));  // cost unknown: mark every launch
  s.marked(t);
  s.completed(-1, t);              // launch 1 done, no elapsed time (no previous marker)
  EXPECT_EQ(s.cost_per_launch(), 0);
  s.completed(1600 * kUs, t);      // launch 2 done 1.6 ms later
  EXPECT_EQ(s.cost_per_launch(), 1600 * kUs);
  EXPECT_TRUE(s.idle());
  s.launched(t);
  EXPECT_TRUE(s.want_marker(t));   // long launches: every one is marked
  s.marked(t);
  EXPECT_FALSE(s.must_wait());     // one queued launch is fine
  s.launched(t);
  s.marked(t);
  EXPECT_TRUE(s.must_wait());      // two of 1.6 ms exceed the 2 ms bound
}

TEST(StreamPace, BacklogIsTheLaunchesNotSeenFinished) {
  StreamPace s;
  std::int64_t t = 0;
  s.launched(t);  // learn a cost of 100 us per launch from two chained markers
  s.marked(t);
  s.launched(t);
  s.marked(t);
  s.completed(-1, t);
  s.completed(100 * kUs, t);
  ASSERT_EQ(s.cost_per_launch(), 100 * kUs);
  EXPECT_EQ(s.backlog_ns(), 0);
  // Markers behind 3 and 5 launches, then 2 launches no marker follows yet.
  for (const int n : {3, 5}) {
    for (int i = 0; i < n; ++i) s.launched(t += kUs);
    s.marked(t);
  }
  s.launched(t += kUs);
  s.launched(t += kUs);
  EXPECT_EQ(s.backlog_ns(), 10 * 100 * kUs);
  s.completed(300 * kUs, t);  // the first 3 are done
  EXPECT_EQ(s.backlog_ns(), 7 * 100 * kUs);
  s.completed(500 * kUs, t);  // and the next 5
  EXPECT_EQ(s.backlog_ns(), 2 * 100 * kUs);
  s.marked(t);
  s.forget_markers();  // the context went away: nothing is queued any more
  EXPECT_EQ(s.backlog_ns(), 0);
  EXPECT_TRUE(s.idle());
  s.launched(t += kUs);
  EXPECT_EQ(s.backlog_ns(), 100 * kUs);
}

TEST(StreamPace, AnotherContextsTurnDoesNotInflateTheCost) {
  StreamPace s;
  std::int64_t t = 0;
  s.launched(t);
  s.marked(t);
  s.completed(-1, t);
  for (int i = 0; i < 6; ++i) {  // 100 us launches; every other interval includes a 2 ms turn
    s.launched(t);
    s.marked(t);
    s.launched(t);
    s.marked(t);
    s.completed(i % 2 == 0 ? 2100 * kUs : 100 * kUs, t);
    s.completed(100 * kUs, t);
  }
  EXPECT_EQ(s.cost_per_launch(), 100 * kUs);
}

/// One stream on a GPU of its own, driven as the launch hooks drive StreamPace: before a launch,
/// a poll when want_poll(), then the launch unless must_wait(); after it, a marker when
/// want_marker(). Kernels run one after another; a marker completes with the launches before it.
struct StreamSim {
  StreamPace pace;
  std::int64_t kernel_ns;
  std::int64_t gpu_free = 0;                 ///< when the GPU finishes what is queued
  std::int64_t marker_done[StreamPace::kSlots] = {};
  std::int64_t last_done = -1;               ///< completion of the last marker seen done
  unsigned markers = 0;

  explicit StreamSim(std::int64_t kernel) : kernel_ns(kernel) {}
  void poll(std::int64_t t) {
    pace.polled(t);
    for (int slot = pace.oldest(); slot >= 0 && marker_done[slot] <= t; slot = pace.oldest()) {
      pace.completed(pace.previous() >= 0 && last_done >= 0 ? marker_done[slot] - last_done : -1, t);
      last_done = marker_done[slot];
    }
  }
  /// Tries a launch at t; false if the queue is at its bound.
  bool launch(std::int64_t t) {
    if (pace.want_poll(t)) poll(t);
    if (pace.must_wait()) return false;
    gpu_free = std::max(gpu_free, t) + kernel_ns;
    pace.launched(t);
    if (pace.want_marker(t)) {
      poll(t);  // as the hooks do before a marker: is the previous one still queued?
      if (const int slot = pace.next_slot(); slot >= 0) {
        marker_done[slot] = gpu_free;
        pace.marked(t);
        ++markers;
      }
    }
    return true;
  }
  [[nodiscard]] std::int64_t queued_ns(std::int64_t t) const { return std::max<std::int64_t>(gpu_free - t, 0); }
};

TEST(StreamPace, AThreadHeldOffBetweenItsFirstLaunchesStillBoundsItsQueue) {
  // 1 ms kernels. The thread is held off the CPU for 5 ms after its first launch, so the first
  // kernel is done before the second launch: the GPU idled before it, and the host's time to
  // submit a single launch (none) said nothing of its length. The provisional cost was 1 ns,
  // and the thread then queued kernels without bound until a marker queued behind another
  // completed (hundreds of ms of work on a loaded host).
  StreamSim sim(kMs);
  ASSERT_TRUE(sim.launch(0));
  std::int64_t t = 5 * kMs;
  ASSERT_TRUE(sim.launch(t));
  std::int64_t most_queued = 0;
  for (t += 500 * kUs; t < 40 * kMs; t += kUs) {  // then launches as fast as it can
    if (sim.launch(t)) most_queued = std::max(most_queued, sim.queued_ns(t));
  }
  // No more than twice the bound (while only an upper bound of the cost is known), or the few
  // launches allowed before any cost is known (one per marker, half the ring).
  EXPECT_LE(most_queued, std::max(2 * StreamPace::kMaxBacklogNs + kMs, StreamPace::kSlots / 2 * kMs));
  EXPECT_EQ(sim.pace.cost_per_launch(), kMs);                // then measured
  EXPECT_EQ(sim.pace.bound_per_launch(), kMs);
}

TEST(StreamPace, AHostBoundStreamKeepsItsEstimateAndFewMarkers) {
  // 5 us kernels launched every 20 us (a framework's host-bound loop), or every 500 us (a slow
  // host): the GPU keeps up, so no marker is ever queued behind another and the cost stays
  // provisional. The queue is never held, markers come about every kMarkEveryNs, and the
  // estimate of the work queued stays within the work really queued (an upper bound there would
  // make the work seem to run on after it ended, charged as a spill).
  for (const std::int64_t every : {20 * kUs, 500 * kUs}) {
    StreamSim sim(5 * kUs);
    int held = 0;
    std::int64_t worst_over = 0;
    for (std::int64_t t = 0; t < 100 * kMs; t += every) {
      if (!sim.launch(t)) ++held;
      worst_over = std::max(worst_over, sim.pace.backlog_ns() - sim.queued_ns(t));
    }
    SCOPED_TRACE(every);
    EXPECT_EQ(held, 0);
    EXPECT_LE(sim.markers, 100 * kMs / StreamPace::kMarkEveryNs + 3);
    EXPECT_LE(worst_over, 5 * kUs);
    // A short upper bound bounds nothing: the queue is bounded as before, by the cost. A long
    // one does, without holding the stream.
    if (every < StreamPace::kLongLaunchNs) {
      EXPECT_EQ(sim.pace.bound_per_launch(), sim.pace.cost_per_launch());
    } else {
      EXPECT_GT(sim.pace.bound_per_launch(), sim.pace.cost_per_launch());
    }
  }
}

TEST(StreamPace, RingNeverOverflows) {
  StreamPace s;
  for (int i = 0; i < 100; ++i) {
    s.launched(i * kUs);
    if (s.next_slot() >= 0) s.marked(i * kUs);
  }
  EXPECT_LE(s.outstanding_markers(), StreamPace::kSlots);
  EXPECT_EQ(s.next_slot(), -1);
  EXPECT_TRUE(s.must_wait());
}

struct LoadCase {
  const char* name;
  std::int64_t kernel_ns;
  std::int64_t host_ns;
  double tolerance;
};

class ShareConverges : public ::testing::TestWithParam<std::tuple<LoadCase, unsigned>> {};

TEST_P(ShareConverges, DeliversTheShareOfTheSameWorkAlone) {
  const auto& [load, percent] = GetParam();
  JobSpec spec;
  spec.kernel_ns = load.kernel_ns;
  spec.host_ns = load.host_ns;
  const double got = relative_share(spec, percent, 500 * kMs, 2500 * kMs);
  RecordProperty("share", std::to_string(got));
  std::printf("  %-22s %3u %%  -> %.4f\n", load.name, percent, got);
  EXPECT_NEAR(got, percent / 100.0, load.tolerance) << load.name << " at " << percent << " %";
}

const LoadCase kLoads[] = {
    {"compute-bound 1.6 ms", 1600 * kUs, 3 * kUs, 0.02},
    {"launch-bound 2 us", 2 * kUs, 4 * kUs, 0.05},
    {"medium 150 us", 150 * kUs, 5 * kUs, 0.05},
    {"graph 8 ms", 8 * kMs, 10 * kUs, 0.05},
};

INSTANTIATE_TEST_SUITE_P(Loads, ShareConverges,
                         ::testing::Combine(::testing::ValuesIn(kLoads),
                                            ::testing::Values(10U, 25U, 50U, 75U)),
                         [](const ::testing::TestParamInfo<ShareConverges::ParamType>& p) {
                           std::string name = std::get<0>(p.param).name;
                           name = name.substr(0, name.find(' '));  // "compute-bound", "graph", ...
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name + "_" + std::to_string(std::get<1>(p.param));
                         });

TEST(SharePacing, QueuedWorkStaysBounded) {
  JobSpec spec;  // compute-bound: the host could queue a thousand kernels in 3 ms
  spec.percent = 25;
  std::vector<Job> jobs{Job(spec)};
  simulate(jobs, 0, 200 * kMs);
  const std::int64_t learning = jobs[0].max_backlog_ns;  // before the cost per launch is known
  jobs[0].max_backlog_ns = 0;
  simulate(jobs, 200 * kMs, 1200 * kMs);
  EXPECT_LE(learning, 40 * spec.kernel_ns);
  EXPECT_LE(jobs[0].max_backlog_ns, 2 * spec.kernel_ns) << "while learning: " << learning;
  EXPECT_GT(jobs[0].waits_for_backlog, 0U);
}

TEST(SharePacing, NoOscillationBeyondOneKernelPerPeriod) {
  JobSpec spec;
  spec.percent = 50;
  std::vector<Job> jobs{Job(spec)};
  simulate(jobs, 0, 2000 * kMs);
  // Over every pair of periods after the first 500 ms, the GPU time delivered stays within
  // one kernel of the share.
  const std::int64_t pair = 2 * kDefaultPeriodNs;
  for (std::int64_t from = 500 * kMs; from + pair <= 2000 * kMs; from += pair) {
    const double busy = static_cast<double>(jobs[0].completed_between(from, from + pair)) *
                        static_cast<double>(spec.kernel_ns);
    EXPECT_NEAR(busy / static_cast<double>(pair), 0.5,
                static_cast<double>(spec.kernel_ns) / static_cast<double>(pair) + 0.01)
        << "periods from " << from / kMs << " ms";
  }
}

TEST(SharePacing, WorkStaysInsideItsWindows) {
  // GPU time a job's kernels take outside its windows is taken from the job whose windows follow
  // (its debt pays it back to the share, not to the job it was taken from).
  for (const unsigned percent : {25U, 50U}) {
    for (const std::int64_t kernel_ns : {300 * kUs, 1 * kMs, 1600 * kUs, 3 * kMs}) {
      JobSpec spec;
      spec.percent = percent;
      spec.kernel_ns = kernel_ns;
      std::vector<Job> jobs{Job(spec)};
      simulate(jobs, 0, 500 * kMs);
      jobs[0].busy_ns = jobs[0].outside_ns = 0;
      simulate(jobs, 500 * kMs, 2500 * kMs);
      const double outside = static_cast<double>(jobs[0].outside_ns) / static_cast<double>(jobs[0].busy_ns);
      std::printf("  %u %%, %lld us kernels: %.4f of its GPU time outside its windows\n", percent,
                  static_cast<long long>(kernel_ns / kUs), outside);
      // The pacer aims the end of the queued work at the window's end; a kernel cannot be cut,
      // so what remains is a part of a kernel now and then.
      const double window = static_cast<double>(jobs[0].pacer.schedule().window_ns());
      EXPECT_LE(outside, 0.25 * static_cast<double>(kernel_ns) / window + 0.01)
          << percent << " %, " << kernel_ns / kUs << " us kernels";
    }
  }
}

TEST(SharePacing, TwoJobsAtHalfEachGetHalfWhileTogether) {
  JobSpec a;
  a.percent = 50;
  JobSpec b = a;
  b.phase = 50;
  for (const double share : shares_together({a, b}, 500 * kMs, 2500 * kMs)) EXPECT_NEAR(share, 0.5, 0.05);
}

TEST(SharePacing, SamePhaseJobsStillGetNoMoreThanTheirShare) {
  // Misconfigured phases (both 0): the jobs overlap and time-slice, but neither exceeds 50 %.
  JobSpec a;
  a.percent = 50;
  for (const double share : shares_together({a, a}, 500 * kMs, 2500 * kMs)) {
    EXPECT_LE(share, 0.52);
    EXPECT_GE(share, 0.15);  // and none starves
  }
}

TEST(SharePacing, ProcessesOfOneJobTogetherGetTheJobsShare) {
  // Processes of one job (same schedule) whose contexts take turns on the GPU in 2 ms slices:
  // the process whose work ran last past a window's end used GPU time that the others would
  // refill at the next window's start if each paid only its own spill.
  struct Case {
    unsigned percent;
    std::int64_t kernel_ns;
    unsigned processes;
  };
  for (const Case c : {Case{10, 1300 * kUs, 3}, Case{25, 8 * kMs, 2}, Case{25, 8 * kMs, 3}, Case{50, 1600 * kUs, 2}}) {
    JobSpec p;
    p.percent = c.percent;
    p.kernel_ns = c.kernel_ns;
    double alone = 0;
    double shared = 0;
    for (const double x : shares_together(std::vector<JobSpec>(c.processes, p), 500 * kMs, 2500 * kMs, 2 * kMs)) {
      alone += x;
    }
    p.job = 0;
    for (const double x : shares_together(std::vector<JobSpec>(c.processes, p), 500 * kMs, 2500 * kMs, 2 * kMs)) {
      shared += x;
    }
    std::printf("  %u processes at %u %%, %lld us kernels: %.4f sharing spills, %.4f each its own\n", c.processes,
                c.percent, static_cast<long long>(c.kernel_ns / kUs), shared, alone);
    EXPECT_NEAR(shared, c.percent / 100.0, 0.03) << c.processes << " processes at " << c.percent << " %";
  }
}

TEST(SharePacing, JobKilledMidWindowLeavesTheOtherOnSchedule) {
  JobSpec a;
  a.percent = 50;
  JobSpec b = a;
  b.phase = 50;
  b.stop_ns = 1000 * kMs;  // killed with work queued
  EXPECT_NEAR(shares_together({a, b}, 1500 * kMs, 2500 * kMs)[0], 0.5, 0.03);
}

}  // namespace
}  // namespace softmig::core
