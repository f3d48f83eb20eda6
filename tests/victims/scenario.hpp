// SPDX-License-Identifier: Apache-2.0
/// @file scenario.hpp
/// @brief The plain driver-API + NVML workload that victim_direct, victim_dlopen and
///        victim_late_dlopen run, through function pointers obtained the way each of them tests:
///        link-time binding, or dlopen + dlsym.
#pragma once

#include "victim_common.hpp"

namespace victim {

// clang-format off
#define VICTIM_CUDA_SCENARIO_API(X)                                                         \
  X(cuInit) X(cuDeviceGet) X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease_v2)     \
  X(cuCtxSetCurrent) X(cuMemAlloc_v2) X(cuMemFree_v2) X(cuMemGetInfo_v2)                    \
  X(cuMemAllocPitch_v2) X(cuModuleLoadData) X(cuModuleGetFunction) X(cuModuleUnload)       \
  X(cuLaunchKernel)
#define VICTIM_NVML_SCENARIO_API(X)                                                         \
  X(nvmlInit_v2) X(nvmlDeviceGetCount_v2) X(nvmlDeviceGetHandleByIndex_v2)                 \
  X(nvmlDeviceGetMemoryInfo) X(nvmlShutdown)
// clang-format on

#define VICTIM_API_MEMBER(name) decltype(&::name) name = nullptr;
#define VICTIM_API_LINKED(name) api.name = &::name;
#define VICTIM_API_DLSYM(name) api.name = lookup<decltype(&::name)>(handle, #name);

struct CudaApi {
  VICTIM_CUDA_SCENARIO_API(VICTIM_API_MEMBER)
  /// Bound at link time (victims linked with -lcuda): resolved like any program's calls.
  static CudaApi linked() {
    CudaApi api;
    VICTIM_CUDA_SCENARIO_API(VICTIM_API_LINKED)
    return api;
  }
  /// Looked up with dlsym in a dlopen()ed libcuda.
  static CudaApi from(void* handle) {
    CudaApi api;
    VICTIM_CUDA_SCENARIO_API(VICTIM_API_DLSYM)
    return api;
  }
};

struct NvmlApi {
  VICTIM_NVML_SCENARIO_API(VICTIM_API_MEMBER)
  static NvmlApi linked() {
    NvmlApi api;
    VICTIM_NVML_SCENARIO_API(VICTIM_API_LINKED)
    return api;
  }
  static NvmlApi from(void* handle) {
    NvmlApi api;
    VICTIM_NVML_SCENARIO_API(VICTIM_API_DLSYM)
    return api;
  }
};

/// Runs the workload. With `exact` (no softmig), the fake's values are checked too: softmig may
/// legitimately change what a job sees, the bare fake may not.
inline void run_scenario(const CudaApi& cu, const NvmlApi& nv, const FakeCuda& fake, Ledger& cl,
                         Ledger& nl, bool exact) {
  constexpr size_t kAlloc = 64ULL << 20U;
  static const char kImage[] = "softmig fake module image";

  VICTIM_CU(cl, cu, cuInit, 0);
  CUdevice dev = -1;
  VICTIM_CU(cl, cu, cuDeviceGet, &dev, 0);
  CUcontext ctx = nullptr;
  VICTIM_CU(cl, cu, cuDevicePrimaryCtxRetain, &ctx, dev);
  VICTIM_CU(cl, cu, cuCtxSetCurrent, ctx);

  size_t free0 = 0;
  size_t total0 = 0;
  VICTIM_CU(cl, cu, cuMemGetInfo_v2, &free0, &total0);
  const unsigned long long used0 = fake.process_used(0);
  CUdeviceptr p = 0;
  VICTIM_CU(cl, cu, cuMemAlloc_v2, &p, kAlloc);
  VICTIM_CHECK(p != 0, "cuMemAlloc_v2 returned a NULL pointer");
  size_t free1 = 0;
  size_t total1 = 0;
  VICTIM_CU(cl, cu, cuMemGetInfo_v2, &free1, &total1);
  VICTIM_CHECK(fake.process_used(0) == used0 + kAlloc,
               "the fake driver charged %llu bytes for a %zu-byte allocation",
               fake.process_used(0) - used0, kAlloc);
  if (exact) {
    VICTIM_CHECK(total0 == total1 && free0 - free1 == kAlloc,
                 "cuMemGetInfo_v2: free %zu -> %zu of %zu after allocating %zu", free0, free1,
                 total1, kAlloc);
    VICTIM_CHECK(used0 == fake_context_bytes(), "context costs %llu bytes, expected %llu", used0,
                 fake_context_bytes());
  }

  CUdeviceptr pitched = 0;
  size_t pitch = 0;
  VICTIM_CU(cl, cu, cuMemAllocPitch_v2, &pitched, &pitch, 1000, 10, 4);
  VICTIM_CHECK(pitch == 1024, "cuMemAllocPitch_v2 gave pitch %zu for a 1000-byte row", pitch);

  CUmodule module = nullptr;
  VICTIM_CU(cl, cu, cuModuleLoadData, &module, kImage);
  CUfunction fn = nullptr;
  VICTIM_CU(cl, cu, cuModuleGetFunction, &fn, module, "kernel");
  VICTIM_CU(cl, cu, cuLaunchKernel, fn, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr);

  // NVML while this process holds memory.
  VICTIM_NVML(nl, nv, nvmlInit_v2);
  unsigned int count = 0;
  VICTIM_NVML(nl, nv, nvmlDeviceGetCount_v2, &count);
  VICTIM_CHECK(count >= 1, "nvmlDeviceGetCount_v2 reported %u devices", count);
  nvmlDevice_t nvdev = nullptr;
  VICTIM_NVML(nl, nv, nvmlDeviceGetHandleByIndex_v2, 0, &nvdev);
  nvmlMemory_t mem{};
  VICTIM_NVML(nl, nv, nvmlDeviceGetMemoryInfo, nvdev, &mem);
  VICTIM_CHECK(mem.total == mem.free + mem.used,
               "nvmlDeviceGetMemoryInfo: total %llu != free %llu + used %llu", mem.total, mem.free,
               mem.used);
  if (exact) {
    VICTIM_CHECK(mem.used == fake.process_used(0) && mem.total == total1,
                 "nvmlDeviceGetMemoryInfo: used %llu total %llu, the fake driver says %llu of %zu",
                 mem.used, mem.total, fake.process_used(0), total1);
  }
  VICTIM_NVML(nl, nv, nvmlShutdown);

  // Errors pass through unchanged: an address that was never allocated.
  VICTIM_CU_EXPECT(cl, cu, CUDA_ERROR_INVALID_VALUE, cuMemFree_v2, p + 1);

  VICTIM_CU(cl, cu, cuMemFree_v2, pitched);
  VICTIM_CU(cl, cu, cuMemFree_v2, p);
  VICTIM_CU(cl, cu, cuModuleUnload, module);
  VICTIM_CHECK(fake.process_used(0) == used0, "%llu bytes still charged after freeing everything",
               fake.process_used(0) - used0);
  VICTIM_CU(cl, cu, cuDevicePrimaryCtxRelease_v2, dev);
  VICTIM_CHECK(fake.process_used(0) == 0, "%llu bytes charged after releasing the context",
               fake.process_used(0));
}

}  // namespace victim
