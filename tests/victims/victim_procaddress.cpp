// SPDX-License-Identifier: Apache-2.0
/// victim_procaddress: fetches driver functions through cuGetProcAddress / cuGetProcAddress_v2,
/// as the CUDA runtime (12.x and later) does for every driver call, for a range of cudaVersion
/// values and all three stream flags. For each lookup it asks the fake which versioned symbol the
/// driver itself resolves, calls the returned pointer and checks that exactly that symbol ran in
/// the fake and, if softmig interposes it, in softmig's wrapper of that very symbol: softmig must
/// hand back the wrapper of the symbol the driver chose, never another version's.
#include "victim_common.hpp"

#include <functional>
#include <set>

namespace {

using victim::fail;

constexpr int kVersions[] = {2000, 3020, 10000, 11030, 11040, 12000, 12050, 13000};
constexpr cuuint64_t kFlags[] = {CU_GET_PROC_ADDRESS_DEFAULT, CU_GET_PROC_ADDRESS_LEGACY_STREAM,
                                 CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM};
constexpr size_t kSize = 1ULL << 20U;
const char kImage[] = "softmig fake module image";

/// The name cuGetProcAddress is asked for: without _ptsz/_ptds and without _vN.
std::string base_of(std::string s) {
  for (const char* suffix : {"_ptsz", "_ptds"}) {
    if (s.size() > 5 && s.compare(s.size() - 5, 5, suffix) == 0) {
      s.resize(s.size() - 5);
      break;
    }
  }
  const auto v = s.rfind("_v");
  if (v != std::string::npos && v + 2 < s.size() &&
      s.find_first_not_of("0123456789", v + 2) == std::string::npos) {
    s.resize(v);
  }
  return s;
}

#define AS(name, p) reinterpret_cast<decltype(&::name)>(p)
#define ENV_FN(name) decltype(&::name) name = victim::lookup<decltype(&::name)>(cuda, #name);

/// Helpers for setting up and cleaning up around a probed call. They come from dlsym and so go
/// through softmig like any program's calls; none of them shares a base name with the probed
/// function it serves, so they never disturb the counts being checked.
struct Env {
  explicit Env(void* handle) : cuda(handle) {}
  void* cuda;
  ENV_FN(cuInit)
  ENV_FN(cuDeviceGet)
  ENV_FN(cuMemAlloc)
  ENV_FN(cuMemAlloc_v2)
  ENV_FN(cuMemFree)
  ENV_FN(cuMemFree_v2)
  ENV_FN(cuCtxCreate_v2)
  ENV_FN(cuCtxDestroy_v2)
  ENV_FN(cuCtxSetCurrent)
  ENV_FN(cuCtxPushCurrent_v2)
  ENV_FN(cuCtxPopCurrent_v2)
  ENV_FN(cuDevicePrimaryCtxRetain)
  ENV_FN(cuDevicePrimaryCtxRelease_v2)
  ENV_FN(cuStreamCreate)
  ENV_FN(cuModuleLoadData)
  ENV_FN(cuModuleGetFunction)
  ENV_FN(cuModuleUnload)
  ENV_FN(cuLibraryLoadData)
  ENV_FN(cuLibraryUnload)
  ENV_FN(cuGraphCreate)
  ENV_FN(cuGraphInstantiateWithFlags)
  ENV_FN(cuGraphExecDestroy)
  ENV_FN(cuMemCreate)
  ENV_FN(cuMemRelease)
  ENV_FN(cuArrayCreate_v2)
  ENV_FN(cuArrayDestroy)
  ENV_FN(cuMipmappedArrayCreate)
  ENV_FN(cuMipmappedArrayDestroy)
  ENV_FN(cuDeviceGetDefaultMemPool)

  CUdevice dev = 0;
  CUcontext primary = nullptr;
  CUdeviceptr buffer = 0;
  CUmodule module = nullptr;
  CUfunction fn = nullptr;
  CUgraph graph = nullptr;
  CUgraphExec exec = nullptr;
  CUmemoryPool pool = nullptr;
};

std::string g_probe = "setup";  // the lookup being probed, for failure messages

void ok(const char* what, CUresult r) {
  VICTIM_CHECK(r == CUDA_SUCCESS, "%s: %s returned %d", g_probe.c_str(), what, r);
}

// The driver's _v1 descriptors (32-bit extents), inside zeroed room for the _v2 layout.
// CUlaunchConfig as documented (the ABI header keeps it opaque).
struct LaunchConfig {
  unsigned int gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
  CUstream hStream;
  void* attrs;
  unsigned int numAttrs;
};

CUmemAllocationProp device_prop() {
  CUmemAllocationProp prop{};
  prop.type = 1;  // CU_MEM_ALLOCATION_TYPE_PINNED
  prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  return prop;
}

using Caller = std::function<CUresult(void*, Env&)>;

/// How to call each exported symbol with valid arguments (and undo what the call did).
std::map<std::string, Caller> callers() {
  std::map<std::string, Caller> c;
  c["cuInit"] = [](void* p, Env&) { return AS(cuInit, p)(0); };
  c["cuDriverGetVersion"] = [](void* p, Env&) {
    int v = 0;
    return AS(cuDriverGetVersion, p)(&v);
  };
  c["cuDeviceGetCount"] = [](void* p, Env&) {
    int n = 0;
    return AS(cuDeviceGetCount, p)(&n);
  };
  c["cuDeviceGet"] = [](void* p, Env&) {
    CUdevice d = -1;
    return AS(cuDeviceGet, p)(&d, 0);
  };
  c["cuDeviceGetUuid"] = [](void* p, Env& e) {
    CUuuid u{};
    return AS(cuDeviceGetUuid, p)(&u, e.dev);
  };
  c["cuDeviceGetUuid_v2"] = [](void* p, Env& e) {
    CUuuid u{};
    return AS(cuDeviceGetUuid_v2, p)(&u, e.dev);
  };
  c["cuDeviceTotalMem"] = [](void* p, Env& e) {
    unsigned int b = 0;
    return AS(cuDeviceTotalMem, p)(&b, e.dev);
  };
  c["cuDeviceTotalMem_v2"] = [](void* p, Env& e) {
    size_t b = 0;
    return AS(cuDeviceTotalMem_v2, p)(&b, e.dev);
  };
  c["cuMemGetInfo"] = [](void* p, Env&) {
    unsigned int f = 0, t = 0;
    return AS(cuMemGetInfo, p)(&f, &t);
  };
  c["cuMemGetInfo_v2"] = [](void* p, Env&) {
    size_t f = 0, t = 0;
    return AS(cuMemGetInfo_v2, p)(&f, &t);
  };
  c["cuMemAlloc"] = [](void* p, Env& e) {
    CUdeviceptr_v1 d = 0;
    const CUresult r = AS(cuMemAlloc, p)(&d, kSize);
    ok("cleanup cuMemFree", e.cuMemFree(d));
    return r;
  };
  c["cuMemAlloc_v2"] = [](void* p, Env& e) {
    CUdeviceptr d = 0;
    const CUresult r = AS(cuMemAlloc_v2, p)(&d, kSize);
    ok("cleanup cuMemFree_v2", e.cuMemFree_v2(d));
    return r;
  };
  c["cuMemAllocPitch"] = [](void* p, Env& e) {
    CUdeviceptr_v1 d = 0;
    unsigned int pitch = 0;
    const CUresult r = AS(cuMemAllocPitch, p)(&d, &pitch, 100, 10, 4);
    ok("cleanup cuMemFree", e.cuMemFree(d));
    return r;
  };
  c["cuMemAllocPitch_v2"] = [](void* p, Env& e) {
    CUdeviceptr d = 0;
    size_t pitch = 0;
    const CUresult r = AS(cuMemAllocPitch_v2, p)(&d, &pitch, 100, 10, 4);
    ok("cleanup cuMemFree_v2", e.cuMemFree_v2(d));
    return r;
  };
  c["cuMemAllocManaged"] = [](void* p, Env& e) {
    CUdeviceptr d = 0;
    const CUresult r = AS(cuMemAllocManaged, p)(&d, kSize, 1);
    ok("cleanup cuMemFree_v2", e.cuMemFree_v2(d));
    return r;
  };
  c["cuMemFree"] = [](void* p, Env& e) {
    CUdeviceptr_v1 d = 0;
    ok("setup cuMemAlloc", e.cuMemAlloc(&d, kSize));
    return AS(cuMemFree, p)(d);
  };
  c["cuMemFree_v2"] = [](void* p, Env& e) {
    CUdeviceptr d = 0;
    ok("setup cuMemAlloc_v2", e.cuMemAlloc_v2(&d, kSize));
    return AS(cuMemFree_v2, p)(d);
  };
  c["cuMemGetAddressRange_v2"] = [](void* p, Env& e) {
    CUdeviceptr base = 0;
    size_t size = 0;
    const CUresult r = AS(cuMemGetAddressRange_v2, p)(&base, &size, e.buffer + 10);
    VICTIM_CHECK(r != CUDA_SUCCESS || (base == e.buffer && size == kSize),
                 "cuMemGetAddressRange_v2 gave the wrong range");
    return r;
  };
  auto alloc_async = [](auto fn) {
    return [fn](void* p, Env& e) {
      CUdeviceptr d = 0;
      const CUresult r = fn(p)(&d, kSize, nullptr);
      ok("cleanup cuMemFree_v2", e.cuMemFree_v2(d));
      return r;
    };
  };
  c["cuMemAllocAsync"] = alloc_async([](void* p) { return AS(cuMemAllocAsync, p); });
  c["cuMemAllocAsync_ptsz"] = alloc_async([](void* p) { return AS(cuMemAllocAsync_ptsz, p); });
  auto alloc_pool = [](auto fn) {
    return [fn](void* p, Env& e) {
      CUdeviceptr d = 0;
      const CUresult r = fn(p)(&d, kSize, e.pool, nullptr);
      ok("cleanup cuMemFree_v2", e.cuMemFree_v2(d));
      return r;
    };
  };
  c["cuMemAllocFromPoolAsync"] = alloc_pool([](void* p) { return AS(cuMemAllocFromPoolAsync, p); });
  c["cuMemAllocFromPoolAsync_ptsz"] =
      alloc_pool([](void* p) { return AS(cuMemAllocFromPoolAsync_ptsz, p); });
  auto free_async = [](auto fn) {
    return [fn](void* p, Env& e) {
      CUdeviceptr d = 0;
      ok("setup cuMemAlloc_v2", e.cuMemAlloc_v2(&d, kSize));
      return fn(p)(d, nullptr);
    };
  };
  c["cuMemFreeAsync"] = free_async([](void* p) { return AS(cuMemFreeAsync, p); });
  c["cuMemFreeAsync_ptsz"] = free_async([](void* p) { return AS(cuMemFreeAsync_ptsz, p); });
  c["cuMemPoolTrimTo"] = [](void* p, Env& e) { return AS(cuMemPoolTrimTo, p)(e.pool, 0); };
  c["cuMemCreate"] = [](void* p, Env& e) {
    CUmemGenericAllocationHandle h = 0;
    const CUmemAllocationProp prop = device_prop();
    const CUresult r = AS(cuMemCreate, p)(&h, 2ULL << 20U, &prop, 0);
    ok("cleanup cuMemRelease", e.cuMemRelease(h));
    return r;
  };
  c["cuMemRelease"] = [](void* p, Env& e) {
    CUmemGenericAllocationHandle h = 0;
    const CUmemAllocationProp prop = device_prop();
    ok("setup cuMemCreate", e.cuMemCreate(&h, 2ULL << 20U, &prop, 0));
    return AS(cuMemRelease, p)(h);
  };
  c["cuArrayCreate"] = [](void* p, Env& e) {
    const CUDA_ARRAY_DESCRIPTOR_v1 desc{64, 64, 0x20, 1};
    CUarray a = nullptr;
    const CUresult r = AS(cuArrayCreate, p)(&a, &desc);
    ok("cleanup cuArrayDestroy", e.cuArrayDestroy(a));
    return r;
  };
  c["cuArrayCreate_v2"] = [](void* p, Env& e) {
    const CUDA_ARRAY_DESCRIPTOR desc{64, 64, 0x20, 1};
    CUarray a = nullptr;
    const CUresult r = AS(cuArrayCreate_v2, p)(&a, &desc);
    ok("cleanup cuArrayDestroy", e.cuArrayDestroy(a));
    return r;
  };
  c["cuArray3DCreate"] = [](void* p, Env& e) {
    const CUDA_ARRAY3D_DESCRIPTOR_v1 desc{64, 64, 4, 0x20, 1, 0};
    CUarray a = nullptr;
    const CUresult r = AS(cuArray3DCreate, p)(&a, &desc);
    ok("cleanup cuArrayDestroy", e.cuArrayDestroy(a));
    return r;
  };
  c["cuArray3DCreate_v2"] = [](void* p, Env& e) {
    const CUDA_ARRAY3D_DESCRIPTOR desc{64, 64, 4, 0x20, 1, 0};
    CUarray a = nullptr;
    const CUresult r = AS(cuArray3DCreate_v2, p)(&a, &desc);
    ok("cleanup cuArrayDestroy", e.cuArrayDestroy(a));
    return r;
  };
  c["cuArrayDestroy"] = [](void* p, Env& e) {
    const CUDA_ARRAY_DESCRIPTOR desc{64, 64, 0x20, 1};
    CUarray a = nullptr;
    ok("setup cuArrayCreate_v2", e.cuArrayCreate_v2(&a, &desc));
    return AS(cuArrayDestroy, p)(a);
  };
  c["cuMipmappedArrayCreate"] = [](void* p, Env& e) {
    const CUDA_ARRAY3D_DESCRIPTOR desc{64, 64, 0, 0x20, 1, 0};
    CUmipmappedArray a = nullptr;
    const CUresult r = AS(cuMipmappedArrayCreate, p)(&a, &desc, 3);
    ok("cleanup cuMipmappedArrayDestroy", e.cuMipmappedArrayDestroy(a));
    return r;
  };
  c["cuMipmappedArrayDestroy"] = [](void* p, Env& e) {
    const CUDA_ARRAY3D_DESCRIPTOR desc{64, 64, 0, 0x20, 1, 0};
    CUmipmappedArray a = nullptr;
    ok("setup cuMipmappedArrayCreate", e.cuMipmappedArrayCreate(&a, &desc, 3));
    return AS(cuMipmappedArrayDestroy, p)(a);
  };
  c["cuDevicePrimaryCtxRetain"] = [](void* p, Env& e) {
    CUcontext ctx = nullptr;
    const CUresult r = AS(cuDevicePrimaryCtxRetain, p)(&ctx, e.dev);
    VICTIM_CHECK(r != CUDA_SUCCESS || ctx == e.primary, "the primary context changed");
    ok("cleanup cuDevicePrimaryCtxRelease_v2", e.cuDevicePrimaryCtxRelease_v2(e.dev));
    return r;
  };
  auto release = [](auto fn) {
    return [fn](void* p, Env& e) {
      CUcontext ctx = nullptr;
      ok("setup cuDevicePrimaryCtxRetain", e.cuDevicePrimaryCtxRetain(&ctx, e.dev));
      return fn(p)(e.dev);
    };
  };
  c["cuDevicePrimaryCtxRelease"] =
      release([](void* p) { return AS(cuDevicePrimaryCtxRelease, p); });
  c["cuDevicePrimaryCtxRelease_v2"] =
      release([](void* p) { return AS(cuDevicePrimaryCtxRelease_v2, p); });
  // Resetting frees what the primary context holds; the environment keeps nothing in it.
  c["cuDevicePrimaryCtxReset"] = [](void* p, Env& e) {
    return AS(cuDevicePrimaryCtxReset, p)(e.dev);
  };
  c["cuDevicePrimaryCtxReset_v2"] = [](void* p, Env& e) {
    return AS(cuDevicePrimaryCtxReset_v2, p)(e.dev);
  };
  auto destroy_created = [](Env& e, CUresult r, CUcontext ctx) {
    if (r == CUDA_SUCCESS) {
      ok("cleanup cuCtxDestroy_v2", e.cuCtxDestroy_v2(ctx));
    }
    return r;
  };
  c["cuCtxCreate"] = [destroy_created](void* p, Env& e) {
    CUcontext ctx = nullptr;
    const CUresult r = AS(cuCtxCreate, p)(&ctx, 0, e.dev);
    return destroy_created(e, r, ctx);
  };
  c["cuCtxCreate_v2"] = [destroy_created](void* p, Env& e) {
    CUcontext ctx = nullptr;
    const CUresult r = AS(cuCtxCreate_v2, p)(&ctx, 0, e.dev);
    return destroy_created(e, r, ctx);
  };
  c["cuCtxCreate_v3"] = [destroy_created](void* p, Env& e) {
    CUcontext ctx = nullptr;
    const CUresult r = AS(cuCtxCreate_v3, p)(&ctx, nullptr, 0, 0, e.dev);
    return destroy_created(e, r, ctx);
  };
  c["cuCtxCreate_v4"] = [destroy_created](void* p, Env& e) {
    CUcontext ctx = nullptr;
    const CUresult r = AS(cuCtxCreate_v4, p)(&ctx, nullptr, 0, e.dev);
    return destroy_created(e, r, ctx);
  };
  auto destroy = [](auto fn) {
    return [fn](void* p, Env& e) {
      CUcontext ctx = nullptr;
      ok("setup cuCtxCreate_v2", e.cuCtxCreate_v2(&ctx, 0, e.dev));
      return fn(p)(ctx);
    };
  };
  c["cuCtxDestroy"] = destroy([](void* p) { return AS(cuCtxDestroy, p); });
  c["cuCtxDestroy_v2"] = destroy([](void* p) { return AS(cuCtxDestroy_v2, p); });
  c["cuCtxGetCurrent"] = [](void* p, Env& e) {
    CUcontext ctx = nullptr;
    const CUresult r = AS(cuCtxGetCurrent, p)(&ctx);
    VICTIM_CHECK(r != CUDA_SUCCESS || ctx == e.primary, "cuCtxGetCurrent: not the primary context");
    return r;
  };
  c["cuCtxGetDevice"] = [](void* p, Env&) {
    CUdevice d = -1;
    return AS(cuCtxGetDevice, p)(&d);
  };
  c["cuCtxGetDevice_v2"] = [](void* p, Env& e) {
    CUdevice d = -1;
    return AS(cuCtxGetDevice_v2, p)(&d, e.primary);
  };
  c["cuCtxSynchronize"] = [](void* p, Env&) { return AS(cuCtxSynchronize, p)(); };
  c["cuCtxSynchronize_v2"] = [](void* p, Env&) { return AS(cuCtxSynchronize_v2, p)(nullptr); };
  c["cuCtxPushCurrent_v2"] = [](void* p, Env& e) {
    const CUresult r = AS(cuCtxPushCurrent_v2, p)(e.primary);
    ok("cleanup cuCtxPopCurrent_v2", e.cuCtxPopCurrent_v2(nullptr));
    return r;
  };
  c["cuCtxPopCurrent_v2"] = [](void* p, Env& e) {
    ok("setup cuCtxPushCurrent_v2", e.cuCtxPushCurrent_v2(e.primary));
    CUcontext ctx = nullptr;
    return AS(cuCtxPopCurrent_v2, p)(&ctx);
  };
  auto module_load = [](auto load) {
    return [load](void* p, Env& e) {
      CUmodule m = nullptr;
      const CUresult r = load(p, &m);
      ok("cleanup cuModuleUnload", e.cuModuleUnload(m));
      return r;
    };
  };
  c["cuModuleLoad"] =
      module_load([](void* p, CUmodule* m) { return AS(cuModuleLoad, p)(m, "probe.cubin"); });
  c["cuModuleLoadData"] =
      module_load([](void* p, CUmodule* m) { return AS(cuModuleLoadData, p)(m, kImage); });
  c["cuModuleLoadDataEx"] = module_load([](void* p, CUmodule* m) {
    return AS(cuModuleLoadDataEx, p)(m, kImage, 0, nullptr, nullptr);
  });
  c["cuModuleLoadFatBinary"] =
      module_load([](void* p, CUmodule* m) { return AS(cuModuleLoadFatBinary, p)(m, kImage); });
  c["cuModuleUnload"] = [](void* p, Env& e) {
    CUmodule m = nullptr;
    ok("setup cuModuleLoadData", e.cuModuleLoadData(&m, kImage));
    return AS(cuModuleUnload, p)(m);
  };
  c["cuLibraryLoadData"] = [](void* p, Env& e) {
    CUlibrary lib = nullptr;
    const CUresult r =
        AS(cuLibraryLoadData, p)(&lib, kImage, nullptr, nullptr, 0, nullptr, nullptr, 0);
    ok("cleanup cuLibraryUnload", e.cuLibraryUnload(lib));
    return r;
  };
  c["cuLibraryLoadFromFile"] = [](void* p, Env& e) {
    CUlibrary lib = nullptr;
    const CUresult r =
        AS(cuLibraryLoadFromFile, p)(&lib, "probe.lib", nullptr, nullptr, 0, nullptr, nullptr, 0);
    ok("cleanup cuLibraryUnload", e.cuLibraryUnload(lib));
    return r;
  };
  c["cuLibraryUnload"] = [](void* p, Env& e) {
    CUlibrary lib = nullptr;
    ok("setup cuLibraryLoadData",
       e.cuLibraryLoadData(&lib, kImage, nullptr, nullptr, 0, nullptr, nullptr, 0));
    return AS(cuLibraryUnload, p)(lib);
  };
  c["cuGraphInstantiateWithFlags"] = [](void* p, Env& e) {
    CUgraphExec x = nullptr;
    const CUresult r = AS(cuGraphInstantiateWithFlags, p)(&x, e.graph, 0);
    ok("cleanup cuGraphExecDestroy", e.cuGraphExecDestroy(x));
    return r;
  };
  c["cuGraphExecDestroy"] = [](void* p, Env& e) {
    CUgraphExec x = nullptr;
    ok("setup cuGraphInstantiateWithFlags", e.cuGraphInstantiateWithFlags(&x, e.graph, 0));
    return AS(cuGraphExecDestroy, p)(x);
  };
  c["cuDeviceGraphMemTrim"] = [](void* p, Env& e) { return AS(cuDeviceGraphMemTrim, p)(e.dev); };
  c["cuGraphLaunch"] = [](void* p, Env& e) { return AS(cuGraphLaunch, p)(e.exec, nullptr); };
  c["cuGraphLaunch_ptsz"] = [](void* p, Env& e) {
    return AS(cuGraphLaunch_ptsz, p)(e.exec, nullptr);
  };
  c["cuLaunchKernel"] = [](void* p, Env& e) {
    return AS(cuLaunchKernel, p)(e.fn, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr);
  };
  c["cuLaunchKernel_ptsz"] = [](void* p, Env& e) {
    return AS(cuLaunchKernel_ptsz, p)(e.fn, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr);
  };
  c["cuLaunchKernelEx"] = [](void* p, Env& e) {
    const LaunchConfig cfg{1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, 0};
    return AS(cuLaunchKernelEx, p)(reinterpret_cast<const CUlaunchConfig*>(&cfg), e.fn, nullptr,
                                   nullptr);
  };
  c["cuLaunchKernelEx_ptsz"] = [](void* p, Env& e) {
    const LaunchConfig cfg{1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, 0};
    return AS(cuLaunchKernelEx_ptsz, p)(reinterpret_cast<const CUlaunchConfig*>(&cfg), e.fn,
                                        nullptr, nullptr);
  };
  c["cuLaunchCooperativeKernel"] = [](void* p, Env& e) {
    return AS(cuLaunchCooperativeKernel, p)(e.fn, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr);
  };
  c["cuLaunchCooperativeKernel_ptsz"] = [](void* p, Env& e) {
    return AS(cuLaunchCooperativeKernel_ptsz, p)(e.fn, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr);
  };
  c["cuGetProcAddress"] = [](void* p, Env&) {
    void* fn = nullptr;
    const CUresult r = AS(cuGetProcAddress, p)("cuDriverGetVersion", &fn, 12000, 0);
    VICTIM_CHECK(r != CUDA_SUCCESS || fn != nullptr, "nested cuGetProcAddress returned NULL");
    return r;
  };
  c["cuGetProcAddress_v2"] = [](void* p, Env&) {
    void* fn = nullptr;
    CUdriverProcAddressQueryResult st = -1;
    const CUresult r = AS(cuGetProcAddress_v2, p)("cuDriverGetVersion", &fn, 12000, 0, &st);
    VICTIM_CHECK(r != CUDA_SUCCESS || (fn != nullptr && st == CU_GET_PROC_ADDRESS_SUCCESS),
                 "nested cuGetProcAddress_v2 failed");
    return r;
  };
  static char host[64];
  c["cuMemcpyHtoD_v2"] = [](void* p, Env& e) {
    return AS(cuMemcpyHtoD_v2, p)(e.buffer, host, sizeof host);
  };
  c["cuMemcpyHtoD_v2_ptds"] = [](void* p, Env& e) {
    return AS(cuMemcpyHtoD_v2_ptds, p)(e.buffer, host, sizeof host);
  };
  c["cuStreamSynchronize"] = [](void* p, Env&) { return AS(cuStreamSynchronize, p)(nullptr); };
  c["cuStreamSynchronize_ptsz"] = [](void* p, Env&) {
    return AS(cuStreamSynchronize_ptsz, p)(nullptr);
  };
  auto stream_destroy = [](auto fn) {
    return [fn](void* p, Env& e) {
      CUstream s = nullptr;
      ok("setup cuStreamCreate", e.cuStreamCreate(&s, 0));
      return fn(p)(s);
    };
  };
  c["cuStreamDestroy"] = stream_destroy([](void* p) { return AS(cuStreamDestroy, p); });
  c["cuStreamDestroy_v2"] = stream_destroy([](void* p) { return AS(cuStreamDestroy_v2, p); });
  return c;
}

struct Counts {
  unsigned long long driver;
  unsigned long long hooked;
};

const char* flag_name(cuuint64_t flags) {
  switch (flags) {
    case CU_GET_PROC_ADDRESS_DEFAULT: return "DEFAULT";
    case CU_GET_PROC_ADDRESS_LEGACY_STREAM: return "LEGACY_STREAM";
    default: return "PER_THREAD_DEFAULT_STREAM";
  }
}

/// The fake's own table must say what the driver says, for the cases the tests rely on.
void check_fake_table(const victim::FakeCuda& fake) {
  struct Case {
    const char* base;
    int version;
    cuuint64_t flags;
    const char* symbol;
  };
  constexpr auto PTDS = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
  const Case cases[] = {
      {"cuMemAlloc", 3020, 0, "cuMemAlloc_v2"},
      {"cuMemAlloc", 3000, 0, "cuMemAlloc"},
      {"cuCtxCreate", 11030, 0, "cuCtxCreate_v2"},
      {"cuCtxCreate", 11040, 0, "cuCtxCreate_v3"},
      {"cuCtxCreate", 12050, 0, "cuCtxCreate_v4"},
      {"cuCtxDestroy", 4000, 0, "cuCtxDestroy_v2"},
      {"cuCtxDestroy", 3020, 0, "cuCtxDestroy"},
      {"cuDevicePrimaryCtxRelease", 11000, 0, "cuDevicePrimaryCtxRelease_v2"},
      {"cuDevicePrimaryCtxReset", 10020, 0, "cuDevicePrimaryCtxReset"},
      {"cuGetProcAddress", 11030, 0, "cuGetProcAddress"},
      {"cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2"},
      {"cuDeviceGetUuid", 11040, 0, "cuDeviceGetUuid_v2"},
      {"cuLaunchKernel", 12000, PTDS, "cuLaunchKernel_ptsz"},
      {"cuLaunchKernel", 12000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, "cuLaunchKernel"},
      {"cuMemAllocAsync", 12000, PTDS, "cuMemAllocAsync_ptsz"},
      {"cuGraphLaunch", 12000, PTDS, "cuGraphLaunch_ptsz"},
      {"cuMemGetInfo", 3020, PTDS, "cuMemGetInfo_v2"},
      {"cuLaunchKernelEx", 11060, 0, "cuLaunchKernelEx"},
      {"cuCtxSynchronize", 13000, 0, "cuCtxSynchronize_v2"},
      {"cuMemAllocAsync", 11000, 0, nullptr},   // VERSION_NOT_SUFFICIENT
      {"cuNoSuchFunction", 12000, 0, nullptr},  // SYMBOL_NOT_FOUND
  };
  for (const auto& c : cases) {
    const char* got = nullptr;
    const int status = fake.proc_symbol(c.base, c.version, c.flags, &got);
    const bool as_expected = c.symbol == nullptr
                                 ? (got == nullptr && status != CU_GET_PROC_ADDRESS_SUCCESS)
                                 : (got != nullptr && std::strcmp(got, c.symbol) == 0);
    VICTIM_CHECK(as_expected, "fake table: %s @%d %s gives %s (status %d), expected %s", c.base,
                 c.version, flag_name(c.flags), got ? got : "nothing", status,
                 c.symbol ? c.symbol : "nothing");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_procaddress");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  void* cuda = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  VICTIM_CHECK(cuda != nullptr, "dlopen(libcuda.so.1): %s", ::dlerror());
  const auto fake = victim::FakeCuda::find(cuda);
  check_fake_table(fake);

  const auto gpa = victim::lookup<decltype(&::cuGetProcAddress)>(cuda, "cuGetProcAddress");
  const auto gpa2 = victim::lookup<decltype(&::cuGetProcAddress_v2)>(cuda, "cuGetProcAddress_v2");

  // Environment: device 0, its primary context current, resources the probes use.
  Env env(cuda);
  ok("cuInit", env.cuInit(0));
  ok("cuDeviceGet", env.cuDeviceGet(&env.dev, 0));
  ok("cuDevicePrimaryCtxRetain", env.cuDevicePrimaryCtxRetain(&env.primary, env.dev));
  ok("cuCtxSetCurrent", env.cuCtxSetCurrent(env.primary));
  ok("cuMemAlloc_v2", env.cuMemAlloc_v2(&env.buffer, kSize));
  ok("cuModuleLoadData", env.cuModuleLoadData(&env.module, kImage));
  ok("cuModuleGetFunction", env.cuModuleGetFunction(&env.fn, env.module, "kernel"));
  ok("cuGraphCreate", env.cuGraphCreate(&env.graph, 0));
  ok("cuGraphInstantiateWithFlags", env.cuGraphInstantiateWithFlags(&env.exec, env.graph, 0));
  ok("cuDeviceGetDefaultMemPool", env.cuDeviceGetDefaultMemPool(&env.pool, env.dev));

  const auto table = callers();
  std::map<std::string, std::vector<std::string>> variants;  // base -> exported symbols
  for (const auto& [symbol, caller] : table) {
    variants[base_of(symbol)].push_back(symbol);
  }
  for (const auto& symbol : victim::interposed_cuda_symbols()) {
    if (!table.contains(symbol)) {
      std::fprintf(stderr, "victim_procaddress: note: no probe for interposed symbol %s\n",
                   symbol.c_str());
    }
  }

  // Resources the environment holds in the primary context would be freed by the reset probes.
  // The buffer and module live there, so reset probes run last, after everything else.
  std::vector<std::string> bases;
  for (const auto& [base, syms] : variants) {
    if (base != "cuDevicePrimaryCtxReset") {
      bases.push_back(base);
    }
  }
  bases.push_back("cuDevicePrimaryCtxReset");

  const auto routed_before = softmig.route("cuGetProcAddress");
  unsigned long long probes = 0;
  for (const auto& base : bases) {
    const auto& syms = variants[base];
    for (const int version : kVersions) {
      for (const cuuint64_t flags : kFlags) {
        const char* expected = nullptr;
        const int expected_status = fake.proc_symbol(base.c_str(), version, flags, &expected);
        const std::string where = base + " @" + std::to_string(version) + " " + flag_name(flags);
        g_probe = where;

        void* fn = reinterpret_cast<void*>(0x1);
        CUdriverProcAddressQueryResult status = -1;
        const CUresult r = gpa2(base.c_str(), &fn, version, flags, &status);
        void* fn1 = reinterpret_cast<void*>(0x1);
        const CUresult r1 = gpa(base.c_str(), &fn1, version, flags);
        VICTIM_CHECK(status == expected_status, "%s: symbolStatus %d, the driver says %d",
                     where.c_str(), status, expected_status);
        if (expected_status != CU_GET_PROC_ADDRESS_SUCCESS) {
          VICTIM_CHECK(r == CUDA_ERROR_NOT_FOUND && fn == nullptr && r1 == CUDA_ERROR_NOT_FOUND &&
                           fn1 == nullptr,
                       "%s: expected CUDA_ERROR_NOT_FOUND and NULL, got %d/%p (_v2) %d/%p (v1)",
                       where.c_str(), r, fn, r1, fn1);
          continue;
        }
        VICTIM_CHECK(r == CUDA_SUCCESS && fn != nullptr && r1 == CUDA_SUCCESS && fn1 == fn,
                     "%s: _v2 gave %d/%p, v1 gave %d/%p", where.c_str(), r, fn, r1, fn1);
        // The same function a dlsym of the resolved symbol gives: softmig's wrapper of exactly
        // that symbol if it interposes it, the driver's function otherwise.
        void* direct = ::dlsym(cuda, expected);
        VICTIM_CHECK(fn == direct, "%s: cuGetProcAddress gave %p but dlsym(%s) gives %p",
                     where.c_str(), fn, expected, direct);
        const auto caller = table.find(expected);
        VICTIM_CHECK(caller != table.end(), "%s resolves to %s, which has no probe", where.c_str(),
                     expected);

        std::map<std::string, Counts> before;
        for (const auto& s : syms) {
          before[s] = {fake.count(s.c_str()), softmig.calls(s.c_str())};
        }
        const CUresult call = caller->second(fn, env);
        VICTIM_CHECK(call == CUDA_SUCCESS, "%s: calling the returned %s failed with %d",
                     where.c_str(), expected, call);
        for (const auto& s : syms) {
          const bool chosen = s == expected;
          const unsigned long long driver = fake.count(s.c_str()) - before[s].driver;
          const unsigned long long hooked = softmig.calls(s.c_str()) - before[s].hooked;
          const unsigned long long want_hooked =
              chosen && softmig.loaded() && victim::interposed(s) ? 1 : 0;
          VICTIM_CHECK(driver == (chosen ? 1U : 0U) && hooked == want_hooked,
                       "%s (driver resolves %s): %s ran %llu time(s) in the driver and %llu in "
                       "softmig, expected %d and %llu",
                       where.c_str(), expected, s.c_str(), driver, hooked, chosen ? 1 : 0,
                       want_hooked);
        }
        ++probes;
      }
    }
  }
  VICTIM_CHECK(probes > 100, "only %llu lookups were probed", probes);

  // Names the driver does not know, and invalid flags, fail exactly as the driver says.
  for (const char* name : {"cuNoSuchFunction", "cuMemAlloc_v2", "nvmlInit_v2", ""}) {
    const char* sym = nullptr;
    const int expected_status = fake.proc_symbol(name, 12000, 0, &sym);
    void* fn = reinterpret_cast<void*>(0x1);
    CUdriverProcAddressQueryResult status = -1;
    const CUresult r = gpa2(name, &fn, 12000, 0, &status);
    VICTIM_CHECK(expected_status == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND &&
                     r == CUDA_ERROR_NOT_FOUND && fn == nullptr &&
                     status == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND,
                 "unknown name \"%s\": got %d/%p/status %d, driver status %d", name, r, fn, status,
                 expected_status);
  }
  {
    void* fn = nullptr;
    const CUresult r = gpa2("cuMemAlloc", &fn, 12000, 4, nullptr);
    VICTIM_CHECK(r == CUDA_ERROR_INVALID_VALUE, "invalid flags: got %d, expected %d", r,
                 CUDA_ERROR_INVALID_VALUE);
  }

  // Self-lookup: a cuGetProcAddress obtained through cuGetProcAddress still routes lookups
  // through softmig, at any depth.
  {
    void* self2 = nullptr;
    ok("cuGetProcAddress_v2(cuGetProcAddress, 12000)",
       gpa2("cuGetProcAddress", &self2, 12000, 0, nullptr));
    void* self1 = nullptr;
    ok("nested cuGetProcAddress_v2(cuGetProcAddress, 11030)",
       AS(cuGetProcAddress_v2, self2)("cuGetProcAddress", &self1, 11030, 0, nullptr));
    for (void* self : {self2, self1}) {
      void* alloc = nullptr;
      if (self == self2) {
        ok("self lookup cuMemAlloc",
           AS(cuGetProcAddress_v2, self)("cuMemAlloc", &alloc, 12000, 0, nullptr));
      } else {
        ok("self lookup cuMemAlloc", AS(cuGetProcAddress, self)("cuMemAlloc", &alloc, 12000, 0));
      }
      const Counts before{fake.count("cuMemAlloc_v2"), softmig.calls("cuMemAlloc_v2")};
      CUdeviceptr d = 0;
      ok("cuMemAlloc_v2 through a self-looked-up cuGetProcAddress",
         AS(cuMemAlloc_v2, alloc)(&d, kSize));
      ok("cuMemFree_v2", env.cuMemFree_v2(d));
      const unsigned long long hooked = softmig.calls("cuMemAlloc_v2") - before.hooked;
      VICTIM_CHECK(fake.count("cuMemAlloc_v2") - before.driver == 1 &&
                       hooked == (softmig.loaded() ? 1U : 0U),
                   "cuMemAlloc_v2 through a %s obtained from cuGetProcAddress: softmig saw %llu "
                   "call(s)",
                   self == self2 ? "cuGetProcAddress_v2" : "cuGetProcAddress", hooked);
    }
  }

  if (softmig.loaded()) {
    VICTIM_CHECK(softmig.route("cuGetProcAddress") > routed_before,
                 "softmig_route_count(\"cuGetProcAddress\") did not grow");
    VICTIM_CHECK(softmig.route("unmapped") == 0,
                 "softmig_route_count(\"unmapped\") is %llu: some resolved symbols had no wrapper",
                 softmig.route("unmapped"));
  }
  return 0;
}
