// SPDX-License-Identifier: Apache-2.0
#include "platform/pointer_map.hpp"

#include <sys/mman.h>

namespace softmig::platform {
namespace {

std::size_t slot_of(std::uint64_t key, std::size_t mask) noexcept {
  key ^= key >> 33U;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33U;
  return static_cast<std::size_t>(key) & mask;
}

class Guard {
 public:
  explicit Guard(pthread_mutex_t& m) noexcept : m_(m) { pthread_mutex_lock(&m_); }
  ~Guard() { pthread_mutex_unlock(&m_); }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  pthread_mutex_t& m_;
};

}  // namespace

PointerMap::~PointerMap() {
  if (entries_ != nullptr) munmap(entries_, capacity_ * sizeof(Entry));
}

bool PointerMap::grow() noexcept {
  // Rehash at the same size when most used slots are tombstones (allocation churn); double
  // only when live entries need the room.
  const std::size_t cap = capacity_ == 0 ? 1024 : (size_ * 4 < capacity_ ? capacity_ : capacity_ * 2);
  void* p = mmap(nullptr, cap * sizeof(Entry), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  auto* fresh = static_cast<Entry*>(p);
  for (std::size_t i = 0; i < capacity_; ++i) {
    const Entry& e = entries_[i];
    if (e.key == 0 || e.key == kTomb) continue;
    std::size_t j = slot_of(e.key, cap - 1);
    while (fresh[j].key != 0) j = (j + 1) & (cap - 1);
    fresh[j] = e;
  }
  if (entries_ != nullptr) munmap(entries_, capacity_ * sizeof(Entry));
  entries_ = fresh;
  capacity_ = cap;
  used_ = size_;
  return true;
}

PointerMap::Entry* PointerMap::find_slot(std::uint64_t key) noexcept {
  if (capacity_ == 0) return nullptr;
  for (std::size_t j = slot_of(key, capacity_ - 1), n = 0; n < capacity_; ++n, j = (j + 1) & (capacity_ - 1)) {
    if (entries_[j].key == key) return &entries_[j];
    if (entries_[j].key == 0) return nullptr;
  }
  return nullptr;
}

bool PointerMap::insert(std::uint64_t key, Charge c) noexcept {
  if (key == 0 || key == kTomb) key ^= 0x1;  // keep the sentinels free; handles are never 0 or ~0
  Guard g(mu_);
  if (Entry* e = find_slot(key)) {
    e->charge = c;  // the driver reused an address we missed a free for: the new charge wins
    return true;
  }
  if ((used_ + 1) * 2 > capacity_ && !grow()) return false;
  std::size_t j = slot_of(key, capacity_ - 1);
  while (entries_[j].key != 0 && entries_[j].key != kTomb) j = (j + 1) & (capacity_ - 1);
  if (entries_[j].key == 0) ++used_;
  entries_[j].key = key;
  entries_[j].charge = c;
  ++size_;
  return true;
}

bool PointerMap::take(std::uint64_t key, Charge& out) noexcept {
  if (key == 0 || key == kTomb) key ^= 0x1;
  Guard g(mu_);
  Entry* e = find_slot(key);
  if (e == nullptr) return false;
  out = e->charge;
  e->key = kTomb;
  --size_;
  return true;
}

void PointerMap::reset_after_fork() noexcept {
  mu_ = PTHREAD_MUTEX_INITIALIZER;
  for (std::size_t i = 0; i < capacity_; ++i) entries_[i].key = 0;
  size_ = 0;
  used_ = 0;
}

}  // namespace softmig::platform
