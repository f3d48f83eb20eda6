// SPDX-License-Identifier: Apache-2.0
/// @file pace.hpp
/// @brief Holds kernel and graph launches to the job's compute share (core/pacer.hpp): a
///        launch outside the job's window waits, after the thread's queued work has finished;
///        inside it, the host may run at most about a millisecond of GPU work ahead.
///
/// Nothing here runs in a process without a compute share: launch handlers test
/// pacing_active() (one relaxed load) and forward.
#pragma once

#include <atomic>

#include "abi/cuda_types.hpp"

namespace softmig::hooks {

/// What pace_before() found, for pace_after().
struct PaceTicket {
  void* entry = nullptr;  ///< the thread's record of the stream (nullptr: not paced)
  int ordinal = -1;
  long long now = 0;
  bool bursting = false;  ///< admitted outside the window (burst mode, GPU otherwise idle)
};

namespace detail {
extern std::atomic<int> g_pacing;  ///< 0 not decided yet, 1 off, 2 on
int decide_pacing() noexcept;
}  // namespace detail

/// True if this process has a compute share on any GPU.
inline bool pacing_active() noexcept {
  int p = detail::g_pacing.load(std::memory_order_relaxed);
  if (p == 0) p = detail::decide_pacing();
  return p == 2;
}

/// Before a launch on `stream` (CU_STREAM_PER_THREAD for a _ptsz launch on stream 0): waits
/// for the job's window and for queued work to fall under its bound. Never waits forever.
PaceTicket pace_before(CUstream stream) noexcept;

/// After the launch: records it and, when due, a completion marker behind it.
void pace_after(const PaceTicket& t, CUstream stream, CUresult rc) noexcept;

/// A context was destroyed or reset: markers recorded in it can no longer be used.
void pace_contexts_changed() noexcept;

}  // namespace softmig::hooks
