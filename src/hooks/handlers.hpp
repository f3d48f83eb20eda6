// SPDX-License-Identifier: Apache-2.0
/// @file handlers.hpp
/// @brief How a wrapper's call is carried out. By default a call is forwarded unchanged to the
///        real function; symbols whose calls softmig must act on have a Handler specialization,
///        declared here and defined next to the policy glue (memory_hooks.cpp, nvml_hooks.cpp).
#pragma once

#include "hooks/resolver.hpp"

namespace softmig::hooks {

/// What a wrapper returns when the real function does not exist in the loaded driver.
template <Sym S>
constexpr auto missing_result() noexcept {
  if constexpr (kSymInfo[index_of(S)].library == Library::kCuda) {
    return CUDA_ERROR_NOT_FOUND;
  } else {
    return NVML_ERROR_FUNCTION_NOT_FOUND;
  }
}

/// Calls the real function of S with the caller's arguments, untouched.
template <Sym S, typename... A>
auto forward(A... a) noexcept {
  auto* fn = real<S>();
  if (fn == nullptr) return static_cast<decltype(fn(a...))>(missing_result<S>());
  return fn(a...);
}

template <Sym S>
struct Handler {
  template <typename... A>
  static auto call(A... a) noexcept {
    return forward<S>(a...);
  }
};

#define SOFTMIG_HANDLER(sym, ret, params) \
  template <>                             \
  struct Handler<Sym::sym> {              \
    static ret call params noexcept;      \
  }

// Lookup: hand back softmig's wrapper of whatever the driver resolves.
SOFTMIG_HANDLER(cuGetProcAddress, CUresult,
                (const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags));
SOFTMIG_HANDLER(cuGetProcAddress_v2, CUresult,
                (const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags,
                 CUdriverProcAddressQueryResult* symbolStatus));

}  // namespace softmig::hooks

#include "hooks/memory_handlers.hpp"
#include "hooks/launch_handlers.hpp"
