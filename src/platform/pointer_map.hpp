// SPDX-License-Identifier: Apache-2.0
/// @file pointer_map.hpp
/// @brief A process-local map from an allocation's address or handle to what softmig charged
///        for it. Open addressing with linear probing; storage comes from mmap, not malloc, so
///        it works the same whatever allocator the program uses. Thread-safe via one mutex:
///        allocation calls take tens of microseconds in the driver, the map a few dozen ns.
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>

namespace softmig::platform {

struct Charge {
  std::uint64_t bytes = 0;
  int device = 0;  ///< CUDA ordinal the charge was made on
};

class PointerMap {
 public:
  PointerMap() noexcept = default;
  ~PointerMap();
  PointerMap(const PointerMap&) = delete;
  PointerMap& operator=(const PointerMap&) = delete;

  /// Records `key`. Returns false if memory for the table could not be obtained.
  bool insert(std::uint64_t key, Charge c) noexcept;
  /// Removes `key` and returns its charge; false if it was not recorded.
  bool take(std::uint64_t key, Charge& out) noexcept;
  /// Drops everything and re-creates the lock without touching it: for a forked child, which
  /// starts with no allocations of its own and may have inherited the lock held.
  void reset_after_fork() noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  struct Entry {
    std::uint64_t key;  // 0 = empty, kTomb = deleted
    Charge charge;
  };
  static constexpr std::uint64_t kTomb = ~0ULL;
  bool grow() noexcept;
  Entry* find_slot(std::uint64_t key) noexcept;

  mutable pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
  Entry* entries_ = nullptr;
  std::size_t capacity_ = 0;  // power of two
  std::size_t size_ = 0;
  std::size_t used_ = 0;      // size_ + tombstones
};

}  // namespace softmig::platform
