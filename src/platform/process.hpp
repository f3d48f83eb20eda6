// SPDX-License-Identifier: Apache-2.0
/// @file process.hpp
/// @brief What /proc says about processes: identity (pid + start time), job membership, and
///        the calling process's own SLURM job.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "core/job.hpp"
#include "core/ledger.hpp"

namespace softmig::platform {

/// The calling process's job, decided once from /proc/self/cgroup and SLURM_JOB_ID.
const core::JobIdentity& job_identity() noexcept;

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), 0 if unknown.
std::uint64_t process_start_time(pid_t pid) noexcept;

/// True if /proc/<pid>/cgroup names job `job_id`.
bool pid_in_job(pid_t pid, const char* job_id) noexcept;

/// Writes the effective user's name (or uid as digits) to `out`.
void user_name(char* out, std::size_t size) noexcept;

/// Liveness of ledger slots as seen in /proc.
class ProcLiveness final : public core::Liveness {
 public:
  [[nodiscard]] bool alive(std::uint64_t pid, std::uint64_t start_time) const noexcept override;
};

}  // namespace softmig::platform
