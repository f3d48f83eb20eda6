// SPDX-License-Identifier: Apache-2.0
/// @file shared_region.hpp
/// @brief The job's ledger file mapped into this process: creation under a file lock,
///        validation of what is found there, and the robust process-shared mutex inside it.
///
/// A process that dies holding the mutex (SIGKILL at any instant) leaves it to the next locker,
/// who is told (kRepaired) and must make the ledger consistent before unlocking. A holder that
/// is stopped (SIGSTOP) makes lockers give up after the timeout instead of hanging.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/ledger.hpp"

namespace softmig::platform {

class SharedRegion {
 public:
  enum class LockResult { kLocked, kRepaired, kTimeout, kBroken };

  SharedRegion() = default;
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  /// Opens (and if `create`, creates and initialises) the ledger at `path`, serialising creation
  /// with flock on `lock_path`. Read-only attachments map the file without write access and
  /// never create it. The file must belong to the effective user (root may read any user's
  /// file read-only) and be private (mode 0600). Returns false, after logging why, otherwise.
  bool attach(const char* path, const char* lock_path, std::string_view key, bool create) noexcept;
  void detach() noexcept;

  [[nodiscard]] core::LedgerRegion* region() const noexcept { return region_; }
  [[nodiscard]] bool writable() const noexcept { return writable_; }

  /// Locks the ledger, waiting at most `timeout_ms`.
  LockResult lock(int timeout_ms) noexcept;
  /// After kRepaired: marks the mutex consistent again (call after repairing the ledger).
  void mark_consistent() noexcept;
  void unlock() noexcept;

 private:
  core::LedgerRegion* region_ = nullptr;
  std::size_t mapped_ = 0;
  bool writable_ = false;
};

}  // namespace softmig::platform
