// SPDX-License-Identifier: Apache-2.0
/// @file board.hpp
/// @brief The activity board of one GPU: a directory where every job using a compute share on
///        the node keeps a file per GPU, <dir>/<UUID>.<job>, whose modification time it
///        refreshes while it has work. A job in burst mode reads the other jobs' stamps to know
///        whether anyone else wants the GPU.
///
/// Inside SLURM the prolog creates the directory (root, 0755) and each job's files (owned by
/// the job's user, 0644): a job can stamp only its own files and cannot add, remove or
/// replace anyone's. A stamp says only "this job wanted GPU time at t"; a job that lies with
/// it can deny others idle time, never take their share.
#pragma once

#include <cstdint>

namespace softmig::platform {

class ActivityBoard {
 public:
  /// Opens (or, where the directory lets this user, creates) this job's file for `uuid`.
  /// Returns false and logs once if the board cannot be used; the board then stays inert.
  bool open(const char* dir, const char* uuid, const char* job_key) noexcept;
  [[nodiscard]] bool usable() const noexcept { return fd_ >= 0; }

  /// Marks this job as wanting the GPU now.
  void stamp() noexcept;

  /// True if another job's file for this GPU was stamped within the last `fresh_ns`.
  [[nodiscard]] bool others_active(std::int64_t fresh_ns) const noexcept;

 private:
  int fd_ = -1;      ///< this job's file
  int dir_fd_ = -1;  ///< the board directory
  char prefix_[64] = {};  ///< "<UUID>."
  char own_[160] = {};    ///< this job's file name
};

}  // namespace softmig::platform
