// SPDX-License-Identifier: Apache-2.0
/// @file slurm_system.hpp
/// @brief The prolog's and epilog's contact with the node: running scontrol, asking NVML,
///        writing the job file atomically, the job's ledger directory. Errors are thrown as
///        SystemError with a message fit for the log.
#pragma once

#include <sys/types.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "tool/slurm_slices.hpp"

namespace softmig::tool::slurm {

class SystemError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CommandResult {
  int exit_code = -1;  ///< -1: could not start or was killed (timeout)
  std::string output;  ///< stdout (stderr goes to `errors`)
  std::string errors;
};

/// Runs argv[0] (an absolute path) with `argv`, a minimal environment plus `extra_env`, and a
/// deadline; kills it when the deadline passes.
CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                          int timeout_seconds);

/// Loads NVML from `library` (dlopen) and describes the GPUs with SLURM indices `indices`
/// (matched by device minor number = /dev/nvidiaN, else by NVML index).
std::vector<GpuInfo> query_nvml(const std::string& library, const std::vector<unsigned>& indices);

/// Makes sure `dir` is a root-owned directory that nobody else can write (creates it 0755;
/// removes group/other write from a root-owned one). Throws if it is not usable.
void ensure_config_dir(const std::string& dir);

/// Writes `text` to dir/name through a temporary file, fsync and rename: root:root, 0644.
void write_file_atomically(const std::string& dir, const std::string& name, const std::string& text);

/// Removes dir/<job>.conf and dir/<job>_<digits>.conf except `keep`. Returns the names removed.
std::vector<std::string> remove_job_files(const std::string& dir, const std::string& job_id,
                                          const std::string& keep = {});

/// Creates base (root 0755) and base/<job> owned by uid:gid, mode 0700, replacing a stale one.
/// Returns the job's directory.
std::string make_ledger_dir(const std::string& base, const std::string& job_id, uid_t uid, gid_t gid);

/// Removes base/<job> and everything in it without following symbolic links. True if it was
/// there.
bool remove_ledger_dir(const std::string& base, const std::string& job_id);

}  // namespace softmig::tool::slurm
