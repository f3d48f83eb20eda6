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
#include "tool/slurm_slots.hpp"

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

/// True if `uuid` can name a file of the compute tables and the board: letters, digits, '-'
/// and '_' ("GPU-5f0c..."; old-style MIG names with '/' cannot).
bool usable_uuid(std::string_view uuid);

/// A job's window on one GPU, as placed by place_sm_slots.
struct SlotPlacement {
  std::string uuid;
  SlotChoice choice;
};

/// The per-GPU compute-window tables in `dir` (<config dir>/sm-slots, created root 0755 if
/// missing): under an exclusive flock on dir/.lock (waited for at most `lock_wait_ms`), removes
/// the lines of `job_id` from every table, then places a window of each share < 100 in the table
/// of its GPU (dir/<UUID>: "<jobid> <start> <length>" lines, written atomically, root:root 0644).
/// A table left empty is removed. Lines that could not be read are dropped and reported in
/// `notes`. Throws SystemError if the tables cannot be used.
std::vector<SlotPlacement> place_sm_slots(const std::string& dir, const std::string& job_id,
                                          const std::vector<GpuShare>& shares, std::vector<std::string>& notes,
                                          int lock_wait_ms = 10000);

/// Removes the lines of `job_id` from every table in `dir` (under the same lock, taken only if
/// some table has such a line; a missing `dir` is left missing). Returns the UUIDs whose tables
/// changed.
std::vector<std::string> release_sm_slots(const std::string& dir, const std::string& job_id,
                                          int lock_wait_ms = 10000);

/// Creates the job's activity stamp dir/<uuid>.<job_id> (dir: <config dir>/board, created root
/// 0755 if missing): owned by uid:gid, mode 0644, modification time 0 (not active yet), without
/// following links. A stale regular file of that name is replaced; anything else there is
/// refused (SystemError).
void create_board_file(const std::string& dir, const std::string& uuid, const std::string& job_id, uid_t uid,
                       gid_t gid);

/// Removes every dir/<uuid>.<job_id> (never follows links). Returns the names removed.
std::vector<std::string> remove_board_files(const std::string& dir, const std::string& job_id);

}  // namespace softmig::tool::slurm
