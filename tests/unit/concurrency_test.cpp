// SPDX-License-Identifier: Apache-2.0
// Many "processes" reserving and releasing under one job limit through the real shared ledger
// file: the limit is never passed, and everything reserved comes back. Threads (what the TSan
// preset checks) and forked processes (separate mappings of the file).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "core/ledger.hpp"
#include "platform/shared_region.hpp"
#include "test_support.hpp"

namespace softmig {
namespace {

using core::Ledger;
using core::LedgerRegion;
using platform::SharedRegion;
using test::FakeLiveness;
using test::TempDir;
using LockResult = SharedRegion::LockResult;

constexpr std::uint64_t MiB = 1ULL << 20U;
constexpr std::uint64_t kLimit = 4 * MiB;
constexpr unsigned kDev = 0;
constexpr int kIterations = 2000;

struct Tally {
  std::uint64_t granted = 0;
  std::uint64_t refused = 0;
  std::uint64_t over_limit = 0;       ///< critical sections that saw used > limit
  std::uint64_t inconsistent = 0;     ///< critical sections where used != the slots' sum
  std::uint64_t lock_failures = 0;    ///< lock() that did not return kLocked
  std::uint64_t wrong_used_after = 0; ///< Reservation::used_after that disagreed with the ledger
};

/// One process's work: claim a slot, then reserve / release in separate critical sections.
/// `slots_sum` computes the sum the ledger's total must equal (the caller knows the slots).
template <typename SlotsSum>
Tally work(SharedRegion& region, const FakeLiveness& live, std::uint64_t pid, unsigned& slot_out,
           std::uint64_t seed, SlotsSum&& slots_sum) {
  Tally t;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::uint64_t> size(1, MiB);
  if (region.lock(10000) != LockResult::kLocked) {
    ++t.lock_failures;
    return t;
  }
  Ledger ledger(*region.region(), live);
  const unsigned slot = ledger.claim_slot(pid, 1, 1000);
  slot_out = slot;
  region.unlock();
  if (slot == core::kNoSlot) {
    ++t.lock_failures;
    return t;
  }
  for (int i = 0; i < kIterations; ++i) {
    const std::uint64_t bytes = size(rng);
    if (region.lock(10000) != LockResult::kLocked) {
      ++t.lock_failures;
      continue;
    }
    const core::Reservation r = ledger.reserve(slot, kDev, bytes, kLimit);
    const std::uint64_t used = region.region()->devices[kDev].used;
    if (used > kLimit) ++t.over_limit;
    if (used != slots_sum(ledger)) ++t.inconsistent;
    if (r.used_after != used) ++t.wrong_used_after;
    region.unlock();
    if (!r.granted) {
      ++t.refused;
      continue;
    }
    ++t.granted;
    std::this_thread::yield();  // hold the bytes a moment, so that others compete for them
    if (region.lock(10000) != LockResult::kLocked) {
      ++t.lock_failures;
      continue;
    }
    ledger.release(slot, kDev, bytes);
    if (region.region()->devices[kDev].used > kLimit) ++t.over_limit;
    if (region.region()->devices[kDev].used != slots_sum(ledger)) ++t.inconsistent;
    region.unlock();
  }
  return t;
}

TEST(Concurrency, ThreadsAsProcessesNeverPassTheLimit) {
  constexpr unsigned kThreads = 8;
  TempDir dir;
  SharedRegion region;
  ASSERT_TRUE(region.attach(dir.file("ledger").c_str(), dir.file("lock").c_str(), "threads", true));
  FakeLiveness live;
  live.set_all_alive(true);

  std::vector<unsigned> slots(kThreads, core::kNoSlot);
  std::vector<Tally> tallies(kThreads);
  std::atomic<bool> stop_reader{false};
  std::atomic<std::uint64_t> reader_over{0};
  std::atomic<std::uint64_t> reader_reads{0};
  // The slots the workers hold; filled in before the workers start reserving.
  std::vector<std::atomic<unsigned>> known(kThreads);
  for (auto& k : known) k.store(core::kNoSlot);
  auto sum = [&](const Ledger& l) {
    std::uint64_t s = 0;
    for (auto& k : known) {
      const unsigned slot = k.load();
      if (slot != core::kNoSlot) s += l.read_slot_bytes(slot, kDev);
    }
    return s;
  };

  // A status tool reading without the lock, as the ledger allows.
  std::thread reader([&] {
    const Ledger l(*region.region(), live);
    while (!stop_reader.load()) {
      if (l.read_used(kDev) > kLimit) reader_over.fetch_add(1);
      reader_reads.fetch_add(1);
      std::this_thread::yield();
    }
  });

  // Claim every slot first, so that every critical section can check the full invariant.
  for (unsigned i = 0; i < kThreads; ++i) {
    ASSERT_EQ(region.lock(1000), LockResult::kLocked);
    Ledger l(*region.region(), live);
    known[i].store(l.claim_slot(1000 + i, 1, 1000));
    region.unlock();
    ASSERT_NE(known[i].load(), core::kNoSlot);
  }

  std::vector<std::thread> workers;
  for (unsigned i = 0; i < kThreads; ++i) {
    workers.emplace_back([&, i] { tallies[i] = work(region, live, 1000 + i, slots[i], 42 + i, sum); });
  }
  for (auto& w : workers) w.join();
  stop_reader.store(true);
  reader.join();

  Tally total;
  for (unsigned i = 0; i < kThreads; ++i) {
    EXPECT_EQ(slots[i], known[i].load()) << "a process's second claim must return its slot";
    total.granted += tallies[i].granted;
    total.refused += tallies[i].refused;
    total.over_limit += tallies[i].over_limit;
    total.inconsistent += tallies[i].inconsistent;
    total.lock_failures += tallies[i].lock_failures;
    total.wrong_used_after += tallies[i].wrong_used_after;
  }
  EXPECT_EQ(total.lock_failures, 0U);
  EXPECT_EQ(total.over_limit, 0U);
  EXPECT_EQ(total.inconsistent, 0U);
  EXPECT_EQ(total.wrong_used_after, 0U);
  EXPECT_EQ(total.granted + total.refused, std::uint64_t{kThreads} * kIterations);
  EXPECT_GT(total.granted, 0U);
  EXPECT_EQ(reader_over.load(), 0U);
  EXPECT_GT(reader_reads.load(), 0U);

  const LedgerRegion& r = *region.region();
  EXPECT_EQ(r.devices[kDev].used, 0U);
  EXPECT_LE(r.devices[kDev].peak, kLimit);
  EXPECT_EQ(r.devices[kDev].oom_refusals, total.refused);
  for (unsigned i = 0; i < kThreads; ++i) EXPECT_EQ(r.slots[slots[i]].alloc[kDev], 0U);
  RecordProperty("granted", static_cast<int>(total.granted));
  RecordProperty("refused", static_cast<int>(total.refused));
}

TEST(Concurrency, ForkedProcessesNeverPassTheLimit) {
  constexpr unsigned kChildren = 4;
  TempDir dir;
  const std::string path = dir.file("ledger");
  const std::string lock = dir.file("lock");
  {
    SharedRegion creator;
    ASSERT_TRUE(creator.attach(path.c_str(), lock.c_str(), "procs", true));
  }
  struct Results {
    Tally tally[kChildren];
    unsigned slot[kChildren];
  };
  test::SharedBox<Results> results;

  std::vector<pid_t> pids;
  for (unsigned c = 0; c < kChildren; ++c) {
    pids.push_back(test::spawn([&, c] {
      SharedRegion mine;  // each process maps the file itself
      if (!mine.attach(path.c_str(), lock.c_str(), "procs", true)) return 20;
      FakeLiveness live;
      live.set_all_alive(true);
      const std::uint64_t pid = static_cast<std::uint64_t>(getpid());
      // Other processes' slots are not known here: check the total against the whole table.
      auto full_sum = [&](const Ledger& l) {
        std::uint64_t s = 0;
        for (unsigned i = 0; i < core::kMaxSlots; ++i) {
          if (core::load_u64(mine.region()->slots[i].pid) != 0) s += l.read_slot_bytes(i, kDev);
        }
        return s;
      };
      unsigned slot = core::kNoSlot;
      results->tally[c] = work(mine, live, pid, slot, 1000 + c, full_sum);
      results->slot[c] = slot;
      // Leave normally: give the slot back.
      if (mine.lock(10000) != LockResult::kLocked) return 21;
      Ledger(*mine.region(), live).release_slot(slot);
      mine.unlock();
      return 0;
    }));
  }
  for (const pid_t p : pids) EXPECT_EQ(test::wait_exit(p), 0);

  SharedRegion check;
  ASSERT_TRUE(check.attach(path.c_str(), lock.c_str(), "procs", false));
  const LedgerRegion& r = *check.region();
  Tally total;
  for (unsigned c = 0; c < kChildren; ++c) {
    const Tally& t = results->tally[c];
    EXPECT_EQ(t.lock_failures, 0U) << "child " << c;
    EXPECT_EQ(t.over_limit, 0U) << "child " << c;
    EXPECT_EQ(t.inconsistent, 0U) << "child " << c;
    EXPECT_EQ(t.wrong_used_after, 0U) << "child " << c;
    EXPECT_EQ(t.granted + t.refused, static_cast<std::uint64_t>(kIterations)) << "child " << c;
    total.granted += t.granted;
    total.refused += t.refused;
  }
  EXPECT_GT(total.granted, 0U);
  EXPECT_EQ(r.devices[kDev].used, 0U);
  EXPECT_LE(r.devices[kDev].peak, kLimit);
  EXPECT_GT(r.devices[kDev].peak, 0U);
  EXPECT_EQ(r.devices[kDev].oom_refusals, total.refused);
  for (const auto& s : r.slots) EXPECT_EQ(s.pid, 0U);
  RecordProperty("granted", static_cast<int>(total.granted));
  RecordProperty("refused", static_cast<int>(total.refused));
}

}  // namespace
}  // namespace softmig
