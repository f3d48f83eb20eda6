// SPDX-License-Identifier: Apache-2.0
/// @file job.hpp
/// @brief Which SLURM job a process belongs to, decided from what the kernel says about it
///        (its cgroup) before what its environment says (SLURM_JOB_ID), so that processes
///        adopted into a job over ssh, or with a scrubbed environment, are still recognised.
#pragma once

#include <cstddef>
#include <string_view>

namespace softmig::core {

struct JobIdentity {
  bool in_slurm = false;   ///< the process belongs to a SLURM job (cgroup or environment)
  bool from_cgroup = false;
  char job_id[24] = {};    ///< decimal job id; empty outside SLURM or if it cannot be trusted
  char array_task[16] = {};///< SLURM_ARRAY_TASK_ID if numeric, else empty

  [[nodiscard]] bool has_job_id() const noexcept { return job_id[0] != '\0'; }
};

/// Finds "job_<digits>" in the text of /proc/<pid>/cgroup (v1 or v2). Writes the digits to
/// `out` and returns true; false if no job cgroup is named.
bool job_id_from_cgroup(std::string_view cgroup_text, char* out, std::size_t out_size) noexcept;

/// True if `s` is 1..20 decimal digits.
bool is_decimal_id(std::string_view s) noexcept;

/// Decides the job identity. `cgroup_text` may be empty (unreadable); `env_job_id` and
/// `env_array_task` are the SLURM_JOB_ID / SLURM_ARRAY_TASK_ID values or nullptr.
/// The cgroup wins when both name a job; an environment variable that is set marks the
/// process as inside SLURM even when its value is unusable (so it cannot be used to leave).
JobIdentity identify_job(std::string_view cgroup_text, const char* env_job_id,
                         const char* env_array_task) noexcept;

}  // namespace softmig::core
