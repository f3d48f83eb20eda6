// SPDX-License-Identifier: Apache-2.0
// The per-job ledger's layout and rules, on an in-memory region with a test-controlled Liveness.
#include "core/ledger.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "test_support.hpp"

namespace softmig::core {
namespace {

using test::FakeLiveness;

constexpr std::uint64_t MiB = 1ULL << 20U;
constexpr std::uint64_t GiB = 1ULL << 30U;
constexpr std::uint64_t kUid = 1000;

// ---------------------------------------------------------------------------------------------
// Layout: the ledger is shared between processes that may run different builds of softmig
// (and read by tools), so any change must be deliberate and come with a version bump.

TEST(LedgerLayout, SizesAndOffsetsArePinned) {
  EXPECT_EQ(sizeof(LedgerHeader), 192U);
  EXPECT_EQ(alignof(LedgerHeader), 64U);
  EXPECT_EQ(offsetof(LedgerHeader, magic), 0U);
  EXPECT_EQ(offsetof(LedgerHeader, version), 8U);
  EXPECT_EQ(offsetof(LedgerHeader, header_bytes), 12U);
  EXPECT_EQ(offsetof(LedgerHeader, region_bytes), 16U);
  EXPECT_EQ(offsetof(LedgerHeader, max_devices), 24U);
  EXPECT_EQ(offsetof(LedgerHeader, max_slots), 28U);
  EXPECT_EQ(offsetof(LedgerHeader, owner_uid), 32U);
  EXPECT_EQ(offsetof(LedgerHeader, created_unix), 40U);
  EXPECT_EQ(offsetof(LedgerHeader, job_id), 48U);
  EXPECT_EQ(offsetof(LedgerHeader, lock_repairs), 80U);
  EXPECT_EQ(offsetof(LedgerHeader, reserved), 88U);
  EXPECT_EQ(offsetof(LedgerHeader, lock), 128U);
  EXPECT_EQ(sizeof(LedgerHeader::lock), 64U);

  EXPECT_EQ(sizeof(LedgerDevice), 112U);
  EXPECT_EQ(offsetof(LedgerDevice, uuid), 0U);
  EXPECT_EQ(offsetof(LedgerDevice, limit), 48U);
  EXPECT_EQ(offsetof(LedgerDevice, used), 56U);
  EXPECT_EQ(offsetof(LedgerDevice, peak), 64U);
  EXPECT_EQ(offsetof(LedgerDevice, oom_refusals), 72U);
  EXPECT_EQ(offsetof(LedgerDevice, added), 80U);  // was reserved[0]: zero in older files
  EXPECT_EQ(offsetof(LedgerDevice, held_ns), 88U);  // was reserved[0]: zero in older files
  EXPECT_EQ(offsetof(LedgerDevice, sm_percent), 96U);  // was reserved[1]: zero in older files
  EXPECT_EQ(offsetof(LedgerDevice, spill_until_ns), 104U);  // version 2

  EXPECT_EQ(sizeof(LedgerSlot), 320U);
  EXPECT_EQ(offsetof(LedgerSlot, pid), 0U);
  EXPECT_EQ(offsetof(LedgerSlot, start_time), 8U);
  EXPECT_EQ(offsetof(LedgerSlot, uid), 16U);
  EXPECT_EQ(offsetof(LedgerSlot, generation), 24U);
  EXPECT_EQ(offsetof(LedgerSlot, alloc), 32U);
  EXPECT_EQ(offsetof(LedgerSlot, overhead), 160U);
  EXPECT_EQ(offsetof(LedgerSlot, reserved), 288U);

  EXPECT_EQ(offsetof(LedgerRegion, header), 0U);
  EXPECT_EQ(offsetof(LedgerRegion, devices), 192U);
  EXPECT_EQ(offsetof(LedgerRegion, slots), 192U + 16U * 112U);
  EXPECT_EQ(sizeof(LedgerRegion), 192U + 16U * 112U + 1024U * 320U);
  EXPECT_EQ(sizeof(LedgerRegion), 329664U);
}

TEST(LedgerLayout, ConstantsArePinned) {
  EXPECT_EQ(kLedgerVersion, 2U);
  EXPECT_EQ(kMaxSlots, 1024U);
  EXPECT_EQ(kMaxDevices, 16U);
  EXPECT_EQ(kUuidChars, 48U);
  char magic[9] = {};
  std::memcpy(magic, &kLedgerMagic, 8);
  EXPECT_STREQ(magic, "SOFTMIG1");  // as it appears in a hex dump of the file
}

// ---------------------------------------------------------------------------------------------
// Region validation and initialisation

std::unique_ptr<LedgerRegion> zeroed() { return std::unique_ptr<LedgerRegion>(new LedgerRegion{}); }

std::unique_ptr<LedgerRegion> initialised() {
  auto r = zeroed();
  initialise_region(*r, kUid, "4242", 1700000000, nullptr, nullptr);
  return r;
}

TEST(CheckRegion, ZeroIsUninitialised) {
  const auto r = zeroed();
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kUninitialised);
}

TEST(CheckRegion, InitialisedIsOk) {
  const auto r = initialised();
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kOk);
}

TEST(CheckRegion, ShortMappingIsWrongSize) {
  const auto z = zeroed();
  EXPECT_EQ(check_region(*z, 100), RegionCheck::kWrongSize);
  EXPECT_EQ(check_region(*z, 0), RegionCheck::kWrongSize);
  const auto r = initialised();
  EXPECT_EQ(check_region(*r, 100), RegionCheck::kWrongSize);
  EXPECT_EQ(check_region(*r, sizeof(LedgerHeader)), RegionCheck::kWrongSize);
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion) - 1), RegionCheck::kWrongSize);
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion) + 4096), RegionCheck::kWrongSize);
}

TEST(CheckRegion, ForeignMagic) {
  auto r = initialised();
  r->header.magic = 0x0123456789abcdefULL;
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kForeign);
  r->header.magic = __builtin_bswap64(kLedgerMagic);  // other endianness
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kForeign);
}

TEST(CheckRegion, WrongVersion) {
  auto r = initialised();
  r->header.version = kLedgerVersion + 1;
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kWrongVersion);
  r->header.version = 0;
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kWrongVersion);
  r->header.version = 1;  // a file of the layout before spill_until_ns
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kWrongVersion);
}

TEST(CheckRegion, WrongRecordedSize) {
  auto r = initialised();
  r->header.region_bytes = sizeof(LedgerRegion) + 8;
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kWrongSize);
}

TEST(CheckRegion, CorruptHeader) {
  {
    auto r = initialised();
    r->header.header_bytes = 128;
    EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kCorrupt);
  }
  {
    auto r = initialised();
    r->header.max_devices = 8;
    EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kCorrupt);
  }
  {
    auto r = initialised();
    r->header.max_slots = 4096;
    EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kCorrupt);
  }
  {
    // A creator that died after writing some fields but before publishing the magic.
    auto r = zeroed();
    r->header.version = kLedgerVersion;
    EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kCorrupt);
  }
  {
    auto r = zeroed();
    r->header.job_id[5] = 'x';
    EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kCorrupt);
  }
}

TEST(CheckRegion, DescriptionsAreDistinct) {
  std::set<std::string> seen;
  for (const RegionCheck c : {RegionCheck::kOk, RegionCheck::kUninitialised, RegionCheck::kForeign,
                              RegionCheck::kWrongVersion, RegionCheck::kWrongSize, RegionCheck::kCorrupt}) {
    const char* d = describe(c);
    ASSERT_NE(d, nullptr);
    EXPECT_GT(std::strlen(d), 3U);
    EXPECT_TRUE(seen.insert(d).second) << d;
  }
}

struct InitObservation {
  int calls = 0;
  const unsigned char* storage = nullptr;
  std::uint64_t magic_seen = 1;
  std::uint32_t version_seen = 0;
  std::uint64_t owner_seen = 0;
  char job_seen[32] = {};
  const LedgerRegion* region = nullptr;
};

void observe_init(unsigned char* storage, void* ctx) {
  auto* o = static_cast<InitObservation*>(ctx);
  ++o->calls;
  o->storage = storage;
  o->magic_seen = o->region->header.magic;
  o->version_seen = o->region->header.version;
  o->owner_seen = o->region->header.owner_uid;
  std::memcpy(o->job_seen, o->region->header.job_id, sizeof(o->job_seen));
  storage[0] = 0xAB;  // what a mutex initialiser would write
}

TEST(InitialiseRegion, FillsTheHeaderAndPublishesTheMagicLast) {
  auto r = zeroed();
  InitObservation o;
  o.region = r.get();
  initialise_region(*r, kUid, "4242", 1700000000, observe_init, &o);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.storage, r->header.lock);
  EXPECT_EQ(o.magic_seen, 0U) << "the magic must not be visible before the lock is initialised";
  EXPECT_EQ(o.version_seen, kLedgerVersion) << "the header must be complete when the lock is initialised";
  EXPECT_EQ(o.owner_seen, kUid);
  EXPECT_STREQ(o.job_seen, "4242");

  EXPECT_EQ(r->header.magic, kLedgerMagic);
  EXPECT_EQ(r->header.version, kLedgerVersion);
  EXPECT_EQ(r->header.header_bytes, sizeof(LedgerHeader));
  EXPECT_EQ(r->header.region_bytes, sizeof(LedgerRegion));
  EXPECT_EQ(r->header.max_devices, kMaxDevices);
  EXPECT_EQ(r->header.max_slots, kMaxSlots);
  EXPECT_EQ(r->header.owner_uid, kUid);
  EXPECT_EQ(r->header.created_unix, 1700000000U);
  EXPECT_STREQ(r->header.job_id, "4242");
  EXPECT_EQ(r->header.lock[0], 0xAB);
  EXPECT_EQ(r->header.lock_repairs, 0U);
  EXPECT_EQ(check_region(*r, sizeof(LedgerRegion)), RegionCheck::kOk);
}

TEST(InitialiseRegion, LongJobIdIsTruncatedAndTerminated) {
  auto r = zeroed();
  const std::string long_id = "session-" + std::string(60, 'z');
  initialise_region(*r, kUid, long_id, 1, nullptr, nullptr);
  EXPECT_EQ(std::strlen(r->header.job_id), sizeof(r->header.job_id) - 1);
  EXPECT_EQ(std::string(r->header.job_id), long_id.substr(0, 31));
  EXPECT_EQ(r->header.lock_repairs, 0U);  // the field after job_id is untouched
}

// ---------------------------------------------------------------------------------------------
// The rules

class LedgerTest : public ::testing::Test {
 protected:
  LedgerTest() : region_(initialised()), ledger_(*region_, live_) {}

  /// A live process claiming its slot.
  unsigned claim(std::uint64_t pid, std::uint64_t start = 1) {
    live_.add(pid, start);
    return ledger_.claim_slot(pid, start, kUid);
  }
  LedgerDevice& dev(unsigned d) { return region_->devices[d]; }

  std::unique_ptr<LedgerRegion> region_;
  FakeLiveness live_;
  Ledger ledger_;
};

TEST_F(LedgerTest, ClaimRecordsTheProcess) {
  const unsigned s = ledger_.claim_slot(4321, 987654, 1234);
  ASSERT_NE(s, kNoSlot);
  EXPECT_EQ(region_->slots[s].pid, 4321U);
  EXPECT_EQ(region_->slots[s].start_time, 987654U);
  EXPECT_EQ(region_->slots[s].uid, 1234U);
  EXPECT_EQ(region_->slots[s].generation, 1U);
  EXPECT_TRUE(ledger_.read_is_member(4321));
  EXPECT_FALSE(ledger_.read_is_member(4322));
}

TEST_F(LedgerTest, ClaimReusesOwnSlot) {
  const unsigned a = claim(100);
  ASSERT_NE(a, kNoSlot);
  ASSERT_TRUE(ledger_.reserve(a, 0, MiB, std::nullopt).granted);
  EXPECT_EQ(claim(100), a);
  EXPECT_EQ(region_->slots[a].generation, 1U);
  EXPECT_EQ(ledger_.read_slot_bytes(a, 0), MiB);  // a second claim keeps what it holds
  EXPECT_EQ(ledger_.read_used(0), MiB);
}

TEST_F(LedgerTest, HoldersAreTheProcessesUsingAGpu) {
  // The compute share asks whether a process is its job's only one on a GPU.
  EXPECT_EQ(read_holders(*region_, 0), 0U);
  const unsigned a = claim(100);
  const unsigned b = claim(200);
  claim(300);  // a member that uses no GPU
  ledger_.set_overhead(a, 0, MiB);  // a context, nothing allocated yet
  EXPECT_EQ(read_holders(*region_, 0), 1U);
  ASSERT_TRUE(ledger_.reserve(b, 0, MiB, std::nullopt).granted);
  ASSERT_TRUE(ledger_.reserve(b, 2, MiB, std::nullopt).granted);
  EXPECT_EQ(read_holders(*region_, 0), 2U);
  EXPECT_EQ(read_holders(*region_, 2), 1U);
  ledger_.release_slot(b);
  EXPECT_EQ(read_holders(*region_, 0), 1U);
  EXPECT_EQ(read_holders(*region_, kMaxDevices), 0U);
}

TEST_F(LedgerTest, DistinctProcessesGetDistinctSlots) {
  std::set<unsigned> slots;
  for (std::uint64_t pid = 1; pid <= 50; ++pid) {
    const unsigned s = claim(pid);
    ASSERT_NE(s, kNoSlot);
    EXPECT_TRUE(slots.insert(s).second) << "pid " << pid << " got slot " << s << " twice";
  }
  // Same pid, another start time: another process.
  const unsigned again = claim(1, 2);
  ASSERT_NE(again, kNoSlot);
  EXPECT_TRUE(slots.insert(again).second);
}

TEST_F(LedgerTest, FullTableRefusesUntilADeadProcessIsReaped) {
  for (std::uint64_t pid = 1; pid <= kMaxSlots; ++pid) ASSERT_NE(claim(pid), kNoSlot) << pid;
  EXPECT_EQ(claim(5000), kNoSlot);
  // Process 77 held memory and died.
  const unsigned s77 = ledger_.claim_slot(77, 1, kUid);
  ASSERT_TRUE(ledger_.reserve(s77, 3, 5 * MiB, std::nullopt).granted);
  EXPECT_EQ(ledger_.read_used(3), 5 * MiB);
  live_.kill(77, 1);
  const unsigned s = claim(5000);
  EXPECT_EQ(s, s77);
  EXPECT_FALSE(ledger_.read_is_member(77));
  EXPECT_TRUE(ledger_.read_is_member(5000));
  EXPECT_EQ(ledger_.read_used(3), 0U) << "the dead process's bytes return to the job";
  EXPECT_EQ(ledger_.read_slot_bytes(s, 3), 0U);
  EXPECT_EQ(region_->slots[s].generation, 2U);
  EXPECT_EQ(claim(5001), kNoSlot);
}

TEST_F(LedgerTest, ReleasedSlotIsReusedWithANewGeneration) {
  const unsigned a = claim(10);
  ledger_.release_slot(a);
  const unsigned b = claim(11);
  EXPECT_EQ(b, a);
  EXPECT_EQ(region_->slots[b].generation, 2U);
}

TEST_F(LedgerTest, ClaimClearsBytesLeftInAFreeSlot) {
  // A process that died inside release_slot: pid cleared, bytes not.
  region_->slots[0].alloc[2] = 77;
  region_->slots[0].overhead[2] = 3;
  const unsigned s = claim(10);
  ASSERT_EQ(s, 0U);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 2), 0U);
  EXPECT_EQ(ledger_.read_used(2), 0U);
}

TEST_F(LedgerTest, ReserveGrantsUpToTheLimitInclusive) {
  const unsigned s = claim(1);
  const std::optional<std::uint64_t> limit = 100 * MiB;
  Reservation r = ledger_.reserve(s, 0, 60 * MiB, limit);
  EXPECT_TRUE(r.granted);
  EXPECT_EQ(r.used_after, 60 * MiB);
  r = ledger_.reserve(s, 0, 40 * MiB, limit);
  EXPECT_TRUE(r.granted) << "used + bytes == limit must be granted";
  EXPECT_EQ(r.used_after, 100 * MiB);
  r = ledger_.reserve(s, 0, 1, limit);
  EXPECT_FALSE(r.granted) << "one byte past the limit must be refused";
  EXPECT_EQ(r.used_after, 100 * MiB);
  EXPECT_EQ(ledger_.read_used(0), 100 * MiB);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 0), 100 * MiB);
  EXPECT_EQ(dev(0).oom_refusals, 1U);
  EXPECT_EQ(dev(0).peak, 100 * MiB);
}

TEST_F(LedgerTest, LimitIsSharedByTheJobsProcesses) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  const std::optional<std::uint64_t> limit = 8 * GiB;
  EXPECT_TRUE(ledger_.reserve(a, 0, 5 * GiB, limit).granted);
  EXPECT_FALSE(ledger_.reserve(b, 0, 4 * GiB, limit).granted);
  EXPECT_TRUE(ledger_.reserve(b, 0, 3 * GiB, limit).granted);
  EXPECT_EQ(ledger_.read_used(0), 8 * GiB);
  EXPECT_EQ(ledger_.read_slot_bytes(a, 0), 5 * GiB);
  EXPECT_EQ(ledger_.read_slot_bytes(b, 0), 3 * GiB);
}

TEST_F(LedgerTest, SingleReservationLargerThanTheLimitIsRefused) {
  const unsigned s = claim(1);
  const Reservation r = ledger_.reserve(s, 0, 2 * GiB, GiB);
  EXPECT_FALSE(r.granted);
  EXPECT_EQ(r.used_after, 0U);
  EXPECT_EQ(ledger_.read_used(0), 0U);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 0), 0U);
  EXPECT_EQ(ledger_.reserve(s, 0, UINT64_MAX, GiB).granted, false);
}

TEST_F(LedgerTest, ZeroLimitRefusesEveryByte) {
  const unsigned s = claim(1);
  EXPECT_FALSE(ledger_.reserve(s, 0, 1, 0).granted);
  EXPECT_FALSE(ledger_.reserve(s, 0, 2 * MiB, 0).granted);
  EXPECT_EQ(dev(0).oom_refusals, 2U);
}

TEST_F(LedgerTest, RefusalCountsOomRefusalsPerDevice) {
  const unsigned s = claim(1);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(ledger_.reserve(s, 1, 2 * MiB, MiB).granted);
  EXPECT_EQ(dev(1).oom_refusals, 3U);
  EXPECT_EQ(dev(0).oom_refusals, 0U);
}

TEST_F(LedgerTest, RefusalReapsDeadProcessesAndThenGrants) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  const std::optional<std::uint64_t> limit = 8 * GiB;
  ASSERT_TRUE(ledger_.reserve(a, 0, 6 * GiB, limit).granted);
  ledger_.set_overhead(a, 0, 500 * MiB);
  live_.kill(1, 1);  // SIGKILLed: never released anything
  const Reservation r = ledger_.reserve(b, 0, 4 * GiB, limit);
  EXPECT_TRUE(r.granted);
  EXPECT_EQ(r.used_after, 4 * GiB);
  EXPECT_EQ(ledger_.read_used(0), 4 * GiB);
  EXPECT_FALSE(ledger_.read_is_member(1));
  EXPECT_EQ(region_->slots[a].pid, 0U);
  EXPECT_EQ(ledger_.read_slot_bytes(a, 0), 0U);
  EXPECT_EQ(dev(0).oom_refusals, 0U) << "a reservation granted after reaping is not a refusal";
}

TEST_F(LedgerTest, RefusalAfterReapingStillCounts) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, GiB, 8 * GiB).granted);
  ASSERT_TRUE(ledger_.reserve(b, 0, 6 * GiB, 8 * GiB).granted);
  live_.kill(1, 1);
  EXPECT_FALSE(ledger_.reserve(b, 0, 4 * GiB, 8 * GiB).granted);  // 6 + 4 > 8 even without a
  EXPECT_EQ(ledger_.read_used(0), 6 * GiB);
  EXPECT_FALSE(ledger_.read_is_member(1));
  EXPECT_EQ(dev(0).oom_refusals, 1U);
}

TEST_F(LedgerTest, LivenessIsOnlyAskedWhenAReservationDoesNotFit) {
  const unsigned s = claim(1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(ledger_.reserve(s, 0, MiB, 100 * MiB).granted);
  EXPECT_EQ(live_.queries(), 0U);
  EXPECT_FALSE(ledger_.reserve(s, 0, 100 * MiB, 100 * MiB).granted);
  EXPECT_GT(live_.queries(), 0U);
}

TEST_F(LedgerTest, NoLimitAlwaysGrantsAndStillCounts) {
  const unsigned s = claim(1);
  EXPECT_TRUE(ledger_.reserve(s, 0, 100 * GiB, std::nullopt).granted);
  EXPECT_TRUE(ledger_.reserve(s, 0, 100 * GiB, std::nullopt).granted);
  EXPECT_EQ(ledger_.read_used(0), 200 * GiB);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 0), 200 * GiB);
  EXPECT_EQ(dev(0).peak, 200 * GiB);
  // Counting saturates rather than wrapping.
  EXPECT_TRUE(ledger_.reserve(s, 0, UINT64_MAX, std::nullopt).granted);
  EXPECT_EQ(ledger_.read_used(0), UINT64_MAX);
  EXPECT_EQ(dev(0).oom_refusals, 0U);
}

TEST_F(LedgerTest, UsageAlreadyAboveTheLimitRefusesWithoutWrapping) {
  const unsigned s = claim(1);
  ledger_.set_overhead(s, 0, 150 * MiB);  // the driver's own memory pushed the job over
  const Reservation r = ledger_.reserve(s, 0, 1, 100 * MiB);
  EXPECT_FALSE(r.granted);
  EXPECT_EQ(r.used_after, 150 * MiB);
}

TEST_F(LedgerTest, OverheadCountsAgainstTheLimit) {
  const unsigned s = claim(1);
  ledger_.set_overhead(s, 0, 300 * MiB);
  EXPECT_FALSE(ledger_.reserve(s, 0, 800 * MiB, GiB).granted);
  EXPECT_TRUE(ledger_.reserve(s, 0, 724 * MiB, GiB).granted);
  EXPECT_EQ(ledger_.read_used(0), GiB);
}

TEST_F(LedgerTest, InvalidSlotOrDeviceIsRefusedAndChangesNothing) {
  const unsigned s = claim(1);
  EXPECT_FALSE(ledger_.reserve(kNoSlot, 0, 1, std::nullopt).granted);
  EXPECT_FALSE(ledger_.reserve(kMaxSlots, 0, 1, std::nullopt).granted);
  EXPECT_FALSE(ledger_.reserve(s, kNoDevice, 1, std::nullopt).granted);
  EXPECT_FALSE(ledger_.reserve(s, kMaxDevices, 1, std::nullopt).granted);
  ledger_.release(kNoSlot, 0, 1);
  ledger_.release(s, kNoDevice, 1);
  ledger_.set_overhead(kNoSlot, 0, 1);
  ledger_.set_overhead(s, kMaxDevices, 1);
  ledger_.note_limit(kNoDevice, 5, 50);
  ledger_.release_slot(kNoSlot);
  for (unsigned d = 0; d < kMaxDevices; ++d) EXPECT_EQ(ledger_.read_used(d), 0U);
  EXPECT_EQ(ledger_.read_used(kNoDevice), 0U);
  EXPECT_EQ(ledger_.read_slot_bytes(kNoSlot, 0), 0U);
  EXPECT_TRUE(ledger_.read_is_member(1));
}

TEST_F(LedgerTest, DevicesAreAccountedSeparately) {
  const unsigned s = claim(1);
  ASSERT_TRUE(ledger_.reserve(s, 0, GiB, GiB).granted);
  EXPECT_TRUE(ledger_.reserve(s, 1, GiB, GiB).granted);
  EXPECT_EQ(ledger_.read_used(0), GiB);
  EXPECT_EQ(ledger_.read_used(1), GiB);
  EXPECT_EQ(ledger_.read_used(2), 0U);
}

TEST_F(LedgerTest, ReleaseReturnsBytes) {
  const unsigned s = claim(1);
  ASSERT_TRUE(ledger_.reserve(s, 0, 10 * MiB, GiB).granted);
  ledger_.release(s, 0, 4 * MiB);
  EXPECT_EQ(ledger_.read_used(0), 6 * MiB);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 0), 6 * MiB);
  EXPECT_EQ(dev(0).peak, 10 * MiB);  // the peak stays
}

TEST_F(LedgerTest, ReleaseSaturatesAtWhatTheSlotHolds) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 100, std::nullopt).granted);
  ASSERT_TRUE(ledger_.reserve(b, 0, 50, std::nullopt).granted);
  ledger_.release(b, 0, 1000);  // a double free, or a free the ledger never saw
  EXPECT_EQ(ledger_.read_slot_bytes(b, 0), 0U);
  EXPECT_EQ(ledger_.read_used(0), 100U) << "another process's bytes must not be released";
  EXPECT_EQ(ledger_.read_slot_bytes(a, 0), 100U);
  ledger_.release(b, 0, 1);
  EXPECT_EQ(ledger_.read_used(0), 100U);
}

TEST_F(LedgerTest, ReleaseDoesNotTouchOverhead) {
  const unsigned s = claim(1);
  ledger_.set_overhead(s, 0, 300);
  ASSERT_TRUE(ledger_.reserve(s, 0, 100, std::nullopt).granted);
  ledger_.release(s, 0, 1000);
  EXPECT_EQ(ledger_.read_used(0), 300U);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 0), 300U);
}

TEST_F(LedgerTest, SetOverheadAdjustsUsageBothWays) {
  const unsigned s = claim(1);
  ASSERT_TRUE(ledger_.reserve(s, 0, 100 * MiB, std::nullopt).granted);
  ledger_.set_overhead(s, 0, 500 * MiB);
  EXPECT_EQ(ledger_.read_used(0), 600 * MiB);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 0), 600 * MiB);
  EXPECT_EQ(dev(0).peak, 600 * MiB);
  ledger_.set_overhead(s, 0, 200 * MiB);
  EXPECT_EQ(ledger_.read_used(0), 300 * MiB);
  ledger_.set_overhead(s, 0, 200 * MiB);
  EXPECT_EQ(ledger_.read_used(0), 300 * MiB);
  ledger_.set_overhead(s, 0, 0);
  EXPECT_EQ(ledger_.read_used(0), 100 * MiB);
  EXPECT_EQ(region_->slots[s].overhead[0], 0U);
  EXPECT_EQ(dev(0).peak, 600 * MiB);
}

TEST_F(LedgerTest, DeviceIndexAddsAndFinds) {
  const char* a = "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
  const char* b = "GPU-11111111-2222-3333-4444-555555555555";
  const unsigned ia = ledger_.device_index(a);
  ASSERT_NE(ia, kNoDevice);
  EXPECT_STREQ(dev(ia).uuid, a);
  const unsigned ib = ledger_.device_index(b);
  ASSERT_NE(ib, kNoDevice);
  EXPECT_NE(ia, ib);
  EXPECT_EQ(ledger_.device_index(a), ia);
  EXPECT_EQ(ledger_.device_index(b), ib);
  // A prefix of a known UUID is another device.
  const unsigned prefix = ledger_.device_index("GPU-0a1b2c3d");
  EXPECT_NE(prefix, ia);
  EXPECT_NE(prefix, kNoDevice);
}

TEST_F(LedgerTest, DeviceIndexRejectsEmptyAndOverlongUuids) {
  EXPECT_EQ(ledger_.device_index(""), kNoDevice);
  EXPECT_EQ(ledger_.device_index(std::string(kUuidChars, 'x')), kNoDevice);
  const std::string longest(kUuidChars - 1, 'y');
  const unsigned d = ledger_.device_index(longest);
  ASSERT_NE(d, kNoDevice);
  EXPECT_EQ(std::string(dev(d).uuid), longest);
  EXPECT_EQ(ledger_.device_index(longest), d);
}

TEST_F(LedgerTest, DeviceIndexFullTable) {
  for (unsigned i = 0; i < kMaxDevices; ++i) {
    ASSERT_EQ(ledger_.device_index("GPU-" + std::to_string(i)), i);
  }
  EXPECT_EQ(ledger_.device_index("GPU-16"), kNoDevice);
  EXPECT_EQ(ledger_.device_index("GPU-7"), 7U);
  EXPECT_EQ(ledger_.device_index("GPU-15"), 15U);
}

// Regression: device_index once compared with strncmp(u, uuid.data(), kUuidChars), reading the
// string_view up to a NUL. A view that is not NUL-terminated (a UUID inside a longer string)
// never matched the entry it created, so every lookup added an entry until the table was full
// and kNoDevice (every allocation refused) came back.
TEST_F(LedgerTest, DeviceIndexFindsANonTerminatedView) {
  const std::string list = "GPU-aaaa,GPU-bbbb";
  const std::string_view first(list.data(), 8);  // "GPU-aaaa", followed by ','
  const unsigned d = ledger_.device_index(first);
  ASSERT_NE(d, kNoDevice);
  EXPECT_STREQ(dev(d).uuid, "GPU-aaaa");
  EXPECT_EQ(ledger_.device_index(first), d);
  EXPECT_EQ(ledger_.device_index("GPU-aaaa"), d);
}

TEST_F(LedgerTest, NoteLimitIsForDisplay) {
  ledger_.note_limit(2, 4 * GiB, 25);
  EXPECT_EQ(dev(2).limit, 4 * GiB);
  EXPECT_EQ(dev(2).sm_percent, 25U);
  ledger_.note_limit(2, std::nullopt, 100);
  EXPECT_EQ(dev(2).limit, 0U);
  EXPECT_EQ(dev(2).sm_percent, 100U);
  ledger_.note_limit(kMaxDevices, 1, 1);  // ignored
  // The stored limit is never enforced: callers pass theirs.
  ledger_.note_limit(0, 1, 1);
  const unsigned s = claim(1);
  EXPECT_TRUE(ledger_.reserve(s, 0, GiB, std::nullopt).granted);
}

TEST_F(LedgerTest, RebuildTotalsRepairsUsage) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 10 * MiB, std::nullopt).granted);
  ASSERT_TRUE(ledger_.reserve(b, 0, 5 * MiB, std::nullopt).granted);
  ledger_.set_overhead(b, 0, 1 * MiB);
  ASSERT_TRUE(ledger_.reserve(b, 3, 7 * MiB, std::nullopt).granted);
  // A lock holder died between updating its slot and the totals.
  dev(0).used = 999;
  dev(3).used = 0;
  dev(5).used = 12345;
  region_->slots[700].alloc[0] = 1 * GiB;  // a free slot's leftovers do not count
  ledger_.rebuild_totals();
  EXPECT_EQ(ledger_.read_used(0), 16 * MiB);
  EXPECT_EQ(ledger_.read_used(3), 7 * MiB);
  EXPECT_EQ(ledger_.read_used(5), 0U);
}

TEST_F(LedgerTest, ReleaseSlotReturnsEverythingTheProcessHeld) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 10 * MiB, std::nullopt).granted);
  ASSERT_TRUE(ledger_.reserve(a, 4, 3 * MiB, std::nullopt).granted);
  ledger_.set_overhead(a, 0, 2 * MiB);
  ASSERT_TRUE(ledger_.reserve(b, 0, 5 * MiB, std::nullopt).granted);
  ledger_.release_slot(a);
  EXPECT_EQ(ledger_.read_used(0), 5 * MiB);
  EXPECT_EQ(ledger_.read_used(4), 0U);
  EXPECT_EQ(ledger_.read_slot_bytes(a, 0), 0U);
  EXPECT_EQ(ledger_.read_slot_bytes(a, 4), 0U);
  EXPECT_EQ(region_->slots[a].pid, 0U);
  EXPECT_FALSE(ledger_.read_is_member(1));
  EXPECT_TRUE(ledger_.read_is_member(2));
}

TEST_F(LedgerTest, ReapDeadFreesOnlyDeadProcesses) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  const unsigned c = claim(3);
  ASSERT_TRUE(ledger_.reserve(a, 0, 1 * MiB, std::nullopt).granted);
  ASSERT_TRUE(ledger_.reserve(b, 0, 2 * MiB, std::nullopt).granted);
  ASSERT_TRUE(ledger_.reserve(c, 0, 4 * MiB, std::nullopt).granted);
  live_.kill(1, 1);
  live_.kill(3, 1);
  EXPECT_EQ(ledger_.reap_dead(), 2U);
  EXPECT_EQ(ledger_.read_used(0), 2 * MiB);
  EXPECT_EQ(ledger_.reap_dead(), 0U);
}

TEST_F(LedgerTest, PidReuseIsAnotherProcess) {
  const std::optional<std::uint64_t> limit = 8 * GiB;
  const unsigned old_slot = claim(100, 5000);
  ASSERT_TRUE(ledger_.reserve(old_slot, 0, 6 * GiB, limit).granted);
  live_.kill(100, 5000);  // died; the kernel hands pid 100 to a new process
  const unsigned new_slot = claim(100, 9000);
  ASSERT_NE(new_slot, kNoSlot);
  EXPECT_NE(new_slot, old_slot) << "a new process must not inherit a dead one's slot and bytes";
  EXPECT_EQ(ledger_.read_slot_bytes(new_slot, 0), 0U);
  const Reservation r = ledger_.reserve(new_slot, 0, 4 * GiB, limit);
  EXPECT_TRUE(r.granted);
  EXPECT_EQ(ledger_.read_used(0), 4 * GiB);
  EXPECT_EQ(region_->slots[old_slot].pid, 0U);
  EXPECT_EQ(region_->slots[new_slot].pid, 100U);
  EXPECT_EQ(region_->slots[new_slot].start_time, 9000U);
}

TEST_F(LedgerTest, ReadsAreConsistentWithTheRegion) {
  const unsigned s = claim(1);
  ASSERT_TRUE(ledger_.reserve(s, 2, 3 * MiB, std::nullopt).granted);
  ledger_.set_overhead(s, 2, 1 * MiB);
  EXPECT_EQ(ledger_.read_used(2), dev(2).used);
  EXPECT_EQ(ledger_.read_slot_bytes(s, 2), region_->slots[s].alloc[2] + region_->slots[s].overhead[2]);
}

// ---------------------------------------------------------------------------------------------
// Edits of the file: `added` makes any decrease detectable, reconcile() measures what the slots
// and totals do not record against an independent view, restore() repairs a process's own slot.

TEST_F(LedgerTest, AddedRecordsEveryIncreaseAndNothingElse) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 10 * MiB, std::nullopt).granted);
  ledger_.set_overhead(a, 0, 3 * MiB);
  ledger_.set_overhead(a, 0, 1 * MiB);  // a decrease: not added
  ASSERT_TRUE(ledger_.reserve(b, 0, 5 * MiB, std::nullopt).granted);
  EXPECT_FALSE(ledger_.reserve(b, 0, GiB, 20 * MiB).granted);  // refused: nothing added
  ledger_.release(a, 0, 4 * MiB);
  EXPECT_EQ(dev(0).added, 18 * MiB);
  EXPECT_EQ(ledger_.read_added(0), 18 * MiB);
  EXPECT_EQ(ledger_.read_used(0), 12 * MiB);
  // A rebuild that raises the total (it had been lowered) adds the difference.
  dev(0).used = 2 * MiB;
  ledger_.rebuild_totals();
  EXPECT_EQ(ledger_.read_used(0), 12 * MiB);
  EXPECT_EQ(ledger_.read_added(0), 28 * MiB);
}

TEST(LedgerOnlyGrew, IncreasesAloneAreExplainedAnythingElseIsNot) {
  EXPECT_TRUE(only_grew(100, 1000, 100, 1000));             // nothing happened
  EXPECT_TRUE(only_grew(100, 1000, 150, 1050));             // +50 recorded
  EXPECT_TRUE(only_grew(100, 1000, 170, 1050));             // more than recorded: an overcount
  EXPECT_FALSE(only_grew(100, 1000, 90, 1000));             // a decrease
  EXPECT_FALSE(only_grew(100, 1000, 140, 1050));            // +50 recorded, 10 gone: masked decrease
  EXPECT_FALSE(only_grew(100, 1000, 100, 999));             // `added` went back
  EXPECT_FALSE(only_grew(100, 1000, UINT64_MAX, 1000 + (1ULL << 63U)));  // `added` rewritten
  EXPECT_TRUE(only_grew(100, UINT64_MAX - 10, 150, 39));    // `added` wraps: +50
}

TEST_F(LedgerTest, EveryDecreaseIsVisibleToAProcessThatRemembersTheTotals) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 10 * MiB, std::nullopt).granted);
  const std::uint64_t seen_used = ledger_.read_used(0);
  const std::uint64_t seen_added = ledger_.read_added(0);
  // Others only allocate: explained.
  ASSERT_TRUE(ledger_.reserve(b, 0, 5 * MiB, std::nullopt).granted);
  ledger_.set_overhead(b, 0, 2 * MiB);
  EXPECT_TRUE(only_grew(seen_used, seen_added, ledger_.read_used(0), ledger_.read_added(0)));
  // A free, an edit hidden behind an allocation of the same size, a reap: each is seen.
  ledger_.release(b, 0, MiB);
  EXPECT_FALSE(only_grew(seen_used, seen_added, ledger_.read_used(0), ledger_.read_added(0)));
  const std::uint64_t u2 = ledger_.read_used(0);
  const std::uint64_t a2 = ledger_.read_added(0);
  ASSERT_TRUE(ledger_.reserve(b, 0, 4 * MiB, std::nullopt).granted);
  dev(0).used -= 4 * MiB;
  EXPECT_FALSE(only_grew(u2, a2, ledger_.read_used(0), ledger_.read_added(0)));
  ledger_.rebuild_totals();
  const std::uint64_t u3 = ledger_.read_used(0);
  const std::uint64_t a3 = ledger_.read_added(0);
  live_.kill(2, 1);
  ASSERT_EQ(ledger_.reap_dead(), 1U);
  EXPECT_FALSE(only_grew(u3, a3, ledger_.read_used(0), ledger_.read_added(0)));
}

TEST_F(LedgerTest, ReconcileCountsWhatTheSlotsDoNotHold) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 700 * MiB, std::nullopt).granted);
  ledger_.set_overhead(a, 0, 300 * MiB);
  ASSERT_TRUE(ledger_.reserve(b, 0, 64 * MiB, std::nullopt).granted);
  ledger_.set_overhead(b, 0, 300 * MiB);
  // The driver's view equals the ledger, less b's allocation still in flight (not yet in NVML).
  ObservedProcess honest[] = {{2, 300 * MiB}, {1, 1000 * MiB}};
  Reconciliation rc = ledger_.reconcile(0, honest, 2, true);
  EXPECT_EQ(rc.unrecorded, 0U);
  EXPECT_EQ(rc.without_slot, 0U);
  EXPECT_EQ(honest[0].pid, 1U) << "sorted by pid";
  EXPECT_EQ(honest[0].recorded, 1000 * MiB);
  EXPECT_EQ(honest[1].recorded, 364 * MiB);
  // Process 1's slot and the total zeroed by hand: its driver usage comes back, and b's slot
  // bounds the total from below.
  region_->slots[a].alloc[0] = 0;
  region_->slots[a].overhead[0] = 0;
  dev(0).used = 0;
  rc = ledger_.reconcile(0, honest, 2, true);
  EXPECT_EQ(rc.unrecorded, 1000 * MiB + 364 * MiB);
  // Process 1's slot emptied altogether, and a job process softmig never saw.
  ledger_.rebuild_totals();
  region_->slots[a].pid = 0;
  ObservedProcess more[] = {{3, 50 * MiB}, {1, 1000 * MiB}, {2, 300 * MiB}};
  rc = ledger_.reconcile(0, more, 3, true);
  EXPECT_EQ(rc.without_slot, 2U);
  EXPECT_EQ(ledger_.read_used(0) + rc.unrecorded, 1000 * MiB + 364 * MiB + 50 * MiB);
  // Membership by the ledger (outside SLURM): processes without a slot are not the job's.
  rc = ledger_.reconcile(0, more, 3, false);
  EXPECT_EQ(rc.without_slot, 2U);
  EXPECT_EQ(rc.unrecorded, 0U);
  // Nothing observed: the slots still bound a total that was lowered alone.
  dev(0).used = 10;
  rc = ledger_.reconcile(0, nullptr, 0, true);
  EXPECT_EQ(ledger_.read_used(0) + rc.unrecorded, 364 * MiB);
  EXPECT_EQ(ledger_.reconcile(kNoDevice, more, 3, true).unrecorded, 0U);
}

TEST_F(LedgerTest, ReconcileScalesToAFullTable) {
  // 1024 processes, each observed with 1 MiB more than its slot: found by pid, not by position.
  std::unique_ptr<ObservedProcess[]> seen(new ObservedProcess[kMaxSlots]);
  for (std::uint64_t pid = 1; pid <= kMaxSlots; ++pid) {
    const unsigned s = claim(pid * 7);
    ASSERT_NE(s, kNoSlot);
    ASSERT_TRUE(ledger_.reserve(s, 1, MiB, std::nullopt).granted);
    seen[kMaxSlots - pid] = {pid * 7, 2 * MiB};
  }
  const Reconciliation rc = ledger_.reconcile(1, seen.get(), kMaxSlots, true);
  EXPECT_EQ(rc.without_slot, 0U);
  EXPECT_EQ(rc.unrecorded, kMaxSlots * MiB);
}

TEST_F(LedgerTest, RestorePutsBackWhatTheOwnerHolds) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 100 * MiB, std::nullopt).granted);
  ledger_.set_overhead(a, 0, 30 * MiB);
  ASSERT_TRUE(ledger_.reserve(b, 0, 10 * MiB, std::nullopt).granted);
  EXPECT_FALSE(ledger_.restore(a, 0, 100 * MiB, 30 * MiB));  // nothing to do
  region_->slots[a].alloc[0] = 0;
  dev(0).used = 0;
  const std::uint64_t added = ledger_.read_added(0);
  EXPECT_TRUE(ledger_.restore(a, 0, 100 * MiB, 30 * MiB));
  EXPECT_EQ(ledger_.read_slot_bytes(a, 0), 130 * MiB);
  EXPECT_EQ(ledger_.read_used(0), 140 * MiB);
  EXPECT_EQ(ledger_.read_added(0), added + 140 * MiB);
  EXPECT_TRUE(ledger_.holds(a, 1, 1));
  EXPECT_FALSE(ledger_.holds(a, 1, 2));
  EXPECT_FALSE(ledger_.holds(kNoSlot, 1, 1));
  EXPECT_FALSE(ledger_.restore(kNoSlot, 0, 1, 1));
}

TEST_F(LedgerTest, ReserveWithoutReapingDoesNotAskLiveness) {
  const unsigned a = claim(1);
  const unsigned b = claim(2);
  ASSERT_TRUE(ledger_.reserve(a, 0, 900 * MiB, std::nullopt).granted);
  live_.kill(1, 1);
  EXPECT_FALSE(ledger_.reserve(b, 0, 200 * MiB, GiB, true, /*reap=*/false).granted);
  EXPECT_TRUE(ledger_.read_is_member(1));
  EXPECT_EQ(dev(0).oom_refusals, 1U);
  ledger_.count_refusal(0);
  EXPECT_EQ(dev(0).oom_refusals, 2U);
  EXPECT_TRUE(ledger_.reserve(b, 0, 200 * MiB, GiB).granted);  // reaps
  EXPECT_FALSE(ledger_.read_is_member(1));
}

}  // namespace
}  // namespace softmig::core
