// SPDX-License-Identifier: Apache-2.0
#include "platform/env.hpp"

#include <sys/auxv.h>

#include <cstdlib>

namespace softmig::platform {

bool secure_exec() noexcept { return getauxval(AT_SECURE) != 0; }

const char* env(const char* name) noexcept { return std::getenv(name); }

const char* path_env(const char* name) noexcept { return secure_exec() ? nullptr : std::getenv(name); }

}  // namespace softmig::platform
