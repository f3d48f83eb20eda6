// SPDX-License-Identifier: Apache-2.0
/// @file log.hpp
/// @brief File-only logging that cannot hurt the program it runs in.
///
/// Level from LIBCUDA_LOG_LEVEL: 0 silent (default), 1 errors, 2 + warnings, 3 + info,
/// 4 + debug. Lines go to, in order of preference:
///   $SOFTMIG_LOG_FILE (ignored in setuid/setgid programs),
///   SOFTMIG_LOG_DIR/{user}_{jobid}_{arrayid}_{date}.log   (jobid "nojob" outside SLURM,
///                                                           arrayid "none" if not an array task)
///   $SLURM_TMPDIR/softmig_{jobid}.log                       (inside SLURM only)
/// and never to the program's stdout or stderr. Files are opened lazily on the first line, with
/// O_NOFOLLOW and O_APPEND, and must be regular files owned by the process's user. Lines are
/// formatted into a stack buffer (no allocation) and written with one write(2). At most
/// kMaxLines lines are written per process; the rest are counted and summarised once.
#pragma once

namespace softmig::platform {

enum class LogLevel : int { kError = 1, kWarning = 2, kInfo = 3, kDebug = 4 };

/// The configured level (0..4), read once.
int log_level() noexcept;

void log_error(const char* fmt, ...) noexcept __attribute__((format(printf, 1, 2)));
void log_warning(const char* fmt, ...) noexcept __attribute__((format(printf, 1, 2)));
void log_info(const char* fmt, ...) noexcept __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) noexcept __attribute__((format(printf, 1, 2)));

/// The path of the log file in use, or "" if none could be opened (for tests and the tool).
const char* log_path() noexcept;

}  // namespace softmig::platform
