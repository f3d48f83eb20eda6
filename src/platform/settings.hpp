// SPDX-License-Identifier: Apache-2.0
/// @file settings.hpp
/// @brief The immutable settings of this process, read once at the first CUDA or NVML call:
///        which limits apply (root-owned job file inside SLURM, environment outside), and where
///        the job's shared ledger lives.
#pragma once

#include <cstdint>

#include "core/limits.hpp"
#include "core/pacer.hpp"

namespace softmig::platform {

enum class LimitSource {
  kNone,             ///< outside SLURM with no limit variables, or a SLURM job with no job file
  kJobFile,          ///< the root-owned job file
  kJobFileRejected,  ///< a job file exists but cannot be trusted or read: fail closed
  kJobUnknown,       ///< inside SLURM but the job id cannot be determined: fail closed
  kEnvironment,      ///< CUDA_DEVICE_*_LIMIT variables, outside SLURM only
};
const char* describe(LimitSource s) noexcept;

struct Settings {
  core::Limits limits;
  LimitSource source = LimitSource::kNone;
  char config_path[320] = {};  ///< the job file read (or rejected), if any
  char ledger_key[64] = {};    ///< job id inside SLURM, "session-<name>" outside
  char ledger_path[512] = {};  ///< empty if no usable directory was found
  char lock_path[512] = {};
  // Compute share (see core/pacer.hpp): the job file's keys inside SLURM, the environment
  // outside it.
  std::int64_t sm_period_ns = core::kDefaultPeriodNs;  ///< SOFTMIG_SM_PERIOD_MS
  bool sm_burst = false;                               ///< SOFTMIG_SM_POLICY=burst
  char sm_board[256] = {};                             ///< SOFTMIG_SM_BOARD (empty: none)
};

/// Reads the settings on first use (thread-safe, allocation-free) and logs what was decided.
const Settings& settings() noexcept;

}  // namespace softmig::platform
