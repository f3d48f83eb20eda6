// SPDX-License-Identifier: Apache-2.0
#include "platform/shared_region.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "platform/log.hpp"

namespace softmig::platform {
namespace {

static_assert(sizeof(pthread_mutex_t) <= sizeof(core::LedgerHeader::lock),
              "the ledger's lock field must hold a pthread mutex");

pthread_mutex_t* mutex_of(core::LedgerRegion* r) noexcept {
  return reinterpret_cast<pthread_mutex_t*>(r->header.lock);
}

void init_mutex(unsigned char* storage, void*) noexcept {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(reinterpret_cast<pthread_mutex_t*>(storage), &attr);
  pthread_mutexattr_destroy(&attr);
}

/// flock with a bounded wait, so a stopped creator cannot hang every later process.
bool flock_bounded(int fd, int timeout_ms) noexcept {
  for (int waited = 0;; waited += 2) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EWOULDBLOCK && errno != EINTR) return false;
    if (waited >= timeout_ms) return false;
    const timespec ts{0, 2'000'000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace

SharedRegion::~SharedRegion() { detach(); }

void SharedRegion::detach() noexcept {
  if (region_ != nullptr) munmap(region_, mapped_);
  region_ = nullptr;
  mapped_ = 0;
  writable_ = false;
}

bool SharedRegion::attach(const char* path, const char* lock_path, std::string_view key,
                          bool create) noexcept {
  detach();
  int lock_fd = -1;
  if (create) {
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock_fd < 0 || !flock_bounded(lock_fd, 5000)) {
      log_error("cannot lock %s: %s", lock_path, std::strerror(errno));
      if (lock_fd >= 0) close(lock_fd);
      return false;
    }
  }
  const int fd = create ? open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)
                        : open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  bool ok = false;
  struct stat st {};
  if (fd < 0) {
    if (create || errno != ENOENT) log_error("cannot open ledger %s: %s", path, std::strerror(errno));
  } else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    log_error("ledger %s is not a regular file; not used", path);
  } else if ((st.st_uid != geteuid() && !(geteuid() == 0 && !create)) || (st.st_mode & 077) != 0) {
    // Only the job's user may use its ledger; root may also read it (softmig status).
    log_error("ledger %s is not private to this user (uid %u, mode %o); not used", path,
              static_cast<unsigned>(st.st_uid), static_cast<unsigned>(st.st_mode & 0777));
  } else {
    auto size = static_cast<std::size_t>(st.st_size);
    if (size == 0 && create && ftruncate(fd, sizeof(core::LedgerRegion)) == 0) size = sizeof(core::LedgerRegion);
    const std::size_t map_len = size < sizeof(core::LedgerRegion) ? size : sizeof(core::LedgerRegion);
    void* p = map_len == 0 ? MAP_FAILED
                           : mmap(nullptr, map_len, create ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      log_error("ledger %s is empty or cannot be mapped (%zu bytes); not used", path, size);
    } else {
      auto* r = static_cast<core::LedgerRegion*>(p);
      core::RegionCheck c = core::check_region(*r, size);
      if (c == core::RegionCheck::kUninitialised && create && size == sizeof(core::LedgerRegion)) {
        core::initialise_region(*r, geteuid(), key, static_cast<std::uint64_t>(std::time(nullptr)), init_mutex, nullptr);
        log_info("created ledger %s", path);
        c = core::RegionCheck::kOk;
      }
      if (c == core::RegionCheck::kOk) {
        region_ = r;
        mapped_ = map_len;
        writable_ = create;
        ok = true;
      } else {
        log_error("ledger %s is %s; not used (GPU memory is refused until it is removed)", path,
                  core::describe(c));
        munmap(p, map_len);
      }
    }
  }
  if (fd >= 0) close(fd);
  if (lock_fd >= 0) close(lock_fd);  // closing releases the flock
  return ok;
}

SharedRegion::LockResult SharedRegion::lock(int timeout_ms) noexcept {
  if (region_ == nullptr || !writable_) return LockResult::kBroken;
  timespec deadline{};
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += static_cast<long>(timeout_ms % 1000) * 1'000'000L;
  if (deadline.tv_nsec >= 1'000'000'000L) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1'000'000'000L;
  }
  int rc = 0;
  do {
    rc = pthread_mutex_timedlock(mutex_of(region_), &deadline);
  } while (rc == EINTR);
  switch (rc) {
    case 0: return LockResult::kLocked;
    case EOWNERDEAD: return LockResult::kRepaired;
    case ETIMEDOUT: return LockResult::kTimeout;
    default: return LockResult::kBroken;
  }
}

void SharedRegion::mark_consistent() noexcept {
  if (region_ != nullptr) {
    pthread_mutex_consistent(mutex_of(region_));
    region_->header.lock_repairs += 1;
  }
}

void SharedRegion::unlock() noexcept {
  if (region_ != nullptr) pthread_mutex_unlock(mutex_of(region_));
}

}  // namespace softmig::platform
