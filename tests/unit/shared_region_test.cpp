// SPDX-License-Identifier: Apache-2.0
// The job's ledger file: creation, validation of what is found at the path (never trusting or
// modifying a file that is not a private, valid ledger), and the robust process-shared lock.
#include "platform/shared_region.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <optional>
#include <random>
#include <string>

#include "core/ledger.hpp"
#include "test_support.hpp"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace softmig::platform {
namespace {

using core::LedgerRegion;
using core::RegionCheck;
using test::FakeLiveness;
using test::TempDir;
using LockResult = SharedRegion::LockResult;

/// lock() that tells ThreadSanitizer about a repaired lock: TSan's pthread_mutex_timedlock
/// interceptor records the acquisition only when the call returns 0, not EOWNERDEAD (its
/// pthread_mutex_trylock interceptor handles both), and would report the holder's unlock()
/// as "unlock of an unlocked mutex". Nothing changes outside TSan builds.
LockResult lock_noting_repair(SharedRegion& r, int timeout_ms) {
  const LockResult res = r.lock(timeout_ms);
#if defined(__SANITIZE_THREAD__)
  if (res == LockResult::kRepaired) {
    __tsan_mutex_pre_lock(r.region()->header.lock, __tsan_mutex_try_lock);
    __tsan_mutex_post_lock(r.region()->header.lock, __tsan_mutex_try_lock, 0);
  }
#endif
  return res;
}

class SharedRegionTest : public ::testing::Test {
 protected:
  SharedRegionTest() : path_(dir_.file("cudevshr.cache.4242")), lock_(dir_.file("lock.4242")) {}

  bool attach(SharedRegion& r, bool create) { return r.attach(path_.c_str(), lock_.c_str(), "4242", create); }

  /// Creates a valid ledger at path_ and detaches.
  void make_valid() {
    SharedRegion r;
    ASSERT_TRUE(attach(r, true));
  }

  /// Asserts that neither kind of attachment accepts what is at path_ and that it is unchanged.
  void expect_refused_untouched() {
    const std::string before = test::slurp(path_);
    struct stat st_before {};
    ASSERT_EQ(lstat(path_.c_str(), &st_before), 0);
    for (const bool create : {true, false}) {
      SharedRegion r;
      EXPECT_FALSE(attach(r, create)) << (create ? "create" : "read-only");
      EXPECT_EQ(r.region(), nullptr);
      EXPECT_FALSE(r.writable());
      EXPECT_EQ(r.lock(100), LockResult::kBroken);
    }
    struct stat st_after {};
    ASSERT_EQ(lstat(path_.c_str(), &st_after), 0);
    EXPECT_EQ(st_after.st_size, st_before.st_size);
    EXPECT_EQ(st_after.st_mode, st_before.st_mode);
    EXPECT_EQ(st_after.st_uid, st_before.st_uid);
    EXPECT_TRUE(test::slurp(path_) == before) << "a refused file was modified";
  }

  TempDir dir_;
  std::string path_;
  std::string lock_;
};

TEST_F(SharedRegionTest, CreateMakesAPrivateValidLedger) {
  const mode_t old_mask = umask(0);  // even with a permissive umask
  SharedRegion r;
  const bool ok = attach(r, true);
  umask(old_mask);
  ASSERT_TRUE(ok);
  ASSERT_NE(r.region(), nullptr);
  EXPECT_TRUE(r.writable());

  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600U);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), sizeof(LedgerRegion));

  struct stat lst {};
  ASSERT_EQ(lstat(lock_.c_str(), &lst), 0);
  EXPECT_TRUE(S_ISREG(lst.st_mode));
  EXPECT_EQ(lst.st_mode & 07777, 0600U);

  const LedgerRegion& reg = *r.region();
  EXPECT_EQ(core::check_region(reg, sizeof(LedgerRegion)), RegionCheck::kOk);
  EXPECT_EQ(reg.header.owner_uid, geteuid());
  EXPECT_STREQ(reg.header.job_id, "4242");
  const auto now = static_cast<std::uint64_t>(std::time(nullptr));
  EXPECT_LE(reg.header.created_unix, now);
  EXPECT_GE(reg.header.created_unix + 60, now);
  EXPECT_EQ(reg.header.lock_repairs, 0U);
  for (const auto& d : reg.devices) EXPECT_EQ(d.used, 0U);
}

TEST_F(SharedRegionTest, SecondAttachmentSeesTheSameLedger) {
  SharedRegion a;
  ASSERT_TRUE(attach(a, true));
  const std::uint64_t created = a.region()->header.created_unix;
  FakeLiveness live;
  live.set_all_alive(true);
  {
    ASSERT_EQ(a.lock(1000), LockResult::kLocked);
    core::Ledger l(*a.region(), live);
    const unsigned s = l.claim_slot(10, 1, 0);
    ASSERT_TRUE(l.reserve(s, 0, 12345, std::nullopt).granted);
    a.unlock();
  }
  SharedRegion b;
  ASSERT_TRUE(attach(b, true));
  EXPECT_NE(b.region(), a.region());  // another mapping ...
  EXPECT_EQ(b.region()->header.created_unix, created);  // ... of the same, not re-initialised, file
  EXPECT_EQ(b.region()->devices[0].used, 12345U);

  SharedRegion ro;
  ASSERT_TRUE(attach(ro, false));
  EXPECT_FALSE(ro.writable());
  EXPECT_EQ(ro.region()->devices[0].used, 12345U);

  {
    ASSERT_EQ(b.lock(1000), LockResult::kLocked);
    core::Ledger l(*b.region(), live);
    const unsigned s = l.claim_slot(10, 1, 0);
    l.release(s, 0, 345);
    b.unlock();
  }
  EXPECT_EQ(core::load_u64(a.region()->devices[0].used), 12000U);
  EXPECT_EQ(core::load_u64(ro.region()->devices[0].used), 12000U);
}

TEST_F(SharedRegionTest, ReadOnlyAttachmentCannotLock) {
  make_valid();
  SharedRegion ro;
  ASSERT_TRUE(attach(ro, false));
  EXPECT_FALSE(ro.writable());
  EXPECT_EQ(ro.lock(100), LockResult::kBroken);
}

TEST_F(SharedRegionTest, ReadOnlyAttachOfMissingFileFailsAndCreatesNothing) {
  SharedRegion r;
  EXPECT_FALSE(attach(r, false));
  EXPECT_EQ(r.region(), nullptr);
  EXPECT_FALSE(test::exists(path_));
  EXPECT_FALSE(test::exists(lock_));
}

TEST_F(SharedRegionTest, CreateInAMissingDirectoryFails) {
  SharedRegion r;
  const std::string p = dir_.file("no/such/dir/ledger");
  EXPECT_FALSE(r.attach(p.c_str(), lock_.c_str(), "4242", true));
  EXPECT_EQ(r.region(), nullptr);
}

TEST_F(SharedRegionTest, RandomBytesOfTheRightSizeAreRefused) {
  std::string junk(sizeof(LedgerRegion), '\0');
  std::mt19937 rng(7);
  for (char& c : junk) c = static_cast<char>(rng() & 0xffU);
  ASSERT_TRUE(test::write_file(path_, junk));
  expect_refused_untouched();
}

TEST_F(SharedRegionTest, TruncatedFileIsRefused) {
  ASSERT_TRUE(test::write_file(path_, std::string(100, 'x')));
  expect_refused_untouched();
}

TEST_F(SharedRegionTest, TruncatedValidLedgerIsRefused) {
  make_valid();
  ASSERT_EQ(truncate(path_.c_str(), 4096), 0);
  expect_refused_untouched();
}

TEST_F(SharedRegionTest, ZeroFilledFileOfTheWrongSizeIsRefusedNotExtended) {
  ASSERT_TRUE(test::write_file(path_, std::string(4096, '\0')));
  expect_refused_untouched();
}

TEST_F(SharedRegionTest, OversizedLedgerIsRefused) {
  make_valid();
  ASSERT_EQ(truncate(path_.c_str(), static_cast<off_t>(sizeof(LedgerRegion) + 4096)), 0);
  expect_refused_untouched();
}

TEST_F(SharedRegionTest, WrongVersionIsRefused) {
  make_valid();
  const int fd = open(path_.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::uint32_t v = core::kLedgerVersion + 1;
  ASSERT_EQ(pwrite(fd, &v, sizeof(v), offsetof(core::LedgerHeader, version)), static_cast<ssize_t>(sizeof(v)));
  close(fd);
  expect_refused_untouched();
}

TEST_F(SharedRegionTest, ForeignMagicIsRefused) {
  make_valid();
  const int fd = open(path_.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "NOTMINE!", 8, 0), 8);
  close(fd);
  expect_refused_untouched();
}

TEST_F(SharedRegionTest, ZeroFilledFileOfTheRightSizeIsInitialisedOnlyByACreator) {
  // What a creator that died between ftruncate and initialisation leaves behind.
  ASSERT_TRUE(test::write_file(path_, std::string(sizeof(LedgerRegion), '\0')));
  SharedRegion ro;
  EXPECT_FALSE(attach(ro, false));
  SharedRegion rw;
  ASSERT_TRUE(attach(rw, true));
  EXPECT_EQ(core::check_region(*rw.region(), sizeof(LedgerRegion)), RegionCheck::kOk);
}

TEST_F(SharedRegionTest, EmptyFileIsInitialisedOnlyByACreator) {
  ASSERT_TRUE(test::write_file(path_, ""));
  SharedRegion ro;
  EXPECT_FALSE(attach(ro, false));
  SharedRegion rw;
  ASSERT_TRUE(attach(rw, true));
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), sizeof(LedgerRegion));
}

TEST_F(SharedRegionTest, FileReadableByOthersIsRefused) {
  make_valid();
  for (const mode_t mode : {0644, 0640, 0604, 0660, 0602}) {
    ASSERT_EQ(chmod(path_.c_str(), mode), 0);
    expect_refused_untouched();
  }
}

TEST_F(SharedRegionTest, FileOfAnotherUserIsNeverWrittenButRootMayReadIt) {
  make_valid();
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  ASSERT_EQ(chown(path_.c_str(), 65534, 65534), 0);
  const std::string before = test::slurp(path_);
  {
    SharedRegion r;
    EXPECT_FALSE(attach(r, /*create=*/true));  // never joined as a writer
    EXPECT_EQ(r.region(), nullptr);
  }
  {
    SharedRegion r;  // softmig status, as root, reads every job's ledger
    EXPECT_TRUE(attach(r, /*create=*/false));
    EXPECT_NE(r.region(), nullptr);
    EXPECT_FALSE(r.writable());
    EXPECT_EQ(r.lock(100), LockResult::kBroken);
  }
  EXPECT_TRUE(test::slurp(path_) == before);
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534U);
}

TEST_F(SharedRegionTest, SymlinkIsRefusedAndItsTargetUntouched) {
  const std::string target = dir_.file("real-ledger");
  {
    SharedRegion r;
    ASSERT_TRUE(r.attach(target.c_str(), lock_.c_str(), "4242", true));
  }
  const std::string before = test::slurp(target);
  ASSERT_EQ(symlink(target.c_str(), path_.c_str()), 0);
  for (const bool create : {true, false}) {
    SharedRegion r;
    EXPECT_FALSE(attach(r, create));
  }
  struct stat st {};
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_TRUE(test::slurp(target) == before);
}

TEST_F(SharedRegionTest, DanglingSymlinkIsNotFollowedToCreateAFile) {
  const std::string target = dir_.file("elsewhere");
  ASSERT_EQ(symlink(target.c_str(), path_.c_str()), 0);
  SharedRegion r;
  EXPECT_FALSE(attach(r, true));
  EXPECT_FALSE(test::exists(target));
}

TEST_F(SharedRegionTest, DirectoryIsRefused) {
  ASSERT_EQ(mkdir(path_.c_str(), 0700), 0);
  for (const bool create : {true, false}) {
    SharedRegion r;
    EXPECT_FALSE(attach(r, create));
  }
}

TEST_F(SharedRegionTest, FifoIsRefused) {
  ASSERT_EQ(mkfifo(path_.c_str(), 0600), 0);
  SharedRegion r;
  EXPECT_FALSE(attach(r, true));
}

TEST_F(SharedRegionTest, SymlinkedLockFileIsRefused) {
  const std::string target = dir_.file("lock-target");
  ASSERT_EQ(symlink(target.c_str(), lock_.c_str()), 0);
  SharedRegion r;
  EXPECT_FALSE(attach(r, true));
  EXPECT_FALSE(test::exists(target));
  EXPECT_FALSE(test::exists(path_)) << "the ledger must not be created without the creation lock";
}

TEST_F(SharedRegionTest, DetachForgetsTheMapping) {
  SharedRegion r;
  ASSERT_TRUE(attach(r, true));
  r.detach();
  EXPECT_EQ(r.region(), nullptr);
  EXPECT_FALSE(r.writable());
  EXPECT_EQ(r.lock(10), LockResult::kBroken);
  r.unlock();           // harmless
  r.mark_consistent();  // harmless
  r.detach();           // twice is fine
  ASSERT_TRUE(attach(r, true));  // and it can attach again
  EXPECT_NE(r.region(), nullptr);
}

TEST_F(SharedRegionTest, LockAndUnlock) {
  SharedRegion r;
  ASSERT_TRUE(attach(r, true));
  ASSERT_EQ(r.lock(1000), LockResult::kLocked);
  r.unlock();
  ASSERT_EQ(r.lock(1000), LockResult::kLocked);
  r.unlock();
  EXPECT_EQ(r.region()->header.lock_repairs, 0U);
}

TEST_F(SharedRegionTest, LockExcludesAnotherProcess) {
  SharedRegion r;
  ASSERT_TRUE(attach(r, true));
  ASSERT_EQ(r.lock(1000), LockResult::kLocked);
  const int held = test::run_in_child([&] {
    SharedRegion other;
    if (!attach(other, true)) return 10;
    return other.lock(100) == LockResult::kTimeout ? 0 : 11;
  });
  EXPECT_EQ(held, 0) << "another process got the lock while it was held";
  r.unlock();
  const int free_rc = test::run_in_child([&] {
    SharedRegion other;
    if (!attach(other, true)) return 10;
    if (other.lock(1000) != LockResult::kLocked) return 11;
    other.unlock();
    return 0;
  });
  EXPECT_EQ(free_rc, 0);
}

TEST_F(SharedRegionTest, HolderDyingIsRepairedByTheNextLocker) {
  SharedRegion r;
  ASSERT_TRUE(attach(r, true));
  FakeLiveness live;
  live.set_all_alive(true);
  {
    ASSERT_EQ(r.lock(1000), LockResult::kLocked);
    core::Ledger l(*r.region(), live);
    const unsigned s = l.claim_slot(7, 1, 0);
    ASSERT_TRUE(l.reserve(s, 0, 1000, std::nullopt).granted);
    r.unlock();
  }
  const int rc = test::run_in_child([&] {
    SharedRegion other;
    if (!attach(other, true)) return 10;
    if (other.lock(1000) != LockResult::kLocked) return 11;
    other.region()->devices[0].used = 987654;  // half-way through an update ...
    _exit(0);                                  // ... and gone, without unlocking
  });
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(lock_noting_repair(r, 1000), LockResult::kRepaired);
  core::Ledger l(*r.region(), live);
  l.rebuild_totals();
  EXPECT_EQ(l.read_used(0), 1000U);
  r.mark_consistent();
  EXPECT_EQ(r.region()->header.lock_repairs, 1U);
  r.unlock();
  EXPECT_EQ(r.lock(1000), LockResult::kLocked);
  r.unlock();
  EXPECT_EQ(r.lock(1000), LockResult::kLocked);
  r.unlock();
}

TEST_F(SharedRegionTest, RepairNotMarkedConsistentLeavesTheLockBroken) {
  SharedRegion r;
  ASSERT_TRUE(attach(r, true));
  ASSERT_EQ(test::run_in_child([&] {
              SharedRegion other;
              if (!attach(other, true) || other.lock(1000) != LockResult::kLocked) return 10;
              _exit(0);
            }),
            0);
  ASSERT_EQ(lock_noting_repair(r, 1000), LockResult::kRepaired);
  r.unlock();  // without mark_consistent()
  EXPECT_EQ(r.lock(100), LockResult::kBroken) << "an unrepaired lock must be reported, never hang or succeed";
}

TEST_F(SharedRegionTest, LockTimesOutWhileAnotherProcessHoldsIt) {
  SharedRegion r;
  ASSERT_TRUE(attach(r, true));
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = test::spawn([&] {
    close(ready[0]);
    SharedRegion other;
    if (!attach(other, true) || other.lock(1000) != LockResult::kLocked) return 10;
    (void)!write(ready[1], "k", 1);
    sleep(2);  // a stopped or slow holder
    other.unlock();
    return 0;
  });
  ASSERT_GT(child, 0);
  close(ready[1]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1) << "the child could not take the lock";
  close(ready[0]);

  const auto t0 = std::chrono::steady_clock::now();
  const LockResult res = r.lock(100);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  kill(child, SIGKILL);
  test::wait_exit(child);
  EXPECT_EQ(res, LockResult::kTimeout);
  EXPECT_GE(ms, 90);
  EXPECT_LE(ms, 500);
  // The killed holder leaves the lock to be repaired.
  ASSERT_EQ(lock_noting_repair(r, 1000), LockResult::kRepaired);
  r.mark_consistent();
  r.unlock();
  EXPECT_EQ(r.lock(1000), LockResult::kLocked);
  r.unlock();
}

TEST_F(SharedRegionTest, LongerTimeoutsAreHonoured) {
  SharedRegion r;
  ASSERT_TRUE(attach(r, true));
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = test::spawn([&] {
    close(ready[0]);
    SharedRegion other;
    if (!attach(other, true) || other.lock(1000) != LockResult::kLocked) return 10;
    (void)!write(ready[1], "k", 1);
    sleep(3);
    other.unlock();
    return 0;
  });
  close(ready[1]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  const auto t0 = std::chrono::steady_clock::now();
  const LockResult res = r.lock(1250);  // seconds and milliseconds both count
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  kill(child, SIGKILL);
  test::wait_exit(child);
  EXPECT_EQ(res, LockResult::kTimeout);
  EXPECT_GE(ms, 1200);
  EXPECT_LE(ms, 2000);
  if (lock_noting_repair(r, 1000) == LockResult::kRepaired) r.mark_consistent();
  r.unlock();
}

}  // namespace
}  // namespace softmig::platform
