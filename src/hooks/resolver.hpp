// SPDX-License-Identifier: Apache-2.0
/// @file resolver.hpp
/// @brief The real driver and NVML functions behind softmig's wrappers, and the map from a
///        real function back to softmig's wrapper of it (used by dlsym and cuGetProcAddress).
///
/// A library's table is resolved the first time any of its functions is needed, from the copy
/// of libcuda.so.1 / libnvidia-ml.so.1 that the program itself has loaded (softmig never loads
/// a driver library into a program that has not). Resolution takes no locks that user code can
/// hold, does not allocate, and is safe to run from any thread at any time; a thread that
/// re-enters while resolving sees the library as unavailable rather than deadlocking.
#pragma once

#include <atomic>

#include "hooks/symbols.hpp"

namespace softmig::hooks {

/// glibc's dlsym, found with dlvsym so that softmig's own dlsym is never called by mistake.
void* real_dlsym(void* handle, const char* name) noexcept;
/// The address of glibc's dlsym (resolved on first use), or nullptr if it cannot be found.
void* real_dlsym_address() noexcept;

/// Resolves `lib` if it is loaded and not yet resolved. Returns true when its table is ready.
bool ensure_resolved(Library lib) noexcept;

/// Loads `lib` for softmig's own use if the program has not (NVML, to measure the driver's
/// per-process memory). Returns true when its table is ready.
bool load_for_internal_use(Library lib) noexcept;

/// The function a wrapper of `s` forwards to: the next preloaded interposer of `s` if there is
/// one, else the driver's function. nullptr if the library is not loaded or lacks the symbol.
void* real_ptr(Sym s) noexcept;

/// The driver's own function for `s` (never another interposer's), or nullptr.
void* driver_ptr(Sym s) noexcept;

template <Sym S>
typename Fn<S>::type* real() noexcept {
  return reinterpret_cast<typename Fn<S>::type*>(real_ptr(S));
}

/// softmig's exported wrapper of an exported symbol.
void* wrapper_ptr(Sym s) noexcept;

/// If `fn` is the real function of an exported symbol of a resolved library, sets `out`.
bool find_by_real(const void* fn, Sym& out) noexcept;

/// True if `addr` lies inside the loaded copy of `lib`.
bool in_library(Library lib, const void* addr) noexcept;

/// True while this thread is resolving a table or running softmig-internal driver calls that
/// must not be rewritten (dlsym lookups made then are passed through untouched).
bool in_internal_section() noexcept;

/// Marks the calling thread as inside softmig-internal work for the guard's lifetime.
class InternalSection {
 public:
  InternalSection() noexcept;
  ~InternalSection();
  InternalSection(const InternalSection&) = delete;
  InternalSection& operator=(const InternalSection&) = delete;
};

}  // namespace softmig::hooks
