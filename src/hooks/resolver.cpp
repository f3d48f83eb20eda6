// SPDX-License-Identifier: Apache-2.0
#include "hooks/resolver.hpp"

#include <dlfcn.h>
#include <sched.h>

#include <cstdint>
#include <cstring>

#include "hooks/introspection.hpp"
#include "hooks/preload_chain.hpp"
#include "platform/log.hpp"

namespace softmig::hooks {
namespace {

constexpr const char* kLibraryFile[2] = {"libcuda.so.1", "libnvidia-ml.so.1"};

enum : int { kUnresolved = 0, kResolving = 1, kReady = 2 };

/// Open-addressing map from a real function address to its symbol. One per library, each
/// written only while its library is being resolved and read only after it is published.
struct ReverseMap {
  static constexpr unsigned kSlots = 256;
  static_assert(kSlots >= 2 * kExportedCount, "reverse map must stay at most half full");
  const void* key[kSlots] = {};
  Sym value[kSlots] = {};

  static unsigned hash(const void* p) noexcept {
    auto v = reinterpret_cast<std::uintptr_t>(p);
    v ^= v >> 17U;
    v *= 0x9E3779B97F4A7C15ULL;
    return static_cast<unsigned>(v >> 56U);
  }
  void insert(const void* p, Sym s) noexcept {
    for (unsigned i = hash(p), n = 0; n < kSlots; ++n, i = (i + 1) % kSlots) {
      if (key[i] == p) return;  // an alias of a symbol already mapped keeps the first name
      if (key[i] == nullptr) {
        key[i] = p;
        value[i] = s;
        return;
      }
    }
  }
  bool find(const void* p, Sym& out) const noexcept {
    for (unsigned i = hash(p), n = 0; n < kSlots; ++n, i = (i + 1) % kSlots) {
      if (key[i] == nullptr) return false;
      if (key[i] == p) {
        out = value[i];
        return true;
      }
    }
    return false;
  }
};

struct LibraryState {
  std::atomic<int> state{kUnresolved};
  void* handle = nullptr;
  const void* base = nullptr;  // load address, to tell which object an address belongs to
  ReverseMap reverse;
};

LibraryState g_libs[2];
void* g_fn[kSymCount] = {};      // what a wrapper calls: the next interposer, else the driver
void* g_driver[kSymCount] = {};  // the driver's own function
std::atomic<void*> g_real_dlsym{nullptr};
thread_local int t_internal_depth = 0;  // dlsym lookups made now pass through
thread_local bool t_resolving = false;  // this thread is resolving a library table

void* find_real_dlsym() noexcept {
  // dlvsym is not interposed by softmig; RTLD_NEXT from here is the C library's dlsym.
  static constexpr const char* kVersions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17",
                                              "GLIBC_2.0"};
  for (const char* v : kVersions) {
    if (void* p = dlvsym(RTLD_NEXT, "dlsym", v)) return p;
  }
  return nullptr;
}

bool resolve_now(Library lib) noexcept {
  auto& L = g_libs[static_cast<unsigned>(lib)];
  void* handle = dlopen(kLibraryFile[static_cast<unsigned>(lib)], RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return false;
  const PreloadChain chain;
  for (unsigned i = 0; i < kSymCount; ++i) {
    if (kSymInfo[i].library != lib) continue;
    g_driver[i] = real_dlsym(handle, kSymInfo[i].name);
    g_fn[i] = g_driver[i];
    if (g_driver[i] == nullptr) continue;
    if (kSymInfo[i].exported) {
      L.reverse.insert(g_driver[i], static_cast<Sym>(i));
      // Another preloaded interposer after softmig keeps its place in the chain.
      void* next = nullptr;
      if (chain.next_definition(reinterpret_cast<const void*>(&resolve_now), kSymInfo[i].name, &next)) g_fn[i] = next;
    }
    if (L.base == nullptr) {
      Dl_info info{};
      if (dladdr(g_driver[i], &info) != 0) L.base = info.dli_fbase;
    }
  }
  L.handle = handle;  // the reference taken by dlopen keeps the library mapped for good
  platform::log_info("resolved %s", kLibraryFile[static_cast<unsigned>(lib)]);
  return true;
}

}  // namespace

void* real_dlsym_address() noexcept {
  void* fn = g_real_dlsym.load(std::memory_order_acquire);
  if (fn == nullptr) {
    fn = find_real_dlsym();
    if (fn != nullptr) g_real_dlsym.store(fn, std::memory_order_release);
  }
  return fn;
}

void* real_dlsym(void* handle, const char* name) noexcept {
  void* fn = real_dlsym_address();
  if (fn == nullptr) return nullptr;
  return reinterpret_cast<void* (*)(void*, const char*)>(fn)(handle, name);
}

bool ensure_resolved(Library lib) noexcept {
  auto& L = g_libs[static_cast<unsigned>(lib)];
  for (;;) {
    int s = L.state.load(std::memory_order_acquire);
    if (s == kReady) return true;
    if (s == kUnresolved) {
      if (t_resolving) return false;  // re-entered from inside resolution
      if (!L.state.compare_exchange_strong(s, kResolving, std::memory_order_acq_rel)) continue;
      bool ok = false;
      {
        InternalSection guard;
        t_resolving = true;
        ok = resolve_now(lib);
        t_resolving = false;
      }
      // A library that is not loaded yet may be loaded later (dlopen after start-up).
      L.state.store(ok ? kReady : kUnresolved, std::memory_order_release);
      return ok;
    }
    if (t_resolving) return false;
    sched_yield();  // another thread is resolving; it never waits on us
  }
}

bool load_for_internal_use(Library lib) noexcept {
  if (ensure_resolved(lib)) return true;
  {
    InternalSection guard;
    if (dlopen(kLibraryFile[static_cast<unsigned>(lib)], RTLD_NOW | RTLD_LOCAL) == nullptr) return false;
  }
  return ensure_resolved(lib);
}

void* real_ptr(Sym s) noexcept {
  const unsigned i = index_of(s);
  const auto lib = static_cast<unsigned>(kSymInfo[i].library);
  if (g_libs[lib].state.load(std::memory_order_acquire) != kReady &&
      !ensure_resolved(kSymInfo[i].library)) {
    return nullptr;
  }
  return g_fn[i];
}

void* driver_ptr(Sym s) noexcept {
  const unsigned i = index_of(s);
  if (!ensure_resolved(kSymInfo[i].library)) return nullptr;
  return g_driver[i];
}

bool find_by_real(const void* fn, Sym& out) noexcept {
  for (auto& L : g_libs) {
    if (L.state.load(std::memory_order_acquire) == kReady && L.reverse.find(fn, out)) return true;
  }
  return false;
}

bool in_library(Library lib, const void* addr) noexcept {
  const auto& L = g_libs[static_cast<unsigned>(lib)];
  if (L.state.load(std::memory_order_acquire) != kReady || L.base == nullptr) return false;
  Dl_info info{};
  return dladdr(addr, &info) != 0 && info.dli_fbase == L.base;
}

bool in_internal_section() noexcept { return t_internal_depth > 0; }
InternalSection::InternalSection() noexcept { ++t_internal_depth; }
InternalSection::~InternalSection() { --t_internal_depth; }

}  // namespace softmig::hooks
