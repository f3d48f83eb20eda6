// SPDX-License-Identifier: Apache-2.0
/// victim_nvml_only: monitoring the way nvidia-smi does it, through NVML only (dlopen
/// libnvidia-ml.so.1, never libcuda): memory info v1 and v2, process lists v1/v2/v3 with NVML's
/// size query followed by the fetch. A helper process (this program re-executed with
/// --cuda-helper) holds a context and 1 GiB on device 0 meanwhile, so the lists are not empty.
/// Every NVML call must reach softmig once. Without softmig the fake's values are checked
/// exactly; with it only their consistency is (softmig may rewrite what a job sees).
#include "victim_common.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <algorithm>
#include <set>

namespace {

constexpr unsigned long long kHeld = 1ULL << 30U;

/// Holds a context and kHeld bytes on CUDA device 0 until `release_fd` reaches end of file.
int cuda_helper(int ready_fd, int release_fd) {
  victim::g_program = "victim_nvml_only (helper)";
  void* cuda = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  VICTIM_CHECK(cuda != nullptr, "dlopen(libcuda.so.1): %s", ::dlerror());
  const auto init = victim::lookup<decltype(&::cuInit)>(cuda, "cuInit");
  const auto retain =
      victim::lookup<decltype(&::cuDevicePrimaryCtxRetain)>(cuda, "cuDevicePrimaryCtxRetain");
  const auto set = victim::lookup<decltype(&::cuCtxSetCurrent)>(cuda, "cuCtxSetCurrent");
  const auto alloc = victim::lookup<decltype(&::cuMemAlloc_v2)>(cuda, "cuMemAlloc_v2");
  CUcontext ctx = nullptr;
  CUdeviceptr p = 0;
  victim::expect_cu("cuInit", init(0));
  victim::expect_cu("cuDevicePrimaryCtxRetain", retain(&ctx, 0));
  victim::expect_cu("cuCtxSetCurrent", set(ctx));
  victim::expect_cu("cuMemAlloc_v2", alloc(&p, kHeld));
  VICTIM_CHECK(::write(ready_fd, "r", 1) == 1, "cannot signal readiness");
  char c = 0;
  while (::read(release_fd, &c, 1) > 0) {
  }
  return 0;  // the driver frees everything with the process
}

#define NVML_FN(name) decltype(&::name) name = victim::lookup<decltype(&::name)>(nvml, #name);

struct Nvml {
  explicit Nvml(void* handle) : nvml(handle) {}
  void* nvml;
  NVML_FN(nvmlInit_v2)
  NVML_FN(nvmlShutdown)
  NVML_FN(nvmlDeviceGetCount_v2)
  NVML_FN(nvmlDeviceGetHandleByIndex_v2)
  NVML_FN(nvmlDeviceGetUUID)
  NVML_FN(nvmlDeviceGetMemoryInfo)
  NVML_FN(nvmlDeviceGetMemoryInfo_v2)
  NVML_FN(nvmlDeviceGetComputeRunningProcesses)
  NVML_FN(nvmlDeviceGetComputeRunningProcesses_v2)
  NVML_FN(nvmlDeviceGetComputeRunningProcesses_v3)
  NVML_FN(nvmlDeviceGetGraphicsRunningProcesses_v3)
  NVML_FN(nvmlDeviceGetMPSComputeRunningProcesses_v3)
};

struct Proc {
  unsigned int pid;
  unsigned long long used;
  bool operator<(const Proc& o) const { return pid < o.pid; }
  bool operator==(const Proc& o) const { return pid == o.pid && used == o.used; }
};

/// Size query, then fetch, as nvidia-smi does. Returns the processes listed.
template <typename Info, typename Fn>
std::vector<Proc> list(victim::Ledger& ledger, const char* name, Fn fn, nvmlDevice_t dev) {
  unsigned int count = 0;
  ledger.note(name);
  const nvmlReturn_t first = fn(dev, &count, nullptr);
  if (first == NVML_SUCCESS) {
    VICTIM_CHECK(count == 0, "%s size query: SUCCESS but count %u", name, count);
    return {};
  }
  VICTIM_CHECK(
      first == NVML_ERROR_INSUFFICIENT_SIZE && count > 0,
      "%s size query returned %d with count %u, expected INSUFFICIENT_SIZE (%d) and a count", name,
      first, count, NVML_ERROR_INSUFFICIENT_SIZE);
  // Too small a buffer fails the same way and reports the same count.
  std::vector<Info> infos(count + 2);
  unsigned int small = count - 1;
  ledger.note(name);
  const nvmlReturn_t short_query = fn(dev, &small, count > 1 ? infos.data() : nullptr);
  VICTIM_CHECK(short_query == NVML_ERROR_INSUFFICIENT_SIZE && small == count,
               "%s with room for %u of %u: returned %d, count %u", name, count - 1, count,
               short_query, small);
  unsigned int room = count + 2;
  ledger.note(name);
  victim::expect_nvml(name, fn(dev, &room, infos.data()));
  VICTIM_CHECK(room == count, "%s: size query said %u, fetch returned %u", name, count, room);
  std::vector<Proc> out;
  for (unsigned int i = 0; i < room; ++i) {
    out.push_back({infos[i].pid, infos[i].usedGpuMemory});
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_nvml_only");
  if (opts.args.size() == 3 && opts.args[0] == "--cuda-helper") {
    return cuda_helper(std::atoi(opts.args[1].c_str()), std::atoi(opts.args[2].c_str()));
  }
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  const bool exact = !softmig.loaded();

  void* handle = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  VICTIM_CHECK(handle != nullptr, "dlopen(libnvidia-ml.so.1): %s", ::dlerror());
  const Nvml nv(handle);
  const auto fake = victim::FakeNvml::find(handle);
  victim::Ledger ledger;

  if (exact) {  // with softmig preloaded, NVML may legitimately be initialised already
    unsigned int n = 0;
    ledger.note("nvmlDeviceGetCount_v2");
    victim::expect_nvml("nvmlDeviceGetCount_v2 before nvmlInit", nv.nvmlDeviceGetCount_v2(&n),
                        NVML_ERROR_UNINITIALIZED);
  }

  // Start the helper that holds device memory.
  int ready[2];
  int release[2];
  VICTIM_CHECK(::pipe(ready) == 0 && ::pipe(release) == 0, "pipe failed");
  const pid_t helper = ::fork();
  VICTIM_CHECK(helper >= 0, "fork failed");
  if (helper == 0) {
    ::close(ready[0]);
    ::close(release[1]);
    const std::string r = std::to_string(ready[1]);
    const std::string w = std::to_string(release[0]);
    ::execl("/proc/self/exe", argv[0], "--cuda-helper", r.c_str(), w.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char c = 0;
  VICTIM_CHECK(::read(ready[0], &c, 1) == 1, "the CUDA helper did not start");

  VICTIM_NVML(ledger, nv, nvmlInit_v2);
  unsigned int count = 0;
  VICTIM_NVML(ledger, nv, nvmlDeviceGetCount_v2, &count);
  VICTIM_CHECK(count >= 1, "no devices");
  for (unsigned int i = 0; i < count; ++i) {
    nvmlDevice_t dev = nullptr;
    VICTIM_NVML(ledger, nv, nvmlDeviceGetHandleByIndex_v2, i, &dev);
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    VICTIM_NVML(ledger, nv, nvmlDeviceGetUUID, dev, uuid, sizeof uuid);

    nvmlMemory_t m1{};
    VICTIM_NVML(ledger, nv, nvmlDeviceGetMemoryInfo, dev, &m1);
    nvmlMemory_v2_t m2{};
    VICTIM_NVML_EXPECT(ledger, nv, NVML_ERROR_ARGUMENT_VERSION_MISMATCH, nvmlDeviceGetMemoryInfo_v2,
                       dev, &m2);
    m2.version = nvmlMemory_v2;
    VICTIM_NVML(ledger, nv, nvmlDeviceGetMemoryInfo_v2, dev, &m2);
    VICTIM_CHECK(m1.total == m1.free + m1.used && m2.total == m2.free + m2.used + m2.reserved,
                 "device %u: inconsistent memory info", i);
    VICTIM_CHECK(m1.total == m2.total, "device %u: v1 total %llu, v2 total %llu", i, m1.total,
                 m2.total);

    const auto v1 = list<nvmlProcessInfo_v1_t>(ledger, "nvmlDeviceGetComputeRunningProcesses",
                                               nv.nvmlDeviceGetComputeRunningProcesses, dev);
    const auto v2 = list<nvmlProcessInfo_v2_t>(ledger, "nvmlDeviceGetComputeRunningProcesses_v2",
                                               nv.nvmlDeviceGetComputeRunningProcesses_v2, dev);
    const auto v3 = list<nvmlProcessInfo_t>(ledger, "nvmlDeviceGetComputeRunningProcesses_v3",
                                            nv.nvmlDeviceGetComputeRunningProcesses_v3, dev);
    VICTIM_CHECK(v1 == v2 && v2 == v3, "device %u: the v1, v2 and v3 process lists differ", i);
    const auto graphics =
        list<nvmlProcessInfo_t>(ledger, "nvmlDeviceGetGraphicsRunningProcesses_v3",
                                nv.nvmlDeviceGetGraphicsRunningProcesses_v3, dev);
    const auto mps = list<nvmlProcessInfo_t>(ledger, "nvmlDeviceGetMPSComputeRunningProcesses_v3",
                                             nv.nvmlDeviceGetMPSComputeRunningProcesses_v3, dev);
    VICTIM_CHECK(graphics.empty() && mps.empty(), "device %u: graphics or MPS processes listed", i);

    if (exact) {
      const bool holder = i == 0;
      const unsigned long long want = holder ? kHeld + victim::fake_context_bytes() : 0;
      VICTIM_CHECK(m1.used == want && m2.used == want, "device %u: used %llu / %llu, expected %llu",
                   i, m1.used, m2.used, want);
      const std::vector<Proc> procs =
          holder ? std::vector<Proc>{{static_cast<unsigned int>(helper), want}}
                 : std::vector<Proc>{};
      VICTIM_CHECK(v1 == procs, "device %u: %zu processes listed, expected %zu (the helper)", i,
                   v1.size(), procs.size());
    }
  }
  VICTIM_NVML(ledger, nv, nvmlShutdown);

  ::close(release[1]);
  int status = 0;
  VICTIM_CHECK(
      ::waitpid(helper, &status, 0) == helper && WIFEXITED(status) && WEXITSTATUS(status) == 0,
      "the CUDA helper failed (status 0x%x)", status);
  VICTIM_CHECK(!victim::mapped("libcuda.so"), "libcuda got mapped into an NVML-only program");
  ledger.verify(softmig, fake.count, "NVML");
  return 0;
}
