// SPDX-License-Identifier: Apache-2.0
#include "hooks/preload_chain.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "hooks/resolver.hpp"
#include "platform/env.hpp"
#include "platform/files.hpp"
#include "platform/once.hpp"

namespace softmig::hooks {
namespace {

constexpr unsigned kMaxPreloads = 32;

/// Basenames listed in LD_PRELOAD and /etc/ld.so.preload (separated by ':' or whitespace).
struct PreloadNames {
  char text[4096] = {};
  const char* names[kMaxPreloads] = {};
  unsigned count = 0;

  void add_list(const char* list, std::size_t& used) noexcept {
    while (list != nullptr && *list != '\0' && count < kMaxPreloads) {
      while (*list == ':' || *list == ' ' || *list == '\t' || *list == '\n') ++list;
      const char* end = list;
      while (*end != '\0' && *end != ':' && *end != ' ' && *end != '\t' && *end != '\n') ++end;
      if (end == list) break;
      const char* base = list;
      for (const char* p = list; p < end; ++p) {
        if (*p == '/') base = p + 1;
      }
      const auto len = static_cast<std::size_t>(end - base);
      if (len > 0 && used + len + 1 < sizeof(text)) {
        std::memcpy(text + used, base, len);
        text[used + len] = '\0';
        names[count++] = text + used;
        used += len + 1;
      }
      list = end;
    }
  }
  [[nodiscard]] bool contains(const char* path) const noexcept {
    if (path == nullptr || path[0] == '\0') return false;
    const char* base = std::strrchr(path, '/');
    base = base != nullptr ? base + 1 : path;
    for (unsigned i = 0; i < count; ++i) {
      if (std::strcmp(names[i], base) == 0) return true;
    }
    return false;
  }
};

/// LD_PRELOAD as the dynamic loader saw it, from the environment the process started with
/// (/proc/self/environ), read once. What was preloaded cannot change later, so the program's own
/// setenv("LD_PRELOAD", ...) must not change the chain: a library the program loads could
/// otherwise claim to come after softmig and be handed the driver's functions
/// (tests/reliability, tamper.dlsym). Falls back to the current environment without /proc.
const char* initial_ld_preload() noexcept {
  static platform::Once once;
  static char value[4096];
  static bool found = false;
  static bool readable = false;
  once.run([] {
    const int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    readable = true;
    constexpr std::string_view kKey = "LD_PRELOAD=";
    std::size_t matched = 0;
    std::size_t len = 0;
    bool at_start = true;
    bool done = false;
    char buf[1024];
    while (!done) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (ssize_t i = 0; i < n && !done; ++i) {
        const char c = buf[i];
        if (found) {  // inside the value
          if (c == '\0') {
            done = true;
          } else if (len + 1 < sizeof(value)) {
            value[len++] = c;
          }
        } else if (c == '\0') {
          matched = 0;
          at_start = true;
        } else if (at_start && c == kKey[matched]) {
          found = ++matched == kKey.size();
        } else {
          at_start = false;
          matched = 0;
        }
      }
    }
    value[len] = '\0';
    close(fd);
  });
  if (!readable) return platform::env("LD_PRELOAD");
  return found ? value : nullptr;
}

const char* object_of(const void* addr) noexcept {
  Dl_info info{};
  return dladdr(addr, &info) != 0 ? info.dli_fname : nullptr;
}

}  // namespace

PreloadChain::PreloadChain() noexcept {
  PreloadNames names;
  std::size_t used = 0;
  names.add_list(initial_ld_preload(), used);
  char file[2048];
  if (platform::read_file("/etc/ld.so.preload", file, sizeof(file)) > 0) names.add_list(file, used);
  if (names.count == 0) return;
  struct Ctx {
    const PreloadNames* names;
    PreloadChain* self;
  } ctx{&names, this};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* p) -> int {
        auto* c = static_cast<Ctx*>(p);
        if (c->self->count_ < kMax && c->names->contains(info->dlpi_name)) {
          c->self->paths_[c->self->count_++] = info->dlpi_name;
        }
        return 0;
      },
      &ctx);
}

bool PreloadChain::contains(const void* addr) const noexcept {
  const char* obj = count_ != 0 ? object_of(addr) : nullptr;
  if (obj == nullptr) return false;
  for (unsigned i = 0; i < count_; ++i) {
    if (std::strcmp(paths_[i], obj) == 0) return true;
  }
  return false;
}

bool PreloadChain::next_definition(const void* after, const char* name, void** out) const noexcept {
  if (count_ == 0) return false;
  const char* self = after != nullptr ? object_of(after) : nullptr;
  if (after != nullptr && self == nullptr) return false;
  bool past = after == nullptr;
  for (unsigned i = 0; i < count_; ++i) {
    if (!past) {
      past = std::strcmp(paths_[i], self) == 0;
      continue;
    }
    void* handle = dlopen(paths_[i], RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr) continue;
    void* fn = real_dlsym(handle, name);
    dlclose(handle);  // drops only the reference NOLOAD took
    // dlsym also searches the object's dependencies: only its own definition counts.
    const char* owner = fn != nullptr ? object_of(fn) : nullptr;
    if (owner != nullptr && std::strcmp(owner, paths_[i]) == 0) {
      *out = fn;
      return true;
    }
  }
  return false;
}

}  // namespace softmig::hooks
