// SPDX-License-Identifier: Apache-2.0
#include "tool/install_check.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <fmt/format.h>

#include "tool/ledger_reader.hpp"

#ifndef SOFTMIG_LIBRARY_ARCH
#define SOFTMIG_LIBRARY_ARCH ""
#endif

namespace softmig::tool {
namespace {

/// Runs `body(fd)` in a child that writes its report to fd and returns its exit status (0 = ok).
ChildReport in_child(const std::function<int(int)>& body, int timeout_ms) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {false, fmt::format("pipe: {}", std::strerror(errno))};
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {false, fmt::format("fork: {}", std::strerror(errno))};
  }
  if (pid == 0) {
    ::close(fds[0]);
    // The child's own stderr would interleave with the report: silence it.
    if (const int null = ::open("/dev/null", O_WRONLY); null >= 0) ::dup2(null, STDERR_FILENO);
    ::_exit(body(fds[1]));
  }
  ::close(fds[1]);
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    if (text.size() < 65536) text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (timed_out) return {false, fmt::format("no answer within {} ms (hung); {}", timeout_ms, text)};
  if (WIFSIGNALED(status)) return {false, fmt::format("the test process died of signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)))};
  return {WIFEXITED(status) && WEXITSTATUS(status) == 0, text};
}

void say(int fd, const std::string& s) {
  std::string_view rest = s;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n <= 0) return;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

std::vector<std::string> library_locations() {
  std::vector<std::string> out;
  const std::string arch = SOFTMIG_LIBRARY_ARCH;
  for (const char* prefix : {"/usr/lib", "/usr/local/lib", "/usr/lib64", "/opt/softmig/lib"}) {
    if (!arch.empty()) out.push_back(fmt::format("{}/{}/softmig/libsoftmig.so", prefix, arch));
    out.push_back(fmt::format("{}/softmig/libsoftmig.so", prefix));
  }
  return out;
}

std::string find_installed_library(const std::string& root) {
  std::error_code ec;
  for (const auto& p : library_locations()) {
    if (std::filesystem::exists(under_root(root, p), ec)) return p;
  }
  return {};
}

std::string elf_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fmt::format("cannot read it: {}", std::strerror(errno));
  Elf64_Ehdr h{};
  in.read(reinterpret_cast<char*>(&h), sizeof h);
  if (in.gcount() < static_cast<std::streamsize>(EI_NIDENT) || std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0) {
    return "not an ELF file";
  }
  if (in.gcount() != sizeof h || h.e_ident[EI_CLASS] != ELFCLASS64) return "not a 64-bit ELF file";
  if (h.e_type != ET_DYN) return "an ELF file but not a shared library";
#if defined(__x86_64__)
  constexpr unsigned kMachine = EM_X86_64;
#elif defined(__aarch64__)
  constexpr unsigned kMachine = EM_AARCH64;
#else
  constexpr unsigned kMachine = 0;
#endif
  if (kMachine != 0 && h.e_machine != kMachine) {
    return fmt::format("built for another machine (ELF machine {}, this one is {})", h.e_machine, kMachine);
  }
  return {};
}

ChildReport try_dlopen(const std::string& path, int timeout_ms) {
  return in_child(
      [&](int fd) {
        void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) {
          const char* e = ::dlerror();
          say(fd, e != nullptr ? e : "dlopen failed");
          return 1;
        }
        say(fd, "loaded");
        return 0;
      },
      timeout_ms);
}

ChildReport probe_driver(int timeout_ms) {
  return in_child(
      [](int fd) {
        void* h = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) {
          const char* e = ::dlerror();
          say(fd, fmt::format("cannot load libcuda.so.1: {}", e != nullptr ? e : "?"));
          return 1;
        }
        using Init = int (*)(unsigned);
        using Count = int (*)(int*);
        auto init = reinterpret_cast<Init>(::dlsym(h, "cuInit"));
        auto count = reinterpret_cast<Count>(::dlsym(h, "cuDeviceGetCount"));
        if (init == nullptr || count == nullptr) {
          say(fd, "libcuda.so.1 lacks cuInit or cuDeviceGetCount");
          return 1;
        }
        if (const int rc = init(0); rc != 0) {
          say(fd, fmt::format("cuInit(0) failed with CUDA error {}", rc));
          return 1;
        }
        int n = 0;
        if (const int rc = count(&n); rc != 0) {
          say(fd, fmt::format("cuDeviceGetCount failed with CUDA error {}", rc));
          return 1;
        }
        say(fd, std::to_string(n));
        return 0;
      },
      timeout_ms);
}

ChildReport probe_nvml(int timeout_ms) {
  return in_child(
      [](int fd) {
        void* h = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (h == nullptr) {
          const char* e = ::dlerror();
          say(fd, fmt::format("cannot load libnvidia-ml.so.1: {}", e != nullptr ? e : "?"));
          return 1;
        }
        using Init = int (*)();
        using Count = int (*)(unsigned*);
        using Handle = int (*)(unsigned, void**);
        using Name = int (*)(void*, char*, unsigned);
        auto init = reinterpret_cast<Init>(::dlsym(h, "nvmlInit_v2"));
        auto count = reinterpret_cast<Count>(::dlsym(h, "nvmlDeviceGetCount_v2"));
        auto handle = reinterpret_cast<Handle>(::dlsym(h, "nvmlDeviceGetHandleByIndex_v2"));
        auto name = reinterpret_cast<Name>(::dlsym(h, "nvmlDeviceGetName"));
        if (init == nullptr || count == nullptr || handle == nullptr || name == nullptr) {
          say(fd, "libnvidia-ml.so.1 lacks nvmlInit_v2, nvmlDeviceGetCount_v2, nvmlDeviceGetHandleByIndex_v2 or nvmlDeviceGetName");
          return 1;
        }
        if (const int rc = init(); rc != 0) {
          say(fd, fmt::format("nvmlInit_v2 failed with NVML error {}", rc));
          return 1;
        }
        unsigned n = 0;
        if (const int rc = count(&n); rc != 0) {
          say(fd, fmt::format("nvmlDeviceGetCount_v2 failed with NVML error {}", rc));
          return 1;
        }
        for (unsigned i = 0; i < n; ++i) {
          void* dev = nullptr;
          char buf[96] = {};
          if (handle(i, &dev) == 0 && name(dev, buf, sizeof buf) == 0) say(fd, std::string(buf) + "\n");
        }
        return 0;
      },
      timeout_ms);
}

}  // namespace softmig::tool
