// SPDX-License-Identifier: Apache-2.0
/// interposer: a second LD_PRELOAD library of the common kind (profilers, tracers), preloaded
/// together with softmig in either order. It wraps cuMemAlloc_v2 and getenv and forwards both
/// to the next definition found with dlsym(RTLD_NEXT, name).
#include "abi/cuda_types.hpp"

#include <dlfcn.h>
#include <unistd.h>
#include <atomic>
#include <cstring>

extern char** environ;

namespace {

std::atomic<unsigned long long> g_alloc_calls{0};
std::atomic<unsigned long long> g_getenv_calls{0};
std::atomic<void*> g_next_alloc{nullptr};
std::atomic<void*> g_next_getenv{nullptr};
std::atomic<unsigned long long> g_reentered{0};
thread_local bool t_resolving = false;
thread_local bool t_in_alloc = false;

/// getenv without libc, for lookups made while dlsym itself is running.
char* scan_environ(const char* name) {
  const std::size_t n = std::strlen(name);
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
      return *e + n + 1;
    }
  }
  return nullptr;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
  g_alloc_calls.fetch_add(1);
  if (t_in_alloc) {  // forwarding came back here: RTLD_NEXT gave a wrong answer
    g_reentered.fetch_add(1);
    return CUDA_ERROR_UNKNOWN;
  }
  void* next = g_next_alloc.load();
  if (next == nullptr) {
    next = ::dlsym(RTLD_NEXT, "cuMemAlloc_v2");
    g_next_alloc.store(next);
  }
  if (next == nullptr || next == reinterpret_cast<void*>(&cuMemAlloc_v2)) {
    g_reentered.fetch_add(1);
    return CUDA_ERROR_UNKNOWN;
  }
  t_in_alloc = true;
  const CUresult r = reinterpret_cast<CUresult (*)(CUdeviceptr*, size_t)>(next)(dptr, bytesize);
  t_in_alloc = false;
  return r;
}

__attribute__((visibility("default"))) char* getenv(const char* name) noexcept {
  g_getenv_calls.fetch_add(1);
  void* next = g_next_getenv.load();
  if (next == nullptr) {
    if (t_resolving) {
      return scan_environ(name);  // dlsym asked for the environment while we resolve
    }
    t_resolving = true;
    next = ::dlsym(RTLD_NEXT, "getenv");
    t_resolving = false;
    if (next == nullptr || next == reinterpret_cast<void*>(&getenv)) {
      return scan_environ(name);  // recorded below; the victim reports it
    }
    g_next_getenv.store(next);
  }
  return reinterpret_cast<char* (*)(const char*)>(next)(name);
}

/// Calls the interposer received: "cuMemAlloc_v2" or "getenv"; "reentered": cuMemAlloc_v2 calls
/// that came back into the interposer while it forwarded (or found itself as the next one).
__attribute__((visibility("default"))) unsigned long long interposer_calls(const char* symbol) {
  if (std::strcmp(symbol, "cuMemAlloc_v2") == 0) {
    return g_alloc_calls.load();
  }
  if (std::strcmp(symbol, "getenv") == 0) {
    return g_getenv_calls.load();
  }
  if (std::strcmp(symbol, "reentered") == 0) {
    return g_reentered.load();
  }
  return 0;
}

/// What dlsym(RTLD_NEXT, "cuMemAlloc_v2") gave the interposer (NULL before its first call).
__attribute__((visibility("default"))) void* interposer_next_alloc(void) {
  return g_next_alloc.load();
}

/// What dlsym(RTLD_NEXT, "getenv") gave the interposer (resolving it now if it has not yet).
__attribute__((visibility("default"))) void* interposer_next_getenv(void) {
  if (g_next_getenv.load() == nullptr) {
    (void)getenv("PATH");
  }
  void* next = g_next_getenv.load();
  return next != nullptr ? next : ::dlsym(RTLD_NEXT, "getenv");
}

}  // extern "C"
