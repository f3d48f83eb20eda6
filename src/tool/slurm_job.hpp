// SPDX-License-Identifier: Apache-2.0
/// @file slurm_job.hpp
/// @brief What a SLURM job holds on this node, read from `scontrol -d show job <id>` (the only
///        place the Prolog can learn a job's shard count) and the Prolog's environment. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace softmig::tool::slurm {

/// One GRES allocation, e.g. "shard:l40s:2(IDX:0)" or "gpu:2(IDX:0-1)".
struct GresEntry {
  std::string name;               ///< "gpu", "shard", ...
  std::string type;               ///< "l40s", or empty when untyped
  std::uint64_t count = 0;
  std::vector<unsigned> indices;  ///< from (IDX:...), empty if absent or not understood
};

/// The job as the prolog needs it.
struct JobAllocation {
  std::string job_id;         ///< JobId=
  std::string array_task_id;  ///< ArrayTaskId= when it is a single number (an array task)
  std::vector<GresEntry> gres;///< this node's GRES (the Nodes= line naming it, else JOB_GRES=)
  bool node_line_found = false;

  [[nodiscard]] std::uint64_t count_of(std::string_view name) const;
  [[nodiscard]] const GresEntry* find(std::string_view name) const;
};

/// Parses one GRES list, "gpu:l40s:1(IDX:1),shard:l40s:2(IDX:0)". Entries it cannot read are
/// skipped; an empty or "(null)" list gives no entries.
std::vector<GresEntry> parse_gres_list(std::string_view text);

/// Expands a SLURM hostlist ("vm", "n[01-03,7],gpu1") into names. Returns an empty vector for
/// an expression it does not understand.
std::vector<std::string> expand_hostlist(std::string_view text);

/// Parses `scontrol -d show job <id>` output: the record of `job_id` (empty: the first record;
/// an array's id lists all its tasks) and its Nodes= line for `node` (SLURMD_NODENAME; empty: the
/// first). Throws std::runtime_error if there is no such record.
JobAllocation parse_scontrol_job(std::string_view text, std::string_view job_id, std::string_view node);

/// Parses a comma list of GPU indices as in SLURM_JOB_GPUS ("0,2"); nullopt if malformed.
std::optional<std::vector<unsigned>> parse_index_list(std::string_view text);

}  // namespace softmig::tool::slurm
