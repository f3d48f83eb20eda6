// SPDX-License-Identifier: Apache-2.0
/// fake_selftest: checks the fake driver and NVML themselves (no softmig), so that a failing
/// preload test can be blamed on the right party. Run with SOFTMIG_FAKE_DEVICES=16G,8G,4G and a
/// private SOFTMIG_FAKE_STATE file. Every case runs in its own forked child, because the driver
/// reads CUDA_VISIBLE_DEVICES at cuInit and cannot be used again after fork once initialised.
#include "victim_common.hpp"

#include <sys/wait.h>
#include <time.h>

namespace {

using victim::fail;

constexpr unsigned long long GiB = 1ULL << 30U;
constexpr unsigned long long MiB = 1ULL << 20U;
constexpr unsigned long long kSizes[] = {16 * GiB, 8 * GiB, 4 * GiB};

#define CU(expr) victim::expect_cu(#expr, (expr))
#define CU_IS(want, expr) victim::expect_cu(#expr, (expr), (want))
#define NV(expr) victim::expect_nvml(#expr, (expr))
#define NV_IS(want, expr) victim::expect_nvml(#expr, (expr), (want))
#define CHECK(cond, ...) VICTIM_CHECK(cond, __VA_ARGS__)

unsigned long long ctx_bytes() { return victim::fake_context_bytes(); }

/// Runs `body` in a forked child and fails if the child fails.
template <typename Body>
void run_case(const char* name, Body body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    victim::g_program = name;
    body();
    ::_exit(0);
  }
  int status = 0;
  CHECK(::waitpid(pid, &status, 0) == pid, "waitpid failed");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "case %s failed (status 0x%x)", name,
        status);
}

CUcontext init_primary(int ordinal = 0) {
  CU(cuInit(0));
  CUcontext ctx = nullptr;
  CU(cuDevicePrimaryCtxRetain(&ctx, ordinal));
  CU(cuCtxSetCurrent(ctx));
  return ctx;
}

std::string uuid_of(CUdevice dev) {
  CUuuid u{};
  CU(cuDeviceGetUuid_v2(&u, dev));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%02x%02x..%02x", static_cast<unsigned char>(u.bytes[0]),
                static_cast<unsigned char>(u.bytes[1]), static_cast<unsigned char>(u.bytes[15]));
  return buf;
}

void visible(const char* value, std::vector<int> phys) {
  if (value == nullptr) {
    ::unsetenv("CUDA_VISIBLE_DEVICES");
  } else {
    ::setenv("CUDA_VISIBLE_DEVICES", value, 1);
  }
  if (phys.empty()) {
    CU_IS(CUDA_ERROR_NO_DEVICE, cuInit(0));
    int n = -1;
    CU_IS(CUDA_ERROR_NOT_INITIALIZED, cuDeviceGetCount(&n));
    return;
  }
  CU(cuInit(0));
  int n = 0;
  CU(cuDeviceGetCount(&n));
  CHECK(n == static_cast<int>(phys.size()), "CUDA_VISIBLE_DEVICES=%s: %d devices, expected %zu",
        value ? value : "(unset)", n, phys.size());
  for (int i = 0; i < n; ++i) {
    size_t total = 0;
    CU(cuDeviceTotalMem_v2(&total, i));
    CHECK(total == kSizes[phys[static_cast<std::size_t>(i)]],
          "CUDA_VISIBLE_DEVICES=%s: ordinal %d has %zu bytes", value ? value : "(unset)", i, total);
    char want[16];
    std::snprintf(want, sizeof want, "fa4e..%02x", phys[static_cast<std::size_t>(i)]);
    CHECK(uuid_of(i) == want, "ordinal %d has UUID %s, expected %s", i, uuid_of(i).c_str(), want);
  }
  size_t beyond = 0;
  CU_IS(CUDA_ERROR_INVALID_DEVICE, cuDeviceTotalMem_v2(&beyond, n));
  // NVML ignores CUDA_VISIBLE_DEVICES.
  NV(nvmlInit_v2());
  unsigned int count = 0;
  NV(nvmlDeviceGetCount_v2(&count));
  CHECK(count == 3, "NVML sees %u devices under CUDA_VISIBLE_DEVICES, expected all 3", count);
  NV(nvmlShutdown());
}

void case_visible_devices() {
  const struct {
    const char* value;
    std::vector<int> phys;
  } cases[] = {
      {nullptr, {0, 1, 2}},
      {"2,0", {2, 0}},
      {"GPU-fa4e0000-0000-0000-0000-000000000001", {1}},
      {"GPU-fa4e0000-0000-0000-0000-000000000002,1", {2, 1}},
      {"GPU-fa4e0000-0000-0000-0000-00000000000", {}},  // ambiguous prefix ends the list
      {"1,7,0", {1}},                                   // out of range ends the list
      {"0,0", {0}},                                     // a repeat ends the list
      {"-1", {}},
      {"", {}},
      {"MIG-1234", {}},
  };
  for (const auto& c : cases) {
    const auto value = c.value;
    const auto phys = c.phys;
    run_case("fake_selftest (CUDA_VISIBLE_DEVICES)", [value, phys] { visible(value, phys); });
  }
}

void case_errors_before_init() {
  int n = 0;
  CU_IS(CUDA_ERROR_NOT_INITIALIZED, cuDeviceGetCount(&n));
  CUdeviceptr p = 0;
  CU_IS(CUDA_ERROR_NOT_INITIALIZED, cuMemAlloc_v2(&p, MiB));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuInit(1));
  CU(cuInit(0));
  CU_IS(CUDA_ERROR_INVALID_CONTEXT, cuMemAlloc_v2(&p, MiB));
  size_t f = 0;
  size_t t = 0;
  CU_IS(CUDA_ERROR_INVALID_CONTEXT, cuMemGetInfo_v2(&f, &t));
  CU_IS(CUDA_ERROR_INVALID_DEVICE, cuDeviceGet(nullptr, 3));
  const char* s = nullptr;
  CU(cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &s));
  CHECK(std::strcmp(s, "CUDA_ERROR_OUT_OF_MEMORY") == 0, "cuGetErrorName: %s", s);
  CU(cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &s));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuGetErrorString(12345, &s));
  CHECK(s == nullptr, "cuGetErrorString of an unknown code left a string");
  const void* table = nullptr;
  const CUuuid id{};
  CU_IS(CUDA_ERROR_NOT_SUPPORTED, cuGetExportTable(&table, &id));
  int value = 0;
  CU(cuDeviceGetAttribute(&value, 16, 0));
  CHECK(value == 132, "MULTIPROCESSOR_COUNT is %d", value);
  int major = 0;
  int minor = 0;
  CU(cuDeviceComputeCapability(&major, &minor, 0));
  char name[64];
  CU(cuDeviceGetName(name, sizeof name, 0));
  CHECK(std::strstr(name, "16 GiB") != nullptr, "device name %s", name);
}

void case_memory() {
  const CUcontext ctx = init_primary();
  CHECK(fake_process_used(0) == ctx_bytes(), "context charged %llu", fake_process_used(0));
  size_t free0 = 0;
  size_t total = 0;
  CU(cuMemGetInfo_v2(&free0, &total));
  CHECK(total == kSizes[0] && free0 == total - ctx_bytes(), "cuMemGetInfo_v2: %zu of %zu", free0,
        total);

  std::vector<CUdeviceptr> ptrs;
  for (size_t bytes : {1ULL, 511ULL, 512ULL, 513ULL, GiB}) {
    CUdeviceptr p = 0;
    CU(cuMemAlloc_v2(&p, bytes));
    CHECK(p % 512 == 0 && p >= (1ULL << 47U), "address %llx", p);
    for (CUdeviceptr q : ptrs) {
      CHECK(p != q, "address reused while live");
    }
    ptrs.push_back(p);
  }
  const unsigned long long allocated = 1 + 511 + 512 + 513 + GiB;
  CHECK(fake_process_used(0) == ctx_bytes() + allocated, "used %llu", fake_process_used(0));
  size_t free1 = 0;
  CU(cuMemGetInfo_v2(&free1, &total));
  CHECK(free0 - free1 == allocated, "free dropped by %zu", free0 - free1);

  CUdeviceptr base = 0;
  size_t size = 0;
  CU(cuMemGetAddressRange_v2(&base, &size, ptrs[4] + 12345));
  CHECK(base == ptrs[4] && size == GiB, "cuMemGetAddressRange_v2");
  CU_IS(CUDA_ERROR_NOT_FOUND, cuMemGetAddressRange_v2(&base, &size, 42));
  size_t range = 0;
  CU(cuPointerGetAttribute(&range, CU_POINTER_ATTRIBUTE_RANGE_SIZE, ptrs[4] + 1));
  int ordinal = -1;
  CU(cuPointerGetAttribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptrs[4]));
  CHECK(range == GiB && ordinal == 0, "pointer attributes");
  CUcontext owner = nullptr;
  CU(cuPointerGetAttribute(&owner, 1, ptrs[0]));
  CHECK(owner == ctx, "CU_POINTER_ATTRIBUTE_CONTEXT");

  CU_IS(CUDA_ERROR_INVALID_VALUE, cuMemFree_v2(ptrs[4] + 512));  // not a base address
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuMemAlloc_v2(&base, 0));
  CU(cuMemFree_v2(0));

  // Out of memory: the physical device, and nothing is charged for the failure.
  CUdeviceptr huge = 0;
  CU_IS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&huge, kSizes[0]));
  CHECK(fake_process_used(0) == ctx_bytes() + allocated, "a failed allocation was charged");

  CUdeviceptr pitched = 0;
  size_t pitch = 0;
  CU(cuMemAllocPitch_v2(&pitched, &pitch, 513, 3, 4));
  CHECK(pitch == 1024, "pitch %zu", pitch);
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuMemAllocPitch_v2(&huge, &pitch, 513, 3, 3));
  CUdeviceptr_v1 small = 0;
  CU(cuMemAlloc(&small, 4096));
  CHECK(small != 0 && small % 512 == 0, "32-bit allocation %x", small);
  CU(cuMemFree(small));

  CUdeviceptr managed = 0;
  CU(cuMemAllocManaged(&managed, MiB, 1));
  CUdeviceptr async = 0;
  CU(cuMemAllocAsync(&async, MiB, nullptr));
  CUmemoryPool pool = nullptr;
  CU(cuDeviceGetDefaultMemPool(&pool, 0));
  CUdeviceptr pooled = 0;
  CU(cuMemAllocFromPoolAsync_ptsz(&pooled, MiB, pool, nullptr));
  CHECK(fake_process_used(0) == ctx_bytes() + allocated + 1024 * 3 + 3 * MiB, "used %llu",
        fake_process_used(0));
  CU(cuMemFreeAsync(async, nullptr));
  CU(cuMemFree_v2(pooled));
  CU(cuMemFree_v2(managed));
  CU(cuMemFree_v2(pitched));

  CUmemAllocationProp prop{};
  prop.type = 1;
  prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  CUmemGenericAllocationHandle h = 0;
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuMemCreate(&h, 3 * MiB, &prop, 0));
  CU(cuMemCreate(&h, 4 * MiB, &prop, 0));
  CHECK(fake_process_used(0) == ctx_bytes() + allocated + 4 * MiB, "cuMemCreate charge");
  CUdeviceptr va = 0;
  CU(cuMemAddressReserve(&va, 4 * MiB, 0, 0, 0));
  CU(cuMemMap(va, 4 * MiB, 0, h, 0));
  CU(cuMemUnmap(va, 4 * MiB));
  CU(cuMemAddressFree(va, 4 * MiB));
  CU(cuMemRelease(h));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuMemRelease(h));

  CUarray array = nullptr;
  const CUDA_ARRAY_DESCRIPTOR d2{64, 32, 0x20, 4};  // float4
  CU(cuArrayCreate_v2(&array, &d2));
  CHECK(fake_process_used(0) == ctx_bytes() + allocated + 64 * 32 * 16, "array charge");
  CU(cuArrayDestroy(array));
  const CUDA_ARRAY_DESCRIPTOR_v1 d1{100, 10, 0x01, 1};  // the _v1 descriptor of cuArrayCreate
  CU(cuArrayCreate(&array, &d1));
  CHECK(fake_process_used(0) == ctx_bytes() + allocated + 1000, "v1 array charge %llu",
        fake_process_used(0) - ctx_bytes() - allocated);
  CU(cuArrayDestroy(array));
  CU_IS(CUDA_ERROR_INVALID_HANDLE, cuArrayDestroy(array));
  CUmipmappedArray mip = nullptr;
  const CUDA_ARRAY3D_DESCRIPTOR d3{8, 8, 0, 0x01, 1, 0};
  CU(cuMipmappedArrayCreate(&mip, &d3, 3));  // 64 + 16 + 4
  CHECK(fake_process_used(0) == ctx_bytes() + allocated + 84, "mipmap charge");
  CU(cuMipmappedArrayDestroy(mip));

  CUmodule module = nullptr;
  CU(cuModuleLoadData(&module, "image"));
  CHECK(fake_process_used(0) == ctx_bytes() + allocated + 2 * MiB, "module charge");

  // Releasing the last reference frees the context and everything in it.
  CU(cuDevicePrimaryCtxRelease_v2(0));
  CHECK(fake_process_used(0) == 0, "%llu bytes left after the last release", fake_process_used(0));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuMemFree_v2(ptrs[0]));
  CU_IS(CUDA_ERROR_INVALID_CONTEXT, cuDevicePrimaryCtxRelease_v2(0));
}

void case_contexts() {
  const CUcontext primary = init_primary();
  CUcontext created = nullptr;
  CU(cuCtxCreate_v4(&created, nullptr, 0, 0));
  CHECK(fake_process_used(0) == 2 * ctx_bytes(), "cuCtxCreate charge");
  CUcontext current = nullptr;
  CU(cuCtxGetCurrent(&current));
  CHECK(current == created, "a created context is not current");
  CUdeviceptr p = 0;
  CU(cuMemAlloc_v2(&p, MiB));
  CU(cuCtxDestroy_v2(created));
  CU(cuCtxGetCurrent(&current));
  CHECK(current == primary && fake_process_used(0) == ctx_bytes(), "after cuCtxDestroy");
  CU_IS(CUDA_ERROR_INVALID_CONTEXT, cuCtxDestroy_v2(created));
  CU_IS(CUDA_ERROR_INVALID_CONTEXT, cuCtxDestroy_v2(primary));
  CU(cuCtxPushCurrent_v2(primary));
  CU(cuCtxPopCurrent_v2(&current));
  // Reset frees the context's memory; the still-retained context comes back on next use.
  CU(cuMemAlloc_v2(&p, MiB));
  CU(cuDevicePrimaryCtxReset_v2(0));
  CHECK(fake_process_used(0) == 0, "after reset: %llu", fake_process_used(0));
  CU(cuMemAlloc_v2(&p, MiB));
  CHECK(fake_process_used(0) == ctx_bytes() + MiB, "after reuse: %llu", fake_process_used(0));
  CU(cuCtxSetCurrent(nullptr));
  CU(cuCtxGetCurrent(&current));
  CHECK(current == nullptr, "cuCtxSetCurrent(NULL) left a context");
  CUdevice dev = -1;
  CU_IS(CUDA_ERROR_INVALID_CONTEXT, cuCtxGetDevice(&dev));
  CU(cuCtxGetDevice_v2(&dev, primary));
}

void case_counts_and_injection() {
  CU(cuInit(0));
  fake_reset_counts();
  CHECK(fake_call_count("cuDeviceGetCount") == 0, "reset");
  int n = 0;
  CU(cuDeviceGetCount(&n));
  CU(cuDeviceGetCount(&n));
  CHECK(fake_call_count("cuDeviceGetCount") == 2 && fake_call_count("nope") == 0, "counts");
  init_primary();
  fake_inject_result("cuMemAlloc_v2", CUDA_ERROR_OUT_OF_MEMORY, 2);
  CUdeviceptr p = 0;
  CU_IS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
  CU_IS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
  CHECK(fake_process_used(0) == ctx_bytes(), "an injected failure was charged");
  CU(cuMemAlloc_v2(&p, MiB));
  CHECK(fake_call_count("cuMemAlloc_v2") == 3, "injected calls are counted");
  NV(nvmlInit());
  fake_nvml_inject_result("nvmlDeviceGetCount_v2", NVML_ERROR_UNKNOWN, 1);
  unsigned int count = 0;
  NV_IS(NVML_ERROR_UNKNOWN, nvmlDeviceGetCount_v2(&count));
  NV(nvmlDeviceGetCount_v2(&count));
  CHECK(fake_nvml_call_count("nvmlDeviceGetCount_v2") == 2, "NVML counts");
}

void case_env_injection(const char* self) {
  run_case("fake_selftest (SOFTMIG_FAKE_INJECT)", [self] {
    ::setenv("SOFTMIG_FAKE_INJECT", "cuInit:999:1,nvmlInit_v2:1:1", 1);
    ::execl(self, self, "--env-injection", nullptr);
    fail("exec failed");
  });
}

void env_injection_child() {
  victim::g_program = "fake_selftest (SOFTMIG_FAKE_INJECT child)";
  CU_IS(999, cuInit(0));
  CU(cuInit(0));
  NV_IS(NVML_ERROR_UNINITIALIZED, nvmlInit_v2());
  NV(nvmlInit_v2());
}

void case_proc_address() {
  void* fn = nullptr;
  CUdriverProcAddressQueryResult st = -1;
  CU(cuGetProcAddress_v2("cuMemAlloc", &fn, 12000, 0, &st));
  CHECK(fn == reinterpret_cast<void*>(&cuMemAlloc_v2) && st == CU_GET_PROC_ADDRESS_SUCCESS,
        "cuMemAlloc");
  CU(cuGetProcAddress("cuCtxCreate", &fn, 12050, 0));
  CHECK(fn == reinterpret_cast<void*>(&cuCtxCreate_v4), "cuCtxCreate @12050");
  CU(cuGetProcAddress("cuLaunchKernel", &fn, 12000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM));
  CHECK(fn == reinterpret_cast<void*>(&cuLaunchKernel_ptsz), "cuLaunchKernel PTDS");
  CU_IS(CUDA_ERROR_NOT_FOUND, cuGetProcAddress_v2("cuNope", &fn, 12000, 0, &st));
  CHECK(fn == nullptr && st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND, "unknown symbol");
  CU_IS(CUDA_ERROR_NOT_FOUND, cuGetProcAddress_v2("cuMemAllocAsync", &fn, 11000, 0, &st));
  CHECK(fn == nullptr && st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT, "too old");
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuGetProcAddress("cuMemAlloc", &fn, 12000, 3));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuGetProcAddress(nullptr, &fn, 12000, 0));
}

void case_nvml() {
  unsigned int count = 0;
  NV_IS(NVML_ERROR_UNINITIALIZED, nvmlDeviceGetCount_v2(&count));
  NV_IS(NVML_ERROR_UNINITIALIZED, nvmlShutdown());
  NV(nvmlInit_v2());
  NV(nvmlInitWithFlags(0));
  NV(nvmlShutdown());
  NV(nvmlDeviceGetCount(&count));  // still initialised once
  CHECK(count == 3, "count %u", count);
  nvmlDevice_t dev = nullptr;
  NV(nvmlDeviceGetHandleByIndex(2, &dev));
  NV_IS(NVML_ERROR_INVALID_ARGUMENT, nvmlDeviceGetHandleByIndex_v2(3, &dev));
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  NV(nvmlDeviceGetHandleByIndex_v2(1, &dev));
  NV(nvmlDeviceGetUUID(dev, uuid, sizeof uuid));
  CHECK(std::strcmp(uuid, "GPU-fa4e0000-0000-0000-0000-000000000001") == 0, "UUID %s", uuid);
  NV_IS(NVML_ERROR_INSUFFICIENT_SIZE, nvmlDeviceGetUUID(dev, uuid, 10));
  nvmlDevice_t same = nullptr;
  NV(nvmlDeviceGetHandleByUUID(uuid, &same));
  unsigned int index = 9;
  NV(nvmlDeviceGetIndex(same, &index));
  CHECK(same == dev && index == 1, "handle by UUID");
  char version[80];
  NV(nvmlSystemGetDriverVersion(version, sizeof version));
  nvmlMemory_t m{};
  NV(nvmlDeviceGetMemoryInfo(dev, &m));
  CHECK(m.total == 8 * GiB && m.used == 0 && m.free == m.total, "memory of an idle device");
  nvmlMemory_v2_t m2{};
  NV_IS(NVML_ERROR_ARGUMENT_VERSION_MISMATCH, nvmlDeviceGetMemoryInfo_v2(dev, &m2));
  m2.version = nvmlMemory_v2;
  NV(nvmlDeviceGetMemoryInfo_v2(dev, &m2));
  count = 5;
  NV(nvmlDeviceGetComputeRunningProcesses_v3(dev, &count, nullptr));
  CHECK(count == 0, "no processes: count %u", count);
  NV(nvmlDeviceGetGraphicsRunningProcesses(dev, &count, nullptr));
  NV(nvmlDeviceGetMPSComputeRunningProcesses_v2(dev, &count, nullptr));
  NV_IS(NVML_ERROR_INVALID_ARGUMENT, nvmlDeviceGetComputeRunningProcesses(dev, nullptr, nullptr));
  nvmlUtilization_t util{};
  NV(nvmlDeviceGetUtilizationRates(dev, &util));
  unsigned int samples = 4;
  NV_IS(6, nvmlDeviceGetProcessUtilization(dev, nullptr, &samples, 0));
  NV_IS(NVML_ERROR_NOT_SUPPORTED, nvmlDeviceGetRunningProcessDetailList(dev, nullptr));
  NV_IS(NVML_ERROR_NOT_SUPPORTED, nvmlDeviceGetProcessesUtilizationInfo(dev, nullptr));
  NV_IS(NVML_ERROR_INVALID_ARGUMENT,
        nvmlDeviceGetMemoryInfo(reinterpret_cast<nvmlDevice_t>(&count), &m));
  CHECK(std::strcmp(nvmlErrorString(NVML_ERROR_INSUFFICIENT_SIZE), "Insufficient Size") == 0,
        "nvmlErrorString");
}

/// Two processes on one device through the shared state file.
void case_shared_state() {
  int ready[2];
  int release[2];
  CHECK(::pipe(ready) == 0 && ::pipe(release) == 0, "pipe");
  const pid_t holder = ::fork();
  CHECK(holder >= 0, "fork");
  if (holder == 0) {
    victim::g_program = "fake_selftest (holder)";
    ::close(ready[0]);
    ::close(release[1]);
    init_primary();
    CUdeviceptr p = 0;
    CU(cuMemAlloc_v2(&p, 2 * GiB));
    CHECK(::write(ready[1], "r", 1) == 1, "write");
    char c = 0;
    while (::read(release[0], &c, 1) > 0) {
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char c = 0;
  CHECK(::read(ready[0], &c, 1) == 1, "the holder did not start");

  init_primary();
  const unsigned long long other = 2 * GiB + ctx_bytes();
  size_t free_bytes = 0;
  size_t total = 0;
  CU(cuMemGetInfo_v2(&free_bytes, &total));
  CHECK(free_bytes == total - other - ctx_bytes(),
        "cuMemGetInfo_v2 does not count the other process");
  CUdeviceptr p = 0;
  CU_IS(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, total - other - ctx_bytes() + 1));
  CU(cuMemAlloc_v2(&p, total - other - ctx_bytes()));  // exactly fills the device
  CU(cuMemFree_v2(p));

  NV(nvmlInit());
  nvmlDevice_t dev = nullptr;
  NV(nvmlDeviceGetHandleByIndex_v2(0, &dev));
  nvmlMemory_t m{};
  NV(nvmlDeviceGetMemoryInfo(dev, &m));
  CHECK(m.used == other + ctx_bytes(), "NVML used %llu, expected %llu", m.used,
        other + ctx_bytes());
  unsigned int count = 0;
  NV_IS(NVML_ERROR_INSUFFICIENT_SIZE, nvmlDeviceGetComputeRunningProcesses(dev, &count, nullptr));
  CHECK(count == 2, "%u processes listed, expected 2", count);
  nvmlProcessInfo_v1_t infos[2] = {};
  count = 1;
  NV_IS(NVML_ERROR_INSUFFICIENT_SIZE, nvmlDeviceGetComputeRunningProcesses(dev, &count, infos));
  CHECK(count == 2, "count after a short buffer %u", count);
  NV(nvmlDeviceGetComputeRunningProcesses(dev, &count, infos));
  bool saw_holder = false;
  bool saw_self = false;
  for (const auto& info : infos) {
    saw_holder |= info.pid == static_cast<unsigned int>(holder) && info.usedGpuMemory == other;
    saw_self |=
        info.pid == static_cast<unsigned int>(::getpid()) && info.usedGpuMemory == ctx_bytes();
  }
  CHECK(saw_holder && saw_self, "process list");
  nvmlProcessInfo_v2_t infos2[2] = {};
  count = 2;
  NV(nvmlDeviceGetComputeRunningProcesses_v2(dev, &count, infos2));
  CHECK(infos2[0].gpuInstanceId == 0xFFFFFFFFU, "gpuInstanceId without MIG");

  // A process that ended no longer counts.
  ::close(release[1]);
  int status = 0;
  CHECK(::waitpid(holder, &status, 0) == holder && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "holder failed");
  NV(nvmlDeviceGetMemoryInfo(dev, &m));
  CHECK(m.used == ctx_bytes(), "NVML still counts an exited process: used %llu", m.used);
  CU(cuMemGetInfo_v2(&free_bytes, &total));
  CHECK(free_bytes == total - ctx_bytes(), "the driver still counts an exited process");
}

void case_fork_after_init() {
  init_primary();
  const pid_t child = ::fork();
  CHECK(child >= 0, "fork");
  if (child == 0) {
    victim::g_program = "fake_selftest (child after cuInit)";
    CU_IS(CUDA_ERROR_NOT_INITIALIZED, cuInit(0));
    CUdeviceptr p = 0;
    CU_IS(CUDA_ERROR_NOT_INITIALIZED, cuMemAlloc_v2(&p, MiB));
    CHECK(fake_process_used(0) == 0, "the child inherited usage");
    ::_exit(0);
  }
  int status = 0;
  CHECK(::waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child after cuInit failed");
  CHECK(fake_process_used(0) == ctx_bytes(), "the parent lost its usage");
}

// ---- GPU time -------------------------------------------------------------------------------
std::uint64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

constexpr unsigned long long kMs = 1000000ULL;

CUfunction load_kernel() {
  static const char kImage[] = "softmig fake module image";
  CUmodule module = nullptr;
  CU(cuModuleLoadData(&module, kImage));
  CUfunction fn = nullptr;
  CU(cuModuleGetFunction(&fn, module, "kernel"));
  return fn;
}

CUresult launch(CUfunction fn, CUstream stream) {
  return cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr);
}

/// Events, elapsed times, synchronisation, capture and injection of the GPU-time model, with
/// durations set through fake_set_kernel_ns (whatever the environment says).
void case_gpu_time() {
  init_primary();
  const CUfunction fn = load_kernel();
  CUstream s = nullptr;
  CU(cuStreamCreate(&s, 0));

  // No GPU time (the default, SOFTMIG_FAKE_KERNEL_NS unset): launches take no time, nothing waits.
  fake_set_kernel_ns(0, 0);
  CUevent a = nullptr;
  CUevent b = nullptr;
  CUevent untimed = nullptr;
  CU(cuEventCreate(&a, CU_EVENT_DEFAULT));
  CU(cuEventCreate(&b, CU_EVENT_DEFAULT));
  CU(cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuEventCreate(&a, 0x8));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuEventCreate(&a, 0x4));  // interprocess needs DISABLE_TIMING
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuEventCreate(nullptr, 0));
  CU(launch(fn, s));
  CU(cuEventRecord(a, s));
  CU(cuEventQuery(a));
  CHECK(fake_gpu_busy_ns(0) == 0 && fake_launch_count() == 1, "default launch took GPU time");

  // Never recorded: query succeeds (driver documentation), elapsed time is invalid.
  CU(cuEventQuery(b));
  float ms = -1;
  CU_IS(CUDA_ERROR_INVALID_HANDLE, cuEventElapsedTime(&ms, a, b));

  fake_set_kernel_ns(20 * kMs, 50 * kMs);
  CU(cuEventRecord(a, s));
  CU(launch(fn, s));
  CU(launch(fn, nullptr));  // another stream: the same device timeline
  CU(cuEventRecord(b, s));
  CU(cuEventRecord(untimed, s));
  CU_IS(CUDA_ERROR_NOT_READY, cuEventQuery(b));
  CU_IS(CUDA_ERROR_NOT_READY, cuEventElapsedTime(&ms, a, b));
  CU_IS(CUDA_ERROR_NOT_READY, cuEventQuery(untimed));
  CHECK(fake_gpu_busy_ns(0) == 40 * kMs && fake_launch_count() == 3, "busy %llu ns, %llu launches",
        fake_gpu_busy_ns(0), fake_launch_count());
  std::uint64_t t0 = mono_ns();
  CU(cuStreamSynchronize(s));
  std::uint64_t waited = mono_ns() - t0;
  CHECK(waited >= 35 * kMs && waited < 1000 * kMs, "cuStreamSynchronize waited %llu ns",
        static_cast<unsigned long long>(waited));
  CU(cuEventQuery(b));
  CU(cuEventElapsedTime(&ms, a, b));
  CHECK(ms >= 39.9F && ms < 45.0F, "elapsed %.3f ms, expected 40", static_cast<double>(ms));
  float ms2 = -1;
  CU(cuEventElapsedTime_v2(&ms2, a, b));
  CHECK(ms2 == ms, "_v2 gave %.3f ms, v1 %.3f", static_cast<double>(ms2), static_cast<double>(ms));
  CU_IS(CUDA_ERROR_INVALID_HANDLE, cuEventElapsedTime(&ms, a, untimed));
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuEventElapsedTime(nullptr, a, b));

  // A graph launch takes the graph time; cuCtxSynchronize and cuEventSynchronize wait for it.
  CUgraph graph = nullptr;
  CUgraphExec exec = nullptr;
  CU(cuGraphCreate(&graph, 0));
  CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  CU(cuEventRecord(a, s));
  CU(cuGraphLaunch(exec, s));
  CU(cuEventRecord(b, s));
  CHECK(fake_gpu_busy_ns(0) == 90 * kMs && fake_launch_count() == 4, "graph launch: %llu ns",
        fake_gpu_busy_ns(0));
  CU(cuEventSynchronize(b));
  CU(cuEventQuery(b));
  CU(cuEventElapsedTime(&ms, a, b));
  CHECK(ms >= 49.9F && ms < 55.0F, "graph elapsed %.3f ms, expected 50", static_cast<double>(ms));
  CU(launch(fn, s));
  t0 = mono_ns();
  CU(cuCtxSynchronize());
  waited = mono_ns() - t0;
  CHECK(waited >= 15 * kMs && waited < 1000 * kMs, "cuCtxSynchronize waited %llu ns",
        static_cast<unsigned long long>(waited));

  // Capture: work is captured, not executed; synchronising the capturing stream is refused.
  CUstreamCaptureStatus status = -1;
  CU(cuStreamIsCapturing(s, &status));
  CHECK(status == CU_STREAM_CAPTURE_STATUS_NONE, "status %d before capture", status);
  CU_IS(CUDA_ERROR_INVALID_VALUE, cuStreamIsCapturing(s, nullptr));
  fake_set_capturing(s, 1);
  CU(cuStreamIsCapturing(s, &status));
  CHECK(status == 1, "status %d while capturing", status);
  CU(cuStreamIsCapturing(nullptr, &status));
  CHECK(status == CU_STREAM_CAPTURE_STATUS_NONE, "the NULL stream captures too");
  const auto launches = fake_launch_count();
  const auto busy = fake_gpu_busy_ns(0);
  CU(launch(fn, s));
  CU(cuEventRecord(a, s));
  CHECK(fake_launch_count() == launches && fake_gpu_busy_ns(0) == busy, "a captured launch ran");
  CU_IS(900, cuStreamSynchronize(s));  // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
  CU(cuStreamIsCapturing(s, &status));
  CHECK(status == 2, "status %d after a sync during capture, expected invalidated", status);
  fake_set_capturing(s, 0);
  CU(cuStreamIsCapturing(s, &status));
  CHECK(status == CU_STREAM_CAPTURE_STATUS_NONE, "status %d after capture", status);

  // Destroyed and forged events; injection and counting of the new entry points.
  CU(cuEventDestroy_v2(untimed));
  CU_IS(CUDA_ERROR_INVALID_HANDLE, cuEventQuery(untimed));
  CU_IS(CUDA_ERROR_INVALID_HANDLE, cuEventRecord(untimed, s));
  CU_IS(CUDA_ERROR_INVALID_HANDLE, cuEventDestroy_v2(untimed));
  CU_IS(CUDA_ERROR_INVALID_HANDLE, cuEventQuery(reinterpret_cast<CUevent>(&status)));
  fake_reset_counts();
  fake_inject_result("cuEventCreate", CUDA_ERROR_OUT_OF_MEMORY, 1);
  fake_inject_result("cuEventQuery", CUDA_ERROR_NOT_READY, 1);
  CUevent c = nullptr;
  CU_IS(CUDA_ERROR_OUT_OF_MEMORY, cuEventCreate(&c, 0));
  CHECK(c == nullptr, "an injected cuEventCreate handed out an event");
  CU(cuEventCreate(&c, 0));
  CU_IS(CUDA_ERROR_NOT_READY, cuEventQuery(c));
  CU(cuEventQuery(c));
  CHECK(fake_call_count("cuEventCreate") == 2 && fake_call_count("cuEventQuery") == 2 &&
            fake_call_count("cuEventDestroy_v2") == 0 && fake_call_count("cuEventRecord") == 0,
        "event calls miscounted");
  CU(cuEventDestroy_v2(a));
  CU(cuEventDestroy_v2(b));
  CU(cuEventDestroy_v2(c));
  CU(cuGraphExecDestroy(exec));
  CU(cuGraphDestroy(graph));
  CU(cuStreamDestroy_v2(s));
}

void case_env_gpu_time(const char* self) {
  run_case("fake_selftest (SOFTMIG_FAKE_KERNEL_NS)", [self] {
    ::setenv("SOFTMIG_FAKE_KERNEL_NS", "2ms", 1);
    ::unsetenv("SOFTMIG_FAKE_GRAPH_NS");
    ::setenv("SOFTMIG_FAKE_QUEUE_DEPTH", "4", 1);
    ::setenv("SOFTMIG_FAKE_INJECT", "cuStreamIsCapturing:999:1", 1);
    ::execl(self, self, "--env-gpu-time", nullptr);
    fail("exec failed");
  });
}

void env_gpu_time_child() {
  victim::g_program = "fake_selftest (SOFTMIG_FAKE_KERNEL_NS child)";
  init_primary();
  const CUfunction fn = load_kernel();
  CUstreamCaptureStatus status = -1;
  CU_IS(999, cuStreamIsCapturing(nullptr, &status));
  CU(cuStreamIsCapturing(nullptr, &status));
  // A queue of 4: the 5th to 8th launches wait for the 1st to 4th to complete (>= 8 ms).
  const std::uint64_t t0 = mono_ns();
  for (int i = 0; i < 8; ++i) {
    CU(launch(fn, nullptr));
  }
  const std::uint64_t submitted = mono_ns() - t0;
  CHECK(submitted >= 7 * kMs, "8 launches of 2 ms into a queue of 4 took only %llu ns",
        static_cast<unsigned long long>(submitted));
  CU(cuCtxSynchronize());
  CHECK(mono_ns() - t0 >= 16 * kMs, "8 launches of 2 ms completed in under 16 ms");
  CUgraph graph = nullptr;
  CUgraphExec exec = nullptr;
  CU(cuGraphCreate(&graph, 0));
  CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  CU(cuGraphLaunch(exec, nullptr));
  CHECK(fake_gpu_busy_ns(0) == 32 * kMs && fake_launch_count() == 9,
        "busy %llu ns after 8 kernels and a graph, expected 32 ms (graph = 8 kernels)",
        fake_gpu_busy_ns(0));
  CU(cuCtxSynchronize());
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "fake_selftest");
  if (!opts.args.empty() && opts.args[0] == "--env-injection") {
    env_injection_child();
    return 0;
  }
  if (!opts.args.empty() && opts.args[0] == "--env-gpu-time") {
    env_gpu_time_child();
    return 0;
  }
  (void)victim::Softmig::find(false);
  CHECK(std::getenv("SOFTMIG_FAKE_STATE") != nullptr, "run with SOFTMIG_FAKE_STATE set");
  case_visible_devices();
  run_case("fake_selftest (errors)", case_errors_before_init);
  run_case("fake_selftest (memory)", case_memory);
  run_case("fake_selftest (contexts)", case_contexts);
  run_case("fake_selftest (counts)", case_counts_and_injection);
  case_env_injection("/proc/self/exe");
  run_case("fake_selftest (cuGetProcAddress)", case_proc_address);
  run_case("fake_selftest (NVML)", case_nvml);
  run_case("fake_selftest (shared state)", case_shared_state);
  run_case("fake_selftest (fork after cuInit)", case_fork_after_init);
  run_case("fake_selftest (GPU time)", case_gpu_time);
  case_env_gpu_time("/proc/self/exe");
  return 0;
}
