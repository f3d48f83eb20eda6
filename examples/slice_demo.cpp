// SPDX-License-Identifier: Apache-2.0
/// @file slice_demo.cpp
/// @brief What a CUDA program sees of its GPU, and how much memory it can really take.
///
/// A plain CUDA driver API program, built without a CUDA toolkit from softmig's own ABI
/// declarations. It loads libcuda.so.1 at run time (dlopen + dlsym) rather than linking it, so the
/// same binary runs against the real NVIDIA driver or against softmig's fake driver
/// (LD_LIBRARY_PATH=build/fake). Run it bare, then under `softmig run --memory 4G`, and compare.
///
/// It prints the GPU's name, the memory the driver reports, then allocates 256 MiB blocks until
/// the driver refuses with CUDA_ERROR_OUT_OF_MEMORY, frees them, and ends with one
/// machine-readable "summary:" line (scripts/demo.sh reads it).
///
/// Exit status: 0 when allocation ended with an out-of-memory refusal, 1 on any other failure.
#include <dlfcn.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "abi/cuda_types.hpp"
#include "core/units.hpp"

// The driver entry points this program calls, as the driver declares them. They are never
// linked: each is looked up in libcuda.so.1 by name, and only its type is used here.
extern "C" {
CUresult cuInit(unsigned int flags);
CUresult cuDeviceGet(CUdevice* device, int ordinal);
CUresult cuDeviceGetName(char* name, int len, CUdevice dev);
CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev);
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev);
CUresult cuCtxSetCurrent(CUcontext ctx);
CUresult cuDeviceTotalMem_v2(std::size_t* bytes, CUdevice dev);
CUresult cuMemGetInfo_v2(std::size_t* free, std::size_t* total);
CUresult cuMemAlloc_v2(CUdeviceptr* dptr, std::size_t bytesize);
CUresult cuMemFree_v2(CUdeviceptr dptr);
}

namespace {

constexpr std::size_t kBlock = 256ULL << 20U;  // 256 MiB
constexpr std::size_t kMaxBlocks = 16384;       // 4 TiB: a stop for a driver that never refuses

struct Driver {
  decltype(&cuInit) init = nullptr;
  decltype(&cuDeviceGet) device_get = nullptr;
  decltype(&cuDeviceGetName) device_get_name = nullptr;
  decltype(&cuDevicePrimaryCtxRetain) primary_ctx_retain = nullptr;
  decltype(&cuDevicePrimaryCtxRelease_v2) primary_ctx_release = nullptr;
  decltype(&cuCtxSetCurrent) ctx_set_current = nullptr;
  decltype(&cuDeviceTotalMem_v2) device_total_mem = nullptr;
  decltype(&cuMemGetInfo_v2) mem_get_info = nullptr;
  decltype(&cuMemAlloc_v2) mem_alloc = nullptr;
  decltype(&cuMemFree_v2) mem_free = nullptr;
};

template <typename F>
bool resolve(void* lib, const char* name, F& slot) {
  // A function pointer is copied out of dlsym's void*, as POSIX allows.
  void* p = dlsym(lib, name);
  if (p == nullptr) {
    std::fprintf(stderr, "slice_demo: libcuda.so.1 has no %s\n", name);
    return false;
  }
  static_assert(sizeof(slot) == sizeof(p));
  std::memcpy(&slot, &p, sizeof p);
  return true;
}

bool load(Driver& d) {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (lib == nullptr) {
    std::fprintf(stderr,
                 "slice_demo: cannot load libcuda.so.1 (%s).\n"
                 "No NVIDIA driver here? scripts/demo.sh runs this demo against softmig's fake driver.\n",
                 dlerror());
    return false;
  }
  return resolve(lib, "cuInit", d.init) && resolve(lib, "cuDeviceGet", d.device_get) &&
         resolve(lib, "cuDeviceGetName", d.device_get_name) &&
         resolve(lib, "cuDevicePrimaryCtxRetain", d.primary_ctx_retain) &&
         resolve(lib, "cuDevicePrimaryCtxRelease_v2", d.primary_ctx_release) &&
         resolve(lib, "cuCtxSetCurrent", d.ctx_set_current) &&
         resolve(lib, "cuDeviceTotalMem_v2", d.device_total_mem) &&
         resolve(lib, "cuMemGetInfo_v2", d.mem_get_info) && resolve(lib, "cuMemAlloc_v2", d.mem_alloc) &&
         resolve(lib, "cuMemFree_v2", d.mem_free);
}

const char* result_name(CUresult r) {
  switch (r) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_DEINITIALIZED: return "CUDA_ERROR_DEINITIALIZED";
    case CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case CUDA_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    default: return "CUDA error";
  }
}

bool check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return true;
  std::fprintf(stderr, "slice_demo: %s failed: %d (%s)\n", what, r, result_name(r));
  return false;
}

struct Size {
  char text[32];
  explicit Size(std::uint64_t bytes) { softmig::core::format_bytes(bytes, text, sizeof text); }
};

/// The version of softmig loaded into this process, or nullptr when it runs bare.
const char* softmig_loaded() {
  void* p = dlsym(RTLD_DEFAULT, "softmig_version");
  if (p == nullptr) return nullptr;
  const char* (*version)() = nullptr;
  std::memcpy(&version, &p, sizeof p);
  return version();
}

}  // namespace

int main() {
  Driver d;
  if (!load(d)) return 1;
  if (!check(d.init(0), "cuInit")) return 1;
  CUdevice dev = 0;
  if (!check(d.device_get(&dev, 0), "cuDeviceGet(0)")) return 1;
  char name[256] = {};
  if (!check(d.device_get_name(name, static_cast<int>(sizeof name), dev), "cuDeviceGetName")) return 1;
  CUcontext ctx = nullptr;
  if (!check(d.primary_ctx_retain(&ctx, dev), "cuDevicePrimaryCtxRetain")) return 1;
  if (!check(d.ctx_set_current(ctx), "cuCtxSetCurrent")) return 1;

  std::size_t device_total = 0;
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
  if (!check(d.device_total_mem(&device_total, dev), "cuDeviceTotalMem_v2")) return 1;
  if (!check(d.mem_get_info(&free_bytes, &total_bytes), "cuMemGetInfo_v2")) return 1;

  const char* softmig = softmig_loaded();
  std::printf("GPU 0: %s\n", name);
  if (softmig != nullptr) {
    std::printf("  softmig %s is loaded: the sizes below are the slice's\n", softmig);
  } else {
    std::printf("  softmig is not loaded: the sizes below are the whole GPU's\n");
  }
  std::printf("  cuDeviceTotalMem: %s\n", Size(device_total).text);
  std::printf("  cuMemGetInfo:     %s free of %s total\n", Size(free_bytes).text, Size(total_bytes).text);

  std::printf("Allocating %s blocks until the driver refuses...\n", Size(kBlock).text);
  std::fflush(stdout);
  std::vector<CUdeviceptr> blocks;
  CUresult last = CUDA_SUCCESS;
  while (blocks.size() < kMaxBlocks) {
    CUdeviceptr p = 0;
    last = d.mem_alloc(&p, kBlock);
    if (last != CUDA_SUCCESS) break;
    blocks.push_back(p);
  }
  const std::uint64_t obtained_mib = static_cast<std::uint64_t>(blocks.size()) * (kBlock >> 20U);
  std::printf("  obtained %" PRIu64 " MiB in %zu blocks; the next cuMemAlloc returned %d (%s)\n", obtained_mib,
              blocks.size(), last, result_name(last));
  std::size_t freed = 0;
  for (const CUdeviceptr p : blocks) {
    if (d.mem_free(p) == CUDA_SUCCESS) ++freed;
  }
  std::printf("  freed %zu of %zu blocks\n", freed, blocks.size());
  (void)d.primary_ctx_release(dev);

  const bool oom = last == CUDA_ERROR_OUT_OF_MEMORY;
  const bool within = obtained_mib * (1ULL << 20U) <= total_bytes;
  if (oom && within) {
    std::printf("verdict: OK: the driver refused after %" PRIu64 " MiB, within the %s it reports\n", obtained_mib,
                Size(total_bytes).text);
  } else if (oom) {
    std::printf("verdict: UNEXPECTED: %" PRIu64 " MiB obtained, more than the %s the driver reports\n",
                obtained_mib, Size(total_bytes).text);
  } else {
    std::printf("verdict: UNEXPECTED: allocation stopped without an out-of-memory refusal (%d, %s)\n", last,
                result_name(last));
  }
  std::printf("summary: softmig=%s total_bytes=%zu free_bytes=%zu device_total_bytes=%zu obtained_mib=%" PRIu64
              " last_result=%d\n",
              softmig != nullptr ? softmig : "none", total_bytes, free_bytes, device_total, obtained_mib, last);
  return (oom && freed == blocks.size()) ? 0 : 1;
}
