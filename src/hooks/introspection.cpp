// SPDX-License-Identifier: Apache-2.0
#include "hooks/introspection.hpp"

#include <cstring>

#include "softmig/softmig.h"

namespace softmig::hooks {

Counters g_counters{};

bool find_exported(std::string_view name, Sym& out) noexcept {
  // Names are short and the table is small (< 100): a first-character filter keeps this cheap
  // enough for dlsym, which is far from any hot path.
  if (name.size() < 3 || (name[0] != 'c' && name[0] != 'n')) return false;
  for (unsigned i = 0; i < kExportedCount; ++i) {
    if (name == kSymInfo[i].name) {
      out = static_cast<Sym>(i);
      return true;
    }
  }
  return false;
}

}  // namespace softmig::hooks

using softmig::hooks::g_counters;

extern "C" {

__attribute__((visibility("default"))) const char* softmig_version(void) { return SOFTMIG_VERSION; }

__attribute__((visibility("default"))) unsigned long long softmig_hook_calls(const char* symbol) {
  softmig::hooks::Sym s{};
  if (symbol == nullptr || !softmig::hooks::find_exported(symbol, s)) return 0;
  return g_counters.calls[softmig::hooks::index_of(s)].load(std::memory_order_relaxed);
}

__attribute__((visibility("default"))) unsigned long long softmig_route_count(const char* route) {
  using softmig::hooks::Route;
  if (route == nullptr) return 0;
  Route r{};
  if (std::strcmp(route, "dlsym") == 0) {
    r = Route::kDlsym;
  } else if (std::strcmp(route, "cuGetProcAddress") == 0) {
    r = Route::kGetProcAddress;
  } else if (std::strcmp(route, "unmapped") == 0) {
    r = Route::kUnmapped;
  } else {
    return 0;
  }
  return g_counters.routes[static_cast<unsigned>(r)].load(std::memory_order_relaxed);
}

}  // extern "C"
