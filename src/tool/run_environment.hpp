// SPDX-License-Identifier: Apache-2.0
/// @file run_environment.hpp
/// @brief The pure part of `softmig run`: validating its flags and building the environment the
///        program is started with. No I/O, no process state: everything the result depends on
///        is passed in, so it is unit-tested directly (src/tool/tests/run_environment_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace softmig::tool {

/// What `softmig run` was asked for, after validation.
struct RunOptions {
  std::optional<std::uint64_t> memory_bytes;  ///< --memory; 0 means "no limit"
  std::optional<unsigned> sm_percent;         ///< --sm, 1..100; 100 means "no limit"
  std::optional<unsigned> device;             ///< --device: write per-device keys (_<N>)
  std::string library;                        ///< absolute path of libsoftmig.so
  std::string session;                        ///< SOFTMIG_SESSION, e.g. "run-4242"
  std::optional<std::string> log_file;        ///< --verbose: SOFTMIG_LOG_FILE
};

/// Environment variable names (shared with the library's configuration).
inline constexpr std::string_view kMemoryKey = "CUDA_DEVICE_MEMORY_LIMIT";
inline constexpr std::string_view kSmKey = "CUDA_DEVICE_SM_LIMIT";
inline constexpr std::string_view kPreloadKey = "LD_PRELOAD";
inline constexpr std::string_view kSessionKey = "SOFTMIG_SESSION";
inline constexpr std::string_view kLogLevelKey = "LIBCUDA_LOG_LEVEL";
inline constexpr std::string_view kLogFileKey = "SOFTMIG_LOG_FILE";
inline constexpr std::string_view kVerboseLogLevel = "3";  ///< info

/// Validates a --memory value with core::parse_bytes. Throws ToolError (exit 2) if malformed.
std::uint64_t parse_memory_flag(std::string_view text);

/// Validates a --sm value: a whole percentage 1..100, optionally followed by '%'.
/// Throws ToolError (exit 2) otherwise.
unsigned parse_sm_flag(std::string_view text);

/// The name of a limit key, global or for one device: ("CUDA_DEVICE_SM_LIMIT", 1) gives
/// "CUDA_DEVICE_SM_LIMIT_1".
std::string limit_key(std::string_view base, std::optional<unsigned> device);

/// Returns `current` (an LD_PRELOAD value, entries separated by ':' or ' ') with `library`
/// first, joined by ':'. Empty entries are dropped, and so is any other entry naming a file
/// called libsoftmig.so: two copies of the interposer in one process would count twice.
std::string prepend_preload(std::string_view current, std::string_view library);

/// Builds the environment for the program: `current_env` ("NAME=value" strings, in order)
/// with the slice's variables set. A variable that is already present is replaced in place;
/// new ones are appended in a fixed order. Variables the options do not mention are kept.
std::vector<std::string> build_run_environment(const RunOptions& options,
                                               const std::vector<std::string>& current_env);

/// The value of `name` in an environment built as above, or nullopt.
std::optional<std::string> find_variable(const std::vector<std::string>& env, std::string_view name);

}  // namespace softmig::tool
