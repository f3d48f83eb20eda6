// SPDX-License-Identifier: Apache-2.0
// Run-once initialisation used from the first intercepted call of any thread.
#include "platform/once.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace softmig::platform {
namespace {

TEST(Once, RunsExactlyOnceAcrossThreads) {
  Once once;
  std::atomic<int> runs{0};
  std::atomic<int> returned_true{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      if (once.run([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            runs.fetch_add(1);
          })) {
        returned_true.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(returned_true.load(), 8);
  EXPECT_TRUE(once.done());
}

TEST(Once, ReentrantCallReturnsFalseInsteadOfDeadlocking) {
  Once once;
  bool inner_result = true;
  int inner_runs = 0;
  EXPECT_FALSE(once.done());
  EXPECT_TRUE(once.run([&] { inner_result = once.run([&] { ++inner_runs; }); }));
  EXPECT_FALSE(inner_result);
  EXPECT_EQ(inner_runs, 0);
  EXPECT_TRUE(once.done());
  EXPECT_TRUE(once.run([&] { ++inner_runs; }));  // done: nothing runs again
  EXPECT_EQ(inner_runs, 0);
}

// A caller that arrives while another thread runs the function must wait for it and then see
// everything it wrote. Under ThreadSanitizer this also checks that the waiting caller does not
// race with the running one on Once's own bookkeeping: `owner_` is a plain pointer written by the
// runner after its compare-exchange and read by any caller that sees kRunning, with nothing
// ordering the two (src/platform/once.hpp). The callers are started by timing, not by a
// synchronising signal, so that TSan sees the accesses as they happen in the library.
TEST(Once, SrcBug_WaitingCallerDoesNotRaceWithTheRunner) {
  Once once;
  std::atomic<bool> release{false};
  int value = 0;  // written by the runner, read by the waiter after run() returns
  std::thread runner([&] {
    once.run([&] {
      value = 42;
      while (!release.load(std::memory_order_relaxed)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the runner is inside f
  std::thread waiter([&] {
    EXPECT_TRUE(once.run([] { ADD_FAILURE() << "ran twice"; }));
    EXPECT_EQ(value, 42);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the waiter is spinning
  release.store(true, std::memory_order_relaxed);
  runner.join();
  waiter.join();
  EXPECT_TRUE(once.done());
}

}  // namespace
}  // namespace softmig::platform
