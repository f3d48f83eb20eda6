// SPDX-License-Identifier: Apache-2.0
/// @file files.hpp
/// @brief Small-file I/O without allocation, and the ownership checks that decide whether a
///        file may be trusted (root-owned configuration) or written (per-user state).
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace softmig::platform {

/// Reads at most size-1 bytes of `path` into `buf` and NUL-terminates it. Returns the number of
/// bytes read, or -1 (errno set). Refuses symbolic links when `no_follow`.
long read_file(const char* path, char* buf, std::size_t size, bool no_follow = false) noexcept;

/// Result of opening a file that must be trustworthy.
enum class TrustCheck { kOk, kMissing, kNotRegular, kNotRootOwned, kWritableByOthers, kUnreadable, kTooLarge };
const char* describe(TrustCheck c) noexcept;

/// Opens and reads a root-owned configuration file: not a symlink, a regular file, owned by
/// root, not writable by group or others, in a directory with the same properties. The checks
/// are made on the opened descriptor (no check-then-open race).
TrustCheck read_root_owned(const char* dir, const char* name, char* buf, std::size_t size,
                           long* bytes) noexcept;

/// Creates directory `path` (mode 0700) if needed and checks it is a real directory owned by
/// the effective uid and not writable by others. Returns false if it cannot be trusted.
bool ensure_private_dir(const char* path) noexcept;

/// True if the directory exists, is not a symlink, is owned by the effective uid or root, and,
/// if writable by others, has the sticky bit.
bool usable_dir(const char* path) noexcept;

/// Calls `visit(name, ctx)` for each entry of the open directory `dir_fd` (from its start,
/// through a private descriptor) until `visit` returns false. getdents64 into a stack buffer:
/// no allocation. Returns false if the directory cannot be read.
bool scan_dir(int dir_fd, bool (*visit)(const char* name, void* ctx), void* ctx) noexcept;

}  // namespace softmig::platform
