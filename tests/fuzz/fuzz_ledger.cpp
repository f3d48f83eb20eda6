// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_ledger.cpp
/// @brief Fuzz target for the ledger loader: core::check_region on arbitrary file images, and
///        the Ledger rules run on hostile regions that pass the check.
///
/// Input: one mode byte, then
///   mode even: a raw file image. check_region sees it at its real size (a heap buffer of exactly
///              that many bytes, so a read past the file is caught) and, zero-padded, at the
///              region's size; a region that passes then runs the operations below.
///   mode odd:  a valid, freshly initialised region, patched by the input ("count" patches of
///              offset + up to 8 bytes: any field, the header included), then operations.
/// Operations (one byte each, with arguments from the input): claim/release slots, look up
/// devices, reserve/release bytes with or without a limit, set overheads, note limits, reap
/// and rebuild. Liveness is a pseudo-random function of (pid, start time, seed).
///
/// Properties asserted:
///   - check_region never reads past the mapped bytes; kOk only for a region of the right size,
///     magic, version and geometry; kUninitialised only for an all-zero header;
///   - reserve() never grants when the job's usage would pass the limit passed in, whatever the
///     file says (its `limit` fields, `used` totals or slots): granted => used_after <= limit;
///   - a refused reservation never increases the usage; release() never increases it;
///   - slot and device indices are in range or the documented "none" values;
///   - after rebuild_totals() and claim_slot(), every device's total equals the sum of its
///     claimed slots, and the peak is at least the total.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "core/ledger.hpp"
#include "fuzz_check.hpp"

namespace {

namespace core = softmig::core;

class FuzzLiveness final : public core::Liveness {
 public:
  explicit FuzzLiveness(std::uint64_t seed) : seed_(seed) {}
  [[nodiscard]] bool alive(std::uint64_t pid, std::uint64_t start_time) const noexcept override {
    std::uint64_t h = (pid * 0x9E3779B97F4A7C15ULL) ^ (start_time + seed_);
    h ^= h >> 29U;
    return (h & 3U) != 0;
  }

 private:
  std::uint64_t seed_;
};

std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

void check_totals(const core::LedgerRegion& r, const char* after) {
  for (unsigned d = 0; d < core::kMaxDevices; ++d) {
    std::uint64_t sum = 0;
    for (const core::LedgerSlot& s : r.slots) {
      if (s.pid != 0) sum = sat_add(sum, sat_add(s.alloc[d], s.overhead[d]));
    }
    FUZZ_CHECK(r.devices[d].used == sum, "after %s device %u: total %llu, slots hold %llu", after, d,
               static_cast<unsigned long long>(r.devices[d].used), static_cast<unsigned long long>(sum));
    FUZZ_CHECK(r.devices[d].peak >= r.devices[d].used, "after %s device %u: peak below total", after, d);
  }
}

void init_lock(unsigned char* storage, void*) { std::memset(storage, 0, 64); }

void run_ops(core::LedgerRegion& r, fuzz::Input& in) {
  const FuzzLiveness live(in.u64());
  core::Ledger ledger(r, live);
  for (int ops = 0; ops < 64 && !in.empty(); ++ops) {
    const std::uint8_t op = in.byte() % 9;
    // Slots and devices: mostly small indices (where claimed ones are), sometimes any value.
    const std::uint8_t sel = in.byte();
    const unsigned slot = (sel & 0x80U) != 0 ? in.u32() : sel % 8U;
    const std::uint8_t dsel = in.byte();
    const unsigned dev = (dsel & 0x80U) != 0 ? in.u32() : dsel % core::kMaxDevices;
    switch (op) {
      case 0: {
        const std::uint64_t pid = 1 + in.byte();
        const std::uint64_t start = in.byte();
        bool had_slot = false;
        for (const core::LedgerSlot& s : r.slots) had_slot = had_slot || (s.pid == pid && s.start_time == start);
        const unsigned got = ledger.claim_slot(pid, start, in.byte());
        // A new claim recomputes the totals; a process that already had its slot gets it back.
        if (got != core::kNoSlot && !had_slot) check_totals(r, "claim_slot");
        FUZZ_CHECK(got == core::kNoSlot || got < core::kMaxSlots, "claim_slot returned %u", got);
        if (got != core::kNoSlot) {
          FUZZ_CHECK(r.slots[got].pid == pid && r.slots[got].start_time == start, "claimed slot %u is not ours", got);
        }
        break;
      }
      case 1:
        ledger.release_slot(slot);
        if (slot < core::kMaxSlots) FUZZ_CHECK(r.slots[slot].pid == 0, "released slot %u still claimed", slot);
        break;
      case 2: {
        const std::string_view uuid = in.text(in.byte() % 56U);
        const unsigned got = ledger.device_index(uuid);
        if (uuid.empty() || uuid.size() >= core::kUuidChars) {
          FUZZ_CHECK(got == core::kNoDevice, "device_index accepted a %zu-byte UUID", uuid.size());
        } else if (got != core::kNoDevice) {
          FUZZ_CHECK(got < core::kMaxDevices, "device_index returned %u", got);
          FUZZ_CHECK(std::memcmp(r.devices[got].uuid, uuid.data(), uuid.size()) == 0 &&
                         r.devices[got].uuid[uuid.size()] == '\0',
                     "device %u does not hold the UUID looked up", got);
        }
        break;
      }
      case 3: {
        const std::uint8_t how = in.byte();
        const std::uint64_t bytes = (how & 1U) != 0 ? in.u64() : static_cast<std::uint64_t>(in.u32());
        std::optional<std::uint64_t> limit;
        if ((how & 2U) != 0) limit = (how & 4U) != 0 ? in.u64() : static_cast<std::uint64_t>(in.u32());
        const bool valid = slot < core::kMaxSlots && dev < core::kMaxDevices;
        const std::uint64_t used_before = valid ? r.devices[dev].used : 0;
        const std::uint64_t refusals_before = valid ? r.devices[dev].oom_refusals : 0;
        const bool count_refusal = (how & 8U) == 0;
        const core::Reservation res = ledger.reserve(slot, dev, bytes, limit, count_refusal);
        if (!valid) {
          FUZZ_CHECK(!res.granted, "reserve granted on slot %u device %u", slot, dev);
          break;
        }
        if (res.granted) {
          FUZZ_CHECK(res.used_after == r.devices[dev].used, "used_after differs from the total");
          if (limit) {
            FUZZ_CHECK(bytes <= *limit && res.used_after <= *limit,
                       "reserve granted %llu bytes: the job now holds %llu, above the limit %llu",
                       static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(res.used_after),
                       static_cast<unsigned long long>(*limit));
          }
        } else {
          FUZZ_CHECK(limit.has_value(), "a reservation without a limit was refused");
          FUZZ_CHECK(r.devices[dev].used <= used_before, "a refused reservation increased the total");
          FUZZ_CHECK((r.devices[dev].oom_refusals != refusals_before) == count_refusal,
                     "a refusal was %scounted", count_refusal ? "not " : "");
        }
        break;
      }
      case 4: {
        const std::uint64_t bytes = in.u64();
        const bool valid = slot < core::kMaxSlots && dev < core::kMaxDevices;
        const std::uint64_t used_before = valid ? r.devices[dev].used : 0;
        const std::uint64_t alloc_before = valid ? r.slots[slot].alloc[dev] : 0;
        ledger.release(slot, dev, bytes);
        if (valid) {
          FUZZ_CHECK(r.devices[dev].used <= used_before, "release increased the total");
          FUZZ_CHECK(r.slots[slot].alloc[dev] <= alloc_before, "release increased the slot");
        }
        break;
      }
      case 5: ledger.set_overhead(slot, dev, in.u64()); break;
      case 6: {
        const std::uint64_t v = in.u64();
        ledger.note_limit(dev, (v & 1U) != 0 ? std::optional<std::uint64_t>(v) : std::nullopt,
                          static_cast<unsigned>(v % 101));
        break;
      }
      case 7: {
        const unsigned reaped = ledger.reap_dead();
        FUZZ_CHECK(reaped <= core::kMaxSlots, "reaped %u", reaped);
        break;
      }
      case 8:
        ledger.rebuild_totals();
        check_totals(r, "rebuild_totals");
        break;
      default: break;
    }
    FUZZ_CHECK(ledger.read_used(dev) == (dev < core::kMaxDevices ? r.devices[dev].used : 0), "read_used");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > sizeof(core::LedgerRegion) + 4096) return 0;
  fuzz::Input in(data, size);
  const std::uint8_t mode = in.byte();
  auto region = std::make_unique<core::LedgerRegion>();  // zeroed
  core::LedgerRegion& r = *region;
  if ((mode & 1U) == 0) {
    const std::string_view image = in.rest();
    // At its real size: check_region must not read past the end (ASan sees the exact buffer).
    if (!image.empty()) {
      // Aligned as a mapping is, but exactly as long as the file.
      void* exact = nullptr;
      FUZZ_CHECK(::posix_memalign(&exact, alignof(core::LedgerRegion), image.size()) == 0, "out of memory");
      std::memcpy(exact, image.data(), image.size());
      const core::RegionCheck c = core::check_region(*static_cast<const core::LedgerRegion*>(exact), image.size());
      std::free(exact);
      if (image.size() != sizeof(core::LedgerRegion)) {
        FUZZ_CHECK(c != core::RegionCheck::kOk, "a %zu-byte file passed the check", image.size());
      }
      FUZZ_CHECK(core::describe(c) != nullptr, "describe");
    }
    // Zero-padded to a full region, as a file of the right size would map.
    std::memcpy(&r, image.data(), image.size() < sizeof r ? image.size() : sizeof r);
    const core::RegionCheck c = core::check_region(r, sizeof r);
    if (c == core::RegionCheck::kOk) {
      FUZZ_CHECK(r.header.magic == core::kLedgerMagic && r.header.version == core::kLedgerVersion &&
                     r.header.region_bytes == sizeof r && r.header.header_bytes == sizeof r.header &&
                     r.header.max_devices == core::kMaxDevices && r.header.max_slots == core::kMaxSlots,
                 "a region with a wrong header passed the check");
      fuzz::Input ops(data + 1, size - 1);  // reuse the image bytes as operations
      run_ops(r, ops);
    } else if (c == core::RegionCheck::kUninitialised) {
      const auto* h = reinterpret_cast<const unsigned char*>(&r.header);
      for (std::size_t i = 0; i < offsetof(core::LedgerHeader, lock); ++i) {
        FUZZ_CHECK(h[i] == 0, "a header with byte %zu set was called uninitialised", i);
      }
    }
    return 0;
  }
  core::initialise_region(r, 1000, "fuzz", 0, init_lock, nullptr);
  FUZZ_CHECK(core::check_region(r, sizeof r) == core::RegionCheck::kOk, "a fresh region fails the check");
  const unsigned patches = in.byte() % 32U;
  auto* bytes = reinterpret_cast<unsigned char*>(&r);
  for (unsigned p = 0; p < patches && !in.empty(); ++p) {
    // Offsets are biased towards the header, the device table and the first slots.
    const std::uint32_t raw = in.u32();
    const std::size_t span = (raw & 0x80000000U) != 0 ? sizeof r : offsetof(core::LedgerRegion, slots) + 8 * sizeof(core::LedgerSlot);
    const std::size_t off = (raw & 0x7fffffffU) % span;
    const unsigned len = 1 + in.byte() % 8U;
    for (unsigned k = 0; k < len && off + k < sizeof r; ++k) bytes[off + k] = in.byte();
  }
  const core::RegionCheck c = core::check_region(r, sizeof r);
  if (c != core::RegionCheck::kOk) return 0;  // never used: nothing more to check
  run_ops(r, in);
  return 0;
}
