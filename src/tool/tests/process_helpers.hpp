// SPDX-License-Identifier: Apache-2.0
/// @file process_helpers.hpp
/// @brief Starting programs from the integration tests, always with a time limit.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace softmig::tool::test {

/// "NAME=value" sets a variable, "-NAME" removes it; everything else is inherited.
using EnvChanges = std::vector<std::string>;

struct RunResult {
  int exit_code = -1;  ///< -1: killed at the time limit or by a signal
  std::string out;     ///< stdout
  std::string err;     ///< stderr
};

/// Runs argv to completion (killed after timeout_ms).
RunResult run(const std::vector<std::string>& argv, const EnvChanges& env = {}, int timeout_ms = 30000);

/// A started program with pipes to its stdin and from its stdout; killed when destroyed.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const EnvChanges& env);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// The next line of its stdout (without '\n'), or "" after timeout_ms or at end of file.
  std::string read_line(int timeout_ms);
  /// Closes its stdin (victims exit then).
  void close_stdin();
  /// Waits for it to exit; kills it after timeout_ms. Returns the exit status or -1.
  int wait(int timeout_ms);
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  std::string buffer_;
  bool reaped_ = false;
};

/// A fresh private directory under $TMPDIR (or /tmp); removed with its content when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

}  // namespace softmig::tool::test
