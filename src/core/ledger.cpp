// SPDX-License-Identifier: Apache-2.0
#include "core/ledger.hpp"

#include <cstring>

namespace softmig::core {
namespace {

std::uint64_t sat_sub(std::uint64_t a, std::uint64_t b) noexcept { return a > b ? a - b : 0; }
std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) noexcept { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

bool all_zero(const void* p, std::size_t n) noexcept {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

}  // namespace

const char* describe(RegionCheck c) noexcept {
  switch (c) {
    case RegionCheck::kOk: return "valid";
    case RegionCheck::kUninitialised: return "not initialised";
    case RegionCheck::kForeign: return "not a softmig ledger (unknown magic)";
    case RegionCheck::kWrongVersion: return "written by an incompatible softmig version";
    case RegionCheck::kWrongSize: return "truncated or of the wrong size";
    case RegionCheck::kCorrupt: return "internally inconsistent";
  }
  return "unknown";
}

RegionCheck check_region(const LedgerRegion& r, std::size_t mapped_bytes) noexcept {
  if (mapped_bytes < sizeof(LedgerHeader)) return RegionCheck::kWrongSize;
  const std::uint64_t magic = load_u64(r.header.magic);
  if (magic == 0) {
    return all_zero(&r.header, offsetof(LedgerHeader, lock)) ? RegionCheck::kUninitialised
                                                             : RegionCheck::kCorrupt;
  }
  if (magic != kLedgerMagic) return RegionCheck::kForeign;
  if (r.header.version != kLedgerVersion) return RegionCheck::kWrongVersion;
  if (mapped_bytes != sizeof(LedgerRegion) || r.header.region_bytes != sizeof(LedgerRegion)) {
    return RegionCheck::kWrongSize;
  }
  if (r.header.header_bytes != sizeof(LedgerHeader) || r.header.max_devices != kMaxDevices ||
      r.header.max_slots != kMaxSlots) {
    return RegionCheck::kCorrupt;
  }
  return RegionCheck::kOk;
}

void initialise_region(LedgerRegion& r, std::uint64_t owner_uid, std::string_view job_id,
                       std::uint64_t now_unix, void (*init_lock)(unsigned char*, void*),
                       void* ctx) noexcept {
  r.header.version = kLedgerVersion;
  r.header.header_bytes = sizeof(LedgerHeader);
  r.header.region_bytes = sizeof(LedgerRegion);
  r.header.max_devices = kMaxDevices;
  r.header.max_slots = kMaxSlots;
  r.header.owner_uid = owner_uid;
  r.header.created_unix = now_unix;
  const std::size_t n = job_id.size() < sizeof(r.header.job_id) ? job_id.size() : sizeof(r.header.job_id) - 1;
  std::memcpy(r.header.job_id, job_id.data(), n);
  r.header.job_id[n] = '\0';
  if (init_lock != nullptr) init_lock(r.header.lock, ctx);
  store_u64(r.header.magic, kLedgerMagic);  // published last
}

unsigned Ledger::claim_slot(std::uint64_t pid, std::uint64_t start_time, std::uint64_t uid) noexcept {
  unsigned free_slot = kNoSlot;
  for (unsigned i = 0; i < kMaxSlots; ++i) {
    LedgerSlot& s = r_.slots[i];
    const std::uint64_t p = load_u64(s.pid);
    if (p == pid && s.start_time == start_time) return i;
    if (p == 0 && free_slot == kNoSlot) free_slot = i;
  }
  if (free_slot == kNoSlot) {
    if (reap_dead() == 0) return kNoSlot;
    for (unsigned i = 0; i < kMaxSlots; ++i) {
      if (load_u64(r_.slots[i].pid) == 0) {
        free_slot = i;
        break;
      }
    }
    if (free_slot == kNoSlot) return kNoSlot;
  }
  LedgerSlot& s = r_.slots[free_slot];
  // A free slot holds no bytes (release_slot and reap_dead clear them), but a slot freed by a
  // process that died inside release_slot may not be: rebuild keeps the totals right.
  for (unsigned d = 0; d < kMaxDevices; ++d) {
    if (s.alloc[d] != 0 || s.overhead[d] != 0) {
      store_u64(s.alloc[d], 0);
      store_u64(s.overhead[d], 0);
    }
  }
  store_u64(s.start_time, start_time);
  store_u64(s.uid, uid);
  store_u64(s.generation, s.generation + 1);
  store_u64(s.pid, pid);
  rebuild_totals();
  return free_slot;
}

void Ledger::release_slot(unsigned slot) noexcept {
  if (slot >= kMaxSlots) return;
  LedgerSlot& s = r_.slots[slot];
  for (unsigned d = 0; d < kMaxDevices; ++d) {
    const std::uint64_t held = sat_add(s.alloc[d], s.overhead[d]);
    if (held != 0) store_u64(r_.devices[d].used, sat_sub(r_.devices[d].used, held));
    store_u64(s.alloc[d], 0);
    store_u64(s.overhead[d], 0);
  }
  store_u64(s.pid, 0);
}

unsigned Ledger::device_index(std::string_view uuid) noexcept {
  if (uuid.empty() || uuid.size() >= kUuidChars) return kNoDevice;
  unsigned empty = kNoDevice;
  for (unsigned d = 0; d < kMaxDevices; ++d) {
    const char* u = r_.devices[d].uuid;
    if (u[0] == '\0') {
      if (empty == kNoDevice) empty = d;
      continue;
    }
    if (std::memcmp(u, uuid.data(), uuid.size()) == 0 && u[uuid.size()] == '\0') return d;
  }
  if (empty == kNoDevice) return kNoDevice;
  std::memcpy(r_.devices[empty].uuid, uuid.data(), uuid.size());
  r_.devices[empty].uuid[uuid.size()] = '\0';
  return empty;
}

Reservation Ledger::reserve(unsigned slot, unsigned dev, std::uint64_t bytes,
                            std::optional<std::uint64_t> limit, bool count_refusal) noexcept {
  Reservation out;
  if (slot >= kMaxSlots || dev >= kMaxDevices) return out;
  LedgerDevice& d = r_.devices[dev];
  auto fits = [&] { return !limit || (d.used <= *limit && bytes <= *limit - d.used); };
  if (!fits() && (reap_dead() == 0 || !fits())) {
    if (count_refusal) store_u64(d.oom_refusals, d.oom_refusals + 1);
    out.used_after = d.used;
    return out;
  }
  LedgerSlot& s = r_.slots[slot];
  store_u64(s.alloc[dev], sat_add(s.alloc[dev], bytes));
  store_u64(d.used, sat_add(d.used, bytes));
  if (d.used > d.peak) store_u64(d.peak, d.used);
  out.granted = true;
  out.used_after = d.used;
  return out;
}

void Ledger::release(unsigned slot, unsigned dev, std::uint64_t bytes) noexcept {
  if (slot >= kMaxSlots || dev >= kMaxDevices) return;
  LedgerSlot& s = r_.slots[slot];
  const std::uint64_t take = bytes < s.alloc[dev] ? bytes : s.alloc[dev];
  store_u64(s.alloc[dev], s.alloc[dev] - take);
  store_u64(r_.devices[dev].used, sat_sub(r_.devices[dev].used, take));
}

void Ledger::set_overhead(unsigned slot, unsigned dev, std::uint64_t bytes) noexcept {
  if (slot >= kMaxSlots || dev >= kMaxDevices) return;
  LedgerSlot& s = r_.slots[slot];
  LedgerDevice& d = r_.devices[dev];
  const std::uint64_t old = s.overhead[dev];
  store_u64(s.overhead[dev], bytes);
  store_u64(d.used, bytes >= old ? sat_add(d.used, bytes - old) : sat_sub(d.used, old - bytes));
  if (d.used > d.peak) store_u64(d.peak, d.used);
}

void Ledger::note_limit(unsigned dev, std::optional<std::uint64_t> limit) noexcept {
  if (dev < kMaxDevices) store_u64(r_.devices[dev].limit, limit ? *limit : 0);
}

unsigned Ledger::reap_dead() noexcept {
  unsigned reaped = 0;
  for (unsigned i = 0; i < kMaxSlots; ++i) {
    LedgerSlot& s = r_.slots[i];
    const std::uint64_t pid = load_u64(s.pid);
    if (pid != 0 && !live_.alive(pid, s.start_time)) {
      release_slot(i);
      ++reaped;
    }
  }
  return reaped;
}

void Ledger::rebuild_totals() noexcept {
  std::uint64_t sums[kMaxDevices] = {};
  for (const LedgerSlot& s : r_.slots) {
    if (load_u64(s.pid) == 0) continue;
    for (unsigned d = 0; d < kMaxDevices; ++d) sums[d] = sat_add(sums[d], sat_add(s.alloc[d], s.overhead[d]));
  }
  for (unsigned d = 0; d < kMaxDevices; ++d) {
    store_u64(r_.devices[d].used, sums[d]);
    if (sums[d] > r_.devices[d].peak) store_u64(r_.devices[d].peak, sums[d]);
  }
}

std::uint64_t Ledger::read_used(unsigned dev) const noexcept {
  return dev < kMaxDevices ? load_u64(r_.devices[dev].used) : 0;
}

std::uint64_t Ledger::read_slot_bytes(unsigned slot, unsigned dev) const noexcept {
  if (slot >= kMaxSlots || dev >= kMaxDevices) return 0;
  return sat_add(load_u64(r_.slots[slot].alloc[dev]), load_u64(r_.slots[slot].overhead[dev]));
}

bool Ledger::read_is_member(std::uint64_t pid) const noexcept {
  for (const LedgerSlot& s : r_.slots) {
    if (load_u64(s.pid) == pid) return true;
  }
  return false;
}

}  // namespace softmig::core
