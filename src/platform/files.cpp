// SPDX-License-Identifier: Apache-2.0
#include "platform/files.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

namespace softmig::platform {

long read_file(const char* path, char* buf, std::size_t size, bool no_follow) noexcept {
  if (size == 0) return -1;
  const int fd = open(path, O_RDONLY | O_CLOEXEC | (no_follow ? O_NOFOLLOW : 0));
  if (fd < 0) return -1;
  std::size_t got = 0;
  while (got + 1 < size) {
    const ssize_t n = read(fd, buf + got, size - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  close(fd);
  buf[got] = '\0';
  return static_cast<long>(got);
}

const char* describe(TrustCheck c) noexcept {
  switch (c) {
    case TrustCheck::kOk: return "trusted";
    case TrustCheck::kMissing: return "missing";
    case TrustCheck::kNotRegular: return "not a regular file (or a symbolic link)";
    case TrustCheck::kNotRootOwned: return "not owned by root";
    case TrustCheck::kWritableByOthers: return "writable by group or others";
    case TrustCheck::kUnreadable: return "unreadable";
    case TrustCheck::kTooLarge: return "too large for a configuration file";
  }
  return "unknown";
}

TrustCheck read_root_owned(const char* dir, const char* name, char* buf, std::size_t size,
                           long* bytes) noexcept {
  const int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (dfd < 0) return errno == ENOENT ? TrustCheck::kMissing : TrustCheck::kUnreadable;
  struct stat st {};
  if (fstat(dfd, &st) != 0) {
    close(dfd);
    return TrustCheck::kUnreadable;
  }
  if (st.st_uid != 0) {
    close(dfd);
    return TrustCheck::kNotRootOwned;
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    close(dfd);
    return TrustCheck::kWritableByOthers;
  }
  const int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  const int open_errno = errno;
  close(dfd);
  if (fd < 0) {
    if (open_errno == ENOENT) return TrustCheck::kMissing;
    if (open_errno == ELOOP) return TrustCheck::kNotRegular;
    return TrustCheck::kUnreadable;
  }
  TrustCheck verdict = TrustCheck::kOk;
  if (fstat(fd, &st) != 0) {
    verdict = TrustCheck::kUnreadable;
  } else if (!S_ISREG(st.st_mode)) {
    verdict = TrustCheck::kNotRegular;
  } else if (st.st_uid != 0) {
    verdict = TrustCheck::kNotRootOwned;
  } else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    verdict = TrustCheck::kWritableByOthers;
  } else if (static_cast<std::size_t>(st.st_size) >= size) {
    verdict = TrustCheck::kTooLarge;
  }
  std::size_t got = 0;
  while (verdict == TrustCheck::kOk && got + 1 < size) {
    const ssize_t n = read(fd, buf + got, size - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) verdict = TrustCheck::kUnreadable;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  close(fd);
  buf[got] = '\0';
  if (bytes != nullptr) *bytes = static_cast<long>(got);
  return verdict;
}

bool ensure_private_dir(const char* path) noexcept {
  if (mkdir(path, 0700) != 0 && errno != EEXIST) return false;
  struct stat st {};
  if (lstat(path, &st) != 0) return false;
  return S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

bool usable_dir(const char* path) noexcept {
  struct stat st {};
  if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  if (st.st_uid != geteuid() && st.st_uid != 0) return false;
  if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) == 0) return false;
  return access(path, W_OK | X_OK) == 0;
}

bool scan_dir(int dir_fd, bool (*visit)(const char* name, void* ctx), void* ctx) noexcept {
  const int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool more = true;
  alignas(8) char buf[4096];
  for (long got = 0; more && (got = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0;) {
    for (long off = 0; more && off < got;) {
      struct Entry {  // struct linux_dirent64
        std::uint64_t ino;
        std::int64_t next;
        unsigned short reclen;
        unsigned char type;
        char name[1];
      };
      const auto* e = reinterpret_cast<const Entry*>(buf + off);
      off += e->reclen;
      more = visit(e->name, ctx);
    }
  }
  close(fd);
  return true;
}

}  // namespace softmig::platform
