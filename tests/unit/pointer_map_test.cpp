// SPDX-License-Identifier: Apache-2.0
// The process-local record of what each allocation was charged: every charge made must be
// found again exactly once when the allocation is freed.
#include "platform/pointer_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace softmig::platform {
namespace {

constexpr std::uint64_t kBase = 0x7f0000000000ULL;

TEST(PointerMap, InsertThenTake) {
  PointerMap m;
  EXPECT_EQ(m.size(), 0U);
  ASSERT_TRUE(m.insert(kBase, Charge{4096, 1}));
  EXPECT_EQ(m.size(), 1U);
  Charge c;
  ASSERT_TRUE(m.take(kBase, c));
  EXPECT_EQ(c.bytes, 4096U);
  EXPECT_EQ(c.device, 1);
  EXPECT_EQ(m.size(), 0U);
  EXPECT_FALSE(m.take(kBase, c)) << "a second free of the same pointer must not be refunded twice";
}

TEST(PointerMap, TakeOfAnUnknownKeyFailsAndLeavesOutAlone) {
  PointerMap m;
  Charge c{77, 3};
  EXPECT_FALSE(m.take(kBase, c));  // empty map
  ASSERT_TRUE(m.insert(kBase, Charge{1, 0}));
  EXPECT_FALSE(m.take(kBase + 8, c));
  EXPECT_EQ(c.bytes, 77U);
  EXPECT_EQ(c.device, 3);
  EXPECT_EQ(m.size(), 1U);
}

TEST(PointerMap, InsertOverwrites) {
  PointerMap m;
  ASSERT_TRUE(m.insert(kBase, Charge{100, 0}));
  ASSERT_TRUE(m.insert(kBase, Charge{200, 2}));
  EXPECT_EQ(m.size(), 1U);
  Charge c;
  ASSERT_TRUE(m.take(kBase, c));
  EXPECT_EQ(c.bytes, 200U);
  EXPECT_EQ(c.device, 2);
  EXPECT_FALSE(m.take(kBase, c));
}

TEST(PointerMap, SentinelKeysAreStillRecorded) {
  PointerMap m;
  ASSERT_TRUE(m.insert(0, Charge{10, 0}));
  ASSERT_TRUE(m.insert(~0ULL, Charge{20, 0}));
  Charge c;
  ASSERT_TRUE(m.take(0, c));
  EXPECT_EQ(c.bytes, 10U);
  ASSERT_TRUE(m.take(~0ULL, c));
  EXPECT_EQ(c.bytes, 20U);
}

TEST(PointerMap, GrowsPastItsFirstTable) {
  PointerMap m;
  constexpr std::uint64_t kN = 100000;
  for (std::uint64_t i = 0; i < kN; ++i) {
    ASSERT_TRUE(m.insert(kBase + i * 512, Charge{i + 1, static_cast<int>(i % 8)})) << i;
  }
  EXPECT_EQ(m.size(), kN);
  for (std::uint64_t i = 0; i < kN; ++i) {
    Charge c;
    ASSERT_TRUE(m.take(kBase + i * 512, c)) << i;
    ASSERT_EQ(c.bytes, i + 1) << i;
    ASSERT_EQ(c.device, static_cast<int>(i % 8)) << i;
  }
  EXPECT_EQ(m.size(), 0U);
  Charge c;
  EXPECT_FALSE(m.take(kBase, c));
}

TEST(PointerMap, InterleavedInsertAndTakeKeepEveryCharge) {
  PointerMap m;
  // Keys that collide in the low bits (2 MiB-aligned, as large allocations are).
  for (std::uint64_t round = 0; round < 20; ++round) {
    for (std::uint64_t i = 0; i < 3000; ++i) ASSERT_TRUE(m.insert(kBase + ((round * 3000 + i) << 21U), Charge{i, 0}));
    for (std::uint64_t i = 0; i < 3000; i += 2) {
      Charge c;
      ASSERT_TRUE(m.take(kBase + ((round * 3000 + i) << 21U), c));
      ASSERT_EQ(c.bytes, i);
    }
  }
  EXPECT_EQ(m.size(), 20U * 1500U);
  for (std::uint64_t round = 0; round < 20; ++round) {
    for (std::uint64_t i = 1; i < 3000; i += 2) {
      Charge c;
      ASSERT_TRUE(m.take(kBase + ((round * 3000 + i) << 21U), c));
      ASSERT_EQ(c.bytes, i);
    }
  }
  EXPECT_EQ(m.size(), 0U);
}

TEST(PointerMap, SameKeyReusedManyTimes) {
  PointerMap m;
  for (std::uint64_t i = 0; i < 200000; ++i) {
    ASSERT_TRUE(m.insert(kBase, Charge{i, 0}));
    Charge c;
    ASSERT_TRUE(m.take(kBase, c));
    ASSERT_EQ(c.bytes, i);
  }
  EXPECT_EQ(m.size(), 0U);
}

/// Size of this process's address space, in bytes, from /proc/self/status.
std::uint64_t vm_size() {
  const std::string status = test::slurp("/proc/self/status");
  const auto at = status.find("VmSize:");
  if (at == std::string::npos) return 0;
  return std::strtoull(status.c_str() + at + 7, nullptr, 10) * 1024;
}

// Regression: tombstones count towards the load factor, and grow() once always doubled the
// table. A program allocating and freeing at ever new addresses (one live allocation at a time)
// made it double again and again: after a million allocations the map held one entry in tens
// of MiB, growing for as long as the program ran.
TEST(PointerMap, ChurnAtDistinctAddressesDoesNotGrowWithoutBound) {
  PointerMap m;
  ASSERT_TRUE(m.insert(1, Charge{1, 0}));  // the first table exists
  const std::uint64_t before = vm_size();
  for (std::uint64_t i = 0; i < 1000000; ++i) {
    const std::uint64_t key = kBase + (i << 12U);
    ASSERT_TRUE(m.insert(key, Charge{4096, 0}));
    Charge c;
    ASSERT_TRUE(m.take(key, c));
  }
  const std::uint64_t after = vm_size();
  EXPECT_EQ(m.size(), 1U);
  EXPECT_LT(after - std::min(after, before), 8ULL << 20U)
      << "the map grew by " << ((after - std::min(after, before)) >> 20U) << " MiB while holding one entry";
}

TEST(PointerMap, ResetEmptiesTheMapAndItStillWorks) {
  PointerMap m;
  for (std::uint64_t i = 0; i < 5000; ++i) ASSERT_TRUE(m.insert(kBase + i * 64, Charge{i, 0}));
  m.reset_after_fork();
  EXPECT_EQ(m.size(), 0U);
  Charge c;
  EXPECT_FALSE(m.take(kBase, c));
  EXPECT_FALSE(m.take(kBase + 64 * 4999, c));
  ASSERT_TRUE(m.insert(kBase, Charge{9, 1}));
  ASSERT_TRUE(m.take(kBase, c));
  EXPECT_EQ(c.bytes, 9U);
}

TEST(PointerMap, ResetAfterForkGivesTheChildAnEmptyMap) {
  PointerMap m;
  for (std::uint64_t i = 0; i < 3000; ++i) ASSERT_TRUE(m.insert(kBase + i * 64, Charge{i, 0}));
  const int rc = test::run_in_child([&] {
    m.reset_after_fork();
    if (m.size() != 0) return 1;
    Charge c;
    if (m.take(kBase + 64, c)) return 2;  // the parent's allocations are not the child's
    if (!m.insert(kBase + 64, Charge{5, 0}) || !m.take(kBase + 64, c) || c.bytes != 5) return 3;
    return 0;
  });
  EXPECT_EQ(rc, 0);
  // The parent's map is untouched.
  EXPECT_EQ(m.size(), 3000U);
  Charge c;
  ASSERT_TRUE(m.take(kBase + 64, c));
  EXPECT_EQ(c.bytes, 1U);
}

TEST(PointerMap, ConcurrentThreadsKeepEveryCharge) {
  PointerMap m;
  constexpr unsigned kThreads = 8;
  constexpr std::uint64_t kPer = 20000;
  std::vector<std::uint64_t> refunded(kThreads, 0);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::uint64_t base = kBase + (std::uint64_t{t} << 36U);
      for (std::uint64_t i = 0; i < kPer; ++i) (void)m.insert(base + i * 256, Charge{i + 1, static_cast<int>(t)});
      for (std::uint64_t i = 0; i < kPer; ++i) {
        Charge c;
        if (m.take(base + i * 256, c) && c.device == static_cast<int>(t) && c.bytes == i + 1) refunded[t] += c.bytes;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(m.size(), 0U);
  for (unsigned t = 0; t < kThreads; ++t) EXPECT_EQ(refunded[t], kPer * (kPer + 1) / 2) << "thread " << t;
}

}  // namespace
}  // namespace softmig::platform
