// SPDX-License-Identifier: Apache-2.0
/// @file slurm_slices.hpp
/// @brief The admin's slice table (/etc/softmig/slices.conf, format in
///        slurm/examples/slices.conf) and the prolog's decision: which limits a job's
///        allocation gets, rendered as the job file libsoftmig reads. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tool/slurm_job.hpp"

namespace softmig::tool::slurm {

/// How a job may use GPU time outside its own window of each pacing period (libsoftmig's
/// SOFTMIG_SM_POLICY): strict never; burst while no other job on that GPU is active.
enum class SmPolicy { kStrict, kBurst };
[[nodiscard]] const char* to_string(SmPolicy p);

/// A malformed slice table; the message names the line.
class SliceTableError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SliceRule {
  unsigned denominator = 0;                  ///< N of slice.<N>
  std::optional<double> memory_percent;      ///< "25%" (of the GPU's memory)
  std::optional<std::uint64_t> memory_bytes; ///< "12G"
  unsigned sm_percent = 100;
};

struct GpuType {
  std::string name;   ///< lower case
  unsigned shards = 0;
  std::string match;  ///< piece of the NVML name, may be empty
  std::vector<SliceRule> slices;
  std::optional<SmPolicy> sm_policy;  ///< `sm_policy =` of this type
  [[nodiscard]] const SliceRule* slice(unsigned denominator) const;
};

/// `[partition <name>]`: settings for the jobs of one SLURM partition.
struct PartitionRule {
  std::string name;                   ///< as in slurm.conf (matched exactly)
  std::optional<SmPolicy> sm_policy;  ///< overrides the GPU type's
};

struct SliceTable {
  std::vector<GpuType> types;
  std::vector<PartitionRule> partitions;
  bool allow_multiple = false;
  std::optional<SmPolicy> sm_policy;      ///< [settings] sm_policy: the default of every type
  std::optional<unsigned> sm_period_ms;   ///< [settings] sm_period_ms (10..1000), else the library's
  /// Case-insensitive lookup by name.
  [[nodiscard]] const GpuType* find(std::string_view name) const;
  /// Exact lookup of a [partition <name>] section.
  [[nodiscard]] const PartitionRule* partition(std::string_view name) const;
  /// The policy of a job on a GPU of `gpu_type` in `partition` (SLURM_JOB_PARTITION, may be
  /// empty): the partition's sm_policy, else the type's, else [settings]', else strict.
  [[nodiscard]] SmPolicy policy_for(std::string_view gpu_type, std::string_view partition) const;
  /// The type whose `match` occurs in `nvml_name` (case-insensitive); the only type if there is
  /// exactly one; else nullptr.
  [[nodiscard]] const GpuType* for_device(std::string_view nvml_name) const;
};

/// Parses the table. Throws SliceTableError on anything it does not understand.
SliceTable parse_slice_table(std::string_view text);

/// One GPU of the job, as NVML reports it on the node.
struct GpuInfo {
  unsigned index = 0;          ///< SLURM's (global) GPU index
  std::string uuid;            ///< "GPU-..."
  std::string name;            ///< NVML device name
  std::uint64_t memory_bytes = 0;
};

/// The compute share of one GPU of a slice job.
struct GpuShare {
  std::string uuid;         ///< "GPU-..."
  unsigned sm_percent = 100;
};

/// What the prolog does for a job.
struct Plan {
  enum class Kind {
    kNoLimits,   ///< whole GPUs or no GPU: no file (an old one is removed)
    kLimits,     ///< a slice: write `text`
    kFailClosed, ///< a slice whose limits cannot be computed: write `text` (1 byte, 1 %)
  } kind = Kind::kNoLimits;
  std::string text;     ///< the job file's content
  std::string summary;  ///< one line for the log
  std::string gpu_type;          ///< kLimits: the slice table's [gpu <type>] used
  std::vector<GpuShare> shares;  ///< kLimits with NVML: each GPU's compute share
  bool sm_limited = false;       ///< kLimits: some GPU (or the global key) has a share < 100 %
};

/// How the job's compute share is scheduled (written after the limits by add_sm_schedule).
struct SmSchedule {
  struct Phase {
    std::string uuid;
    unsigned start = 0;  ///< percent of the period where the job's window starts
  };
  std::vector<Phase> phases;            ///< CUDA_DEVICE_SM_PHASE_<UUID>; GPUs without one are left out
  SmPolicy policy = SmPolicy::kStrict;  ///< SOFTMIG_SM_POLICY
  std::optional<unsigned> period_ms;    ///< SOFTMIG_SM_PERIOD_MS, only if the table sets it
  std::string board_dir;                ///< SOFTMIG_SM_BOARD; empty: not written
};

/// Appends the schedule's keys to a kLimits plan whose compute is limited (sm_limited); other
/// plans are left unchanged.
void add_sm_schedule(Plan& plan, const SmSchedule& schedule);

/// The file content that lets a job's processes allocate nothing: libsoftmig reads
/// CUDA_DEVICE_MEMORY_LIMIT=1 as 1 byte (0 would mean "no limit") and CUDA_DEVICE_SM_LIMIT=1 as
/// 1 %. `reason` goes into a comment.
std::string fail_closed_text(std::string_view job_label, std::string_view reason);

/// The shards of a job that holds `shards` shards of one GPU of `type` with `memory_bytes`.
struct SliceLimit {
  std::uint64_t memory_bytes = 0;
  unsigned sm_percent = 100;
  std::string description;  ///< "l40s.4" or "3/8 of l40s (proportional)"
};
SliceLimit limit_for(const GpuType& type, std::uint64_t shards, std::uint64_t memory_bytes);

/// Decides the plan for `job`. `gpus` are the job's GPUs as NVML sees them (empty if NVML could
/// not be used: then only fixed-size slices can be written), `nvml_error` says why they are
/// missing. `table` is nullptr if it could not be read (`table_error` says why). `ledger_dir`
/// is written as SOFTMIG_LEDGER_DIR when not empty.
Plan plan_job(const JobAllocation& job, const SliceTable* table, std::string_view table_error,
              const std::vector<GpuInfo>& gpus, std::string_view nvml_error,
              std::string_view ledger_dir);

/// The job file's name: "<job>_<task>.conf" for an array task, else "<job>.conf".
std::string job_file_name(std::string_view job_id, std::string_view array_task_id);

}  // namespace softmig::tool::slurm
