// SPDX-License-Identifier: Apache-2.0
#include "core/ledger.hpp"

#include <algorithm>
#include <cstring>

namespace softmig::core {
namespace {

std::uint64_t sat_sub(std::uint64_t a, std::uint64_t b) noexcept { return a > b ? a - b : 0; }
std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) noexcept { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/// Every change of a device's `used` goes through these two, so that `added` records each increase.
void raise_used(LedgerDevice& d, std::uint64_t bytes) noexcept {
  if (bytes == 0) return;
  store_u64(d.added, d.added + bytes);  // wraps by design: only differences are compared
  store_u64(d.used, sat_add(d.used, bytes));
  if (d.used > d.peak) store_u64(d.peak, d.used);
}
void lower_used(LedgerDevice& d, std::uint64_t bytes) noexcept {
  if (bytes != 0) store_u64(d.used, sat_sub(d.used, bytes));
}

bool all_zero(const void* p, std::size_t n) noexcept {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

}  // namespace

bool only_grew(std::uint64_t used_then, std::uint64_t added_then, std::uint64_t used_now,
               std::uint64_t added_now) noexcept {
  // Increases since then, as recorded. More than 2^62 bytes means `added` was rewritten (or went
  // backwards, which wraps to a huge difference).
  const std::uint64_t grown = added_now - added_then;
  if (grown > (std::uint64_t{1} << 62U)) return false;
  return used_now >= sat_add(used_then, grown);
}

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
    lower_used(r_.devices[d], sat_add(s.alloc[d], s.overhead[d]));
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
                            std::optional<std::uint64_t> limit, bool count_refusal, bool reap) noexcept {
  Reservation out;
  if (slot >= kMaxSlots || dev >= kMaxDevices) return out;
  LedgerDevice& d = r_.devices[dev];
  auto fits = [&] { return !limit || (d.used <= *limit && bytes <= *limit - d.used); };
  if (!fits() && (!reap || reap_dead() == 0 || !fits())) {
    if (count_refusal) store_u64(d.oom_refusals, d.oom_refusals + 1);
    out.used_after = d.used;
    return out;
  }
  LedgerSlot& s = r_.slots[slot];
  store_u64(s.alloc[dev], sat_add(s.alloc[dev], bytes));
  raise_used(d, bytes);
  out.granted = true;
  out.used_after = d.used;
  return out;
}

void Ledger::release(unsigned slot, unsigned dev, std::uint64_t bytes) noexcept {
  if (slot >= kMaxSlots || dev >= kMaxDevices) return;
  LedgerSlot& s = r_.slots[slot];
  const std::uint64_t take = bytes < s.alloc[dev] ? bytes : s.alloc[dev];
  store_u64(s.alloc[dev], s.alloc[dev] - take);
  lower_used(r_.devices[dev], take);
}

void Ledger::count_refusal(unsigned dev) noexcept {
  if (dev < kMaxDevices) store_u64(r_.devices[dev].oom_refusals, r_.devices[dev].oom_refusals + 1);
}

void Ledger::set_overhead(unsigned slot, unsigned dev, std::uint64_t bytes) noexcept {
  if (slot >= kMaxSlots || dev >= kMaxDevices) return;
  LedgerSlot& s = r_.slots[slot];
  LedgerDevice& d = r_.devices[dev];
  const std::uint64_t old = s.overhead[dev];
  store_u64(s.overhead[dev], bytes);
  if (bytes >= old) {
    raise_used(d, bytes - old);
  } else {
    lower_used(d, old - bytes);
  }
}

void Ledger::note_limit(unsigned dev, std::optional<std::uint64_t> limit, unsigned sm_percent) noexcept {
  if (dev >= kMaxDevices) return;
  store_u64(r_.devices[dev].limit, limit ? *limit : 0);
  store_u64(r_.devices[dev].sm_percent, sm_percent);
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
  for (unsigned i = 0; i < kMaxDevices; ++i) {
    LedgerDevice& d = r_.devices[i];
    if (sums[i] >= d.used) {
      raise_used(d, sums[i] - d.used);
    } else {
      lower_used(d, d.used - sums[i]);
    }
  }
}

bool Ledger::holds(unsigned slot, std::uint64_t pid, std::uint64_t start_time) const noexcept {
  return slot < kMaxSlots && load_u64(r_.slots[slot].pid) == pid && load_u64(r_.slots[slot].start_time) == start_time;
}

bool Ledger::restore(unsigned slot, unsigned dev, std::uint64_t alloc, std::uint64_t overhead) noexcept {
  if (slot >= kMaxSlots || dev >= kMaxDevices) return false;
  LedgerSlot& s = r_.slots[slot];
  if (s.alloc[dev] == alloc && s.overhead[dev] == overhead) return false;
  store_u64(s.alloc[dev], alloc);
  store_u64(s.overhead[dev], overhead);
  rebuild_totals();
  return true;
}

Reconciliation Ledger::reconcile(unsigned dev, ObservedProcess* procs, unsigned n,
                                 bool count_without_slot) const noexcept {
  Reconciliation out;
  if (dev >= kMaxDevices || (procs == nullptr && n != 0)) return out;
  auto by_pid = [](const ObservedProcess& a, const ObservedProcess& b) { return a.pid < b.pid; };
  std::sort(procs, procs + n, by_pid);
  for (unsigned i = 0; i < n; ++i) procs[i].recorded = kNoRecord;
  // One pass over the slots: their sum, and the slot of each observed process (the first slot
  // with its pid; a copy of it elsewhere only counts in the sum).
  std::uint64_t slots_sum = 0;
  for (const LedgerSlot& s : r_.slots) {
    const std::uint64_t pid = load_u64(s.pid);
    if (pid == 0) continue;
    const std::uint64_t bytes = sat_add(load_u64(s.alloc[dev]), load_u64(s.overhead[dev]));
    slots_sum = sat_add(slots_sum, bytes);
    ObservedProcess* const end = procs + n;
    ObservedProcess* const p = std::lower_bound(procs, end, ObservedProcess{pid, 0}, by_pid);
    if (p != end && p->pid == pid && p->recorded == kNoRecord) p->recorded = bytes;
  }
  for (unsigned i = 0; i < n; ++i) {
    const ObservedProcess& p = procs[i];
    if (p.recorded == kNoRecord) {
      ++out.without_slot;
      if (count_without_slot) out.unrecorded = sat_add(out.unrecorded, p.bytes);
    } else if (p.bytes > p.recorded) {
      out.unrecorded = sat_add(out.unrecorded, p.bytes - p.recorded);
    }
  }
  const std::uint64_t used = load_u64(r_.devices[dev].used);
  if (slots_sum > used) out.unrecorded = sat_add(out.unrecorded, slots_sum - used);
  return out;
}

std::uint64_t Ledger::read_used(unsigned dev) const noexcept {
  return dev < kMaxDevices ? load_u64(r_.devices[dev].used) : 0;
}

std::uint64_t Ledger::read_added(unsigned dev) const noexcept {
  return dev < kMaxDevices ? load_u64(r_.devices[dev].added) : 0;
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

unsigned read_holders(const LedgerRegion& r, unsigned dev) noexcept {
  if (dev >= kMaxDevices) return 0;
  unsigned n = 0;
  for (const LedgerSlot& s : r.slots) {
    if (load_u64(s.pid) != 0 && (load_u64(s.alloc[dev]) != 0 || load_u64(s.overhead[dev]) != 0)) ++n;
  }
  return n;
}

}  // namespace softmig::core
