// SPDX-License-Identifier: Apache-2.0
/// @file victim_common.hpp
/// @brief What every victim program shares: failure reporting, access to softmig's introspection
///        API and to the fakes' control API (both looked up at run time, so a victim also runs
///        without them), and a ledger that compares the calls a victim made with the calls that
///        softmig and the fake driver saw.
///
/// Victims exit 0 on success; on failure they print one line "<victim>: FAIL: <reason>" on
/// stderr and exit 1. By default softmig must be preloaded; `--no-softmig-expected` runs a victim
/// against the bare fakes (and then softmig must NOT be loaded).
#pragma once

#include "driver_api.hpp"  // tests/common: every driver and NVML function, fake_control.h

#include <dlfcn.h>
#include <unistd.h>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace victim {

inline const char* g_program = "victim";

/// Prints "<victim>: FAIL: <reason>" and exits 1 at once (no atexit handlers, safe after fork).
[[noreturn]] inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] inline void fail(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fflush(stdout);
  std::fprintf(stderr, "%s: FAIL: %s\n", g_program, msg);
  std::fflush(stderr);
  ::_exit(1);
}

#define VICTIM_CHECK(cond, ...)    \
  do {                             \
    if (!(cond)) {                 \
      ::victim::fail(__VA_ARGS__); \
    }                              \
  } while (0)

/// Command line: `--no-softmig-expected` is taken out, the rest is left for the victim.
struct Options {
  bool softmig_expected = true;
  std::vector<std::string> args;
};

inline Options parse_options(int argc, char** argv, const char* program) {
  g_program = program;
  Options o;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-softmig-expected") == 0) {
      o.softmig_expected = false;
    } else {
      o.args.emplace_back(argv[i]);
    }
  }
  return o;
}

/// A function looked up in `handle` (or RTLD_DEFAULT); fails the victim if it is missing.
template <typename Fn>
Fn lookup(void* handle, const char* name) {
  void* p = ::dlsym(handle, name);
  VICTIM_CHECK(p != nullptr, "dlsym(%s) failed: %s", name, ::dlerror());
  return reinterpret_cast<Fn>(p);
}

/// softmig's introspection API, if the library is loaded.
struct Softmig {
  unsigned long long (*hook_calls)(const char*) = nullptr;
  unsigned long long (*route_count)(const char*) = nullptr;

  [[nodiscard]] bool loaded() const { return hook_calls != nullptr; }
  [[nodiscard]] unsigned long long calls(const char* sym) const {
    return hook_calls != nullptr ? hook_calls(sym) : 0;
  }
  [[nodiscard]] unsigned long long route(const char* r) const {
    return route_count != nullptr ? route_count(r) : 0;
  }

  /// Fails with "library not loaded" when softmig is expected but absent, and the other way
  /// round, so that a test never passes for the wrong reason.
  static Softmig find(bool expected) {
    Softmig s;
    s.hook_calls =
        reinterpret_cast<decltype(s.hook_calls)>(::dlsym(RTLD_DEFAULT, "softmig_hook_calls"));
    s.route_count =
        reinterpret_cast<decltype(s.route_count)>(::dlsym(RTLD_DEFAULT, "softmig_route_count"));
    if (expected && (s.hook_calls == nullptr || s.route_count == nullptr)) {
      fail("library not loaded (softmig_hook_calls / softmig_route_count not found)");
    }
    if (!expected && s.hook_calls != nullptr) {
      fail("libsoftmig is loaded although --no-softmig-expected was given");
    }
    return s;
  }
};

/// The fake driver's control API (from `handle`, or RTLD_DEFAULT when the fake is linked).
struct FakeCuda {
  decltype(&::fake_call_count) count = nullptr;
  decltype(&::fake_reset_counts) reset = nullptr;
  decltype(&::fake_inject_result) inject = nullptr;
  decltype(&::fake_process_used) process_used = nullptr;
  decltype(&::fake_proc_symbol) proc_symbol = nullptr;

  static FakeCuda find(void* handle) {
    FakeCuda f;
    f.count = lookup<decltype(f.count)>(handle, "fake_call_count");
    f.reset = lookup<decltype(f.reset)>(handle, "fake_reset_counts");
    f.inject = lookup<decltype(f.inject)>(handle, "fake_inject_result");
    f.process_used = lookup<decltype(f.process_used)>(handle, "fake_process_used");
    f.proc_symbol = lookup<decltype(f.proc_symbol)>(handle, "fake_proc_symbol");
    return f;
  }
};

struct FakeNvml {
  decltype(&::fake_nvml_call_count) count = nullptr;
  decltype(&::fake_nvml_reset_counts) reset = nullptr;
  decltype(&::fake_nvml_inject_result) inject = nullptr;

  static FakeNvml find(void* handle) {
    FakeNvml f;
    f.count = lookup<decltype(f.count)>(handle, "fake_nvml_call_count");
    f.reset = lookup<decltype(f.reset)>(handle, "fake_nvml_reset_counts");
    f.inject = lookup<decltype(f.inject)>(handle, "fake_nvml_inject_result");
    return f;
  }
};

/// Is `symbol` one softmig interposes (a SOFTMIG_CUDA / SOFTMIG_NVML line of the table)?
inline bool interposed(std::string_view symbol) {
  static constexpr const char* kNames[] = {
#define SOFTMIG_CUDA(name, params, args) #name,
#define SOFTMIG_NVML(name, params, args) #name,
#include "hooks/entry_points.def"
  };
  for (const char* n : kNames) {
    if (symbol == n) {
      return true;
    }
  }
  return false;
}

/// Names of every interposed driver symbol, in table order.
inline std::vector<std::string> interposed_cuda_symbols() {
  return {
#define SOFTMIG_CUDA(name, params, args) #name,
#include "hooks/entry_points.def"
  };
}

/// Size of the context the fake charges (SOFTMIG_FAKE_CONTEXT_BYTES, default 300 MiB).
inline unsigned long long fake_context_bytes() {
  const char* v = std::getenv("SOFTMIG_FAKE_CONTEXT_BYTES");
  if (v == nullptr || *v == '\0') {
    return 300ULL << 20U;
  }
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  switch (*end) {
    case 'K':
    case 'k': n <<= 10U; break;
    case 'M':
    case 'm': n <<= 20U; break;
    case 'G':
    case 'g': n <<= 30U; break;
    default: break;
  }
  return n;
}

/// Counts the calls a victim makes, per symbol, and checks them against softmig and the fake:
///  * a symbol softmig interposes must have reached softmig's wrapper exactly as often as the
///    victim called it, and the fake driver exactly as often (softmig_hook_calls ==
///    fake_call_count == calls made): every call went through softmig, once;
///  * any other symbol must not be known to softmig, and the fake must have seen at least the
///    victim's calls (softmig may call such functions itself).
class Ledger {
 public:
  void note(const std::string& symbol, unsigned long long n = 1) { made_[symbol] += n; }
  [[nodiscard]] unsigned long long made(const std::string& symbol) const {
    const auto it = made_.find(symbol);
    return it == made_.end() ? 0 : it->second;
  }

  template <typename CountFn>
  void verify(const Softmig& softmig, CountFn fake_count, const char* what) const {
    for (const auto& [symbol, n] : made_) {
      const unsigned long long driver = fake_count(symbol.c_str());
      const unsigned long long hooked = softmig.calls(symbol.c_str());
      if (interposed(symbol)) {
        VICTIM_CHECK(driver == n && (!softmig.loaded() || hooked == n),
                     "%s %s: the victim made %llu call(s), softmig's wrapper saw %llu, the fake "
                     "driver saw %llu",
                     what, symbol.c_str(), n, hooked, driver);
      } else {
        VICTIM_CHECK(driver >= n && hooked == 0,
                     "%s %s (not interposed): the victim made %llu call(s), softmig reports %llu, "
                     "the fake saw %llu",
                     what, symbol.c_str(), n, hooked, driver);
      }
    }
  }

 private:
  std::map<std::string, unsigned long long> made_;
};

/// Checks a driver result, naming the call in the failure.
inline void expect_cu(const char* call, CUresult got, CUresult want = CUDA_SUCCESS) {
  VICTIM_CHECK(got == want, "%s returned %d, expected %d", call, got, want);
}

inline void expect_nvml(const char* call, nvmlReturn_t got, nvmlReturn_t want = NVML_SUCCESS) {
  VICTIM_CHECK(got == want, "%s returned %d, expected %d", call, got, want);
}

/// Calls api.name(args...) and records it in the ledger; the result must be `want`.
#define VICTIM_CU_EXPECT(ledger, api, want, name, ...)           \
  do {                                                           \
    (ledger).note(#name);                                        \
    ::victim::expect_cu(#name, (api).name(__VA_ARGS__), (want)); \
  } while (0)
#define VICTIM_CU(ledger, api, name, ...) \
  VICTIM_CU_EXPECT(ledger, api, CUDA_SUCCESS, name, __VA_ARGS__)

#define VICTIM_NVML_EXPECT(ledger, api, want, name, ...)           \
  do {                                                             \
    (ledger).note(#name);                                          \
    ::victim::expect_nvml(#name, (api).name(__VA_ARGS__), (want)); \
  } while (0)
#define VICTIM_NVML(ledger, api, name, ...) \
  VICTIM_NVML_EXPECT(ledger, api, NVML_SUCCESS, name, __VA_ARGS__)

/// Whether a shared object whose path contains `needle` is mapped into this process.
inline bool mapped(const char* needle) {
  FILE* maps = std::fopen("/proc/self/maps", "re");
  VICTIM_CHECK(maps != nullptr, "cannot read /proc/self/maps");
  char line[4096];
  bool found = false;
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    if (std::strstr(line, needle) != nullptr) {
      found = true;
      break;
    }
  }
  std::fclose(maps);
  return found;
}

}  // namespace victim
