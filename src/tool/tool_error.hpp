// SPDX-License-Identifier: Apache-2.0
/// @file tool_error.hpp
/// @brief The one exception type the softmig tool's commands throw for a problem the user can fix.
///        main() prints its message as "softmig: <message>" and exits with its code.
#pragma once

#include <stdexcept>
#include <string>

namespace softmig::tool {

/// Exit codes, following the shell's conventions where one exists.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;         ///< the environment is not usable (no library, ...)
inline constexpr int kExitUsage = 2;           ///< malformed flags or arguments
inline constexpr int kExitCannotExecute = 126; ///< the program exists but could not be run
inline constexpr int kExitNotFound = 127;      ///< the program was not found

class ToolError : public std::runtime_error {
 public:
  ToolError(int exit_code, const std::string& message)
      : std::runtime_error(message), exit_code_(exit_code) {}
  [[nodiscard]] int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

}  // namespace softmig::tool
