// SPDX-License-Identifier: Apache-2.0
/// @file introspection.hpp
/// @brief Counters behind the softmig_* C API: calls that reached each wrapper, and how
///        wrappers were handed out (dlsym, cuGetProcAddress) or failed to be (unmapped).
#pragma once

#include <atomic>
#include <cstdint>

#include "hooks/symbols.hpp"

namespace softmig::hooks {

enum class Route : unsigned { kDlsym, kGetProcAddress, kUnmapped, kCount };

struct Counters {
  std::atomic<std::uint64_t> calls[kExportedCount];
  std::atomic<std::uint64_t> routes[static_cast<unsigned>(Route::kCount)];
};
extern Counters g_counters;

inline void count_call(Sym s) noexcept {
  g_counters.calls[index_of(s)].fetch_add(1, std::memory_order_relaxed);
}
inline void count_route(Route r) noexcept {
  g_counters.routes[static_cast<unsigned>(r)].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace softmig::hooks
