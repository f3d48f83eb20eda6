// SPDX-License-Identifier: Apache-2.0
// Which files and directories softmig trusts: root-owned configuration, private state.
#include "platform/files.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include "test_support.hpp"

namespace softmig::platform {
namespace {

using test::TempDir;

// ---------------------------------------------------------------------------------------------
// read_file

TEST(ReadFile, ReadsAndTerminates) {
  TempDir d;
  ASSERT_TRUE(test::write_file(d.file("f"), "hello\n"));
  char buf[64];
  std::memset(buf, 'x', sizeof(buf));
  EXPECT_EQ(read_file(d.file("f").c_str(), buf, sizeof(buf)), 6);
  EXPECT_STREQ(buf, "hello\n");
}

TEST(ReadFile, TruncatesToTheBuffer) {
  TempDir d;
  ASSERT_TRUE(test::write_file(d.file("f"), "hello world"));
  char buf[4];
  EXPECT_EQ(read_file(d.file("f").c_str(), buf, sizeof(buf)), 3);
  EXPECT_STREQ(buf, "hel");
  char one[1] = {'x'};
  EXPECT_EQ(read_file(d.file("f").c_str(), one, 1), 0);
  EXPECT_EQ(one[0], '\0');
  EXPECT_EQ(read_file(d.file("f").c_str(), one, 0), -1);
}

TEST(ReadFile, MissingFile) {
  TempDir d;
  char buf[8];
  errno = 0;
  EXPECT_EQ(read_file(d.file("nope").c_str(), buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST(ReadFile, SymlinkRefusedOnlyWhenAsked) {
  TempDir d;
  ASSERT_TRUE(test::write_file(d.file("target"), "data"));
  ASSERT_EQ(symlink(d.file("target").c_str(), d.file("link").c_str()), 0);
  char buf[16];
  EXPECT_EQ(read_file(d.file("link").c_str(), buf, sizeof(buf), false), 4);
  EXPECT_EQ(read_file(d.file("link").c_str(), buf, sizeof(buf), true), -1);
}

TEST(ReadFile, ProcFilesWithZeroSizeAreRead) {
  char buf[4096];
  EXPECT_GT(read_file("/proc/self/stat", buf, sizeof(buf)), 0);
  EXPECT_NE(std::strchr(buf, ')'), nullptr);
}

// ---------------------------------------------------------------------------------------------
// read_root_owned: the job file an administrator writes

class RootOwned : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the files must be owned by root";
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  }
  TrustCheck read(const std::string& name, std::size_t size = 256) {
    buf_.assign(size, '\0');
    bytes_ = -7;
    return read_root_owned(dir_.path().c_str(), name.c_str(), buf_.data(), size, &bytes_);
  }
  TempDir dir_;
  std::string buf_;
  long bytes_ = 0;
};

TEST_F(RootOwned, RootOwnedFileIsTrusted) {
  ASSERT_TRUE(test::write_file(dir_.file("4242.conf"), "CUDA_DEVICE_MEMORY_LIMIT=4G\n", 0644));
  EXPECT_EQ(read("4242.conf"), TrustCheck::kOk);
  EXPECT_EQ(bytes_, 28);
  EXPECT_STREQ(buf_.c_str(), "CUDA_DEVICE_MEMORY_LIMIT=4G\n");
  ASSERT_EQ(chmod(dir_.file("4242.conf").c_str(), 0600), 0);
  EXPECT_EQ(read("4242.conf"), TrustCheck::kOk);
  ASSERT_EQ(chmod(dir_.file("4242.conf").c_str(), 0400), 0);
  EXPECT_EQ(read("4242.conf"), TrustCheck::kOk);
}

TEST_F(RootOwned, MissingFileOrDirectory) {
  EXPECT_EQ(read("4242.conf"), TrustCheck::kMissing);
  long n = 0;
  char b[8];
  EXPECT_EQ(read_root_owned(dir_.file("nodir").c_str(), "4242.conf", b, sizeof(b), &n), TrustCheck::kMissing);
}

TEST_F(RootOwned, FileWritableByOthersIsRejected) {
  for (const mode_t mode : {0664, 0646, 0666, 0620, 0602}) {
    ASSERT_TRUE(test::write_file(dir_.file("4242.conf"), "CUDA_DEVICE_MEMORY_LIMIT=4G\n", mode));
    EXPECT_EQ(read("4242.conf"), TrustCheck::kWritableByOthers) << std::oct << mode;
    EXPECT_EQ(bytes_, 0) << "nothing of an untrusted file may be handed out";
  }
}

TEST_F(RootOwned, DirectoryWritableByOthersIsRejected) {
  ASSERT_TRUE(test::write_file(dir_.file("4242.conf"), "x=1\n", 0644));
  for (const mode_t mode : {0775, 0757, 01777, 0770}) {
    ASSERT_EQ(chmod(dir_.path().c_str(), mode), 0);
    EXPECT_EQ(read("4242.conf"), TrustCheck::kWritableByOthers) << std::oct << mode;
  }
}

TEST_F(RootOwned, FileOrDirectoryOfAnotherUserIsRejected) {
  ASSERT_TRUE(test::write_file(dir_.file("4242.conf"), "x=1\n", 0644));
  ASSERT_EQ(chown(dir_.file("4242.conf").c_str(), 1000, 1000), 0);
  EXPECT_EQ(read("4242.conf"), TrustCheck::kNotRootOwned);
  EXPECT_EQ(bytes_, 0);
  ASSERT_EQ(chown(dir_.file("4242.conf").c_str(), 0, 0), 0);
  ASSERT_EQ(chown(dir_.path().c_str(), 1000, 1000), 0);
  EXPECT_EQ(read("4242.conf"), TrustCheck::kNotRootOwned);
}

TEST_F(RootOwned, SymlinkIsRejected) {
  ASSERT_TRUE(test::write_file(dir_.file("real.conf"), "x=1\n", 0644));
  ASSERT_EQ(symlink(dir_.file("real.conf").c_str(), dir_.file("4242.conf").c_str()), 0);
  EXPECT_EQ(read("4242.conf"), TrustCheck::kNotRegular);
}

TEST_F(RootOwned, SymlinkedDirectoryIsRejected) {
  TempDir other;
  ASSERT_EQ(chmod(other.path().c_str(), 0755), 0);
  ASSERT_TRUE(test::write_file(other.file("4242.conf"), "x=1\n", 0644));
  ASSERT_EQ(symlink(other.path().c_str(), dir_.file("cfg").c_str()), 0);
  char b[64];
  long n = 0;
  EXPECT_NE(read_root_owned(dir_.file("cfg").c_str(), "4242.conf", b, sizeof(b), &n), TrustCheck::kOk);
}

TEST_F(RootOwned, FifoAndDirectoryAreNotRegular) {
  ASSERT_EQ(mkfifo(dir_.file("4242.conf").c_str(), 0644), 0);
  EXPECT_EQ(read("4242.conf"), TrustCheck::kNotRegular);  // and does not block
  ASSERT_EQ(mkdir(dir_.file("4243.conf").c_str(), 0755), 0);
  EXPECT_EQ(read("4243.conf"), TrustCheck::kNotRegular);
}

TEST_F(RootOwned, FileTooLargeForTheBuffer) {
  ASSERT_TRUE(test::write_file(dir_.file("4242.conf"), std::string(64, 'a'), 0644));
  EXPECT_EQ(read("4242.conf", 64), TrustCheck::kTooLarge);
  EXPECT_EQ(bytes_, 0);
  EXPECT_EQ(read("4242.conf", 65), TrustCheck::kOk);
  EXPECT_EQ(bytes_, 64);
}

TEST(TrustCheck, DescriptionsAreDistinct) {
  std::set<std::string> seen;
  for (const TrustCheck c : {TrustCheck::kOk, TrustCheck::kMissing, TrustCheck::kNotRegular, TrustCheck::kNotRootOwned,
                             TrustCheck::kWritableByOthers, TrustCheck::kUnreadable, TrustCheck::kTooLarge}) {
    EXPECT_TRUE(seen.insert(describe(c)).second) << describe(c);
  }
}

// ---------------------------------------------------------------------------------------------
// ensure_private_dir / usable_dir: where the ledger and its lock live

TEST(EnsurePrivateDir, CreatesAPrivateDirectory) {
  TempDir d;
  const std::string p = d.file("state");
  const mode_t old = umask(0);
  const bool ok = ensure_private_dir(p.c_str());
  umask(old);
  ASSERT_TRUE(ok);
  struct stat st {};
  ASSERT_EQ(lstat(p.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700U);
  EXPECT_TRUE(ensure_private_dir(p.c_str())) << "an existing private directory is fine";
}

TEST(EnsurePrivateDir, RejectsDirectoriesOthersCanWrite) {
  TempDir d;
  const std::string p = d.file("state");
  ASSERT_EQ(mkdir(p.c_str(), 0700), 0);
  for (const mode_t mode : {0777, 0770, 0702, 01777}) {
    ASSERT_EQ(chmod(p.c_str(), mode), 0);
    EXPECT_FALSE(ensure_private_dir(p.c_str())) << std::oct << mode;
  }
  ASSERT_EQ(chmod(p.c_str(), 0755), 0);
  EXPECT_TRUE(ensure_private_dir(p.c_str()));
}

TEST(EnsurePrivateDir, RejectsSymlinksFilesAndMissingParents) {
  TempDir d;
  ASSERT_EQ(mkdir(d.file("real").c_str(), 0700), 0);
  ASSERT_EQ(symlink(d.file("real").c_str(), d.file("link").c_str()), 0);
  EXPECT_FALSE(ensure_private_dir(d.file("link").c_str()));
  ASSERT_TRUE(test::write_file(d.file("file"), "x"));
  EXPECT_FALSE(ensure_private_dir(d.file("file").c_str()));
  EXPECT_FALSE(ensure_private_dir(d.file("no/such/parent").c_str()));
}

TEST(EnsurePrivateDir, RejectsAnotherUsersDirectory) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the directory away";
  TempDir d;
  ASSERT_EQ(mkdir(d.file("theirs").c_str(), 0700), 0);
  ASSERT_EQ(chown(d.file("theirs").c_str(), 65534, 65534), 0);
  EXPECT_FALSE(ensure_private_dir(d.file("theirs").c_str()));
}

TEST(UsableDir, Forms) {
  TempDir d;
  EXPECT_TRUE(usable_dir(d.path().c_str()));
  ASSERT_EQ(chmod(d.path().c_str(), 0777), 0);
  EXPECT_FALSE(usable_dir(d.path().c_str())) << "world-writable without the sticky bit";
  ASSERT_EQ(chmod(d.path().c_str(), 01777), 0);
  EXPECT_TRUE(usable_dir(d.path().c_str())) << "world-writable with the sticky bit, like /tmp";
  ASSERT_EQ(chmod(d.path().c_str(), 0700), 0);
  ASSERT_EQ(mkdir(d.file("real").c_str(), 0700), 0);
  ASSERT_EQ(symlink(d.file("real").c_str(), d.file("link").c_str()), 0);
  EXPECT_FALSE(usable_dir(d.file("link").c_str()));
  EXPECT_FALSE(usable_dir(d.file("missing").c_str()));
  ASSERT_TRUE(test::write_file(d.file("file"), "x"));
  EXPECT_FALSE(usable_dir(d.file("file").c_str()));
  EXPECT_FALSE(usable_dir(""));
}

TEST(UsableDir, AnotherUsersDirectoryIsNotUsable) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the directory away";
  TempDir d;
  ASSERT_EQ(mkdir(d.file("theirs").c_str(), 0755), 0);
  ASSERT_EQ(chown(d.file("theirs").c_str(), 65534, 65534), 0);
  EXPECT_FALSE(usable_dir(d.file("theirs").c_str()));
}

}  // namespace
}  // namespace softmig::platform
