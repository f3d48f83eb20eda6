// SPDX-License-Identifier: Apache-2.0
/// @file no_destroy.hpp
/// @brief Holds a global object that is never destroyed. Programs call CUDA from their own
///        exit handlers (frameworks free memory at exit), after a preloaded library's static
///        destructors would have run: softmig's state must outlive every such call.
#pragma once

#include <new>

namespace softmig::platform {

template <typename T>
class NoDestroy {
 public:
  NoDestroy() noexcept { new (storage_) T(); }
  NoDestroy(const NoDestroy&) = delete;
  NoDestroy& operator=(const NoDestroy&) = delete;
  T& get() noexcept { return *std::launder(reinterpret_cast<T*>(storage_)); }
  T* operator->() noexcept { return &get(); }

 private:
  alignas(T) unsigned char storage_[sizeof(T)];
};

}  // namespace softmig::platform
