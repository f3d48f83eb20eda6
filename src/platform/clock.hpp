// SPDX-License-Identifier: Apache-2.0
/// @file clock.hpp
/// @brief Time as the library uses it: nanoseconds of the node-wide monotonic clock (every
///        process on the node agrees on it, which the compute windows rely on), of the wall
///        clock (file modification times), and sleeping on the monotonic clock.
#pragma once

#include <cstdint>
#include <ctime>

namespace softmig::platform {

inline constexpr std::int64_t kNsPerSecond = 1'000'000'000LL;

[[nodiscard]] inline std::int64_t to_ns(const timespec& ts) noexcept {
  return static_cast<std::int64_t>(ts.tv_sec) * kNsPerSecond + ts.tv_nsec;
}

[[nodiscard]] inline std::int64_t clock_ns(clockid_t clock) noexcept {
  timespec ts{};
  clock_gettime(clock, &ts);
  return to_ns(ts);
}

/// CLOCK_MONOTONIC in nanoseconds.
[[nodiscard]] inline std::int64_t monotonic_ns() noexcept { return clock_ns(CLOCK_MONOTONIC); }

/// CLOCK_REALTIME in nanoseconds (comparable with file times).
[[nodiscard]] inline std::int64_t realtime_ns() noexcept { return clock_ns(CLOCK_REALTIME); }

/// Sleeps `ns` on the monotonic clock (nothing for ns <= 0).
inline void sleep_ns(std::int64_t ns) noexcept {
  if (ns <= 0) return;
  const timespec ts{static_cast<time_t>(ns / kNsPerSecond), static_cast<long>(ns % kNsPerSecond)};
  clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
}

}  // namespace softmig::platform
