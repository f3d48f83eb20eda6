// SPDX-License-Identifier: Apache-2.0
/// @file env.hpp
/// @brief Environment access. getenv(3) is safe here only because softmig never modifies the
///        environment; values that name files or libraries go through path_env(), which
///        returns nothing in secure-exec (setuid/setgid/capability) processes.
#pragma once

namespace softmig::platform {

/// True in a secure-exec process (AT_SECURE): setuid, setgid or file capabilities.
bool secure_exec() noexcept;

/// The variable's value, or nullptr.
const char* env(const char* name) noexcept;

/// The variable's value unless this is a secure-exec process; for variables that name paths.
const char* path_env(const char* name) noexcept;

}  // namespace softmig::platform
