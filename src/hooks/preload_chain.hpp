// SPDX-License-Identifier: Apache-2.0
/// @file preload_chain.hpp
/// @brief The chain of preloaded interposers a driver call travels through, and the answer to
///        dlsym(RTLD_NEXT, name) for the names softmig interposes.
///
/// Several libraries may interpose the same driver function (a profiler, a tracer, softmig).
/// The program's call goes to the first of them in load order; each forwards to the next with
/// dlsym(RTLD_NEXT, name), and the last one to the driver. softmig keeps that chain intact:
///   - its own wrappers forward to the next preloaded library that defines the symbol, or to the
///     driver if none does;
///   - a preloaded library asking for the next definition gets the next preloaded definer after
///     it (softmig's wrapper, when softmig is next), or the driver's function once no preloaded
///     library after it defines the name;
///   - any other object (the program, its libraries, a dlopen'ed plugin) gets the first link of
///     the chain, never the driver's function directly: RTLD_NEXT cannot skip the slice.
#pragma once

namespace softmig::hooks {

/// A snapshot of the preloaded libraries (LD_PRELOAD and /etc/ld.so.preload), in load order.
class PreloadChain {
 public:
  PreloadChain() noexcept;

  /// True if the object containing `addr` is one of the preloaded libraries.
  [[nodiscard]] bool contains(const void* addr) const noexcept;

  /// Sets `*out` to the definition of `name` in the first preloaded library after the object
  /// containing `after`, or, with `after` == nullptr, in the first preloaded library of all.
  /// Returns false if no such library defines it.
  bool next_definition(const void* after, const char* name, void** out) const noexcept;

  [[nodiscard]] unsigned size() const noexcept { return count_; }

 private:
  static constexpr unsigned kMax = 32;
  const char* paths_[kMax] = {};
  unsigned count_ = 0;
};

}  // namespace softmig::hooks
