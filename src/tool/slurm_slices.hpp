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
  [[nodiscard]] const SliceRule* slice(unsigned denominator) const;
};

struct SliceTable {
  std::vector<GpuType> types;
  bool allow_multiple = false;
  /// Case-insensitive lookup by name.
  [[nodiscard]] const GpuType* find(std::string_view name) const;
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

/// What the prolog does for a job.
struct Plan {
  enum class Kind {
    kNoLimits,   ///< whole GPUs or no GPU: no file (an old one is removed)
    kLimits,     ///< a slice: write `text`
    kFailClosed, ///< a slice whose limits cannot be computed: write `text` (1 byte, 1 %)
  } kind = Kind::kNoLimits;
  std::string text;     ///< the job file's content
  std::string summary;  ///< one line for the log
};

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
