// SPDX-License-Identifier: Apache-2.0
#include "tool/slurm_system.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "abi/nvml_types.hpp"
#include "core/job.hpp"

namespace softmig::tool::slurm {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const { return fd_; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

Fd open_dir(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) throw SystemError(fmt::format("cannot open directory {}: {}", path, errno_text(errno)));
  return fd;
}

/// Removes everything inside the directory `dfd` (consumed), without following links.
void empty_directory(int dfd) {
  DIR* d = ::fdopendir(dfd);
  if (d == nullptr) {
    ::close(dfd);
    return;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const int child = ::openat(::dirfd(d), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (child >= 0) {
      empty_directory(child);
      ::unlinkat(::dirfd(d), name.c_str(), AT_REMOVEDIR);
    } else {
      ::unlinkat(::dirfd(d), name.c_str(), 0);
    }
  }
  ::closedir(d);
}

void read_all(int fd, std::string& out) {
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0 && out.size() < (1U << 20U)) out.append(buf, static_cast<std::size_t>(n));
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                          int timeout_seconds) {
  CommandResult result;
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    result.errors = "not an absolute path";
    return result;
  }
  if (::access(argv[0].c_str(), X_OK) != 0) {
    result.errors = fmt::format("{}: {}", argv[0], errno_text(errno));
    return result;
  }
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw SystemError(fmt::format("pipe: {}", errno_text(errno)));
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw SystemError(fmt::format("pipe: {}", errno_text(errno)));
  }
  std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"};
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw SystemError(fmt::format("fork: {}", errno_text(errno)));
  if (pid == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  bool open_out = true;
  bool open_err = true;
  bool timed_out = false;
  while (open_out || open_err) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    fds[0].fd = open_out ? out_pipe[0] : -1;
    fds[1].fd = open_err ? err_pipe[0] : -1;
    const int r = ::poll(fds, 2, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        (i == 0 ? open_out : open_err) = false;
      } else {
        std::string& dst = i == 0 ? result.output : result.errors;
        if (dst.size() < (1U << 20U)) dst.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (open_out) read_all(out_pipe[0], result.output);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  if (timed_out) {
    result.errors += fmt::format("(killed after {} s)", timeout_seconds);
    result.exit_code = -1;
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

std::vector<GpuInfo> query_nvml(const std::string& library, const std::vector<unsigned>& indices) {
  void* lib = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) throw SystemError(fmt::format("cannot load NVML ({}): {}", library, ::dlerror()));
  struct Closer {
    void* lib;
    ~Closer() { ::dlclose(lib); }
  } closer{lib};
  auto sym = [&](const char* name, bool required) -> void* {
    void* p = ::dlsym(lib, name);
    if (p == nullptr && required) throw SystemError(fmt::format("NVML ({}) has no {}", library, name));
    return p;
  };
  using Init = nvmlReturn_t (*)();
  using Count = nvmlReturn_t (*)(unsigned*);
  using Handle = nvmlReturn_t (*)(unsigned, nvmlDevice_t*);
  using Text = nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned);
  using Memory = nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*);
  using Minor = nvmlReturn_t (*)(nvmlDevice_t, unsigned*);
  auto cast = [](void* p, auto type) {
    decltype(type) f = nullptr;
    std::memcpy(&f, &p, sizeof p);
    return f;
  };
  const auto init = cast(sym("nvmlInit_v2", true), Init{});
  const auto shutdown = cast(sym("nvmlShutdown", true), Init{});
  const auto count = cast(sym("nvmlDeviceGetCount_v2", true), Count{});
  const auto handle = cast(sym("nvmlDeviceGetHandleByIndex_v2", true), Handle{});
  const auto uuid = cast(sym("nvmlDeviceGetUUID", true), Text{});
  const auto name = cast(sym("nvmlDeviceGetName", true), Text{});
  const auto memory = cast(sym("nvmlDeviceGetMemoryInfo", true), Memory{});
  const auto minor = cast(sym("nvmlDeviceGetMinorNumber", false), Minor{});

  if (const nvmlReturn_t r = init(); r != NVML_SUCCESS) throw SystemError(fmt::format("nvmlInit failed ({})", r));
  struct Shutdown {
    Init f;
    ~Shutdown() { f(); }
  } shutdown_guard{shutdown};
  unsigned n = 0;
  if (const nvmlReturn_t r = count(&n); r != NVML_SUCCESS) throw SystemError(fmt::format("nvmlDeviceGetCount failed ({})", r));

  struct Device {
    nvmlDevice_t handle;
    unsigned nvml_index;
    std::optional<unsigned> minor;
  };
  std::vector<Device> devices;
  for (unsigned i = 0; i < n; ++i) {
    nvmlDevice_t h = nullptr;
    if (handle(i, &h) != NVML_SUCCESS) continue;
    Device d{h, i, std::nullopt};
    unsigned m = 0;
    if (minor != nullptr && minor(h, &m) == NVML_SUCCESS) d.minor = m;
    devices.push_back(d);
  }
  std::vector<GpuInfo> out;
  for (const unsigned want : indices) {
    const Device* found = nullptr;
    for (const auto& d : devices) {
      if (d.minor && *d.minor == want) found = &d;
    }
    if (found == nullptr) {
      for (const auto& d : devices) {
        if (!d.minor && d.nvml_index == want) found = &d;
      }
    }
    if (found == nullptr) throw SystemError(fmt::format("NVML has no GPU for SLURM index {} ({} devices)", want, n));
    GpuInfo g;
    g.index = want;
    char buf[128] = {};
    if (const nvmlReturn_t r = uuid(found->handle, buf, sizeof buf); r != NVML_SUCCESS) {
      throw SystemError(fmt::format("nvmlDeviceGetUUID({}) failed ({})", want, r));
    }
    g.uuid = buf;
    std::memset(buf, 0, sizeof buf);
    if (name(found->handle, buf, sizeof buf) == NVML_SUCCESS) g.name = buf;
    nvmlMemory_t mem{};
    if (const nvmlReturn_t r = memory(found->handle, &mem); r != NVML_SUCCESS || mem.total == 0) {
      throw SystemError(fmt::format("nvmlDeviceGetMemoryInfo({}) failed ({})", want, r));
    }
    g.memory_bytes = mem.total;
    if (g.uuid.rfind("GPU-", 0) != 0 && g.uuid.rfind("MIG-", 0) != 0) {
      throw SystemError(fmt::format("NVML reported an unexpected UUID '{}' for GPU {}", g.uuid, want));
    }
    out.push_back(std::move(g));
  }
  return out;
}

void ensure_config_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw SystemError(fmt::format("cannot create {}: {}", dir, errno_text(errno)));
  }
  const Fd fd = open_dir(dir);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw SystemError(fmt::format("cannot stat {}: {}", dir, errno_text(errno)));
  if (st.st_uid != 0) {
    throw SystemError(fmt::format("{} is owned by uid {}, not root: libsoftmig will not trust it; "
                                  "an administrator must check and fix it",
                                  dir, st.st_uid));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && ::fchmod(fd.get(), st.st_mode & 07755 & ~(S_IWGRP | S_IWOTH)) != 0) {
    throw SystemError(fmt::format("{} is writable by others and cannot be fixed: {}", dir, errno_text(errno)));
  }
}

void write_file_atomically(const std::string& dir, const std::string& name, const std::string& text) {
  const Fd dfd = open_dir(dir);
  std::random_device rd;
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = fmt::format(".{}.{:08x}.tmp", name, rd());
    fd = ::openat(dfd.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) throw SystemError(fmt::format("cannot create a file in {}: {}", dir, errno_text(errno)));
  Fd file(fd);
  auto fail = [&](const char* what) {
    const int e = errno;
    ::unlinkat(dfd.get(), tmp.c_str(), 0);
    throw SystemError(fmt::format("{} {}/{}: {}", what, dir, name, errno_text(e)));
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(file.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write");
    done += static_cast<std::size_t>(n);
  }
  if (::fchown(file.get(), 0, 0) != 0) fail("cannot chown");
  if (::fchmod(file.get(), 0644) != 0) fail("cannot chmod");
  if (::fsync(file.get()) != 0) fail("cannot fsync");
  if (::renameat(dfd.get(), tmp.c_str(), dfd.get(), name.c_str()) != 0) fail("cannot rename into");
  ::fsync(dfd.get());
}

std::vector<std::string> remove_job_files(const std::string& dir, const std::string& job_id, const std::string& keep) {
  std::vector<std::string> removed;
  if (!core::is_decimal_id(job_id)) return removed;
  const int raw = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (raw < 0) {
    if (errno == ENOENT) return removed;
    throw SystemError(fmt::format("cannot open directory {}: {}", dir, errno_text(errno)));
  }
  DIR* d = ::fdopendir(raw);
  if (d == nullptr) {
    ::close(raw);
    throw SystemError(fmt::format("cannot read {}: {}", dir, errno_text(errno)));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string_view n = e->d_name;
    if (n.substr(0, job_id.size()) != job_id) continue;
    std::string_view rest = n.substr(job_id.size());
    if (rest == ".conf") {
      names.emplace_back(n);
    } else if (rest.size() > 6 && rest.front() == '_' && rest.substr(rest.size() - 5) == ".conf" &&
               core::is_decimal_id(rest.substr(1, rest.size() - 6))) {
      names.emplace_back(n);
    }
  }
  for (const auto& n : names) {
    if (n == keep) continue;
    if (::unlinkat(::dirfd(d), n.c_str(), 0) == 0) removed.push_back(n);
  }
  ::closedir(d);
  return removed;
}

std::string make_ledger_dir(const std::string& base, const std::string& job_id, uid_t uid, gid_t gid) {
  if (!core::is_decimal_id(job_id)) throw SystemError(fmt::format("'{}' is not a job id", job_id));
  if (::mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) {
    throw SystemError(fmt::format("cannot create {}: {}", base, errno_text(errno)));
  }
  const Fd bfd = open_dir(base);
  struct stat st {};
  if (::fstat(bfd.get(), &st) != 0 || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw SystemError(fmt::format("{} must be a root-owned directory nobody else can write", base));
  }
  remove_ledger_dir(base, job_id);  // a stale one (a requeued job) must not carry old usage
  if (::mkdirat(bfd.get(), job_id.c_str(), 0700) != 0) {
    throw SystemError(fmt::format("cannot create {}/{}: {}", base, job_id, errno_text(errno)));
  }
  const int jfd = ::openat(bfd.get(), job_id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (jfd < 0) throw SystemError(fmt::format("cannot open {}/{}: {}", base, job_id, errno_text(errno)));
  const Fd job_fd(jfd);
  if (::fchown(job_fd.get(), uid, gid) != 0 || ::fchmod(job_fd.get(), 0700) != 0) {
    throw SystemError(fmt::format("cannot give {}/{} to uid {}: {}", base, job_id, uid, errno_text(errno)));
  }
  return fmt::format("{}/{}", base, job_id);
}

bool remove_ledger_dir(const std::string& base, const std::string& job_id) {
  if (!core::is_decimal_id(job_id)) return false;
  const int braw = ::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (braw < 0) return false;
  const Fd bfd(braw);
  const int jfd = ::openat(bfd.get(), job_id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (jfd < 0) {
    // Not a directory (a planted link or file): remove the name only.
    return ::unlinkat(bfd.get(), job_id.c_str(), 0) == 0;
  }
  empty_directory(jfd);
  return ::unlinkat(bfd.get(), job_id.c_str(), AT_REMOVEDIR) == 0;
}

bool usable_uuid(std::string_view uuid) {
  if (uuid.empty() || uuid.size() > 96) return false;
  return std::all_of(uuid.begin(), uuid.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

namespace {

constexpr const char* kSlotLock = ".lock";

/// Opens `dir` if it exists; an invalid Fd if it does not.
Fd open_dir_if_present(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0 && errno != ENOENT && errno != ENOTDIR) {
    throw SystemError(fmt::format("cannot open directory {}: {}", dir, errno_text(errno)));
  }
  return fd;
}

/// The names of the tables (one per UUID) in the directory `dfd`.
std::vector<std::string> table_names(int dfd, const std::string& dir) {
  const int dup = ::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = dup < 0 ? nullptr : ::fdopendir(dup);
  if (d == nullptr) {
    if (dup >= 0) ::close(dup);
    throw SystemError(fmt::format("cannot read {}: {}", dir, errno_text(errno)));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (usable_uuid(e->d_name)) names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

/// The text of dir/name, empty if it does not exist. Not a regular file: SystemError.
std::string read_table(int dfd, const std::string& dir, const std::string& name) {
  Fd fd(::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return {};
    throw SystemError(fmt::format("cannot open {}/{}: {}", dir, name, errno_text(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw SystemError(fmt::format("{}/{} is not a regular file", dir, name));
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw SystemError(fmt::format("cannot read {}/{}: {}", dir, name, errno_text(errno)));
    if (n == 0 || text.size() > (1U << 20U)) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

/// Writes the table, or removes it once empty.
void write_table(int dfd, const std::string& dir, const std::string& name, const std::vector<SlotEntry>& entries) {
  if (entries.empty()) {
    if (::unlinkat(dfd, name.c_str(), 0) != 0 && errno != ENOENT) {
      throw SystemError(fmt::format("cannot remove {}/{}: {}", dir, name, errno_text(errno)));
    }
    return;
  }
  write_file_atomically(dir, name, render_slot_table(entries));
}

/// An exclusive flock on dir/.lock, held until destruction.
class SlotLock {
 public:
  SlotLock(int dfd, const std::string& dir, int wait_ms)
      : fd_(::openat(dfd, kSlotLock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) {
    if (fd_.get() < 0) throw SystemError(fmt::format("cannot open {}/{}: {}", dir, kSlotLock, errno_text(errno)));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        throw SystemError(fmt::format("cannot lock {}/{}: {}", dir, kSlotLock, errno_text(errno)));
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        throw SystemError(fmt::format("{}/{} is still locked after {} ms (a hung prolog or epilog?)", dir, kSlotLock,
                                      wait_ms));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }  // closing the descriptor releases the lock

 private:
  Fd fd_;
};

/// Removes `job_id` from every table except those in `keep`; returns the names changed.
std::vector<std::string> drop_job_lines(int dfd, const std::string& dir, const std::string& job_id,
                                        const std::vector<std::string>& keep, std::vector<std::string>& notes) {
  std::vector<std::string> changed;
  for (const auto& name : table_names(dfd, dir)) {
    if (std::find(keep.begin(), keep.end(), name) != keep.end()) continue;
    std::vector<std::string> problems;
    auto entries = parse_slot_table(read_table(dfd, dir, name), &problems);
    if (remove_slot(entries, job_id) || !problems.empty()) {
      write_table(dfd, dir, name, entries);
      changed.push_back(name);
    }
    for (const auto& p : problems) notes.push_back(fmt::format("{}/{}: {}", dir, name, p));
  }
  return changed;
}

}  // namespace

std::vector<SlotPlacement> place_sm_slots(const std::string& dir, const std::string& job_id,
                                          const std::vector<GpuShare>& shares, std::vector<std::string>& notes,
                                          int lock_wait_ms) {
  if (!core::is_decimal_id(job_id)) throw SystemError(fmt::format("'{}' is not a job id", job_id));
  ensure_config_dir(dir);
  const Fd dfd = open_dir(dir);
  const SlotLock lock(dfd.get(), dir, lock_wait_ms);
  std::vector<std::string> placed_names;
  std::vector<SlotPlacement> placed;
  for (const auto& share : shares) {
    if (share.sm_percent >= 100) continue;
    if (!usable_uuid(share.uuid)) {
      notes.push_back(fmt::format("GPU {}: its UUID cannot name a file; no compute window placed", share.uuid));
      continue;
    }
    std::vector<std::string> problems;
    auto entries = parse_slot_table(read_table(dfd.get(), dir, share.uuid), &problems);
    for (const auto& p : problems) notes.push_back(fmt::format("{}/{}: {}", dir, share.uuid, p));
    // Two shares of one GPU (not made by SLURM 22.05): the second replaces the first's line.
    SlotChoice choice = place_slot(entries, job_id, share.sm_percent);
    write_table(dfd.get(), dir, share.uuid, entries);
    placed_names.push_back(share.uuid);
    placed.push_back(SlotPlacement{share.uuid, std::move(choice)});
  }
  // Lines of this job on other GPUs: an earlier run of its prolog (a requeued job).
  drop_job_lines(dfd.get(), dir, job_id, placed_names, notes);
  return placed;
}

std::vector<std::string> release_sm_slots(const std::string& dir, const std::string& job_id, int lock_wait_ms) {
  if (!core::is_decimal_id(job_id)) return {};
  const Fd dfd = open_dir_if_present(dir);
  if (dfd.get() < 0) return {};
  // Tables are replaced by rename, so reading them without the lock sees whole versions: most
  // jobs (CPU jobs, whole GPUs) have no line and never wait for the lock.
  bool present = false;
  for (const auto& name : table_names(dfd.get(), dir)) {
    for (const auto& e : parse_slot_table(read_table(dfd.get(), dir, name))) present = present || e.job_id == job_id;
  }
  if (!present) return {};
  const SlotLock lock(dfd.get(), dir, lock_wait_ms);
  std::vector<std::string> ignored;
  return drop_job_lines(dfd.get(), dir, job_id, {}, ignored);
}

void create_board_file(const std::string& dir, const std::string& uuid, const std::string& job_id, uid_t uid,
                       gid_t gid) {
  if (!core::is_decimal_id(job_id)) throw SystemError(fmt::format("'{}' is not a job id", job_id));
  if (!usable_uuid(uuid)) throw SystemError(fmt::format("GPU UUID '{}' cannot name a file", uuid));
  ensure_config_dir(dir);
  const Fd dfd = open_dir(dir);
  const std::string name = fmt::format("{}.{}", uuid, job_id);
  struct stat st {};
  if (::fstatat(dfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISREG(st.st_mode)) {
      throw SystemError(fmt::format("{}/{} exists and is not a regular file; left alone", dir, name));
    }
    if (::unlinkat(dfd.get(), name.c_str(), 0) != 0) {
      throw SystemError(fmt::format("cannot remove the stale {}/{}: {}", dir, name, errno_text(errno)));
    }
  } else if (errno != ENOENT) {
    throw SystemError(fmt::format("cannot stat {}/{}: {}", dir, name, errno_text(errno)));
  }
  const Fd fd(::openat(dfd.get(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd.get() < 0) throw SystemError(fmt::format("cannot create {}/{}: {}", dir, name, errno_text(errno)));
  const timespec epoch[2] = {{0, 0}, {0, 0}};  // "not active": the job stamps it when it submits work
  if (::fchown(fd.get(), uid, gid) != 0 || ::fchmod(fd.get(), 0644) != 0 || ::futimens(fd.get(), epoch) != 0) {
    const int e = errno;
    ::unlinkat(dfd.get(), name.c_str(), 0);
    throw SystemError(fmt::format("cannot give {}/{} to uid {}: {}", dir, name, uid, errno_text(e)));
  }
}

std::vector<std::string> remove_board_files(const std::string& dir, const std::string& job_id) {
  std::vector<std::string> removed;
  if (!core::is_decimal_id(job_id)) return removed;
  const Fd dfd = open_dir_if_present(dir);
  if (dfd.get() < 0) return removed;
  std::vector<std::string> names;
  {
    const int dup = ::openat(dfd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* d = dup < 0 ? nullptr : ::fdopendir(dup);
    if (d == nullptr) {
      if (dup >= 0) ::close(dup);
      throw SystemError(fmt::format("cannot read {}: {}", dir, errno_text(errno)));
    }
    while (dirent* e = ::readdir(d)) {
      const std::string_view n = e->d_name;
      const std::size_t dot = n.rfind('.');
      if (dot == std::string_view::npos || n.substr(dot + 1) != job_id || !usable_uuid(n.substr(0, dot))) continue;
      names.emplace_back(n);
    }
    ::closedir(d);
  }
  for (const auto& n : names) {
    if (::unlinkat(dfd.get(), n.c_str(), 0) == 0) removed.push_back(n);
  }
  return removed;
}

}  // namespace softmig::tool::slurm
