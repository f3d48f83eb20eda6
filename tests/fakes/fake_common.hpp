// SPDX-License-Identifier: Apache-2.0
/// @file fake_common.hpp
/// @brief What the fake libcuda.so.1 and libnvidia-ml.so.1 share: the simulated devices, the
///        per-process usage table that makes several processes see one another, and the call
///        counters with failure injection. Linked statically into both fakes, never exported.
#pragma once

#include <sys/types.h>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fake {

inline constexpr int kMaxDevices = 16;

/// The simulated machine, read from the environment once per process (see fake_control.h).
struct Config {
  std::vector<std::uint64_t> device_bytes;  ///< physical size of each device, by physical index
  std::uint64_t context_bytes = 0;          ///< cost of one context
  std::uint64_t module_bytes = 0;           ///< cost of one loaded module / library
  std::string state_path;                   ///< SOFTMIG_FAKE_STATE, empty if unset
  std::uint64_t kernel_ns = 0;              ///< GPU time of one kernel launch
  std::uint64_t graph_ns = 0;               ///< GPU time of one graph launch
  std::uint64_t queue_depth = 0;            ///< pending launches per device before one blocks
  std::uint64_t launch_host_ns = 0;         ///< host time one launch call takes (busy wait)
  std::uint64_t event_ns = 0;               ///< an event recorded on an idle device completes this late
};

/// The configuration; a malformed variable aborts the process with a message on stderr, because a
/// test that silently ran on defaults would prove nothing.
const Config& config();

/// Parses "16G", "300M", "4096", "1GiB" (binary units, case-insensitive). nullopt if malformed.
std::optional<std::uint64_t> parse_size(std::string_view text);

/// Parses a duration in nanoseconds: "250000", "250us", "1.5ms", "2s" (suffixes ns, us, ms, s).
/// nullopt if malformed or out of range.
std::optional<std::uint64_t> parse_duration_ns(std::string_view text);

/// "GPU-fa4e0000-0000-0000-0000-00000000000N" for physical device N.
std::string uuid_string(int phys);

/// The same UUID as the 16 raw bytes cuDeviceGetUuid returns.
void uuid_bytes(int phys, unsigned char out[16]);

/// Marketing name of a physical device, e.g. "softmig fake GPU 16 GiB".
std::string device_name(int phys);

/// Writes `text` into a caller buffer of `length` bytes, NUL-terminated. false if it does not fit.
bool copy_string(const std::string& text, char* out, std::size_t length);

/// Prints "fake <lib>: <message>" on stderr (used for configuration errors and warnings).
void warn(const char* lib, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

/// Per-(process, physical device) usage table, either in a file shared by all processes of a test
/// (SOFTMIG_FAKE_STATE) or in private anonymous memory. Lock-free: every slot is claimed and
/// written with atomics, so processes need no common lock and a crashed process holds nothing.
class UsageTable {
 public:
  struct Process {
    pid_t pid;
    std::uint64_t bytes;
  };

  /// Maps the table: the shared file when configured, otherwise private memory. `private_memory`
  /// lets the fake NVML attach to the fake driver's private table of the same process.
  void attach(void* private_memory);
  [[nodiscard]] bool attached() const { return base_ != nullptr; }
  [[nodiscard]] bool shared() const { return shared_; }
  [[nodiscard]] void* memory() const { return base_; }

  /// Publishes that this process now uses `bytes` on physical device `phys`.
  void publish(int phys, std::uint64_t bytes);
  /// Sum over all live processes of their usage of `phys`.
  [[nodiscard]] std::uint64_t used_by_all(int phys) const;
  /// Live processes with a non-zero usage of `phys`, in slot order.
  [[nodiscard]] std::vector<Process> processes(int phys) const;
  /// In a child after fork: forget the parent's slots (private table: clear it entirely).
  void after_fork_child();

  /// Size of the table memory, for private allocation.
  static std::size_t bytes_needed();

 private:
  struct Header;
  struct Slot;
  Slot* slots() const;
  int own_slot(int phys);
  std::uint64_t self_start_time() const;
  bool slot_live(std::uint64_t key, std::uint64_t start_time) const;

  void* base_ = nullptr;
  bool shared_ = false;
  pid_t slots_pid_ = 0;          // pid own_slots_ belong to
  mutable pid_t start_pid_ = 0;  // pid start_time_ belongs to
  mutable std::uint64_t start_time_ = 0;
  int own_slots_[kMaxDevices] = {};  // slot index + 1 per physical device, 0 = none yet
};

// ---- symbol tables and call counting --------------------------------------------------------
// Each fake lists its exported symbols in `kSymNames` (from the entry-point tables) and keeps the
// counters in a CallTable returned by its own `calls()`; FAKE_ENTER below relies on both names.

void unknown_symbol();  // never defined, not constexpr: reaching it in symbol_index fails the build

/// Index of `name` in a fake's symbol table, computed at compile time. The tables may name a
/// symbol twice (an extra that entry_points.def later gained); the first entry is the one counted.
template <std::size_t N>
consteval std::size_t symbol_index(const char* const (&names)[N], std::string_view name) {
  for (std::size_t i = 0; i < N; ++i) {
    if (name == names[i]) {
      return i;
    }
  }
  unknown_symbol();
  return 0;
}

/// First line of every exported entry point: counts the call and returns an injected result if
/// one is pending (fake_control.h).
#define FAKE_ENTER(name)                                                               \
  if (const auto injected_ = calls().enter(::fake::symbol_index(kSymNames, #name))) { \
    return *injected_;                                                                 \
  }

/// An exported function whose whole work is done by a helper: counts the call, then returns
/// `call`. Each fake names the result type of its entry points `FakeResult`.
#define FAKE_FORWARD(name, params, call) \
  FakeResult name params {               \
    FAKE_ENTER(name);                    \
    return call;                         \
  }

/// Call counters and injected results of one fake library, indexed like its symbol table.
class CallTable {
 public:
  explicit CallTable(std::span<const char* const> names);

  /// Counts one call of symbol `index`; returns the injected result if one is pending.
  std::optional<int> enter(std::size_t index);
  [[nodiscard]] unsigned long long count(const char* name) const;
  void reset();
  /// false if `name` is not one of the library's symbols.
  bool inject(const char* name, int result, int n_calls);
  /// Applies the SOFTMIG_FAKE_INJECT entries whose symbol starts with `prefix` ("cu" / "nvml").
  void inject_from_env(const char* lib, std::string_view prefix);
  [[nodiscard]] int index_of(std::string_view name) const;

 private:
  struct Entry {
    std::atomic<unsigned long long> calls{0};
    std::atomic<int> pending{0};
    std::atomic<int> result{0};
  };
  std::span<const char* const> names_;
  std::vector<Entry> entries_;
};

}  // namespace fake
