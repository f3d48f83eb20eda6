// SPDX-License-Identifier: Apache-2.0
#include "core/pacer.hpp"

#include <algorithm>

namespace softmig::core {

// ---- ShareSchedule ------------------------------------------------------------------------

std::int64_t ShareSchedule::current_or_next(std::int64_t t) const noexcept {
  const std::int64_t offset = period_ns * phase / 100;
  std::int64_t k = (t - offset) / period_ns;
  if (t - offset < 0 && (t - offset) % period_ns != 0) --k;  // floor for negative times
  // Window k starts at or before t; if it is already over, the next one is the answer.
  if (t >= end(k)) ++k;
  return k;
}

// ---- WindowPacer --------------------------------------------------------------------------

void WindowPacer::enter(std::int64_t k) noexcept {
  const std::int64_t len = std::max<std::int64_t>(s_.window_ns(), 1);
  // Whole windows owed are skipped; the rest of the debt delays this window's opening.
  const std::int64_t skipped = debt_ / len;
  k_ = k + skipped;
  open_from_ = s_.start(k_) + (debt_ - skipped * len);
  debt_ = 0;
  admitted_ = false;
  recompute_close();
}

void WindowPacer::recompute_close() noexcept {
  close_at_ = std::max(open_from_, s_.end(k_) - drain_est_);
}

WindowPacer::Decision WindowPacer::admit(std::int64_t now) noexcept {
  if (k_ < 0 || now >= s_.end(k_)) enter(s_.current_or_next(now));
  if (now < open_from_) return {Verdict::kWait, open_from_, k_};
  if (now < close_at_ || !admitted_) {
    admitted_ = true;
    return {Verdict::kGo, now, k_};
  }
  // Closed early so that queued work ends with the window: next window (debt may delay it).
  return {Verdict::kWait, s_.start(k_ + 1), k_};
}

std::int64_t WindowPacer::drained(std::int64_t window, std::int64_t stopped_at, std::int64_t idle_at,
                                  std::int64_t now, std::int64_t alone_ns) noexcept {
  const std::int64_t end = s_.end(window);
  // The other job's turns in a drain are its own GPU time: neither learned nor charged here.
  if (alone_ns != kUnbounded && idle_at - stopped_at > alone_ns) idle_at = stopped_at + alone_ns;
  // How long queued work ran on after launches stopped: close that much earlier next time. One
  // sample per window, from the first thread to report that was stopped by the close or while
  // its launches were running into the end. (Threads refused long after the end were busy
  // elsewhere; and several threads of one process, each waiting behind the others' work, each
  // adding their wait, made it close far too early: tests/compute.)
  if (stopped_at <= end + kMaxBacklogNs && window != learn_window_) {
    learn_window_ = window;
    learn_drain(std::max<std::int64_t>(idle_at - stopped_at, 0));
  }
  charge_spill(window, idle_at - end, now);
  return idle_at;
}

void WindowPacer::learn_drain(std::int64_t sample) noexcept {
  drains_[drain_count_++ % kDrainSamples] = sample;
  const unsigned n = std::min(drain_count_, kDrainSamples);
  std::int64_t sum = 0;
  std::int64_t least = INT64_MAX;
  std::int64_t most = 0;
  for (unsigned i = 0; i < n; ++i) {
    sum += drains_[i];
    least = std::min(least, drains_[i]);
    most = std::max(most, drains_[i]);
  }
  // Without the longest and the shortest; of the first two, the shorter (a first drain slowed
  // by something else must not close the next windows far too early; a short one only makes
  // the work spill, which is charged).
  const std::int64_t est = n >= 3 ? (sum - least - most) / static_cast<std::int64_t>(n - 2) : least;
  drain_est_ = std::min(est, s_.window_ns());
}

void WindowPacer::job_spill(std::int64_t idle_at, std::int64_t now) noexcept {
  // The window whose work ran until idle_at: the last one to end before it.
  const std::int64_t window = s_.current_or_next(idle_at) - 1;
  // Older than a spill already charged (paid with it), or history from before this process.
  if (window < spill_window_ || now - idle_at > s_.period_ns) return;
  charge_spill(window, idle_at - s_.end(window), now);
}

void WindowPacer::charge_spill(std::int64_t window, std::int64_t spill, std::int64_t now) noexcept {
  if (spill > 0) {
    // Several threads (and processes) may report the same window: its spill is the longest, once.
    std::int64_t add = spill;
    if (window == spill_window_) {
      add = std::max<std::int64_t>(spill - spill_max_, 0);
      spill_max_ = std::max(spill_max_, spill);
    } else {
      spill_window_ = window;
      spill_max_ = spill;
    }
    debt_ += add;
    // A later window that has not opened yet pays at once.
    if (k_ > window && now < open_from_ && debt_ > 0) {
      const std::int64_t room = s_.end(k_) - open_from_;
      const std::int64_t pay = std::min(debt_, room);
      open_from_ += pay;
      debt_ -= pay;
      if (open_from_ >= s_.end(k_)) {
        enter(k_ + 1);  // recomputes the close
        return;
      }
    }
  }
  if (k_ >= 0) recompute_close();
}

// ---- StreamPace ---------------------------------------------------------------------------

void StreamPace::launched(std::int64_t now) noexcept {
  if (unmarked_++ == 0) first_unmarked_ns_ = now;
  ++queued_;
}

bool StreamPace::want_marker(std::int64_t now) const noexcept {
  if (unmarked_ == 0) return false;
  // Until the cost of a launch is known, every launch is marked: a host far faster than the
  // GPU must not queue more than a few launches before the first measurement.
  if (cost_ns_ == 0) return true;
  if (now - last_mark_ns_ >= kMarkEveryNs) return true;
  // Fine-grained markers where launches are long, so the backlog can be bounded finely; and
  // while the cost is provisional, one by half its bound (must_wait() needs a marker to wait
  // for, and one placed earlier has most often completed by then).
  const auto n = static_cast<std::int64_t>(unmarked_);
  return cost_ns_ * n >= kMaxBacklogNs / 4 || bound_per_launch() * n >= kMaxBacklogNs / 2;
}

bool StreamPace::want_poll(std::int64_t now) const noexcept {
  if (count_ == 0) return false;
  return now - last_poll_ns_ >= kPollEveryNs || bounded_backlog_ns() >= kMaxBacklogNs / 2 || next_slot() < 0;
}

void StreamPace::add_sample(std::int64_t sample) noexcept {
  ceiling_ns_ = 0;  // measured from now on
  samples_[next_sample_++ % kCostSamples] = std::max<std::int64_t>(sample, 1);
  std::int64_t least = INT64_MAX;
  for (const std::int64_t v : samples_) {
    if (v > 0 && v < least) least = v;
  }
  cost_ns_ = least;
}

int StreamPace::next_slot() const noexcept {
  if (count_ + (has_previous_ ? 1U : 0U) >= kSlots) return -1;
  return static_cast<int>((head_ + count_) % kSlots);
}

void StreamPace::marked(std::int64_t now) noexcept {
  const int slot = next_slot();
  if (slot < 0) return;
  ring_[slot] = Marker{now, first_unmarked_ns_, unmarked_, count_ > 0};
  ++count_;
  unmarked_ = 0;
  last_mark_ns_ = now;
}

int StreamPace::oldest() const noexcept { return count_ > 0 ? static_cast<int>(head_) : -1; }

int StreamPace::previous() const noexcept {
  return has_previous_ ? static_cast<int>((head_ + kSlots - 1) % kSlots) : -1;
}

void StreamPace::completed(std::int64_t gpu_ns, std::int64_t seen_ns) noexcept {
  if (count_ == 0) return;
  const Marker& m = ring_[head_];
  if (gpu_ns >= 0 && m.launches > 0) {
    const auto n = static_cast<std::int64_t>(m.launches);
    if (m.chained) {
      // Queued behind the previous marker: the GPU went straight on to these launches, so
      // the time between the two is their work (or more, if another context had a turn).
      add_sample(gpu_ns / n);
    } else if (next_sample_ == 0) {
      // The GPU may have idled before these launches: until a real sample, the host's time to
      // submit them is the estimate of their work (the GPU kept up with it), and the queue is
      // bounded by what they can at most have taken (ceiling_ns_).
      if (cost_ns_ == 0) cost_ns_ = std::max<std::int64_t>(std::min(gpu_ns, m.host_ns - m.first_launch_ns) / n, 1);
      const std::int64_t most = std::max<std::int64_t>(std::min(gpu_ns, seen_ns - m.first_launch_ns) / n, 1);
      ceiling_ns_ = ceiling_ns_ == 0 ? most : std::min(ceiling_ns_, most);
    }
  }
  queued_ -= m.launches;
  head_ = (head_ + 1) % kSlots;
  --count_;
  has_previous_ = true;
}

bool StreamPace::must_wait() const noexcept {
  if (count_ == 0) return false;     // nothing to wait for
  if (next_slot() < 0) return true;  // no room for another marker
  if (queued_launches() < 2) return false;  // one running and one queued keep the GPU busy
  if (cost_ns_ == 0) return count_ >= kSlots / 2;  // cost not learned yet: bound by markers
  return bounded_backlog_ns() >= kMaxBacklogNs;
}

void StreamPace::forget_markers() noexcept {
  count_ = 0;
  has_previous_ = false;
  unmarked_ = 0;
  queued_ = 0;
}

}  // namespace softmig::core
