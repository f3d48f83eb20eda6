// SPDX-License-Identifier: Apache-2.0
#include "memory_common.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace memtest {
namespace {

std::string g_role = "memory_victim";

}  // namespace

std::string fake_uuid(int phys) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "GPU-fa4e0000-0000-0000-0000-00000000000%x", phys & 0xF);
  return buf;
}

void set_role(const std::string& r) { g_role = r; }
const std::string& role() { return g_role; }

void fail(const char* file, int line, const char* fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char* base = std::strrchr(file, '/');
  std::fflush(stdout);
  std::fprintf(stderr, "%s: FAIL: %s:%d: %s\n", g_role.c_str(), base != nullptr ? base + 1 : file, line, msg);
  std::fflush(stderr);
  std::_Exit(1);  // no exit handlers: a failing child must not look like a clean leaver
}

void note(const char* fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::printf("%s: %s\n", g_role.c_str(), msg);
  std::fflush(stdout);
}

std::string mib(std::uint64_t bytes) {
  char buf[96];
  if (bytes % kMiB == 0) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 " MiB", bytes / kMiB);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f MiB (%" PRIu64 " bytes)", static_cast<double>(bytes) / static_cast<double>(kMiB),
                  bytes);
  }
  return buf;
}

// ---- environment ---------------------------------------------------------------------------

std::uint64_t parse_size(const char* text) {
  MT_CHECK(text != nullptr && *text >= '0' && *text <= '9', "malformed size \"%s\"", text != nullptr ? text : "(null)");
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  unsigned shift = 0;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; ++end; break;
    case 'm': case 'M': shift = 20; ++end; break;
    case 'g': case 'G': shift = 30; ++end; break;
    default: fail(__FILE__, __LINE__, "malformed size \"%s\"", text);
  }
  MT_CHECK(*end == '\0' || std::strcmp(end, "iB") == 0 || std::strcmp(end, "B") == 0, "malformed size \"%s\"", text);
  return static_cast<std::uint64_t>(v) << shift;
}

std::uint64_t expected_limit() {
  const char* v = std::getenv("CUDA_DEVICE_MEMORY_LIMIT");
  MT_CHECK(v != nullptr, "the test must set CUDA_DEVICE_MEMORY_LIMIT");
  return parse_size(v);
}

std::string session() {
  const char* s = std::getenv("SOFTMIG_SESSION");
  MT_CHECK(s != nullptr && *s != '\0', "the test must set SOFTMIG_SESSION");
  return s;
}

bool softmig_loaded() { return dlsym(RTLD_DEFAULT, "softmig_version") != nullptr; }

void check_environment(bool softmig_expected) {
  MT_CHECK(softmig_loaded() == softmig_expected, "libsoftmig.so is %s, but the test expects the opposite",
           softmig_loaded() ? "loaded" : "not loaded");
  MT_CHECK(std::getenv("SLURM_JOB_ID") == nullptr, "SLURM_JOB_ID must be unset");
  MT_CHECK(std::getenv("XDG_RUNTIME_DIR") == nullptr,
           "XDG_RUNTIME_DIR must be unset (the ledger must live in /tmp/softmig-<uid>)");
  MT_CHECK(std::getenv("SOFTMIG_FAKE_STATE") != nullptr, "SOFTMIG_FAKE_STATE must be set");
}

// ---- ledger --------------------------------------------------------------------------------

std::string ledger_path(const std::string& session_name) {
  std::string clean;
  for (const char c : session_name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    clean.push_back(ok ? c : '_');
  }
  MT_CHECK(clean.size() <= 47, "session name \"%s\" is longer than softmig keeps (47 characters)", clean.c_str());
  return "/tmp/softmig-" + std::to_string(geteuid()) + "/cudevshr.cache.session-" + clean;
}

void remove_ledger(const std::string& session_name) {
  const std::string path = ledger_path(session_name);
  MT_CHECK(::unlink(path.c_str()) == 0 || errno == ENOENT, "cannot remove %s: %s", path.c_str(), std::strerror(errno));
}

void ensure_ledger_dir() {
  const std::string dir = "/tmp/softmig-" + std::to_string(geteuid());
  for (const std::string& d : {dir, dir + "/vgpulock"}) {
    MT_CHECK(::mkdir(d.c_str(), 0700) == 0 || errno == EEXIST, "cannot create %s: %s", d.c_str(), std::strerror(errno));
  }
}

int LedgerSnapshot::device(const std::string& uuid) const {
  if (!ok) return -1;
  for (unsigned d = 0; d < core::kMaxDevices; ++d) {
    if (uuid == region.devices[d].uuid) return static_cast<int>(d);
  }
  return -1;
}

std::uint64_t LedgerSnapshot::used(const std::string& uuid) const {
  const int d = device(uuid);
  return d < 0 ? 0 : region.devices[d].used;
}

std::uint64_t LedgerSnapshot::slot_sum(const std::string& uuid) const {
  const int d = device(uuid);
  if (d < 0) return 0;
  std::uint64_t sum = 0;
  for (const core::LedgerSlot& s : region.slots) {
    if (s.pid != 0) sum += s.alloc[d] + s.overhead[d];
  }
  return sum;
}

std::vector<std::uint64_t> LedgerSnapshot::members() const {
  std::vector<std::uint64_t> out;
  if (!ok) return out;
  for (const core::LedgerSlot& s : region.slots) {
    if (s.pid != 0) out.push_back(s.pid);
  }
  return out;
}

const core::LedgerSlot* LedgerSnapshot::slot_of(std::uint64_t pid) const {
  if (!ok) return nullptr;
  for (const core::LedgerSlot& s : region.slots) {
    if (s.pid == pid) return &s;
  }
  return nullptr;
}

LedgerSnapshot read_ledger(const std::string& session_name) {
  LedgerSnapshot snap;
  const std::string path = ledger_path(session_name);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return snap;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) == sizeof(core::LedgerRegion)) {
    void* p = ::mmap(nullptr, sizeof(core::LedgerRegion), PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      const auto* r = static_cast<const core::LedgerRegion*>(p);
      // Field by field with atomic loads: other processes may be updating the file.
      snap.region.header = r->header;
      for (unsigned d = 0; d < core::kMaxDevices; ++d) {
        std::memcpy(snap.region.devices[d].uuid, r->devices[d].uuid, sizeof r->devices[d].uuid);
        snap.region.devices[d].limit = core::load_u64(r->devices[d].limit);
        snap.region.devices[d].used = core::load_u64(r->devices[d].used);
        snap.region.devices[d].peak = core::load_u64(r->devices[d].peak);
        snap.region.devices[d].oom_refusals = core::load_u64(r->devices[d].oom_refusals);
      }
      for (unsigned i = 0; i < core::kMaxSlots; ++i) {
        const core::LedgerSlot& s = r->slots[i];
        core::LedgerSlot& o = snap.region.slots[i];
        o.pid = core::load_u64(s.pid);
        o.start_time = core::load_u64(s.start_time);
        o.uid = core::load_u64(s.uid);
        o.generation = core::load_u64(s.generation);
        for (unsigned d = 0; d < core::kMaxDevices; ++d) {
          o.alloc[d] = core::load_u64(s.alloc[d]);
          o.overhead[d] = core::load_u64(s.overhead[d]);
        }
      }
      snap.ok = core::check_region(*r, sizeof(core::LedgerRegion)) == core::RegionCheck::kOk;
      ::munmap(p, sizeof(core::LedgerRegion));
    }
  }
  ::close(fd);
  return snap;
}

std::uint64_t ledger_used(const std::string& uuid) {
  const LedgerSnapshot snap = read_ledger(session());
  MT_CHECK(snap.ok, "the session's ledger %s is missing or invalid", ledger_path(session()).c_str());
  return snap.used(uuid);
}

namespace {
void init_robust_mutex(unsigned char* storage, void*) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(reinterpret_cast<pthread_mutex_t*>(storage), &attr);
  pthread_mutexattr_destroy(&attr);
}
}  // namespace

void write_ledger(const std::string& path, const std::string& job_id, void (*edit)(core::LedgerRegion&, void*),
                  void* ctx) {
  ensure_ledger_dir();
  (void)::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  MT_CHECK(fd >= 0, "cannot create %s: %s", path.c_str(), std::strerror(errno));
  MT_CHECK(::ftruncate(fd, sizeof(core::LedgerRegion)) == 0, "cannot size %s", path.c_str());
  void* p = ::mmap(nullptr, sizeof(core::LedgerRegion), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  MT_CHECK(p != MAP_FAILED, "cannot map %s", path.c_str());
  auto* r = static_cast<core::LedgerRegion*>(p);
  core::initialise_region(*r, geteuid(), job_id, static_cast<std::uint64_t>(std::time(nullptr)), init_robust_mutex,
                          nullptr);
  MT_CHECK(core::check_region(*r, sizeof(core::LedgerRegion)) == core::RegionCheck::kOk, "fresh ledger invalid");
  if (edit != nullptr) edit(*r, ctx);
  MT_CHECK(::msync(p, sizeof(core::LedgerRegion), MS_SYNC) == 0, "msync");
  ::munmap(p, sizeof(core::LedgerRegion));
  ::close(fd);
}

std::string read_bytes(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

void write_bytes(const std::string& path, const std::string& bytes, unsigned mode) {
  (void)::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  MT_CHECK(fd >= 0, "cannot create %s: %s", path.c_str(), std::strerror(errno));
  MT_CHECK(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()), "short write to %s",
           path.c_str());
  MT_CHECK(::fchmod(fd, static_cast<mode_t>(mode)) == 0, "chmod %s", path.c_str());  // umask-proof
  ::close(fd);
}

std::uint64_t start_time_of(pid_t pid) {
  const std::string stat = read_bytes("/proc/" + std::to_string(pid) + "/stat");
  const std::size_t paren = stat.rfind(')');
  MT_CHECK(paren != std::string::npos, "cannot read /proc/%d/stat", static_cast<int>(pid));
  const char* p = stat.c_str() + paren + 2;  // field 3
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    MT_CHECK(p != nullptr, "short /proc/%d/stat", static_cast<int>(pid));
    ++p;
  }
  return std::strtoull(p, nullptr, 10);
}

// ---- CUDA ----------------------------------------------------------------------------------

CUcontext open_device(int ordinal) {
  MT_CU(cuInit(0));
  CUdevice dev = -1;
  MT_CU(cuDeviceGet(&dev, ordinal));
  CUcontext ctx = nullptr;
  MT_CU(cuDevicePrimaryCtxRetain(&ctx, dev));
  MT_CU(cuCtxSetCurrent(ctx));
  return ctx;
}

void use_context(CUcontext ctx) { MT_CU(cuCtxSetCurrent(ctx)); }

// ---- processes -----------------------------------------------------------------------------

void* shared_bytes(std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  MT_CHECK(p != MAP_FAILED, "mmap of %zu shared bytes failed", size);
  return p;
}

pid_t fork_child(const std::string& child_role) {
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  MT_CHECK(pid >= 0, "fork failed: %s", std::strerror(errno));
  if (pid == 0) {
    set_role(child_role);
    // A parent that fails (or is killed by the test's timeout) takes its children with it, so
    // no holder or churner outlives its test.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) std::_Exit(1);
  }
  return pid;
}

namespace {
int wait_status(pid_t pid, int timeout_ms, const char* what) {
  const double deadline = now_ms() + timeout_ms;
  for (;;) {
    int status = 0;
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) return status;
    MT_CHECK(got == 0 || errno == EINTR, "waitpid(%s) failed: %s", what, std::strerror(errno));
    if (now_ms() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      fail(__FILE__, __LINE__, "%s (pid %d) hung: no exit within %d ms (killed)", what, static_cast<int>(pid),
           timeout_ms);
    }
    sleep_ms(1);
  }
}
}  // namespace

void expect_success(pid_t pid, const char* what, int timeout_ms) {
  const int status = wait_status(pid, timeout_ms, what);
  MT_CHECK(!WIFSIGNALED(status), "%s (pid %d) was killed by signal %d", what, static_cast<int>(pid),
           WTERMSIG(status));
  MT_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s (pid %d) exited with status %d", what,
           static_cast<int>(pid), WEXITSTATUS(status));
}

int reap(pid_t pid, int timeout_ms) { return wait_status(pid, timeout_ms, "child"); }

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  (void)reap(pid, 10000);
}

Pipe::Pipe() { MT_CHECK(::pipe2(fd, O_CLOEXEC) == 0, "pipe failed"); }
Pipe::~Pipe() {
  close_read();
  close_write();
}
void Pipe::close_read() {
  if (fd[0] >= 0) ::close(fd[0]);
  fd[0] = -1;
}
void Pipe::close_write() {
  if (fd[1] >= 0) ::close(fd[1]);
  fd[1] = -1;
}
void Pipe::signal() {
  const char c = 'x';
  ssize_t n = -1;
  do {
    n = ::write(fd[1], &c, 1);
  } while (n < 0 && errno == EINTR);
  MT_CHECK(n == 1, "pipe write failed: %s", std::strerror(errno));
}
void Pipe::wait(int n, int timeout_ms) {
  const double deadline = now_ms() + timeout_ms;
  int got = 0;
  while (got < n) {
    pollfd p{fd[0], POLLIN, 0};
    const int left = static_cast<int>(deadline - now_ms());
    MT_CHECK(left > 0, "timed out after %d ms waiting for %d of %d signals", timeout_ms, n - got, n);
    const int r = ::poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    MT_CHECK(r >= 0, "poll failed");
    if (r == 0) continue;
    char buf[64];
    const std::size_t want = static_cast<std::size_t>(n - got) < sizeof buf ? static_cast<std::size_t>(n - got) : sizeof buf;
    const ssize_t k = ::read(fd[0], buf, want);
    MT_CHECK(k != 0, "pipe closed after %d of %d signals", got, n);
    if (k < 0 && errno == EINTR) continue;
    MT_CHECK(k > 0, "pipe read failed");
    got += static_cast<int>(k);
  }
}
void Pipe::wait_eof() {
  char buf[16];
  for (;;) {
    const ssize_t k = ::read(fd[0], buf, sizeof buf);
    if (k == 0) return;
    if (k < 0 && errno != EINTR) return;
  }
}

void sleep_ms(double ms) {
  if (ms <= 0) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>((ms - static_cast<double>(ts.tv_sec) * 1000) * 1e6);
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

ChurnDevice open_churn_device() {
  open_device(0);
  ChurnDevice d;
  MT_CU(cuStreamCreate(&d.stream, 0));
  MT_CU(cuDeviceGetDefaultMemPool(&d.pool, 0));
  return d;
}

CUresult churn_alloc(const ChurnDevice& d, Kind kind, std::uint64_t bytes, std::uint64_t& key) {
  CUdeviceptr p = 0;
  CUresult rc = CUDA_SUCCESS;
  switch (kind) {
    case kLinear: rc = cuMemAlloc_v2(&p, bytes); break;
    case kManaged: rc = cuMemAllocManaged(&p, bytes, kAttachGlobal); break;
    case kAsync: rc = cuMemAllocAsync(&p, bytes, d.stream); break;
    case kPool: rc = cuMemAllocFromPoolAsync(&p, bytes, d.pool, d.stream); break;
    case kVmm: {
      CUmemAllocationProp prop{};
      prop.type = kAllocationPinned;
      prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
      prop.location.id = 0;
      CUmemGenericAllocationHandle h = 0;
      rc = cuMemCreate(&h, (bytes + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB), &prop, 0);
      p = h;
      break;
    }
    case kArray: {
      CUDA_ARRAY_DESCRIPTOR desc{};
      desc.Width = 1024;
      desc.Height = bytes / 4096 + 1;
      desc.Format = kFormatFloat;
      desc.NumChannels = 1;
      CUarray arr = nullptr;
      rc = cuArrayCreate_v2(&arr, &desc);
      p = reinterpret_cast<std::uint64_t>(arr);
      break;
    }
    case kPitch: {
      std::size_t pitch = 0;
      rc = cuMemAllocPitch_v2(&p, &pitch, 1 + bytes % 16384, bytes / 16384 + 1, 4);
      break;
    }
    case kKinds: break;
  }
  key = p;
  return rc;
}

CUresult churn_free(const ChurnDevice& d, const Live& l) {
  switch (l.kind) {
    case kAsync:
    case kPool: return cuMemFreeAsync(l.key, d.stream);
    case kVmm: return cuMemRelease(l.key);
    case kArray: return cuArrayDestroy(reinterpret_cast<CUarray>(l.key));
    default: return cuMemFree_v2(l.key);
  }
}

}  // namespace memtest
