// SPDX-License-Identifier: Apache-2.0
#include "fake_common.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace fake {
namespace {

constexpr std::uint64_t kDefaultDeviceBytes = 16ULL << 30U;
constexpr std::uint64_t kDefaultContextBytes = 300ULL << 20U;
constexpr std::uint64_t kDefaultModuleBytes = 2ULL << 20U;
constexpr std::uint64_t kDefaultQueueDepth = 1024;  // the driver's pending-launch queue
constexpr std::uint64_t kGraphKernels = 8;          // default graph launch = 8 kernels

[[noreturn]] void die(const char* what, const char* value) {
  warn("libs", "invalid %s=\"%s\"", what, value);
  std::abort();
}

std::uint64_t size_from_env(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') {
    return fallback;
  }
  const auto value = parse_size(text);
  if (!value) {
    die(name, text);
  }
  return *value;
}

std::uint64_t duration_from_env(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') {
    return fallback;
  }
  const auto value = parse_duration_ns(text);
  if (!value) {
    die(name, text);
  }
  return *value;
}

std::uint64_t count_from_env(const char* name, std::uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') {
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || *text == '-') {
    die(name, text);
  }
  return value;
}

Config load_config() {
  Config cfg;
  const char* devices = std::getenv("SOFTMIG_FAKE_DEVICES");
  if (devices == nullptr || *devices == '\0') {
    cfg.device_bytes.push_back(kDefaultDeviceBytes);
  } else {
    std::string_view rest(devices);
    while (true) {
      const auto comma = rest.find(',');
      const auto item = rest.substr(0, comma);
      const auto bytes = parse_size(item);
      if (!bytes || *bytes == 0 || cfg.device_bytes.size() == kMaxDevices) {
        die("SOFTMIG_FAKE_DEVICES", devices);
      }
      cfg.device_bytes.push_back(*bytes);
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  cfg.context_bytes = size_from_env("SOFTMIG_FAKE_CONTEXT_BYTES", kDefaultContextBytes);
  cfg.module_bytes = size_from_env("SOFTMIG_FAKE_MODULE_BYTES", kDefaultModuleBytes);
  if (const char* state = std::getenv("SOFTMIG_FAKE_STATE"); state != nullptr) {
    cfg.state_path = state;
  }
  cfg.kernel_ns = duration_from_env("SOFTMIG_FAKE_KERNEL_NS", 0);
  cfg.launch_host_ns = duration_from_env("SOFTMIG_FAKE_LAUNCH_HOST_NS", 0);
  cfg.event_ns = duration_from_env("SOFTMIG_FAKE_EVENT_NS", 0);
  const std::uint64_t graph_default =
      cfg.kernel_ns > UINT64_MAX / kGraphKernels ? UINT64_MAX : cfg.kernel_ns * kGraphKernels;
  cfg.graph_ns = duration_from_env("SOFTMIG_FAKE_GRAPH_NS", graph_default);
  cfg.queue_depth = count_from_env("SOFTMIG_FAKE_QUEUE_DEPTH", kDefaultQueueDepth);
  return cfg;
}

/// Linux process start time (clock ticks since boot), 0 if unknown; `zombie` set for Z/X states.
std::uint64_t process_start_time(pid_t pid, bool* zombie) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may contain spaces and parens
  if (p == nullptr) {
    return 0;
  }
  p += 2;  // ") " -> state (field 3)
  if (zombie != nullptr) {
    *zombie = (*p == 'Z' || *p == 'X');
  }
  for (int field = 3; field < 22 && *p != '\0'; ++field) {  // skip to field 22, starttime
    p = std::strchr(p, ' ');
    if (p == nullptr) {
      return 0;
    }
    ++p;
  }
  return std::strtoull(p, nullptr, 10);
}

/// Is the process that published a slot still running (and not a reused pid)?
bool alive(pid_t pid, std::uint64_t start_time) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) {
    return false;
  }
  bool zombie = false;
  const std::uint64_t now = process_start_time(pid, &zombie);
  if (now == 0) {
    return true;  // cannot tell (e.g. hidden /proc): trust kill()
  }
  return !zombie && (start_time == 0 || start_time == now);
}

}  // namespace

const Config& config() {
  static const Config cfg = load_config();
  return cfg;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  while (!text.empty() && text.front() == ' ') {
    text.remove_prefix(1);
  }
  while (!text.empty() && text.back() == ' ') {
    text.remove_suffix(1);
  }
  std::uint64_t value = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) {
      return std::nullopt;
    }
    value = value * 10 + digit;
  }
  if (i == 0) {
    return std::nullopt;
  }
  auto unit = text.substr(i);
  unsigned shift = 0;
  if (!unit.empty()) {
    switch (unit.front()) {
      case 'k':
      case 'K': shift = 10; break;
      case 'm':
      case 'M': shift = 20; break;
      case 'g':
      case 'G': shift = 30; break;
      case 't':
      case 'T': shift = 40; break;
      case 'b':
      case 'B': break;
      default: return std::nullopt;
    }
    if (shift != 0) {
      unit.remove_prefix(1);
      if (unit == "iB" || unit == "ib" || unit == "IB") {
        unit = {};
      }
    }
    if (!unit.empty() && unit != "B" && unit != "b") {
      return std::nullopt;
    }
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) {
    return std::nullopt;
  }
  return value << shift;
}

std::optional<std::uint64_t> parse_duration_ns(std::string_view text) {
  while (!text.empty() && text.front() == ' ') {
    text.remove_prefix(1);
  }
  while (!text.empty() && text.back() == ' ') {
    text.remove_suffix(1);
  }
  // Integer part and up to 9 fractional digits, kept exactly in units of 1e-9 of the unit.
  std::uint64_t whole = 0;
  std::uint64_t frac = 0;  // fractional digits scaled to 1e9
  std::size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (whole > (UINT64_MAX - digit) / 10) {
      return std::nullopt;
    }
    whole = whole * 10 + digit;
  }
  const std::size_t int_digits = i;
  std::size_t frac_digits = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    std::uint64_t scale = 100000000;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++frac_digits) {
      frac += static_cast<std::uint64_t>(text[i] - '0') * scale;
      scale /= 10;
    }
  }
  if (int_digits == 0 && frac_digits == 0) {
    return std::nullopt;
  }
  const auto unit = text.substr(i);
  std::uint64_t ns_per_unit = 0;
  if (unit.empty() || unit == "ns") {
    ns_per_unit = 1;
  } else if (unit == "us") {
    ns_per_unit = 1000;
  } else if (unit == "ms") {
    ns_per_unit = 1000000;
  } else if (unit == "s") {
    ns_per_unit = 1000000000;
  } else {
    return std::nullopt;
  }
  if (whole > UINT64_MAX / ns_per_unit) {
    return std::nullopt;
  }
  // frac < 1e9 and ns_per_unit <= 1e9: the product fits in 64 bits.
  const std::uint64_t frac_ns = frac * ns_per_unit / 1000000000;
  const std::uint64_t whole_ns = whole * ns_per_unit;
  if (whole_ns > UINT64_MAX - frac_ns) {
    return std::nullopt;
  }
  return whole_ns + frac_ns;
}

std::string uuid_string(int phys) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "GPU-fa4e0000-0000-0000-0000-00000000000%x", phys & 0xF);
  return buf;
}

void uuid_bytes(int phys, unsigned char out[16]) {
  std::memset(out, 0, 16);
  out[0] = 0xfa;
  out[1] = 0x4e;
  out[15] = static_cast<unsigned char>(phys & 0xF);
}

std::string device_name(int phys) {
  const auto& cfg = config();
  const std::uint64_t bytes = cfg.device_bytes.at(static_cast<std::size_t>(phys));
  char buf[96];
  if (bytes % (1ULL << 30U) == 0) {
    std::snprintf(buf, sizeof buf, "softmig fake GPU %llu GiB",
                  static_cast<unsigned long long>(bytes >> 30U));
  } else {
    std::snprintf(buf, sizeof buf, "softmig fake GPU %llu MiB",
                  static_cast<unsigned long long>(bytes >> 20U));
  }
  return buf;
}

bool copy_string(const std::string& text, char* out, std::size_t length) {
  if (out == nullptr || length < text.size() + 1) {
    return false;
  }
  std::memcpy(out, text.c_str(), text.size() + 1);
  return true;
}

void warn(const char* lib, const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "fake %s: %s\n", lib, msg);
}

// ---- UsageTable ------------------------------------------------------------------------------

namespace {
constexpr std::uint64_t kMagic = 0x31304b4146534d53ULL;  // "SMSFAK01"
constexpr std::uint32_t kSlots = 1024;
// A slot's key while its owner fills it in; readers skip it and writers do not claim it.
constexpr std::uint64_t kBusy = ~0ULL;

std::uint64_t make_key(pid_t pid, int phys) {
  return (static_cast<std::uint64_t>(pid) << 8U) | static_cast<std::uint64_t>(phys + 1);
}
pid_t key_pid(std::uint64_t key) { return static_cast<pid_t>(key >> 8U); }
int key_phys(std::uint64_t key) { return static_cast<int>(key & 0xFFU) - 1; }
}  // namespace

struct UsageTable::Header {
  std::uint64_t magic;
  std::uint32_t slot_count;
  std::uint32_t reserved;
  unsigned char pad[48];
};

/// One (pid, device) entry. Fields are only accessed through std::atomic_ref.
struct UsageTable::Slot {
  std::uint64_t key;         // make_key(pid, phys), 0 = free, kBusy = being claimed
  std::uint64_t start_time;  // owner's start time, tells a reused pid apart
  std::uint64_t bytes;       // owner's usage of the device
  std::uint64_t reserved;
};

std::size_t UsageTable::bytes_needed() { return sizeof(Header) + kSlots * sizeof(Slot); }

UsageTable::Slot* UsageTable::slots() const {
  return reinterpret_cast<Slot*>(static_cast<char*>(base_) + sizeof(Header));
}

void UsageTable::attach(void* private_memory) {
  const auto& path = config().state_path;
  if (path.empty()) {
    base_ = private_memory;
    shared_ = false;
    return;
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    warn("libs", "cannot open SOFTMIG_FAKE_STATE=%s: %s", path.c_str(), std::strerror(errno));
    std::abort();
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || (static_cast<std::size_t>(st.st_size) < bytes_needed() &&
                                ::ftruncate(fd, static_cast<off_t>(bytes_needed())) != 0)) {
    warn("libs", "cannot size %s: %s", path.c_str(), std::strerror(errno));
    std::abort();
  }
  void* mem = ::mmap(nullptr, bytes_needed(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping stays; no descriptor is left open in the process
  if (mem == MAP_FAILED) {
    warn("libs", "cannot map %s: %s", path.c_str(), std::strerror(errno));
    std::abort();
  }
  auto* header = static_cast<Header*>(mem);
  std::uint64_t expected = 0;
  std::atomic_ref<std::uint64_t> magic(header->magic);
  if (!magic.compare_exchange_strong(expected, kMagic) && expected != kMagic) {
    warn("libs", "%s is not a fake state file (or of another version); delete it", path.c_str());
    std::abort();
  }
  std::atomic_ref<std::uint32_t>(header->slot_count).store(kSlots);
  base_ = mem;
  shared_ = true;
}

std::uint64_t UsageTable::self_start_time() const {
  const pid_t pid = ::getpid();
  if (pid != start_pid_) {
    start_pid_ = pid;
    start_time_ = process_start_time(pid, nullptr);
  }
  return start_time_;
}

bool UsageTable::slot_live(std::uint64_t key, std::uint64_t start_time) const {
  const pid_t pid = key_pid(key);
  if (pid == ::getpid()) {
    // Ours, unless it was left by an earlier process that had the same pid.
    return start_time == self_start_time();
  }
  return alive(pid, start_time);
}

int UsageTable::own_slot(int phys) {
  const pid_t pid = ::getpid();
  if (pid != slots_pid_) {  // first use, or a child after fork
    slots_pid_ = pid;
    std::memset(own_slots_, 0, sizeof own_slots_);
  }
  if (own_slots_[phys] != 0) {
    return own_slots_[phys] - 1;
  }
  Slot* table = slots();
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    std::atomic_ref<std::uint64_t> key(table[i].key);
    std::uint64_t seen = key.load();
    const bool claimable =
        seen == 0 || (seen != kBusy &&
                      !slot_live(seen, std::atomic_ref<std::uint64_t>(table[i].start_time).load()));
    if (!claimable || !key.compare_exchange_strong(seen, kBusy)) {
      continue;
    }
    std::atomic_ref<std::uint64_t>(table[i].bytes).store(0);
    std::atomic_ref<std::uint64_t>(table[i].start_time).store(self_start_time());
    key.store(make_key(pid, phys));
    own_slots_[phys] = static_cast<int>(i) + 1;
    return static_cast<int>(i);
  }
  warn("libs", "usage table full");
  std::abort();
}

void UsageTable::publish(int phys, std::uint64_t bytes) {
  const int slot = own_slot(phys);
  std::atomic_ref<std::uint64_t>(slots()[slot].bytes).store(bytes);
}

std::vector<UsageTable::Process> UsageTable::processes(int phys) const {
  std::vector<Process> out;
  if (base_ == nullptr) {
    return out;
  }
  Slot* table = slots();
  for (std::uint32_t i = 0; i < kSlots; ++i) {
    Slot& slot = table[i];
    const std::uint64_t key = std::atomic_ref<std::uint64_t>(slot.key).load();
    if (key == 0 || key == kBusy || key_phys(key) != phys) {
      continue;
    }
    const std::uint64_t bytes = std::atomic_ref<std::uint64_t>(slot.bytes).load();
    if (bytes == 0 || !slot_live(key, std::atomic_ref<std::uint64_t>(slot.start_time).load())) {
      continue;
    }
    out.push_back({key_pid(key), bytes});
  }
  return out;
}

std::uint64_t UsageTable::used_by_all(int phys) const {
  std::uint64_t sum = 0;
  for (const auto& p : processes(phys)) {
    sum += p.bytes;
  }
  return sum;
}

void UsageTable::after_fork_child() {
  if (base_ != nullptr && !shared_) {
    std::memset(static_cast<char*>(base_) + sizeof(Header), 0, kSlots * sizeof(Slot));
  }
  slots_pid_ = 0;  // own_slot() claims fresh slots under the child's pid
}

// ---- CallTable -------------------------------------------------------------------------------

CallTable::CallTable(std::span<const char* const> names) : names_(names), entries_(names.size()) {}

int CallTable::index_of(std::string_view name) const {
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (name == names_[i]) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::optional<int> CallTable::enter(std::size_t index) {
  Entry& e = entries_[index];
  e.calls.fetch_add(1, std::memory_order_relaxed);
  int pending = e.pending.load();
  while (pending > 0) {
    if (e.pending.compare_exchange_weak(pending, pending - 1)) {
      return e.result.load();
    }
  }
  return std::nullopt;
}

unsigned long long CallTable::count(const char* name) const {
  const int i = name == nullptr ? -1 : index_of(name);
  return i < 0 ? 0 : entries_[static_cast<std::size_t>(i)].calls.load();
}

void CallTable::reset() {
  for (auto& e : entries_) {
    e.calls.store(0);
  }
}

bool CallTable::inject(const char* name, int result, int n_calls) {
  const int i = name == nullptr ? -1 : index_of(name);
  if (i < 0) {
    return false;
  }
  Entry& e = entries_[static_cast<std::size_t>(i)];
  e.pending.store(0);
  e.result.store(result);
  e.pending.store(n_calls > 0 ? n_calls : 0);
  return true;
}

void CallTable::inject_from_env(const char* lib, std::string_view prefix) {
  const char* text = std::getenv("SOFTMIG_FAKE_INJECT");
  if (text == nullptr) {
    return;
  }
  std::string_view rest(text);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string item(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto c1 = item.find(':');
    const auto c2 = c1 == std::string::npos ? c1 : item.find(':', c1 + 1);
    if (c2 == std::string::npos) {
      warn(lib, "malformed SOFTMIG_FAKE_INJECT entry \"%s\"", item.c_str());
      std::abort();
    }
    const std::string symbol = item.substr(0, c1);
    // Both fakes read the variable; each applies the entries of its own symbols.
    if (std::string_view(symbol).substr(0, prefix.size()) != prefix) {
      continue;
    }
    char* end1 = nullptr;
    char* end2 = nullptr;
    const long result = std::strtol(item.c_str() + c1 + 1, &end1, 10);
    const long count = std::strtol(item.c_str() + c2 + 1, &end2, 10);
    if (*end1 != ':' || *end2 != '\0' ||
        !inject(symbol.c_str(), static_cast<int>(result), static_cast<int>(count))) {
      warn(lib, "bad SOFTMIG_FAKE_INJECT entry \"%s\"", item.c_str());
      std::abort();
    }
  }
}

}  // namespace fake
