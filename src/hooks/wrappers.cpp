// SPDX-License-Identifier: Apache-2.0
/// @file wrappers.cpp
/// @brief The exported extern "C" entry points, generated from entry_points.def. Each wrapper
///        counts the call and hands it to its Handler; no decisions are taken here.
#include "hooks/handlers.hpp"
#include "hooks/introspection.hpp"

#define SOFTMIG_EXPORT extern "C" __attribute__((visibility("default")))

#define SOFTMIG_CUDA(name, params, args)                                    \
  SOFTMIG_EXPORT CUresult name params noexcept {                          \
    ::softmig::hooks::count_call(::softmig::hooks::Sym::name);            \
    return ::softmig::hooks::Handler<::softmig::hooks::Sym::name>::call args; \
  }
#define SOFTMIG_NVML(name, params, args)                                    \
  SOFTMIG_EXPORT nvmlReturn_t name params noexcept {                      \
    ::softmig::hooks::count_call(::softmig::hooks::Sym::name);            \
    return ::softmig::hooks::Handler<::softmig::hooks::Sym::name>::call args; \
  }
#include "hooks/entry_points.def"

namespace softmig::hooks {

namespace {
const void* const kWrappers[kExportedCount] = {
#define SOFTMIG_CUDA(name, params, args) reinterpret_cast<const void*>(&::name),
#define SOFTMIG_NVML(name, params, args) reinterpret_cast<const void*>(&::name),
#include "hooks/entry_points.def"
};
}  // namespace

void* wrapper_ptr(Sym s) noexcept {
  const unsigned i = index_of(s);
  return i < kExportedCount ? const_cast<void*>(kWrappers[i]) : nullptr;
}

}  // namespace softmig::hooks
