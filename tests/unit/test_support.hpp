// SPDX-License-Identifier: Apache-2.0
/// @file test_support.hpp
/// @brief Helpers shared by the unit tests: private temporary directories, a controllable
///        Liveness, child processes that report back through shared memory, and small file I/O.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "core/ledger.hpp"

namespace softmig::test {

/// A fresh directory under /tmp (mkdtemp, mode 0700), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/softmig-unit-XXXXXX";
    const char* p = mkdtemp(tmpl);
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

/// Liveness answered from a set the test controls: (pid, start_time) pairs are alive once
/// added and until killed; set_all_alive(true) answers "alive" for everything.
class FakeLiveness final : public core::Liveness {
 public:
  [[nodiscard]] bool alive(std::uint64_t pid, std::uint64_t start_time) const noexcept override {
    const std::lock_guard<std::mutex> g(mu_);
    ++queries_;
    return all_alive_ || live_.count({pid, start_time}) != 0;
  }
  void add(std::uint64_t pid, std::uint64_t start_time) {
    const std::lock_guard<std::mutex> g(mu_);
    live_.insert({pid, start_time});
  }
  void kill(std::uint64_t pid, std::uint64_t start_time) {
    const std::lock_guard<std::mutex> g(mu_);
    live_.erase({pid, start_time});
  }
  void set_all_alive(bool v) {
    const std::lock_guard<std::mutex> g(mu_);
    all_alive_ = v;
  }
  [[nodiscard]] std::uint64_t queries() const {
    const std::lock_guard<std::mutex> g(mu_);
    return queries_;
  }

 private:
  mutable std::mutex mu_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> live_;
  bool all_alive_ = false;
  mutable std::uint64_t queries_ = 0;
};

/// One T in anonymous shared memory: a forked child writes it, the parent reads it after
/// waiting for the child.
template <typename T>
class SharedBox {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  SharedBox() {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    ptr_ = new (p) T();
  }
  ~SharedBox() { munmap(ptr_, sizeof(T)); }
  SharedBox(const SharedBox&) = delete;
  SharedBox& operator=(const SharedBox&) = delete;
  T& operator*() const { return *ptr_; }
  T* operator->() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

/// Forks; the child runs `fn` (which returns an exit code) and _exits. Returns the child's pid.
template <typename F>
pid_t spawn(F&& fn) {
  std::fflush(nullptr);  // nothing buffered is written twice
  const pid_t pid = fork();
  if (pid == 0) {
    int rc = 99;
    rc = std::forward<F>(fn)();
    _exit(rc);
  }
  return pid;
}

/// Waits for `pid`; returns its exit code, or 128 + signal if it was killed, or -1.
inline int wait_exit(pid_t pid) {
  int status = 0;
  pid_t r = 0;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/// Runs `fn` in a child process and returns its exit code.
template <typename F>
int run_in_child(F&& fn) {
  return wait_exit(spawn(std::forward<F>(fn)));
}

inline bool write_file(const std::string& path, std::string_view data, mode_t mode = 0600) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      close(fd);
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  fchmod(fd, mode);  // not subject to the umask
  return close(fd) == 0;
}

/// The whole file, or "<missing>" if it cannot be opened (without following a final symlink).
inline std::string slurp(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return "<missing>";
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

inline bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace softmig::test
