// SPDX-License-Identifier: Apache-2.0
/// @file scenarios_single.cpp
/// @brief Memory-slice scenarios that run in one process: filling the slice through every
///        allocation path, what the process is told about the GPU's size, over-limit requests,
///        unknown frees, driver failures, several GPUs, and damaged ledger files.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <type_traits>

#include "memory_common.hpp"
#include "scenarios.hpp"

namespace memtest {
namespace {

// ---- allocation paths --------------------------------------------------------------------

/// One way of allocating device memory and its matching free.
struct Path {
  std::string name;
  const char* symbol = "";      ///< the driver entry point that allocates (for injected failures)
  std::uint64_t block = 0;      ///< bytes one allocation is charged (the descriptor's size)
  /// Allocates one block; stores the key its free needs and the bytes it was charged.
  std::function<CUresult(std::uint64_t& key, std::uint64_t& charged)> alloc;
  std::function<CUresult(std::uint64_t key)> free;
};

CUDA_ARRAY_DESCRIPTOR array2d_desc() {
  CUDA_ARRAY_DESCRIPTOR d{};
  d.Width = 8192;
  d.Height = 8192;
  d.Format = kFormatFloat;
  d.NumChannels = 1;
  return d;  // 8192 x 8192 x 4 bytes = 256 MiB
}

CUDA_ARRAY3D_DESCRIPTOR array3d_desc() {
  CUDA_ARRAY3D_DESCRIPTOR d{};
  d.Width = 4096;
  d.Height = 4096;
  d.Depth = 4;
  d.Format = kFormatFloat;
  d.NumChannels = 1;
  return d;  // 4096 x 4096 x 4 x 4 bytes = 256 MiB
}

CUDA_ARRAY3D_DESCRIPTOR mipmap_desc() {
  CUDA_ARRAY3D_DESCRIPTOR d{};
  d.Width = 8192;
  d.Height = 8192;
  d.Depth = 0;
  d.Format = kFormatFloat;
  d.NumChannels = 1;
  return d;  // two levels: 256 MiB + 64 MiB
}
constexpr unsigned kMipLevels = 2;

CUmemAllocationProp device_prop(int ordinal) {
  CUmemAllocationProp p{};
  p.type = kAllocationPinned;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = ordinal;
  return p;
}

/// The legacy descriptors of the unversioned cuArrayCreate / cuArray3DCreate (32-bit extents),
/// placed at the start of a zeroed buffer, so that whatever reads past their end reads zeros,
/// deterministically.
union LegacyDescriptor {
  CUDA_ARRAY_DESCRIPTOR_v1 a2;
  CUDA_ARRAY3D_DESCRIPTOR_v1 a3;
  unsigned char room[64];
};

/// The key a path's free needs: the value of a device pointer or allocation handle, or the
/// address of an array.
template <typename Handle>
std::uint64_t key_of(Handle handle) {
  if constexpr (std::is_pointer_v<Handle>) {
    return reinterpret_cast<std::uint64_t>(handle);
  } else {
    return static_cast<std::uint64_t>(handle);
  }
}

/// A Path::alloc that obtains one `Handle` through `call(&handle)` and is charged `bytes`.
template <typename Handle, typename Call>
auto alloc_one(Call call, std::uint64_t bytes = kBlock) {
  return [call, bytes](std::uint64_t& key, std::uint64_t& charged) {
    Handle handle{};
    const CUresult rc = call(&handle);
    key = key_of(handle);
    charged = bytes;
    return rc;
  };
}

/// Pitched rows of 1000 bytes: the driver rounds the pitch up to 1024, so 262144 rows of the
/// pitch are 256 MiB.
constexpr std::size_t kPitchWidth = 1000;
constexpr std::size_t kPitchHeight = 262144;

/// Builds a path; the current context must exist (streams and pools are created here).
Path make_path(const std::string& name) {
  Path p;
  p.name = name;
  p.block = kBlock;
  auto free_v2 = [](std::uint64_t key) { return cuMemFree_v2(key); };
  auto free_v1 = [](std::uint64_t key) { return cuMemFree(static_cast<CUdeviceptr_v1>(key)); };
  auto free_array = [](std::uint64_t key) { return cuArrayDestroy(reinterpret_cast<CUarray>(key)); };
  if (name == "alloc_v2") {
    p.symbol = "cuMemAlloc_v2";
    p.alloc = alloc_one<CUdeviceptr>([](CUdeviceptr* d) { return cuMemAlloc_v2(d, kBlock); });
    p.free = free_v2;
  } else if (name == "alloc_v1") {
    p.symbol = "cuMemAlloc";
    p.alloc = alloc_one<CUdeviceptr_v1>(
        [](CUdeviceptr_v1* d) { return cuMemAlloc(d, static_cast<unsigned>(kBlock)); });
    p.free = free_v1;
  } else if (name == "pitch_v2") {
    p.symbol = "cuMemAllocPitch_v2";
    p.alloc = [](std::uint64_t& key, std::uint64_t& charged) {
      CUdeviceptr d = 0;
      std::size_t pitch = 0;
      const CUresult rc = cuMemAllocPitch_v2(&d, &pitch, kPitchWidth, kPitchHeight, 4);
      key = d;
      charged = static_cast<std::uint64_t>(pitch) * kPitchHeight;
      if (rc == CUDA_SUCCESS) MT_CHECK(pitch >= kPitchWidth, "pitch %zu below the row width", pitch);
      return rc;
    };
    p.free = free_v2;
  } else if (name == "pitch_v1") {
    p.symbol = "cuMemAllocPitch";
    p.alloc = [](std::uint64_t& key, std::uint64_t& charged) {
      CUdeviceptr_v1 d = 0;
      unsigned int pitch = 0;
      const CUresult rc = cuMemAllocPitch(&d, &pitch, kPitchWidth, kPitchHeight, 4);
      key = d;
      charged = static_cast<std::uint64_t>(pitch) * kPitchHeight;
      return rc;
    };
    p.free = free_v1;
  } else if (name == "managed") {
    p.symbol = "cuMemAllocManaged";
    p.alloc = alloc_one<CUdeviceptr>(
        [](CUdeviceptr* d) { return cuMemAllocManaged(d, kBlock, kAttachGlobal); });
    p.free = free_v2;
  } else if (name == "async") {
    p.symbol = "cuMemAllocAsync";
    p.alloc = alloc_one<CUdeviceptr>(  // the legacy default stream
        [](CUdeviceptr* d) { return cuMemAllocAsync(d, kBlock, nullptr); });
    p.free = [](std::uint64_t key) { return cuMemFreeAsync(key, nullptr); };
  } else if (name == "async_ptsz") {
    p.symbol = "cuMemAllocAsync_ptsz";
    p.alloc = alloc_one<CUdeviceptr>(  // the per-thread default stream
        [](CUdeviceptr* d) { return cuMemAllocAsync_ptsz(d, kBlock, nullptr); });
    p.free = [](std::uint64_t key) { return cuMemFreeAsync_ptsz(key, nullptr); };
  } else if (name == "pool_async_ptsz") {
    p.symbol = "cuMemAllocFromPoolAsync_ptsz";
    CUstream stream = nullptr;
    MT_CU(cuStreamCreate(&stream, 0));
    CUmemoryPool pool = nullptr;
    MT_CU(cuDeviceGetDefaultMemPool(&pool, 0));
    p.alloc = alloc_one<CUdeviceptr>(
        [stream, pool](CUdeviceptr* d) { return cuMemAllocFromPoolAsync_ptsz(d, kBlock, pool, stream); });
    p.free = [stream](std::uint64_t key) { return cuMemFreeAsync_ptsz(key, stream); };
  } else if (name == "pool_async") {
    p.symbol = "cuMemAllocFromPoolAsync";
    CUstream stream = nullptr;
    MT_CU(cuStreamCreate(&stream, 0));
    CUmemoryPool pool = nullptr;
    MT_CU(cuDeviceGetDefaultMemPool(&pool, 0));
    p.alloc = alloc_one<CUdeviceptr>(
        [stream, pool](CUdeviceptr* d) { return cuMemAllocFromPoolAsync(d, kBlock, pool, stream); });
    p.free = [stream](std::uint64_t key) { return cuMemFreeAsync(key, stream); };
  } else if (name == "vmm_create") {
    p.symbol = "cuMemCreate";
    p.alloc = alloc_one<CUmemGenericAllocationHandle>([](CUmemGenericAllocationHandle* h) {
      const CUmemAllocationProp prop = device_prop(0);
      return cuMemCreate(h, kBlock, &prop, 0);
    });
    p.free = [](std::uint64_t key) { return cuMemRelease(key); };
  } else if (name == "array2d") {
    p.symbol = "cuArrayCreate_v2";
    p.alloc = alloc_one<CUarray>([](CUarray* a) {
      const CUDA_ARRAY_DESCRIPTOR d = array2d_desc();
      return cuArrayCreate_v2(a, &d);
    });
    p.free = free_array;
  } else if (name == "array3d") {
    p.symbol = "cuArray3DCreate_v2";
    p.alloc = alloc_one<CUarray>([](CUarray* a) {
      const CUDA_ARRAY3D_DESCRIPTOR d = array3d_desc();
      return cuArray3DCreate_v2(a, &d);
    });
    p.free = free_array;
  } else if (name == "array2d_v1") {
    // The unversioned entry point of programs built against old headers: a _v1 descriptor.
    p.symbol = "cuArrayCreate";
    p.alloc = alloc_one<CUarray>([](CUarray* a) {
      LegacyDescriptor d{};
      d.a2 = CUDA_ARRAY_DESCRIPTOR_v1{8192, 8192, kFormatFloat, 1};
      return cuArrayCreate(a, &d.a2);
    });
    p.free = free_array;
  } else if (name == "array3d_v1") {
    p.symbol = "cuArray3DCreate";
    p.alloc = alloc_one<CUarray>([](CUarray* a) {
      LegacyDescriptor d{};
      d.a3 = CUDA_ARRAY3D_DESCRIPTOR_v1{4096, 4096, 4, kFormatFloat, 1, 0};
      return cuArray3DCreate(a, &d.a3);
    });
    p.free = free_array;
  } else if (name == "mipmap") {
    p.symbol = "cuMipmappedArrayCreate";
    p.block = kBlock + kBlock / 4;
    p.alloc = alloc_one<CUmipmappedArray>(
        [](CUmipmappedArray* a) {
          const CUDA_ARRAY3D_DESCRIPTOR d = mipmap_desc();
          return cuMipmappedArrayCreate(a, &d, kMipLevels);
        },
        p.block);
    p.free = [](std::uint64_t key) { return cuMipmappedArrayDestroy(reinterpret_cast<CUmipmappedArray>(key)); };
  } else {
    fail(__FILE__, __LINE__, "unknown allocation path \"%s\"", name.c_str());
  }
  return p;
}

/// The paths of the driver-failure scenario (the legacy _v1 array entry points have tests of
/// their own: oom.array2d_v1, oom.array3d_v1).
const char* const kAllPaths[] = {"alloc_v2",   "alloc_v1",        "pitch_v2",   "pitch_v1", "managed",
                                 "async",      "async_ptsz",      "pool_async", "pool_async_ptsz",
                                 "vmm_create", "array2d",         "array3d",    "mipmap"};

struct Fill {
  std::vector<std::uint64_t> keys;
  std::uint64_t obtained = 0;
  CUresult last = CUDA_SUCCESS;
};

/// Allocates blocks until the first failure.
Fill fill(const Path& p) {
  Fill f;
  for (int i = 0; i < 4096; ++i) {
    std::uint64_t key = 0;
    std::uint64_t charged = 0;
    f.last = p.alloc(key, charged);
    if (f.last != CUDA_SUCCESS) break;
    f.keys.push_back(key);
    f.obtained += charged;
  }
  return f;
}

void free_all(const Path& p, Fill& f) {
  for (const std::uint64_t key : f.keys) {
    const CUresult rc = p.free(key);
    MT_CHECK(rc == CUDA_SUCCESS, "%s: freeing 0x%llx returned %d", p.name.c_str(), static_cast<unsigned long long>(key),
             rc);
  }
  f.keys.clear();
}

/// The most a slice of `limit` with one context holds in whole blocks.
std::uint64_t whole_blocks(std::uint64_t limit, std::uint64_t block) {
  return limit > kContext ? (limit - kContext) / block * block : 0;
}

/// Allocates 256 MiB blocks with cuMemAlloc_v2 until refused; asserts the whole slice (less one
/// context) was available, then frees. Proves that nothing is left charged.
void expect_full_slice(std::uint64_t limit, const char* when) {
  const Path p = make_path("alloc_v2");
  Fill f = fill(p);
  MT_CHECK(f.last == CUDA_ERROR_OUT_OF_MEMORY, "%s: allocation ended with %d, expected CUDA_ERROR_OUT_OF_MEMORY (2)",
           when, f.last);
  MT_CHECK(f.obtained == whole_blocks(limit, kBlock),
           "%s: obtained %s in 256 MiB blocks, expected %s (slice %s less one context): bytes were leaked", when,
           mib(f.obtained).c_str(), mib(whole_blocks(limit, kBlock)).c_str(), mib(limit).c_str());
  free_all(p, f);
}

}  // namespace

// ---- 1. fill the slice through every allocation path ---------------------------------------

int oom(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: oom <path>");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  open_device(0);
  MT_CHECK(fake_process_used(0) == kContext, "the fake charged %s for the context, expected %s",
           mib(fake_process_used(0)).c_str(), mib(kContext).c_str());
  MT_CHECK(ledger_used() == kContext, "the ledger holds %s after the context was created, expected the context (%s)",
           mib(ledger_used()).c_str(), mib(kContext).c_str());
  const Path p = make_path(a[0]);
  const std::uint64_t room = limit - kContext;

  Fill first = fill(p);
  MT_CHECK(first.last == CUDA_ERROR_OUT_OF_MEMORY,
           "%s: allocation ended with %d after %s, expected exactly CUDA_ERROR_OUT_OF_MEMORY (2)", p.name.c_str(),
           first.last, mib(first.obtained).c_str());
  MT_CHECK(first.obtained <= room, "%s: obtained %s, more than the slice %s less the context (%s)", p.name.c_str(),
           mib(first.obtained).c_str(), mib(limit).c_str(), mib(room).c_str());
  MT_CHECK(first.obtained + p.block > room, "%s: obtained only %s; refused although %s of %s were free",
           p.name.c_str(), mib(first.obtained).c_str(), mib(room - first.obtained).c_str(), mib(room).c_str());
  MT_CHECK(fake_process_used(0) == kContext + first.obtained, "%s: the driver holds %s, expected %s", p.name.c_str(),
           mib(fake_process_used(0)).c_str(), mib(kContext + first.obtained).c_str());
  MT_CHECK(ledger_used() == kContext + first.obtained,
           "%s: the ledger charges %s, expected the context plus the allocations (%s)", p.name.c_str(),
           mib(ledger_used()).c_str(), mib(kContext + first.obtained).c_str());

  if (p.name == "vmm_create") {
    // Host memory is not the slice's: a host-located cuMemCreate larger than the whole slice
    // goes to the driver (whose answer the caller gets) and is never charged or refused.
    const std::uint64_t before = ledger_used();
    for (const int type : {kLocationHost, kLocationHostNuma}) {
      CUmemAllocationProp host{};
      host.type = kAllocationPinned;
      host.location.type = type;
      host.location.id = 0;
      const unsigned long long calls = fake_call_count("cuMemCreate");
      CUmemGenericAllocationHandle h = 0;
      const CUresult rc = cuMemCreate(&h, 8 * kGiB, &host, 0);
      MT_CHECK(fake_call_count("cuMemCreate") == calls + 1,
               "cuMemCreate with host location type %d did not reach the driver", type);
      // The fake driver only creates device memory and answers CUDA_ERROR_INVALID_VALUE.
      MT_CHECK(rc == CUDA_ERROR_INVALID_VALUE,
               "cuMemCreate with host location type %d returned %d, not the driver's answer (1): "
               "host memory was treated as slice memory",
               type, rc);
      MT_CHECK(ledger_used() == before, "a host-located cuMemCreate changed the ledger (%s -> %s)",
               mib(before).c_str(), mib(ledger_used()).c_str());
    }
    // Mapping created memory costs nothing more.
    CUdeviceptr va = 0;
    MT_CU(cuMemAddressReserve(&va, kBlock, 0, 0, 0));
    MT_CU(cuMemMap(va, kBlock, 0, first.keys.front(), 0));
    MT_CHECK(ledger_used() == before, "cuMemMap changed the ledger (%s -> %s)", mib(before).c_str(),
             mib(ledger_used()).c_str());
    MT_CU(cuMemUnmap(va, kBlock));
    MT_CU(cuMemAddressFree(va, kBlock));
  }

  free_all(p, first);
  MT_CHECK(fake_process_used(0) == kContext, "%s: after freeing everything the driver holds %s, expected the context (%s)",
           p.name.c_str(), mib(fake_process_used(0)).c_str(), mib(kContext).c_str());
  MT_CHECK(ledger_used() == kContext, "%s: after freeing everything the ledger charges %s, expected the context (%s)",
           p.name.c_str(), mib(ledger_used()).c_str(), mib(kContext).c_str());

  Fill second = fill(p);
  MT_CHECK(second.last == CUDA_ERROR_OUT_OF_MEMORY, "%s: second fill ended with %d, expected 2", p.name.c_str(),
           second.last);
  MT_CHECK(second.obtained == first.obtained, "%s: second fill obtained %s, the first %s: memory was leaked",
           p.name.c_str(), mib(second.obtained).c_str(), mib(first.obtained).c_str());
  free_all(p, second);
  MT_CHECK(fake_process_used(0) == kContext && ledger_used() == kContext, "%s: leftovers after the second fill",
           p.name.c_str());
  note("%s: %s slice, context %s: obtained %s in %zu blocks of %s, then CUDA_ERROR_OUT_OF_MEMORY; freed; same again",
       p.name.c_str(), mib(limit).c_str(), mib(kContext).c_str(), mib(first.obtained).c_str(),
       static_cast<std::size_t>(first.obtained / p.block), mib(p.block).c_str());
  return 0;
}

// ---- 2. what the process is told ----------------------------------------------------------

namespace {

struct NvmlView {
  std::uint64_t total, used, free;
};

NvmlView nvml_memory(unsigned index, bool v2) {
  static bool initialised = false;
  if (!initialised) {
    MT_NVML(nvmlInit_v2());
    initialised = true;
  }
  nvmlDevice_t dev = nullptr;
  MT_NVML(nvmlDeviceGetHandleByIndex_v2(index, &dev));
  if (!v2) {
    nvmlMemory_t m{};
    MT_NVML(nvmlDeviceGetMemoryInfo(dev, &m));
    return {m.total, m.used, m.free};
  }
  nvmlMemory_v2_t m{};
  m.version = nvmlMemory_v2;
  MT_NVML(nvmlDeviceGetMemoryInfo_v2(dev, &m));
  MT_CHECK(m.reserved <= m.total, "nvmlDeviceGetMemoryInfo_v2 reserved %llu > total", m.reserved);
  return {m.total, m.used, m.free};
}

void expect_nvml(unsigned index, std::uint64_t total, std::uint64_t used, const char* when) {
  for (const bool v2 : {false, true}) {
    const NvmlView m = nvml_memory(index, v2);
    const char* fn = v2 ? "nvmlDeviceGetMemoryInfo_v2" : "nvmlDeviceGetMemoryInfo";
    MT_CHECK(m.total == total, "%s: %s(%u) total %s, expected %s", when, fn, index, mib(m.total).c_str(),
             mib(total).c_str());
    MT_CHECK(m.used == used, "%s: %s(%u) used %s, expected %s", when, fn, index, mib(m.used).c_str(),
             mib(used).c_str());
    MT_CHECK(m.free == total - used, "%s: %s(%u) free %s, expected %s (total - used)", when, fn, index,
             mib(m.free).c_str(), mib(total - used).c_str());
  }
}

void expect_cuda_sizes(std::uint64_t total, std::uint64_t free, const char* when) {
  std::size_t device_total = 0;
  MT_CU(cuDeviceTotalMem_v2(&device_total, 0));
  MT_CHECK(device_total == total, "%s: cuDeviceTotalMem_v2 %s, expected %s", when, mib(device_total).c_str(),
           mib(total).c_str());
  std::size_t f = 0;
  std::size_t t = 0;
  MT_CU(cuMemGetInfo_v2(&f, &t));
  MT_CHECK(t == total, "%s: cuMemGetInfo_v2 total %s, expected %s", when, mib(t).c_str(), mib(total).c_str());
  MT_CHECK(f == free, "%s: cuMemGetInfo_v2 free %s, expected %s", when, mib(f).c_str(), mib(free).c_str());
  MT_CHECK(f <= t, "%s: cuMemGetInfo_v2 free %s exceeds total %s", when, mib(f).c_str(), mib(t).c_str());
}

std::uint64_t physical_size() {
  const char* devices = std::getenv("SOFTMIG_FAKE_DEVICES");
  MT_CHECK(devices != nullptr && std::strchr(devices, ',') == nullptr, "the test must set one SOFTMIG_FAKE_DEVICES");
  return parse_size(devices);
}

}  // namespace

int report(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: report limit|crowded|nolimit|underflow");
  check_environment(true);
  const std::string mode = a[0];
  const std::uint64_t phys = physical_size();
  if (mode == "limit") {
    const std::uint64_t limit = expected_limit();
    MT_CHECK(limit < phys, "the limit must be below the GPU's size");
    // An NVML-only process of the same job (what nvidia-smi is), started before any CUDA use,
    // asked once the job holds memory.
    Pipe ask;
    const pid_t smi = spawn(role() + " nvidia-smi", [&] {
      ask.close_write();
      ask.wait_eof();
      expect_nvml(0, limit, kContext + kGiB + kBlock, "NVML-only process of the job");
      return 0;
    });
    open_device(0);
    expect_cuda_sizes(limit, limit - kContext, "context only");
    expect_nvml(0, limit, kContext, "context only");
    CUdeviceptr p1 = 0;
    CUdeviceptr p2 = 0;
    MT_CU(cuMemAlloc_v2(&p1, kGiB));
    MT_CU(cuMemAlloc_v2(&p2, kBlock));
    const std::uint64_t allocated = kGiB + kBlock;
    expect_cuda_sizes(limit, limit - kContext - allocated, "1.25 GiB allocated");
    expect_nvml(0, limit, kContext + allocated, "1.25 GiB allocated");
    MT_CHECK(ledger_used() == kContext + allocated, "the ledger charges %s, NVML reported %s",
             mib(ledger_used()).c_str(), mib(kContext + allocated).c_str());
    ask.close_write();
    expect_success(smi, "the NVML-only process");
    MT_CU(cuMemFree_v2(p1));
    MT_CU(cuMemFree_v2(p2));
    expect_cuda_sizes(limit, limit - kContext, "after the frees");
    expect_nvml(0, limit, kContext, "after the frees");
    note("limit %s on a %s GPU: cuDeviceTotalMem, cuMemGetInfo and NVML report the slice exactly",
         mib(limit).c_str(), mib(phys).c_str());
  } else if (mode == "crowded") {
    // Another user of the GPU, outside the job and without a limit, holds most of it: the slice
    // must never promise more than the GPU really has free.
    const std::uint64_t limit = expected_limit();
    const std::uint64_t other = 12 * kGiB;
    Pipe ready;
    Pipe quit;
    const pid_t neighbour = spawn(role() + " neighbour", [&] {
      quit.close_write();
      ::setenv("SOFTMIG_SESSION", (session() + "-neighbour").c_str(), 1);
      ::unsetenv("CUDA_DEVICE_MEMORY_LIMIT");
      open_device(0);
      CUdeviceptr p = 0;
      MT_CU(cuMemAlloc_v2(&p, other));
      ready.signal();
      quit.wait_eof();
      return 0;
    });
    ready.wait(1, 30000);
    open_device(0);
    const std::uint64_t gpu_free = phys - other - 2 * kContext;
    MT_CHECK(gpu_free < limit - kContext, "the scenario needs a GPU with less free memory than the slice");
    expect_cuda_sizes(limit, gpu_free, "a neighbour holds 12 GiB");
    quit.close_write();
    expect_success(neighbour, "the neighbour");
    note("a neighbour outside the job holds 12 GiB: cuMemGetInfo reports %s free (what the GPU has), not %s",
         mib(gpu_free).c_str(), mib(limit - kContext).c_str());
  } else if (mode == "nolimit") {
    MT_CHECK(std::getenv("CUDA_DEVICE_MEMORY_LIMIT") == nullptr, "this mode needs no limit");
    open_device(0);
    expect_cuda_sizes(phys, phys - kContext, "no limit, context only");
    expect_nvml(0, phys, kContext, "no limit, context only");
    CUdeviceptr p1 = 0;
    MT_CU(cuMemAlloc_v2(&p1, 5 * kGiB));  // more than any slice of the other tests
    expect_cuda_sizes(phys, phys - kContext - 5 * kGiB, "no limit, 5 GiB allocated");
    expect_nvml(0, phys, kContext + 5 * kGiB, "no limit, 5 GiB allocated");
    MT_CU(cuMemFree_v2(p1));
    MT_CHECK(read_bytes(ledger_path(session())).empty(), "a process without a limit created a ledger file");
    note("no limit: the physical %s is reported unchanged", mib(phys).c_str());
  } else if (mode == "underflow") {
    const std::uint64_t limit = expected_limit();
    MT_CHECK(limit < kContext, "this mode needs a limit smaller than one context");
    open_device(0);
    // The context alone is more than the slice: free must be 0, never a wrapped-around value.
    expect_cuda_sizes(limit, 0, "context larger than the slice");
    expect_nvml(0, limit, limit, "context larger than the slice");
    CUdeviceptr p = 0;
    const CUresult rc = cuMemAlloc_v2(&p, kMiB);
    MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "1 MiB in an overfull slice returned %d, expected 2", rc);
    note("slice %s smaller than the %s context: free reported as 0, allocations refused", mib(limit).c_str(),
         mib(kContext).c_str());
  } else {
    fail(__FILE__, __LINE__, "unknown report mode %s", mode.c_str());
  }
  return 0;
}

// ---- 3. over the limit: OOM, nothing charged ---------------------------------------------

int refuse(const Args& a) {
  MT_CHECK(a.empty(), "usage: refuse");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  MT_CHECK(limit == 4 * kGiB, "this scenario is written for a 4 GiB slice");
  open_device(0);
  CUstream stream = nullptr;
  MT_CU(cuStreamCreate(&stream, 0));
  CUmemoryPool pool = nullptr;
  MT_CU(cuDeviceGetDefaultMemPool(&pool, 0));

  auto refused = [&](const char* what, const std::function<CUresult()>& call) {
    const std::uint64_t ledger_before = ledger_used();
    const std::uint64_t driver_before = fake_process_used(0);
    const CUresult rc = call();
    MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "%s returned %d, expected CUDA_ERROR_OUT_OF_MEMORY (2)", what, rc);
    MT_CHECK(ledger_used() == ledger_before, "%s was refused but the ledger went from %s to %s", what,
             mib(ledger_before).c_str(), mib(ledger_used()).c_str());
    MT_CHECK(fake_process_used(0) == driver_before, "%s was refused but the driver's usage went from %s to %s", what,
             mib(driver_before).c_str(), mib(fake_process_used(0)).c_str());
  };
  auto granted = [&](const char* what, std::uint64_t bytes) {
    const std::uint64_t before = ledger_used();
    CUdeviceptr p = 0;
    const CUresult rc = cuMemAlloc_v2(&p, bytes);
    MT_CHECK(rc == CUDA_SUCCESS, "%s (%s) returned %d although it fits", what, mib(bytes).c_str(), rc);
    MT_CHECK(ledger_used() == before + bytes, "%s: ledger %s -> %s, expected +%s", what, mib(before).c_str(),
             mib(ledger_used()).c_str(), mib(bytes).c_str());
    return p;
  };

  // Larger than the whole slice, on every path.
  const std::uint64_t huge = 5 * kGiB;
  refused("cuMemAlloc_v2(5 GiB)", [&] { CUdeviceptr p = 0; return cuMemAlloc_v2(&p, huge); });
  refused("cuMemAlloc(4 GiB - 1)", [&] { CUdeviceptr_v1 p = 0; return cuMemAlloc(&p, 0xFFFFFFFFU); });
  refused("cuMemAllocManaged(5 GiB)", [&] { CUdeviceptr p = 0; return cuMemAllocManaged(&p, huge, kAttachGlobal); });
  refused("cuMemAllocAsync(5 GiB)", [&] { CUdeviceptr p = 0; return cuMemAllocAsync(&p, huge, stream); });
  refused("cuMemAllocFromPoolAsync(5 GiB)",
          [&] { CUdeviceptr p = 0; return cuMemAllocFromPoolAsync(&p, huge, pool, stream); });
  refused("cuMemAllocPitch_v2(65536 x 81920)", [&] {
    CUdeviceptr p = 0;
    std::size_t pitch = 0;
    return cuMemAllocPitch_v2(&p, &pitch, 65536, 81920, 4);
  });
  refused("cuMemCreate(5 GiB)", [&] {
    CUmemGenericAllocationHandle h = 0;
    const CUmemAllocationProp prop = device_prop(0);
    return cuMemCreate(&h, huge, &prop, 0);
  });
  refused("cuArrayCreate_v2(40000 x 40000 float)", [&] {
    CUarray arr = nullptr;
    CUDA_ARRAY_DESCRIPTOR d = array2d_desc();
    d.Width = 40000;
    d.Height = 40000;
    return cuArrayCreate_v2(&arr, &d);
  });
  refused("cuArray3DCreate_v2(4096 x 4096 x 80 float)", [&] {
    CUarray arr = nullptr;
    CUDA_ARRAY3D_DESCRIPTOR d = array3d_desc();
    d.Depth = 80;
    return cuArray3DCreate_v2(&arr, &d);
  });
  refused("cuMipmappedArrayCreate(32768 x 32768 float, 4 levels)", [&] {
    CUmipmappedArray arr = nullptr;
    CUDA_ARRAY3D_DESCRIPTOR d = mipmap_desc();
    d.Width = 32768;
    d.Height = 32768;
    return cuMipmappedArrayCreate(&arr, &d, 4);
  });
  MT_CHECK(ledger_used() == kContext, "refusals left %s charged", mib(ledger_used() - kContext).c_str());

  // Partly full: what no longer fits is refused without being charged; what fits is granted,
  // up to the last byte of the slice.
  std::vector<CUdeviceptr> held;
  held.push_back(granted("3 GiB", 3 * kGiB));
  refused("1 GiB on top of 3 GiB", [&] { CUdeviceptr p = 0; return cuMemAlloc_v2(&p, kGiB); });
  held.push_back(granted("512 MiB on top of 3 GiB", 512 * kMiB));
  refused("256 MiB with 212 MiB left", [&] { CUdeviceptr p = 0; return cuMemAlloc_v2(&p, kBlock); });
  const std::uint64_t rest = limit - ledger_used();
  MT_CHECK(rest == 212 * kMiB, "expected 212 MiB left, the ledger says %s", mib(rest).c_str());
  held.push_back(granted("the last 212 MiB", rest));
  refused("1 byte in a full slice", [&] { CUdeviceptr p = 0; return cuMemAlloc_v2(&p, 1); });
  MT_CHECK(ledger_used() == limit, "a full slice should charge exactly the limit, the ledger says %s",
           mib(ledger_used()).c_str());
  std::size_t f = 1;
  std::size_t t = 0;
  MT_CU(cuMemGetInfo_v2(&f, &t));
  MT_CHECK(f == 0 && t == limit, "full slice: cuMemGetInfo_v2 says %s free of %s", mib(f).c_str(), mib(t).c_str());
  for (const CUdeviceptr p : held) MT_CU(cuMemFree_v2(p));
  MT_CHECK(ledger_used() == kContext, "after the frees the ledger charges %s", mib(ledger_used()).c_str());
  note("10 over-limit requests refused with 2 and nothing charged; the slice filled to its last byte");
  return 0;
}

// ---- 4. frees of pointers softmig never charged ---------------------------------------------

int bad_free(const Args& a) {
  const bool bare = a.size() == 1 && a[0] == "--bare";
  MT_CHECK(a.empty() || bare, "usage: bad-free [--bare]");
  check_environment(!bare);
  open_device(0);
  auto ledger = [&] { return bare ? 0 : ledger_used(); };
  auto expect = [&](const char* what, const char* symbol, CUresult expected, const std::function<CUresult()>& call) {
    const std::uint64_t before = ledger();
    const std::uint64_t driver_before = fake_process_used(0);
    const unsigned long long calls = fake_call_count(symbol);
    const CUresult rc = call();
    // Expected values are what the fake driver answers on its own (the --bare run checks that).
    MT_CHECK(rc == expected, "%s returned %d; the driver alone returns %d", what, rc, expected);
    MT_CHECK(fake_call_count(symbol) == calls + 1, "%s did not reach the driver", what);
    MT_CHECK(ledger() == before, "%s changed the ledger from %s to %s", what, mib(before).c_str(),
             mib(ledger()).c_str());
    MT_CHECK(fake_process_used(0) == driver_before, "%s changed the driver's usage", what);
  };

  CUdeviceptr freed = 0;
  MT_CU(cuMemAlloc_v2(&freed, kBlock));
  MT_CU(cuMemFree_v2(freed));
  CUdeviceptr live = 0;
  MT_CU(cuMemAlloc_v2(&live, kBlock));
  CUmemGenericAllocationHandle released = 0;
  const CUmemAllocationProp prop = device_prop(0);
  MT_CU(cuMemCreate(&released, 2 * kMiB, &prop, 0));
  MT_CU(cuMemRelease(released));
  CUarray destroyed = nullptr;
  CUDA_ARRAY_DESCRIPTOR d = array2d_desc();
  d.Width = 64;
  d.Height = 64;
  MT_CU(cuArrayCreate_v2(&destroyed, &d));
  MT_CU(cuArrayDestroy(destroyed));

  expect("cuMemFree_v2(0x1234)", "cuMemFree_v2", CUDA_ERROR_INVALID_VALUE, [] { return cuMemFree_v2(0x1234); });
  expect("cuMemFree_v2 of a pointer freed before", "cuMemFree_v2", CUDA_ERROR_INVALID_VALUE,
         [&] { return cuMemFree_v2(freed); });
  expect("cuMemFree_v2 of a pointer inside a live allocation", "cuMemFree_v2", CUDA_ERROR_INVALID_VALUE,
         [&] { return cuMemFree_v2(live + 512); });
  expect("cuMemFree(0x1234)", "cuMemFree", CUDA_ERROR_INVALID_VALUE, [] { return cuMemFree(0x1234); });
  expect("cuMemFreeAsync(0x1234)", "cuMemFreeAsync", CUDA_ERROR_INVALID_VALUE,
         [] { return cuMemFreeAsync(0x1234, nullptr); });
  expect("cuMemRelease(0xdead)", "cuMemRelease", CUDA_ERROR_INVALID_VALUE, [] { return cuMemRelease(0xdead); });
  expect("cuMemRelease of a released handle", "cuMemRelease", CUDA_ERROR_INVALID_VALUE,
         [&] { return cuMemRelease(released); });
  expect("cuArrayDestroy(0x1234)", "cuArrayDestroy", CUDA_ERROR_INVALID_HANDLE,
         [] { return cuArrayDestroy(reinterpret_cast<CUarray>(0x1234)); });
  expect("cuArrayDestroy of a destroyed array", "cuArrayDestroy", CUDA_ERROR_INVALID_HANDLE,
         [&] { return cuArrayDestroy(destroyed); });
  expect("cuMipmappedArrayDestroy(0x1234)", "cuMipmappedArrayDestroy", CUDA_ERROR_INVALID_HANDLE,
         [] { return cuMipmappedArrayDestroy(reinterpret_cast<CUmipmappedArray>(0x1234)); });

  // The live allocation is still charged and still frees normally.
  if (!bare) {
    MT_CHECK(ledger_used() == kContext + kBlock, "the live 256 MiB are charged as %s",
             mib(ledger_used() - kContext).c_str());
  }
  MT_CU(cuMemFree_v2(live));
  expect("cuMemFree_v2 of the same pointer again", "cuMemFree_v2", CUDA_ERROR_INVALID_VALUE,
         [&] { return cuMemFree_v2(live); });
  if (!bare) {
    MT_CHECK(ledger_used() == kContext, "after all frees the ledger charges %s", mib(ledger_used()).c_str());
    expect_full_slice(expected_limit(), "after the bad frees");
  }
  note("11 frees of unknown, stale or interior pointers/handles: the driver's own answers, ledger unchanged%s",
       bare ? " (bare driver)" : "");
  return 0;
}

// ---- 5. failing driver calls give their reservation back -----------------------------------

int driver_failure(const Args& a) {
  MT_CHECK(a.empty(), "usage: driver-failure");
  check_environment(true);
  const std::uint64_t limit = expected_limit();
  open_device(0);
  int cases = 0;
  for (const char* name : kAllPaths) {
    const Path p = make_path(name);
    for (const int injected : {CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_UNKNOWN}) {
      const std::uint64_t before = ledger_used();
      const std::uint64_t driver_before = fake_process_used(0);
      const unsigned long long calls = fake_call_count(p.symbol);
      fake_inject_result(p.symbol, injected, 1);
      std::uint64_t key = 0;
      std::uint64_t charged = 0;
      const CUresult rc = p.alloc(key, charged);
      MT_CHECK(fake_call_count(p.symbol) == calls + 1, "%s: the driver was not called", p.symbol);
      MT_CHECK(rc == injected, "%s: the driver failed with %d, the caller got %d", p.symbol, injected, rc);
      MT_CHECK(ledger_used() == before, "%s failing with %d left the ledger at %s (was %s): reservation not returned",
               p.symbol, injected, mib(ledger_used()).c_str(), mib(before).c_str());
      MT_CHECK(fake_process_used(0) == driver_before, "%s: the fake allocated despite the injection", p.symbol);
      ++cases;
    }
    // The path works normally afterwards.
    std::uint64_t key = 0;
    std::uint64_t charged = 0;
    MT_CU(p.alloc(key, charged));
    MT_CHECK(ledger_used() == kContext + charged, "%s after the failures: ledger %s", p.symbol,
             mib(ledger_used()).c_str());
    MT_CU(p.free(key));
  }
  // A failing free keeps the charge (the memory is still allocated); the retry releases it.
  CUdeviceptr ptr = 0;
  MT_CU(cuMemAlloc_v2(&ptr, kBlock));
  fake_inject_result("cuMemFree_v2", CUDA_ERROR_UNKNOWN, 1);
  const CUresult rc = cuMemFree_v2(ptr);
  MT_CHECK(rc == CUDA_ERROR_UNKNOWN, "a failing cuMemFree_v2 returned %d to the caller, expected 999", rc);
  MT_CHECK(ledger_used() == kContext + kBlock, "a failed free released its charge (ledger %s)",
           mib(ledger_used()).c_str());
  MT_CU(cuMemFree_v2(ptr));
  MT_CHECK(ledger_used() == kContext, "the retried free left %s charged", mib(ledger_used() - kContext).c_str());
  expect_full_slice(limit, "after the injected failures");
  note("%d injected allocation failures (codes 2, 1, 999 on %zu paths) returned to the caller; nothing leaked", cases,
       std::size(kAllPaths));
  return 0;
}

// ---- 11. several GPUs ------------------------------------------------------------------------

int multi_gpu(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: multi-gpu plain|swapped|uuid");
  check_environment(true);
  const std::string mode = a[0];
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  int phys_of[2] = {0, 1};  // CUDA ordinal -> physical device
  if (mode == "plain") {
    MT_CHECK(cvd == nullptr, "plain mode runs without CUDA_VISIBLE_DEVICES");
  } else if (mode == "swapped") {
    MT_CHECK(cvd != nullptr && std::strcmp(cvd, "1,0") == 0, "swapped mode needs CUDA_VISIBLE_DEVICES=1,0");
    phys_of[0] = 1;
    phys_of[1] = 0;
  } else if (mode == "uuid") {
    MT_CHECK(cvd != nullptr && std::string(cvd) == fake_uuid(1) + ",0", "uuid mode needs CUDA_VISIBLE_DEVICES=%s,0",
             fake_uuid(1).c_str());
    phys_of[0] = 1;
    phys_of[1] = 0;
  } else {
    fail(__FILE__, __LINE__, "unknown mode %s", mode.c_str());
  }
  const std::uint64_t phys_size[2] = {16 * kGiB, 8 * kGiB};
  MT_CHECK(std::getenv("SOFTMIG_FAKE_DEVICES") != nullptr && std::strcmp(std::getenv("SOFTMIG_FAKE_DEVICES"), "16G,8G") == 0,
           "needs SOFTMIG_FAKE_DEVICES=16G,8G");
  MT_CHECK(std::getenv("CUDA_DEVICE_MEMORY_LIMIT") == nullptr, "only per-ordinal limits here");
  const std::uint64_t limit[2] = {parse_size(std::getenv("CUDA_DEVICE_MEMORY_LIMIT_0")),
                                  parse_size(std::getenv("CUDA_DEVICE_MEMORY_LIMIT_1"))};
  std::string uuid[2];

  MT_CU(cuInit(0));
  int count = 0;
  MT_CU(cuDeviceGetCount(&count));
  MT_CHECK(count == 2, "%d CUDA devices, expected 2", count);
  CUcontext ctx[2] = {};
  for (int o = 0; o < 2; ++o) {
    CUdevice dev = -1;
    MT_CU(cuDeviceGet(&dev, o));
    CUuuid u{};
    MT_CU(cuDeviceGetUuid_v2(&u, dev));
    MT_CHECK(u.bytes[15] == phys_of[o], "CUDA ordinal %d is physical device %d, expected %d", o, u.bytes[15],
             phys_of[o]);
    uuid[o] = fake_uuid(phys_of[o]);
    std::size_t total = 0;
    MT_CU(cuDeviceTotalMem_v2(&total, dev));
    MT_CHECK(total == limit[o], "cuDeviceTotalMem_v2(ordinal %d = physical %d, %s) = %s, expected its ordinal's limit %s",
             o, phys_of[o], mib(phys_size[phys_of[o]]).c_str(), mib(total).c_str(), mib(limit[o]).c_str());
    unsigned int total32 = 0;
    MT_CU(cuDeviceTotalMem(&total32, dev));
    MT_CHECK(total32 == limit[o], "cuDeviceTotalMem (v1) of ordinal %d = %s, expected %s", o, mib(total32).c_str(),
             mib(limit[o]).c_str());
    MT_CU(cuDevicePrimaryCtxRetain(&ctx[o], dev));
  }
  auto expect_info = [&](int o, std::uint64_t free, const char* when) {
    use_context(ctx[o]);
    std::size_t f = 0;
    std::size_t t = 0;
    MT_CU(cuMemGetInfo_v2(&f, &t));
    MT_CHECK(t == limit[o] && f == free, "%s: cuMemGetInfo_v2 on ordinal %d: %s free of %s, expected %s of %s", when, o,
             mib(f).c_str(), mib(t).c_str(), mib(free).c_str(), mib(limit[o]).c_str());
    // The 32-bit legacy query: these slices fit in 32 bits, so it must agree exactly.
    unsigned int f32 = 0;
    unsigned int t32 = 0;
    MT_CU(cuMemGetInfo(&f32, &t32));
    MT_CHECK(t32 == limit[o] && f32 == free, "%s: cuMemGetInfo (v1) on ordinal %d: %s free of %s, expected %s of %s", when,
             o, mib(f32).c_str(), mib(t32).c_str(), mib(free).c_str(), mib(limit[o]).c_str());
  };
  auto expect_ledger = [&](int o, std::uint64_t used, const char* when) {
    const LedgerSnapshot snap = read_ledger(session());
    MT_CHECK(snap.ok, "no ledger");
    const int d = snap.device(uuid[o]);
    MT_CHECK(d >= 0, "%s: the ledger has no entry for %s", when, uuid[o].c_str());
    MT_CHECK(snap.region.devices[d].used == used, "%s: ledger charges %s on ordinal %d (%s), expected %s", when,
             mib(snap.region.devices[d].used).c_str(), o, uuid[o].c_str(), mib(used).c_str());
    MT_CHECK(snap.region.devices[d].limit == limit[o], "%s: ledger shows limit %s for %s, expected %s", when,
             mib(snap.region.devices[d].limit).c_str(), uuid[o].c_str(), mib(limit[o]).c_str());
  };
  auto expect_nvml_all = [&](const std::uint64_t used[2], const char* when) {
    MT_NVML(nvmlInit_v2());
    unsigned n = 0;
    MT_NVML(nvmlDeviceGetCount_v2(&n));
    MT_CHECK(n == 2, "NVML sees %u devices", n);
    for (unsigned i = 0; i < 2; ++i) {
      nvmlDevice_t dev = nullptr;
      MT_NVML(nvmlDeviceGetHandleByIndex_v2(i, &dev));
      char u[96] = {};
      MT_NVML(nvmlDeviceGetUUID(dev, u, sizeof u));
      const int o = uuid[0] == u ? 0 : 1;
      MT_CHECK(uuid[o] == u, "NVML device %u has unknown UUID %s", i, u);
      for (const bool v2 : {false, true}) {
        std::uint64_t total = 0;
        std::uint64_t used_r = 0;
        std::uint64_t free_r = 0;
        if (v2) {
          nvmlMemory_v2_t m{};
          m.version = nvmlMemory_v2;
          MT_NVML(nvmlDeviceGetMemoryInfo_v2(dev, &m));
          total = m.total, used_r = m.used, free_r = m.free;
        } else {
          nvmlMemory_t m{};
          MT_NVML(nvmlDeviceGetMemoryInfo(dev, &m));
          total = m.total, used_r = m.used, free_r = m.free;
        }
        MT_CHECK(total == limit[o] && used_r == used[o] && free_r == limit[o] - used[o],
                 "%s: NVML%s device %u (%s = CUDA ordinal %d): total %s used %s free %s; expected the ordinal's "
                 "limit %s, used %s",
                 when, v2 ? " v2" : "", i, u, o, mib(total).c_str(), mib(used_r).c_str(), mib(free_r).c_str(),
                 mib(limit[o]).c_str(), mib(used[o]).c_str());
      }
    }
    MT_NVML(nvmlShutdown());
  };

  const std::uint64_t contexts_only[2] = {kContext, kContext};
  expect_info(0, limit[0] - kContext, "contexts only");
  expect_info(1, limit[1] - kContext, "contexts only");
  expect_ledger(0, kContext, "contexts only");
  expect_ledger(1, kContext, "contexts only");
  expect_nvml_all(contexts_only, "contexts only");

  const Path p = make_path("alloc_v2");
  use_context(ctx[0]);
  Fill f0 = fill(p);
  MT_CHECK(f0.last == CUDA_ERROR_OUT_OF_MEMORY && f0.obtained == whole_blocks(limit[0], kBlock),
           "ordinal 0: obtained %s then %d, expected %s then 2", mib(f0.obtained).c_str(), f0.last,
           mib(whole_blocks(limit[0], kBlock)).c_str());
  expect_ledger(0, kContext + f0.obtained, "ordinal 0 full");
  expect_ledger(1, kContext, "ordinal 0 full");
  expect_info(1, limit[1] - kContext, "ordinal 0 full");

  use_context(ctx[1]);
  Fill f1 = fill(p);
  MT_CHECK(f1.last == CUDA_ERROR_OUT_OF_MEMORY && f1.obtained == whole_blocks(limit[1], kBlock),
           "ordinal 1: obtained %s then %d, expected %s then 2", mib(f1.obtained).c_str(), f1.last,
           mib(whole_blocks(limit[1], kBlock)).c_str());
  expect_ledger(0, kContext + f0.obtained, "both full");
  expect_ledger(1, kContext + f1.obtained, "both full");
  expect_info(0, limit[0] - kContext - f0.obtained, "both full");
  expect_info(1, limit[1] - kContext - f1.obtained, "both full");
  const std::uint64_t both_full[2] = {kContext + f0.obtained, kContext + f1.obtained};
  expect_nvml_all(both_full, "both full");

  use_context(ctx[0]);
  free_all(p, f0);
  expect_ledger(0, kContext, "ordinal 0 freed");
  expect_ledger(1, kContext + f1.obtained, "ordinal 0 freed");
  use_context(ctx[1]);
  free_all(p, f1);
  expect_ledger(1, kContext, "both freed");
  note("CUDA_VISIBLE_DEVICES=%s: ordinal 0 = physical %d with %s, ordinal 1 = physical %d with %s; NVML agrees",
       cvd != nullptr ? cvd : "(unset)", phys_of[0], mib(limit[0]).c_str(), phys_of[1], mib(limit[1]).c_str());
  return 0;
}

// ---- 9. damaged or foreign ledger files --------------------------------------------------------

int corrupt(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: corrupt random|short|truncated|version|mode0644|symlink");
  check_environment(true);
  const std::string mode = a[0];
  const std::string path = ledger_path(session());
  const std::string target = path + ".target";
  ensure_ledger_dir();
  (void)::unlink(target.c_str());

  // A valid ledger image to start from.
  write_ledger(path, "session-" + session(), nullptr, nullptr);
  const std::string valid = read_bytes(path);
  MT_CHECK(valid.size() == sizeof(core::LedgerRegion), "valid image has %zu bytes", valid.size());

  if (mode == "random") {
    std::mt19937_64 rng(0x5eed);
    std::string bytes(sizeof(core::LedgerRegion), '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xFFU);
    write_bytes(path, bytes, 0600);
  } else if (mode == "short") {
    write_bytes(path, valid.substr(0, 100), 0600);
  } else if (mode == "truncated") {
    write_bytes(path, valid.substr(0, 4096), 0600);  // a valid header, most slots missing
  } else if (mode == "version") {
    write_ledger(path, "session-" + session(),
                 [](core::LedgerRegion& r, void*) { r.header.version = core::kLedgerVersion + 1; }, nullptr);
  } else if (mode == "mode0644") {
    MT_CHECK(::chmod(path.c_str(), 0644) == 0, "chmod");
  } else if (mode == "symlink") {
    write_ledger(target, "session-" + session(), nullptr, nullptr);
    (void)::unlink(path.c_str());
    MT_CHECK(::symlink(target.c_str(), path.c_str()) == 0, "symlink: %s", std::strerror(errno));
  } else {
    fail(__FILE__, __LINE__, "unknown mode %s", mode.c_str());
  }
  struct stat before {};
  MT_CHECK(::lstat(path.c_str(), &before) == 0, "lstat");
  const std::string bytes_before = read_bytes(path);
  const std::string target_before = read_bytes(target);

  open_device(0);  // contexts are never refused
  CUstream stream = nullptr;
  MT_CU(cuStreamCreate(&stream, 0));
  int refused = 0;
  auto must_refuse = [&](const char* what, CUresult rc) {
    MT_CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY,
             "ledger %s: %s returned %d; with an unusable ledger every allocation under a limit must be refused "
             "with 2 (fail closed)",
             mode.c_str(), what, rc);
    ++refused;
  };
  CUdeviceptr p = 0;
  must_refuse("cuMemAlloc_v2(1 MiB)", cuMemAlloc_v2(&p, kMiB));
  must_refuse("cuMemAlloc_v2(256 MiB)", cuMemAlloc_v2(&p, kBlock));
  must_refuse("cuMemAllocManaged(1 MiB)", cuMemAllocManaged(&p, kMiB, kAttachGlobal));
  must_refuse("cuMemAllocAsync(1 MiB)", cuMemAllocAsync(&p, kMiB, stream));
  CUmemGenericAllocationHandle h = 0;
  const CUmemAllocationProp prop = device_prop(0);
  must_refuse("cuMemCreate(2 MiB)", cuMemCreate(&h, 2 * kMiB, &prop, 0));
  CUarray arr = nullptr;
  CUDA_ARRAY_DESCRIPTOR d = array2d_desc();
  d.Width = 64;
  d.Height = 64;
  must_refuse("cuArrayCreate_v2(64 x 64)", cuArrayCreate_v2(&arr, &d));
  MT_CHECK(fake_process_used(0) == kContext, "the driver holds %s beyond the context",
           mib(fake_process_used(0) - kContext).c_str());
  // Reporting must not crash either (values are not specified for an unusable ledger).
  std::size_t f = 0;
  std::size_t t = 0;
  MT_CU(cuMemGetInfo_v2(&f, &t));
  MT_CHECK(f <= t, "cuMemGetInfo_v2 free %zu > total %zu", f, t);
  MT_NVML(nvmlInit_v2());
  nvmlDevice_t dev = nullptr;
  MT_NVML(nvmlDeviceGetHandleByIndex_v2(0, &dev));
  nvmlMemory_t m{};
  MT_NVML(nvmlDeviceGetMemoryInfo(dev, &m));
  MT_CHECK(m.used <= m.total, "NVML used > total");
  unsigned n = 0;
  const nvmlReturn_t lrc = nvmlDeviceGetComputeRunningProcesses_v3(dev, &n, nullptr);
  MT_CHECK(lrc == NVML_SUCCESS || lrc == NVML_ERROR_INSUFFICIENT_SIZE, "process list returned %d", lrc);

  struct stat after {};
  MT_CHECK(::lstat(path.c_str(), &after) == 0, "the ledger file disappeared");
  MT_CHECK((after.st_mode & S_IFMT) == (before.st_mode & S_IFMT), "the ledger's file type changed");
  MT_CHECK((after.st_mode & 07777) == (before.st_mode & 07777), "the ledger's mode changed from %o to %o",
           before.st_mode & 07777, after.st_mode & 07777);
  MT_CHECK(read_bytes(path) == bytes_before, "the %s ledger file was modified", mode.c_str());
  MT_CHECK(read_bytes(target) == target_before, "the symlink's target was modified");
  (void)::unlink(target.c_str());
  note("%s ledger: no crash, %d allocations refused with 2, file left byte-for-byte unchanged", mode.c_str(), refused);
  return 0;
}

}  // namespace memtest
