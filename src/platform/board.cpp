// SPDX-License-Identifier: Apache-2.0
#include "platform/board.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "platform/clock.hpp"
#include "platform/files.hpp"
#include "platform/log.hpp"

namespace softmig::platform {
namespace {

bool safe_name(const char* s) noexcept {
  for (; *s != '\0'; ++s) {
    const char c = *s;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool ActivityBoard::open(const char* dir, const char* uuid, const char* job_key) noexcept {
  if (dir == nullptr || dir[0] != '/' || !safe_name(uuid) || !safe_name(job_key)) return false;
  const int dfd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    log_warning("activity board %s: %s; other jobs on the GPU are not visible", dir, std::strerror(errno));
    return false;
  }
  std::snprintf(prefix_, sizeof(prefix_), "%s.", uuid);
  std::snprintf(own_, sizeof(own_), "%s.%s", uuid, job_key);
  // The prolog made the file for this job; outside SLURM the job may create its own.
  int fd = openat(dfd, own_, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) fd = openat(dfd, own_, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  struct stat st{};
  if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
    close(fd);
    fd = -1;
    errno = EINVAL;
  }
  if (fd < 0) {
    log_warning("activity board %s/%s: %s; burst-mode jobs on this GPU cannot see this job",
                dir, own_, std::strerror(errno));
    close(dfd);
    return false;
  }
  fd_ = fd;
  dir_fd_ = dfd;
  stamp();
  return true;
}

void ActivityBoard::stamp() noexcept {
  if (fd_ >= 0) futimens(fd_, nullptr);
}

bool ActivityBoard::others_active(std::int64_t fresh_ns) const noexcept {
  if (dir_fd_ < 0) return false;
  const std::int64_t now_ns = realtime_ns();
  struct Scan {
    const ActivityBoard& board;
    std::int64_t now_ns;
    std::int64_t fresh_ns;
    bool active;
  } scan{*this, now_ns, fresh_ns, false};
  scan_dir(dir_fd_, [](const char* name, void* ctx) {
    auto& q = *static_cast<Scan*>(ctx);
    const ActivityBoard& b = q.board;
    if (std::strncmp(name, b.prefix_, std::strlen(b.prefix_)) != 0 || std::strcmp(name, b.own_) == 0) {
      return true;
    }
    struct stat st{};
    if (fstatat(b.dir_fd_, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return true;
    q.active = q.now_ns - to_ns(st.st_mtim) < q.fresh_ns;
    return !q.active;
  }, &scan);
  return scan.active;
}

}  // namespace softmig::platform
