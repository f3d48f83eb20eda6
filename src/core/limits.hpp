// SPDX-License-Identifier: Apache-2.0
/// @file limits.hpp
/// @brief Slice limits: how they are written (KEY=VALUE), how they are read from the root-owned
///        job file or the environment, and how they resolve to one GPU.
///
/// Keys (file and environment alike):
///   CUDA_DEVICE_MEMORY_LIMIT            every GPU of the job
///   CUDA_DEVICE_MEMORY_LIMIT_<N>        the process's CUDA device N (0..15)
///   CUDA_DEVICE_MEMORY_LIMIT_<UUID>     the GPU with that UUID (GPU-xxxxxxxx-...), any order
///   CUDA_DEVICE_SM_LIMIT[_<N>|_<UUID>]  compute share in percent
///   CUDA_DEVICE_SM_PHASE[_<N>|_<UUID>]  where, in percent of the pacing period, the job's
///                                       compute window opens (jobs sharing a GPU get
///                                       different phases from the prolog; default 0)
/// A UUID key beats an ordinal key, which beats the global key.
///
/// Safety rules (never a silently lifted limit):
///   - a malformed size is read as a limit of 0 bytes (every allocation refused) and reported;
///   - a malformed percentage is read as 1 %; a number above 100 is read as 100;
///   - a key given twice keeps the smaller value;
///   - "0" keeps its historical meaning of "no limit" for both keys.
/// Pure: no I/O. Callers hand in the file text or an environment lookup and log the issues.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace softmig::core {

inline constexpr unsigned kMaxDevices = 16;
inline constexpr std::size_t kUuidChars = 48;  // "GPU-" + 36 + NUL fits, MIG-style ids too

/// One limit as written: absent members mean "not limited by this key".
struct LimitSpec {
  std::optional<std::uint64_t> memory_bytes;
  std::optional<unsigned> sm_percent;
  std::optional<unsigned> sm_phase;  ///< 0..99
};

/// The limits that apply to one GPU after resolution.
struct DeviceLimit {
  std::optional<std::uint64_t> memory_bytes;  ///< nullopt: no memory limit
  unsigned sm_percent = 100;                  ///< 100: no compute limit
  unsigned sm_phase = 0;                      ///< window start, percent of the period
  [[nodiscard]] bool limited() const noexcept { return memory_bytes.has_value() || sm_percent < 100; }
};

/// Something wrong in the input, for the caller to log. Fixed size: no allocation.
struct LimitIssue {
  char text[192] = {};
};

struct LimitIssues {
  static constexpr unsigned kMax = 8;
  std::array<LimitIssue, kMax> items{};
  unsigned count = 0;   ///< issues stored (<= kMax)
  unsigned dropped = 0; ///< issues beyond kMax
  void add(const char* fmt, ...) noexcept __attribute__((format(printf, 2, 3)));
};

class Limits {
 public:
  /// Applies one KEY=VALUE. Keys that are not limit keys return false (the caller decides
  /// whether that is worth reporting); malformed values are recorded per the safety rules.
  bool apply(std::string_view key, std::string_view value, LimitIssues& issues) noexcept;

  /// Resolves the limits for one GPU, known by the process's CUDA ordinal (or -1 if unknown)
  /// and its UUID (empty if unknown).
  [[nodiscard]] DeviceLimit resolve(int ordinal, std::string_view uuid) const noexcept;

  /// True if any key set a memory or compute limit.
  [[nodiscard]] bool any() const noexcept;
  /// True if any key set a compute share below 100 % (the fail-closed state included).
  [[nodiscard]] bool any_share() const noexcept;

  /// Fail-closed state for a job whose configuration exists but cannot be trusted or read:
  /// every GPU gets 0 bytes and 1 %.
  static Limits fail_closed() noexcept;

 private:
  struct UuidEntry {
    char uuid[kUuidChars] = {};
    LimitSpec spec;
  };
  [[nodiscard]] bool any_spec(bool (*set)(const LimitSpec&)) const noexcept;

  LimitSpec global_;
  std::array<LimitSpec, kMaxDevices> by_ordinal_{};
  std::array<UuidEntry, kMaxDevices> by_uuid_{};
  unsigned uuid_count_ = 0;
  bool fail_closed_ = false;
};

/// Parses the text of a job configuration file: KEY=VALUE lines, '#' comments, blank lines.
/// Unknown keys and lines without '=' are reported and skipped; SOFTMIG_* keys are settings
/// other than limits and are left to find_setting().
Limits parse_limits_file(std::string_view text, LimitIssues& issues) noexcept;

/// Reads the limit keys from an environment. `lookup(name)` returns the value or nullptr.
/// Per-device keys are looked up for ordinals 0..kMaxDevices-1; UUID keys are not read from
/// the environment (use CUDA_VISIBLE_DEVICES ordering instead).
/// Finds `key` in configuration text; writes its (trimmed, unquoted) value and returns true.
bool find_setting(std::string_view text, std::string_view key, std::string_view& value) noexcept;

using EnvLookup = const char* (*)(const char* name, void* ctx);
Limits limits_from_env(EnvLookup lookup, void* ctx, LimitIssues& issues) noexcept;

}  // namespace softmig::core
