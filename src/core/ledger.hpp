// SPDX-License-Identifier: Apache-2.0
/// @file ledger.hpp
/// @brief The per-job memory ledger: a fixed-layout record, shared by every process of a job,
///        of how many bytes each process holds on each GPU — and the pure rules that change it.
///
/// Layout (ABI version 2) is pinned by static_asserts below and by tests/unit/ledger_layout_test.
/// Every field is a naturally aligned 64-bit word (or a byte array), so readers that do not take
/// the lock (status tools) can read any field atomically. All changes happen under the region's
/// lock, which the platform layer provides (a robust process-shared mutex); this file has no
/// syscalls and is unit-tested with threads standing in for processes.
///
/// Invariants, restored by rebuild_totals() whenever a lock holder died mid-update:
///   devices[d].used == sum over claimed slots s of (slots[s].alloc[d] + slots[s].overhead[d])
/// Limits are never stored here for enforcement: each caller passes the limit it read from the
/// root-owned job file (or, outside SLURM, its environment), so editing the ledger cannot raise
/// a limit. `devices[d].limit` is a copy for tools to display.
///
/// The file is writable by the job's user, so its usage figures can be lowered by hand. The rules
/// here make that detectable and measurable, never trusted blindly: every increase of `used` is
/// also added to `devices[d].added`, a counter that only grows, so a process that remembers both
/// figures can tell whether anything but an increase happened since (only_grew), and
/// reconcile() compares the slots with an independent per-process view (NVML) of the job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/limits.hpp"

namespace softmig::core {

inline constexpr std::uint64_t kLedgerMagic = 0x3147494d54464f53ULL;  // "SOFTMIG1" little-endian
inline constexpr std::uint32_t kLedgerVersion = 2;
inline constexpr unsigned kMaxSlots = 1024;
inline constexpr unsigned kNoSlot = ~0U;
inline constexpr unsigned kNoDevice = ~0U;

struct LedgerHeader {
  std::uint64_t magic;          ///< kLedgerMagic once initialised; written last
  std::uint32_t version;        ///< kLedgerVersion
  std::uint32_t header_bytes;   ///< sizeof(LedgerHeader)
  std::uint64_t region_bytes;   ///< sizeof(LedgerRegion)
  std::uint32_t max_devices;    ///< kMaxDevices
  std::uint32_t max_slots;      ///< kMaxSlots
  std::uint64_t owner_uid;      ///< uid of the job's user
  std::uint64_t created_unix;   ///< seconds since the epoch
  char job_id[32];              ///< job id or session name, NUL-terminated
  std::uint64_t lock_repairs;   ///< times a dead lock holder's update was repaired
  std::uint64_t reserved[5];
  alignas(64) unsigned char lock[64];  ///< storage for the platform's process-shared mutex
};

struct LedgerDevice {
  char uuid[kUuidChars];        ///< "GPU-..."; empty = unused entry
  std::uint64_t limit;          ///< last limit a process enforced (display only; 0 = none)
  std::uint64_t used;           ///< bytes held by the job's live processes (alloc + overhead)
  std::uint64_t peak;           ///< highest `used` seen
  std::uint64_t oom_refusals;   ///< reservations refused because they would pass the limit
  std::uint64_t added;          ///< total of every increase of `used` ever made (wraps modulo 2^64)
  /// Thread-time the compute share held the job's launches back, summed over its processes
  /// (display only, like `peak`). Changed without the lock: add_u64().
  std::uint64_t held_ns;
  /// Compute share (percent, 100 = none) the last process enforced (display only, like `limit`;
  /// 0 = not known).
  std::uint64_t sm_percent;
  /// Compute share: the latest time (CLOCK_MONOTONIC ns) a process of the job saw the job's work
  /// of a closed window run past that window's end (0: never). Every process of the job pays it
  /// as debt, so that what one process's work took from the next window is not refilled by
  /// another's. Changed without the lock: max_u64(). Only lowers the job's share if raised.
  std::uint64_t spill_until_ns;
};

struct LedgerSlot {
  std::uint64_t pid;            ///< 0 = free
  std::uint64_t start_time;     ///< process start time (clock ticks since boot): pid-reuse proof
  std::uint64_t uid;
  std::uint64_t generation;     ///< bumped on every claim, so tools can tell successors apart
  std::uint64_t alloc[kMaxDevices];     ///< bytes reserved or allocated through interposed calls
  std::uint64_t overhead[kMaxDevices];  ///< bytes the driver holds for the process beyond those
  std::uint64_t reserved[4];
};

struct LedgerRegion {
  LedgerHeader header;
  LedgerDevice devices[kMaxDevices];
  LedgerSlot slots[kMaxSlots];
};

static_assert(sizeof(LedgerHeader) == 192);
static_assert(offsetof(LedgerHeader, lock) == 128);
static_assert(sizeof(LedgerDevice) == 112);
static_assert(sizeof(LedgerSlot) == 320);
static_assert(offsetof(LedgerRegion, devices) == 192);
static_assert(offsetof(LedgerRegion, slots) == 192 + 16 * 112);
static_assert(sizeof(LedgerRegion) == 192 + 16 * 112 + 1024 * 320);

/// Answers "is this process still the one that claimed the slot?" for the ledger.
class Liveness {
 public:
  virtual ~Liveness() = default;
  [[nodiscard]] virtual bool alive(std::uint64_t pid, std::uint64_t start_time) const noexcept = 0;
};

/// Why a region cannot be used.
enum class RegionCheck { kOk, kUninitialised, kForeign, kWrongVersion, kWrongSize, kCorrupt };
const char* describe(RegionCheck c) noexcept;

/// Validates a mapped region of `mapped_bytes`. kUninitialised means all-zero header (safe to
/// initialise under the creation lock); everything but kOk and kUninitialised must not be used.
RegionCheck check_region(const LedgerRegion& r, std::size_t mapped_bytes) noexcept;

/// Writes a fresh header (magic last). REQUIRES: creation lock held, region zero-filled.
/// The lock storage is left for the platform to initialise before the magic is published, so
/// this takes a callback run between the two.
void initialise_region(LedgerRegion& r, std::uint64_t owner_uid, std::string_view job_id,
                       std::uint64_t now_unix, void (*init_lock)(unsigned char*, void*),
                       void* ctx) noexcept;

/// The outcome of a reservation.
struct Reservation {
  bool granted = false;
  std::uint64_t used_after = 0;   ///< job usage on the device after the call
};

/// One process as an independent observer (NVML) sees it on a device.
inline constexpr std::uint64_t kNoRecord = ~0ULL;
struct ObservedProcess {
  std::uint64_t pid;
  std::uint64_t bytes;
  std::uint64_t recorded = kNoRecord;  ///< set by reconcile(): its slot's bytes, kNoRecord if none
};

/// What the ledger does not record of a device's real usage, by an independent observation.
struct Reconciliation {
  /// Sum over the observed processes of what each uses beyond its slot (its whole usage if it
  /// has no slot), plus whatever the slots hold beyond the device's `used`. Adding it to `used`
  /// bounds the job's usage from below however the file was edited, as far as the observation
  /// reaches.
  std::uint64_t unrecorded = 0;
  unsigned without_slot = 0;  ///< observed processes that have no slot in this ledger (counted or not)
};

/// True if a device's totals (`used_now`, `added_now`) can have been reached from (`used_then`,
/// `added_then`) by increases alone: nothing was released, reaped or rewritten in between. Any
/// other change (a process freeing memory, or a hand edit) answers false.
bool only_grew(std::uint64_t used_then, std::uint64_t added_then, std::uint64_t used_now,
               std::uint64_t added_now) noexcept;

/// The ledger's rules. Every member except the `read_*` ones REQUIRES the region lock.
class Ledger {
 public:
  Ledger(LedgerRegion& region, const Liveness& liveness) noexcept
      : r_(region), live_(liveness) {}

  /// Claims a slot for (pid, start_time); reuses the process's own slot if it already has one.
  /// Reaps dead slots if the table is full. Returns kNoSlot if every slot is held by a live
  /// process.
  unsigned claim_slot(std::uint64_t pid, std::uint64_t start_time, std::uint64_t uid) noexcept;

  /// Frees a slot, returning its bytes to the job (a process leaving normally).
  void release_slot(unsigned slot) noexcept;

  /// Finds the device entry with this UUID, adding it if new. kNoDevice if the table is full
  /// or the UUID is empty.
  unsigned device_index(std::string_view uuid) noexcept;

  /// Reserves `bytes` on device `dev` for `slot` if the job's usage stays within `limit`
  /// (nullopt = no limit: always granted, still counted). On refusal, if `reap`, reaps dead
  /// processes and tries once more; a final refusal is counted in oom_refusals when
  /// `count_refusal` (a caller that will retry after re-measuring passes false for its first
  /// attempt).
  Reservation reserve(unsigned slot, unsigned dev, std::uint64_t bytes,
                      std::optional<std::uint64_t> limit, bool count_refusal = true,
                      bool reap = true) noexcept;

  /// Counts a refusal decided outside reserve() (an allocation undone after the fact).
  void count_refusal(unsigned dev) noexcept;

  /// Returns bytes reserved by `slot` (a failed driver call, or a free). Saturates at zero.
  void release(unsigned slot, unsigned dev, std::uint64_t bytes) noexcept;

  /// Sets the measured driver overhead of `slot` on `dev` (contexts, modules, pools, etc.).
  void set_overhead(unsigned slot, unsigned dev, std::uint64_t bytes) noexcept;

  /// Records the limit the caller enforces, for display.
  void note_limit(unsigned dev, std::optional<std::uint64_t> limit, unsigned sm_percent) noexcept;

  /// Frees the slots of processes that are gone. Returns how many were reaped.
  unsigned reap_dead() noexcept;

  /// Recomputes every device's `used` from the slots; run after a lock holder died mid-update.
  void rebuild_totals() noexcept;

  /// True if `slot` is still claimed by (pid, start_time).
  [[nodiscard]] bool holds(unsigned slot, std::uint64_t pid, std::uint64_t start_time) const noexcept;

  /// Sets `slot`'s bytes on `dev` to what its owner knows it holds (a process repairing its own
  /// slot after the file was edited); the totals are then recomputed from the slots. Returns
  /// true if the slot had to be changed.
  bool restore(unsigned slot, unsigned dev, std::uint64_t alloc, std::uint64_t overhead) noexcept;

  /// Compares device `dev` with an independent observation of the processes on it (`procs`, `n`
  /// entries, sorted by pid here and their `recorded` set). With `count_without_slot`, every
  /// observed process is the job's (the caller left the others out) and one without a slot
  /// counts in full; without it, membership is the ledger's and such processes are ignored.
  /// O(n log n + kMaxSlots log n), no allocation.
  Reconciliation reconcile(unsigned dev, ObservedProcess* procs, unsigned n, bool count_without_slot) const noexcept;

  // --- lock-free reads (tools and reporting); values may be momentarily stale -------------
  [[nodiscard]] std::uint64_t read_used(unsigned dev) const noexcept;
  [[nodiscard]] std::uint64_t read_added(unsigned dev) const noexcept;
  [[nodiscard]] std::uint64_t read_slot_bytes(unsigned slot, unsigned dev) const noexcept;
  [[nodiscard]] bool read_is_member(std::uint64_t pid) const noexcept;

 private:
  LedgerRegion& r_;
  const Liveness& live_;
};

/// Claimed slots holding bytes on `dev`: the job's processes that use that GPU, as far as the
/// ledger knows (lock-free; momentarily stale).
[[nodiscard]] unsigned read_holders(const LedgerRegion& r, unsigned dev) noexcept;

/// Atomic access to plain 64-bit fields of the shared region.
inline std::uint64_t load_u64(const std::uint64_t& v) noexcept { return __atomic_load_n(&v, __ATOMIC_ACQUIRE); }
inline void store_u64(std::uint64_t& v, std::uint64_t x) noexcept { __atomic_store_n(&v, x, __ATOMIC_RELEASE); }
inline void add_u64(std::uint64_t& v, std::uint64_t x) noexcept { __atomic_fetch_add(&v, x, __ATOMIC_RELAXED); }
/// Raises `v` to `x` if it is lower (a shared high-water mark).
inline void max_u64(std::uint64_t& v, std::uint64_t x) noexcept {
  std::uint64_t cur = __atomic_load_n(&v, __ATOMIC_RELAXED);
  while (cur < x && !__atomic_compare_exchange_n(&v, &cur, x, /*weak=*/true, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
  }
}

}  // namespace softmig::core
