// SPDX-License-Identifier: Apache-2.0
/// @file dlsym_helper.cpp
/// @brief A library a program loads (libsoftmig_dlsym_helper.so), asking dlsym(RTLD_NEXT, name)
///        from its own code: "the next definition after me" must still be softmig's wrapper.
#include <dlfcn.h>

extern "C" __attribute__((visibility("default"))) void* dlsym_helper_next(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  // Not a tail call: dlsym must see a return address inside this library, not in its caller.
  asm volatile("" ::: "memory");
  return fn;
}
