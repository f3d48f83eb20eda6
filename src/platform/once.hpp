// SPDX-License-Identifier: Apache-2.0
/// @file once.hpp
/// @brief Run-once initialisation usable from the first intercepted call: no allocation, no
///        pthread_once (whose callers cannot recurse), safe when several threads arrive at once.
#pragma once

#include <sched.h>

#include <atomic>

namespace softmig::platform {

class Once {
 public:
  /// Runs `f` exactly once; concurrent callers wait for it to finish. A caller that re-enters
  /// from inside `f` returns false at once instead of deadlocking.
  template <typename F>
  bool run(F&& f) noexcept {
    int s = state_.load(std::memory_order_acquire);
    if (s == kDone) return true;
    if (s == kIdle && state_.compare_exchange_strong(s, kRunning, std::memory_order_acq_rel)) {
      owner_.store(this_thread_token(), std::memory_order_relaxed);
      f();
      state_.store(kDone, std::memory_order_release);
      return true;
    }
    // Only the running thread can read its own token here, so a relaxed load is enough.
    if (owner_.load(std::memory_order_relaxed) == this_thread_token()) return false;
    while (state_.load(std::memory_order_acquire) != kDone) sched_yield();
    return true;
  }
  [[nodiscard]] bool done() const noexcept { return state_.load(std::memory_order_acquire) == kDone; }

 private:
  static const void* this_thread_token() noexcept {
    static thread_local char token;
    return &token;
  }
  enum : int { kIdle, kRunning, kDone };
  std::atomic<int> state_{kIdle};
  std::atomic<const void*> owner_{nullptr};
};

}  // namespace softmig::platform
