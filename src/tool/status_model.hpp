// SPDX-License-Identifier: Apache-2.0
/// @file status_model.hpp
/// @brief What `softmig status` and `softmig metrics` know about the jobs on a node: a plain copy
///        of every ledger found, taken at one instant. The formatters (status_format.hpp,
///        metrics_format.hpp) are pure functions of this data, so they are tested against golden
///        files without any ledger, process or clock.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace softmig::tool {

/// One live process of a job, as far as one GPU is concerned.
struct ProcessView {
  std::uint64_t pid = 0;
  std::uint64_t uid = 0;
  std::string user;             ///< user name, or the uid as digits
  std::uint64_t alloc = 0;      ///< bytes reserved through interposed allocations
  std::uint64_t overhead = 0;   ///< bytes the driver holds for the process beyond those
  [[nodiscard]] std::uint64_t bytes() const noexcept { return alloc + overhead; }
};

/// One GPU of a job.
struct GpuView {
  std::string uuid;
  std::optional<std::uint64_t> memory_limit;  ///< nullopt: no memory limit
  std::uint64_t used = 0;                     ///< ledger total (includes not yet reaped dead processes)
  std::uint64_t peak = 0;
  std::uint64_t oom_refusals = 0;
  std::optional<unsigned> sm_percent;         ///< nullopt: unknown; 100: no compute limit
  std::uint64_t held_ns = 0;                  ///< thread-time launches were held back by the share

  /// Seconds launches were held back, where it means something: the job has a compute share
  /// below 100 %, or it was held back at all. nullopt otherwise.
  [[nodiscard]] std::optional<double> throttled_seconds() const {
    if (held_ns == 0 && !(sm_percent && *sm_percent < 100)) return std::nullopt;
    return static_cast<double>(held_ns) / 1e9;
  }
  std::vector<ProcessView> processes;         ///< live processes holding bytes on this GPU, by pid
  unsigned stale_processes = 0;               ///< dead processes whose bytes are not reaped yet
  std::uint64_t stale_bytes = 0;              ///< their bytes (part of `used` until reaped)
};

/// One ledger: a SLURM job ("12345") or a session outside SLURM ("session-<name>").
struct JobView {
  std::string job;            ///< the ledger's key
  std::string ledger;         ///< path of the ledger file
  std::uint64_t owner_uid = 0;
  std::string owner;          ///< user name of the owner, or the uid as digits
  std::uint64_t created_unix = 0;
  std::string config;         ///< the job's configuration file the SM limit was read from, if any
  std::vector<GpuView> gpus;  ///< GPUs the job has used, in ledger order
};

/// A ledger that was found but could not be read.
struct LedgerProblem {
  std::string ledger;
  std::string error;
};

struct Snapshot {
  std::vector<JobView> jobs;           ///< sorted by job key
  std::vector<LedgerProblem> problems;
};

}  // namespace softmig::tool
