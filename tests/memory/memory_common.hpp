// SPDX-License-Identifier: Apache-2.0
/// @file memory_common.hpp
/// @brief What the memory-slice scenarios of memory_victim share: driver declarations, failure
///        reporting, sizes, the job's ledger file (read directly, as a status tool would), and
///        helpers to run scenario parts in forked child processes.
///
/// The scenarios run with libsoftmig.so preloaded against the fake driver (tests/fakes). The
/// orchestrating parent of a multi-process scenario never calls CUDA itself: every CUDA user is a
/// child forked from a parent that has not initialised CUDA, so no child inherits a context.
#pragma once

#include "core/ledger.hpp"
#include "driver_api.hpp"  // tests/common: every driver and NVML function, fake_control.h

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace memtest {

namespace core = softmig::core;

inline constexpr std::uint64_t kMiB = 1ULL << 20U;
inline constexpr std::uint64_t kGiB = 1ULL << 30U;
/// What one context costs on the fake driver (SOFTMIG_FAKE_CONTEXT_BYTES is left at its default).
inline constexpr std::uint64_t kContext = 300 * kMiB;
/// The standard allocation block of the scenarios.
inline constexpr std::uint64_t kBlock = 256 * kMiB;
/// CU_MEM_LOCATION_TYPE_HOST and _HOST_NUMA of the driver API.
inline constexpr int kLocationHost = 2;
inline constexpr int kLocationHostNuma = 3;
/// CU_MEM_ALLOCATION_TYPE_PINNED, CU_AD_FORMAT_FLOAT, CU_MEM_ATTACH_GLOBAL.
inline constexpr int kAllocationPinned = 1;
inline constexpr int kFormatFloat = 0x20;
inline constexpr unsigned kAttachGlobal = 1;

/// "GPU-fa4e0000-0000-0000-0000-00000000000N": the fake's UUID of physical device N.
std::string fake_uuid(int phys);

// ---- failure reporting -------------------------------------------------------------------

/// Name printed in front of every message ("memory_victim oom alloc_v2", "... child 3").
void set_role(const std::string& role);
const std::string& role();

/// Prints "<role>: FAIL: <reason>" on stderr and exits 1.
[[noreturn]] void fail(const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
/// Prints "<role>: <message>" on stdout.
void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

#define MT_CHECK(cond, ...)                                \
  do {                                                     \
    if (!(cond)) ::memtest::fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

/// A driver call that must succeed.
#define MT_CU(call)                                                                      \
  do {                                                                                   \
    const CUresult mt_rc_ = (call);                                                      \
    if (mt_rc_ != CUDA_SUCCESS) ::memtest::fail(__FILE__, __LINE__, "%s returned %d", #call, mt_rc_); \
  } while (0)

/// An NVML call that must succeed.
#define MT_NVML(call)                                                                    \
  do {                                                                                   \
    const nvmlReturn_t mt_rc_ = (call);                                                  \
    if (mt_rc_ != NVML_SUCCESS) ::memtest::fail(__FILE__, __LINE__, "%s returned %d", #call, mt_rc_); \
  } while (0)

/// "3796 MiB (3980394496 bytes)" for messages.
std::string mib(std::uint64_t bytes);

// ---- environment -------------------------------------------------------------------------

/// Parses "4G", "1536M", "512K", "4096" (binary units); fails the test if malformed.
std::uint64_t parse_size(const char* text);
/// The limit this test set in CUDA_DEVICE_MEMORY_LIMIT (the test's own knowledge, not softmig's).
std::uint64_t expected_limit();
/// SOFTMIG_SESSION, which every test sets to a name of its own.
std::string session();
/// True when libsoftmig.so is loaded into this process.
bool softmig_loaded();
/// Fails unless the process runs as the tests require (library preloaded or not, as expected;
/// outside SLURM; ledger in /tmp/softmig-<uid>).
void check_environment(bool softmig_expected);

// ---- the job's ledger file ---------------------------------------------------------------

/// /tmp/softmig-<uid>/cudevshr.cache.session-<session>, as softmig names it outside SLURM.
std::string ledger_path(const std::string& session_name);
/// Removes a session's ledger file (start of every test, end of every session).
void remove_ledger(const std::string& session_name);
/// Creates /tmp/softmig-<uid> (0700) and its vgpulock directory if missing.
void ensure_ledger_dir();

/// A read-only snapshot of a ledger file. `ok` is false if the file is missing or not a
/// valid ledger.
struct LedgerSnapshot {
  bool ok = false;
  core::LedgerRegion region{};
  /// Index of the device entry with this UUID, or -1.
  [[nodiscard]] int device(const std::string& uuid) const;
  /// devices[uuid].used, 0 if the device has no entry.
  [[nodiscard]] std::uint64_t used(const std::string& uuid) const;
  /// Sum over claimed slots of alloc + overhead on the device.
  [[nodiscard]] std::uint64_t slot_sum(const std::string& uuid) const;
  /// Pids of claimed slots.
  [[nodiscard]] std::vector<std::uint64_t> members() const;
  /// The claimed slot of `pid`, or nullptr.
  [[nodiscard]] const core::LedgerSlot* slot_of(std::uint64_t pid) const;
};
LedgerSnapshot read_ledger(const std::string& session_name);
/// devices[uuid].used of this test's own session (GPU 0 by default).
std::uint64_t ledger_used(const std::string& uuid = fake_uuid(0));

/// Writes a fresh, valid ledger file with its lock initialised (no process attached), then lets
/// `edit` change the region before it is written out. Mode 0600.
void write_ledger(const std::string& path, const std::string& job_id,
                  void (*edit)(core::LedgerRegion&, void*), void* ctx);

/// Whole contents of a file ("" if missing).
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes, unsigned mode);

/// Start time of a process (clock ticks since boot), as in /proc/<pid>/stat.
std::uint64_t start_time_of(pid_t pid);

// ---- CUDA helpers ------------------------------------------------------------------------

/// cuInit, then the primary context of `ordinal` retained and made current.
CUcontext open_device(int ordinal = 0);
/// Makes `ctx` current.
void use_context(CUcontext ctx);

// ---- processes ---------------------------------------------------------------------------

/// Memory shared by a parent and the children it forks (MAP_SHARED | MAP_ANONYMOUS).
template <typename T>
T* shared_object();
void* shared_bytes(std::size_t size);

/// Forks a child that runs `body` and exits with its result (through exit(), so the library's
/// normal exit path runs). `role` names the child in messages.
template <typename F>
pid_t spawn(const std::string& child_role, F&& body);
pid_t fork_child(const std::string& child_role);

/// Waits up to `timeout_ms` for `pid`; fails the test unless it exits with status 0.
void expect_success(pid_t pid, const char* what, int timeout_ms = 60000);
/// Waits up to `timeout_ms` for `pid` and returns its wait status (fails the test if it hangs).
int reap(pid_t pid, int timeout_ms = 60000);
/// SIGKILLs and reaps.
void kill_and_reap(pid_t pid);

/// A pipe; close_read/close_write are idempotent.
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe();
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_read();
  void close_write();
  /// Writes one byte.
  void signal();
  /// Reads `n` bytes; fails the test after `timeout_ms` or if every writer has closed the pipe.
  void wait(int n, int timeout_ms);
  /// Blocks until the write end is closed everywhere (EOF).
  void wait_eof();
};

/// Sleeps for `ms` milliseconds.
/// Allocation paths the churning tests (kill loops, chaos) pick from at random.
enum Kind { kLinear, kManaged, kAsync, kPool, kVmm, kArray, kPitch, kKinds };

/// One live allocation of a churning process: its path and the address or handle to free.
struct Live {
  Kind kind;
  std::uint64_t key;
};

/// What the churning paths need besides a context: a stream and the device's default pool.
struct ChurnDevice {
  CUstream stream = nullptr;
  CUmemoryPool pool = nullptr;
};

/// Opens device 0 (context current) with a stream and its default pool.
ChurnDevice open_churn_device();
/// Allocates `bytes` through path `kind`; `key` identifies it for churn_free.
CUresult churn_alloc(const ChurnDevice& d, Kind kind, std::uint64_t bytes, std::uint64_t& key);
/// Frees an allocation made by churn_alloc with the matching call.
CUresult churn_free(const ChurnDevice& d, const Live& l);

void sleep_ms(double ms);
/// Milliseconds since an arbitrary start.
double now_ms();

/// Polls `pred` every millisecond; fails the scenario if it is not true within `timeout_ms`.
template <typename Pred>
void wait_until(Pred pred, int timeout_ms, const char* what) {
  const double deadline = now_ms() + timeout_ms;
  while (!pred()) {
    MT_CHECK(now_ms() < deadline, "timed out after %d ms waiting for %s", timeout_ms, what);
    sleep_ms(1);
  }
}

template <typename T>
T* shared_object() {
  return new (shared_bytes(sizeof(T))) T{};
}

template <typename F>
pid_t spawn(const std::string& child_role, F&& body) {
  const pid_t pid = fork_child(child_role);
  if (pid == 0) {
    const int rc = body();
    std::exit(rc);
  }
  return pid;
}

}  // namespace memtest
