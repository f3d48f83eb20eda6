// SPDX-License-Identifier: Apache-2.0
/// @file memory_hooks.cpp
/// @brief Handlers that turn driver memory calls into ledger operations. The pattern is always
///        the same: find the GPU, reserve the bytes in the job's ledger (refuse with
///        CUDA_ERROR_OUT_OF_MEMORY if the slice cannot hold them), call the driver, and return
///        the reservation if the driver fails. Frees release what was charged; a pointer or
///        handle softmig never charged is passed to the driver untouched.
#include <climits>

#include "core/array_size.hpp"
#include "hooks/handlers.hpp"
#include "hooks/pace.hpp"
#include "hooks/runtime.hpp"
#include "platform/log.hpp"

namespace softmig::hooks {
namespace {

using platform::Charge;
using platform::PointerMap;

struct AllocResult {
  CUresult rc;
  std::uint64_t key;  ///< address or handle that identifies the allocation for its free
};

/// Frees linear device memory (cuMemAlloc*, managed, pitched; the default `undo` of charged()).
CUresult free_pointer(std::uint64_t key) noexcept { return forward<Sym::cuMemFree_v2>(static_cast<CUdeviceptr>(key)); }

/// Reserve-then-allocate on `ordinal`. `alloc()` performs the driver call and returns its
/// result and key; `undo(key)` frees what it allocated, if confirm() finds afterwards that the
/// job's slice no longer holds it (the ledger was edited while the allocation was in flight).
template <typename Alloc, typename Undo = CUresult (*)(std::uint64_t) noexcept>
CUresult charged(int ordinal, std::uint64_t bytes, PointerMap& map, Alloc&& alloc, Undo&& undo = free_pointer) noexcept {
  if (!limits_active() || ordinal < 0) return alloc().rc;  // no limit, or no device: the driver decides
  GpuState* g = gpu(ordinal);
  if (g == nullptr) {
    // A device softmig cannot identify (no UUID, or beyond the devices it tracks) cannot be
    // accounted: refuse rather than let the allocation pass uncounted.
    platform::log_error("cannot identify CUDA device %d; refusing %llu bytes", ordinal,
                        static_cast<unsigned long long>(bytes));
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  Ticket ticket;
  if (!reserve(*g, bytes, &ticket)) return CUDA_ERROR_OUT_OF_MEMORY;
  const AllocResult r = alloc();
  if (r.rc != CUDA_SUCCESS) {
    release(*g, bytes);
    return r.rc;
  }
  committed_add(*g, bytes);
  if (!confirm(*g, ticket)) {
    committed_sub(*g, bytes);  // before the free, as in uncharged()
    undo(r.key);
    release(*g, bytes);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  // If the map cannot grow (no memory), the allocation stays charged until the process exits:
  // an over-count, never an under-count.
  map.insert(r.key, Charge{bytes, ordinal});
  return r.rc;
}

/// Releases what was charged for `key` once the driver has freed it.
template <typename Free>
CUresult uncharged(std::uint64_t key, PointerMap& map, Free&& free) noexcept {
  Charge c{};
  if (!limits_active() || !map.take(key, c)) return free();
  // `committed` drops before the driver frees, so that a concurrent measurement of driver
  // overhead (NVML usage minus committed) can only overestimate it while the free is in flight:
  // the other order let a thread see the driver's lower usage with the old committed, undercount
  // the overhead and grant past the slice (tests/reliability, 64 threads).
  GpuState* g = gpu(c.device);
  if (g != nullptr) committed_sub(*g, c.bytes);
  const CUresult rc = free();
  if (rc != CUDA_SUCCESS) {
    if (g != nullptr) committed_add(*g, c.bytes);
    map.insert(key, c);  // still allocated
    return rc;
  }
  if (g != nullptr) release(*g, c.bytes);
  return rc;
}

/// Re-measures driver-owned memory on `ordinal` after a call that may have changed it.
void remeasure(int ordinal, bool force) noexcept {
  if (!limits_active()) return;
  if (GpuState* g = gpu(ordinal)) measure_overhead(*g, force);
}

/// Re-measures every GPU this process has used (the device of a destroyed object is unknown).
void remeasure_all() noexcept {
  if (!limits_active()) return;
  for (int i = 0; i < static_cast<int>(core::kMaxDevices); ++i) {
    // gpu() resolves only devices that exist; unresolved ordinals are skipped cheaply.
    if (GpuState* g = gpu(i)) measure_overhead(*g, true);
    else break;
  }
}

template <typename Size>
void clamp_reported(Size* free, Size* total, int ordinal) noexcept {
  GpuState* g = limits_active() ? gpu(ordinal) : nullptr;
  if (g == nullptr || !g->limit.memory_bytes) return;
  measure_overhead(*g, false);
  const std::uint64_t phys_total = *total;
  const std::uint64_t phys_free = *free;
  const std::uint64_t t = *g->limit.memory_bytes < phys_total ? *g->limit.memory_bytes : phys_total;
  const std::uint64_t used = job_used(*g);
  std::uint64_t f = t > used ? t - used : 0;
  if (f > phys_free) f = phys_free;  // never promise more than the GPU has left
  constexpr auto kMax = static_cast<std::uint64_t>(static_cast<Size>(~Size{0}));
  *total = static_cast<Size>(t < kMax ? t : kMax);
  *free = static_cast<Size>(f < kMax ? f : kMax);
}

template <typename Size>
void clamp_total(Size* bytes, int ordinal) noexcept {
  GpuState* g = limits_active() ? gpu(ordinal) : nullptr;
  if (g == nullptr || !g->limit.memory_bytes || *g->limit.memory_bytes >= *bytes) return;
  *bytes = static_cast<Size>(*g->limit.memory_bytes);
}

/// Pitch the driver will choose is not known in advance; reserve with 512-byte rows (the
/// texture pitch alignment of current GPUs) and correct the charge after the call.
constexpr std::uint64_t round_pitch(std::uint64_t width) noexcept { return (width + 511U) & ~std::uint64_t{511}; }

template <typename Ptr, typename Size, typename Call>
CUresult pitch_alloc(Ptr* dptr, Size* pPitch, std::uint64_t width, std::uint64_t height, Call&& call) noexcept {
  const int ordinal = current_ordinal();
  const std::uint64_t estimate = round_pitch(width) * (height == 0 ? 1 : height);
  CUresult rc = charged(ordinal, estimate, pointer_charges(), [&] {
    return AllocResult{call(), dptr != nullptr ? static_cast<std::uint64_t>(*dptr) : 0};
  });
  GpuState* g = limits_active() ? gpu(ordinal) : nullptr;
  if (rc != CUDA_SUCCESS || g == nullptr || pPitch == nullptr) return rc;
  const std::uint64_t actual = static_cast<std::uint64_t>(*pPitch) * (height == 0 ? 1 : height);
  if (actual == estimate) return rc;
  Charge c{};
  pointer_charges().take(static_cast<std::uint64_t>(*dptr), c);
  if (actual > estimate) {
    Ticket t;
    const bool reserved = reserve(*g, actual - estimate, &t);
    if (!reserved || !confirm(*g, t)) {
      // The real pitch does not fit the slice: undo the allocation entirely.
      committed_sub(*g, estimate);  // before the free, as in uncharged()
      free_pointer(static_cast<std::uint64_t>(*dptr));
      release(*g, reserved ? actual : estimate);
      return CUDA_ERROR_OUT_OF_MEMORY;
    }
  }
  if (actual < estimate) release(*g, estimate - actual);
  // One step from the estimate to the real size: never below what the driver holds.
  if (actual > estimate) {
    committed_add(*g, actual - estimate);
  } else {
    committed_sub(*g, estimate - actual);
  }
  pointer_charges().insert(static_cast<std::uint64_t>(*dptr), Charge{actual, ordinal});
  return rc;
}

core::ArrayShape shape_of(const CUDA_ARRAY_DESCRIPTOR_v1* d) noexcept {
  return {d->Width, d->Height, 0, d->Format, d->NumChannels};
}
core::ArrayShape shape_of(const CUDA_ARRAY3D_DESCRIPTOR_v1* d) noexcept {
  return {d->Width, d->Height, d->Depth, d->Format, d->NumChannels};
}
core::ArrayShape shape_of(const CUDA_ARRAY_DESCRIPTOR* d) noexcept {
  return {d->Width, d->Height, 0, d->Format, d->NumChannels};
}
core::ArrayShape shape_of(const CUDA_ARRAY3D_DESCRIPTOR* d) noexcept {
  return {d->Width, d->Height, d->Depth, d->Format, d->NumChannels};
}

template <Sym S, typename Desc>
CUresult array_create(CUarray* pHandle, const Desc* desc) noexcept {
  if (desc == nullptr || pHandle == nullptr) return forward<S>(pHandle, desc);
  return charged(
      current_ordinal(), core::array_bytes(shape_of(desc)), handle_charges(),
      [&] {
        const CUresult rc = forward<S>(pHandle, desc);
        return AllocResult{rc, reinterpret_cast<std::uint64_t>(*pHandle)};
      },
      [pHandle](std::uint64_t) noexcept { return forward<Sym::cuArrayDestroy>(*pHandle); });
}

/// Stream-ordered allocation through `S`; undone (if confirm() says so) by `Free` on its stream,
/// the last argument.
template <Sym S, Sym Free, typename... A>
CUresult async_alloc(CUdeviceptr* dptr, size_t bytesize, A... rest) noexcept {
  CUstream stream = nullptr;
  ((stream = reinterpret_cast<CUstream>(rest)), ...);  // the last argument is the stream
  return charged(
      current_ordinal(), bytesize, pointer_charges(),
      [&] {
        const CUresult rc = forward<S>(dptr, bytesize, rest...);
        return AllocResult{rc, dptr != nullptr ? *dptr : 0};
      },
      [stream](std::uint64_t key) noexcept { return forward<Free>(static_cast<CUdeviceptr>(key), stream); });
}

template <Sym S, typename... A>
CUresult context_call(int ordinal, A... a) noexcept {
  const CUresult rc = forward<S>(a...);
  if (rc == CUDA_SUCCESS && limits_active()) {
    if (GpuState* g = gpu(ordinal)) {
      g->contexts.fetch_add(1);
      measure_overhead(*g, true);
    }
  }
  return rc;
}

template <Sym S, typename... A>
CUresult then_remeasure_all(A... a) noexcept {
  const CUresult rc = forward<S>(a...);
  if (rc == CUDA_SUCCESS) remeasure_all();
  return rc;
}

/// A context was destroyed or reset: the compute pacer's markers in it are gone too.
template <Sym S, typename... A>
CUresult context_gone(A... a) noexcept {
  pace_contexts_changed();
  return then_remeasure_all<S>(a...);
}

template <Sym S, typename... A>
CUresult then_remeasure_current(A... a) noexcept {
  const CUresult rc = forward<S>(a...);
  if (rc == CUDA_SUCCESS) remeasure(current_ordinal(), false);
  return rc;
}

}  // namespace

// ---- reported sizes ------------------------------------------------------------------------

CUresult Handler<Sym::cuDeviceTotalMem>::call(unsigned int* bytes, CUdevice dev) noexcept {
  const CUresult rc = forward<Sym::cuDeviceTotalMem>(bytes, dev);
  if (rc == CUDA_SUCCESS && bytes != nullptr) clamp_total(bytes, dev);
  return rc;
}
CUresult Handler<Sym::cuDeviceTotalMem_v2>::call(size_t* bytes, CUdevice dev) noexcept {
  const CUresult rc = forward<Sym::cuDeviceTotalMem_v2>(bytes, dev);
  if (rc == CUDA_SUCCESS && bytes != nullptr) clamp_total(bytes, dev);
  return rc;
}
CUresult Handler<Sym::cuMemGetInfo>::call(unsigned int* free, unsigned int* total) noexcept {
  const CUresult rc = forward<Sym::cuMemGetInfo>(free, total);
  if (rc == CUDA_SUCCESS && free != nullptr && total != nullptr) clamp_reported(free, total, current_ordinal());
  return rc;
}
CUresult Handler<Sym::cuMemGetInfo_v2>::call(size_t* free, size_t* total) noexcept {
  const CUresult rc = forward<Sym::cuMemGetInfo_v2>(free, total);
  if (rc == CUDA_SUCCESS && free != nullptr && total != nullptr) clamp_reported(free, total, current_ordinal());
  return rc;
}

// ---- linear memory -------------------------------------------------------------------------

CUresult Handler<Sym::cuMemAlloc>::call(CUdeviceptr_v1* dptr, unsigned int bytesize) noexcept {
  return charged(current_ordinal(), bytesize, pointer_charges(), [&] {
    const CUresult rc = forward<Sym::cuMemAlloc>(dptr, bytesize);
    return AllocResult{rc, dptr != nullptr ? *dptr : 0};
  });
}
CUresult Handler<Sym::cuMemAlloc_v2>::call(CUdeviceptr* dptr, size_t bytesize) noexcept {
  return charged(current_ordinal(), bytesize, pointer_charges(), [&] {
    const CUresult rc = forward<Sym::cuMemAlloc_v2>(dptr, bytesize);
    return AllocResult{rc, dptr != nullptr ? *dptr : 0};
  });
}
CUresult Handler<Sym::cuMemAllocPitch>::call(CUdeviceptr_v1* dptr, unsigned int* pPitch,
                                             unsigned int WidthInBytes, unsigned int Height,
                                             unsigned int ElementSizeBytes) noexcept {
  return pitch_alloc(dptr, pPitch, WidthInBytes, Height, [&] {
    return forward<Sym::cuMemAllocPitch>(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
  });
}
CUresult Handler<Sym::cuMemAllocPitch_v2>::call(CUdeviceptr* dptr, size_t* pPitch, size_t WidthInBytes,
                                                size_t Height, unsigned int ElementSizeBytes) noexcept {
  return pitch_alloc(dptr, pPitch, WidthInBytes, Height, [&] {
    return forward<Sym::cuMemAllocPitch_v2>(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
  });
}
// Managed memory is charged in full to the current device: it can become resident there at
// any moment, and a slice must never be oversubscribed by pages the driver migrates later.
CUresult Handler<Sym::cuMemAllocManaged>::call(CUdeviceptr* dptr, size_t bytesize, unsigned int flags) noexcept {
  return charged(current_ordinal(), bytesize, pointer_charges(), [&] {
    const CUresult rc = forward<Sym::cuMemAllocManaged>(dptr, bytesize, flags);
    return AllocResult{rc, dptr != nullptr ? *dptr : 0};
  });
}
CUresult Handler<Sym::cuMemFree>::call(CUdeviceptr_v1 dptr) noexcept {
  return uncharged(dptr, pointer_charges(), [&] { return forward<Sym::cuMemFree>(dptr); });
}
CUresult Handler<Sym::cuMemFree_v2>::call(CUdeviceptr dptr) noexcept {
  return uncharged(dptr, pointer_charges(), [&] { return forward<Sym::cuMemFree_v2>(dptr); });
}

// ---- stream-ordered memory -----------------------------------------------------------------
// Charged per allocation when requested and released when its free is enqueued. Memory a pool
// keeps after frees (its release threshold) is driver-owned memory, measured as overhead.

CUresult Handler<Sym::cuMemAllocAsync>::call(CUdeviceptr* dptr, size_t bytesize, CUstream hStream) noexcept {
  return async_alloc<Sym::cuMemAllocAsync, Sym::cuMemFreeAsync>(dptr, bytesize, hStream);
}
CUresult Handler<Sym::cuMemAllocAsync_ptsz>::call(CUdeviceptr* dptr, size_t bytesize, CUstream hStream) noexcept {
  return async_alloc<Sym::cuMemAllocAsync_ptsz, Sym::cuMemFreeAsync_ptsz>(dptr, bytesize, hStream);
}
CUresult Handler<Sym::cuMemAllocFromPoolAsync>::call(CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool,
                                                     CUstream hStream) noexcept {
  return async_alloc<Sym::cuMemAllocFromPoolAsync, Sym::cuMemFreeAsync>(dptr, bytesize, pool, hStream);
}
CUresult Handler<Sym::cuMemAllocFromPoolAsync_ptsz>::call(CUdeviceptr* dptr, size_t bytesize,
                                                          CUmemoryPool pool, CUstream hStream) noexcept {
  return async_alloc<Sym::cuMemAllocFromPoolAsync_ptsz, Sym::cuMemFreeAsync_ptsz>(dptr, bytesize, pool, hStream);
}
CUresult Handler<Sym::cuMemFreeAsync>::call(CUdeviceptr dptr, CUstream hStream) noexcept {
  return uncharged(dptr, pointer_charges(), [&] { return forward<Sym::cuMemFreeAsync>(dptr, hStream); });
}
CUresult Handler<Sym::cuMemFreeAsync_ptsz>::call(CUdeviceptr dptr, CUstream hStream) noexcept {
  return uncharged(dptr, pointer_charges(), [&] { return forward<Sym::cuMemFreeAsync_ptsz>(dptr, hStream); });
}
CUresult Handler<Sym::cuMemPoolTrimTo>::call(CUmemoryPool pool, size_t minBytesToKeep) noexcept {
  return then_remeasure_all<Sym::cuMemPoolTrimTo>(pool, minBytesToKeep);
}

// ---- virtual memory management -------------------------------------------------------------
// Physical memory is charged when created (cuMemCreate) and released with its handle; address
// reservations and mappings cost no device memory and pass through.

CUresult Handler<Sym::cuMemCreate>::call(CUmemGenericAllocationHandle* handle, size_t size,
                                         const CUmemAllocationProp* prop, unsigned long long flags) noexcept {
  if (prop == nullptr || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
    return forward<Sym::cuMemCreate>(handle, size, prop, flags);  // host memory is not a slice's
  }
  return charged(
      prop->location.id, size, handle_charges(),
      [&] {
        const CUresult rc = forward<Sym::cuMemCreate>(handle, size, prop, flags);
        return AllocResult{rc, handle != nullptr ? *handle : 0};
      },
      [](std::uint64_t key) noexcept { return forward<Sym::cuMemRelease>(key); });
}
CUresult Handler<Sym::cuMemRelease>::call(CUmemGenericAllocationHandle handle) noexcept {
  return uncharged(handle, handle_charges(), [&] { return forward<Sym::cuMemRelease>(handle); });
}

// ---- arrays --------------------------------------------------------------------------------

CUresult Handler<Sym::cuArrayCreate>::call(CUarray* pHandle, const CUDA_ARRAY_DESCRIPTOR_v1* d) noexcept {
  return array_create<Sym::cuArrayCreate>(pHandle, d);
}
CUresult Handler<Sym::cuArrayCreate_v2>::call(CUarray* pHandle, const CUDA_ARRAY_DESCRIPTOR* d) noexcept {
  return array_create<Sym::cuArrayCreate_v2>(pHandle, d);
}
CUresult Handler<Sym::cuArray3DCreate>::call(CUarray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1* d) noexcept {
  return array_create<Sym::cuArray3DCreate>(pHandle, d);
}
CUresult Handler<Sym::cuArray3DCreate_v2>::call(CUarray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR* d) noexcept {
  return array_create<Sym::cuArray3DCreate_v2>(pHandle, d);
}
CUresult Handler<Sym::cuArrayDestroy>::call(CUarray hArray) noexcept {
  return uncharged(reinterpret_cast<std::uint64_t>(hArray), handle_charges(),
                   [&] { return forward<Sym::cuArrayDestroy>(hArray); });
}
CUresult Handler<Sym::cuMipmappedArrayCreate>::call(CUmipmappedArray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR* d,
                                                    unsigned int levels) noexcept {
  if (d == nullptr || pHandle == nullptr) return forward<Sym::cuMipmappedArrayCreate>(pHandle, d, levels);
  return charged(
      current_ordinal(), core::mipmapped_array_bytes(shape_of(d), levels), handle_charges(),
      [&] {
        const CUresult rc = forward<Sym::cuMipmappedArrayCreate>(pHandle, d, levels);
        return AllocResult{rc, reinterpret_cast<std::uint64_t>(*pHandle)};
      },
      [pHandle](std::uint64_t) noexcept { return forward<Sym::cuMipmappedArrayDestroy>(*pHandle); });
}
CUresult Handler<Sym::cuMipmappedArrayDestroy>::call(CUmipmappedArray h) noexcept {
  return uncharged(reinterpret_cast<std::uint64_t>(h), handle_charges(),
                   [&] { return forward<Sym::cuMipmappedArrayDestroy>(h); });
}

// ---- driver-owned memory -------------------------------------------------------------------

CUresult Handler<Sym::cuDevicePrimaryCtxRetain>::call(CUcontext* pctx, CUdevice dev) noexcept {
  return context_call<Sym::cuDevicePrimaryCtxRetain>(dev, pctx, dev);
}
CUresult Handler<Sym::cuCtxCreate>::call(CUcontext* pctx, unsigned int flags, CUdevice dev) noexcept {
  return context_call<Sym::cuCtxCreate>(dev, pctx, flags, dev);
}
CUresult Handler<Sym::cuCtxCreate_v2>::call(CUcontext* pctx, unsigned int flags, CUdevice dev) noexcept {
  return context_call<Sym::cuCtxCreate_v2>(dev, pctx, flags, dev);
}
CUresult Handler<Sym::cuCtxCreate_v3>::call(CUcontext* pctx, CUexecAffinityParam* params, int n,
                                            unsigned int flags, CUdevice dev) noexcept {
  return context_call<Sym::cuCtxCreate_v3>(dev, pctx, params, n, flags, dev);
}
CUresult Handler<Sym::cuCtxCreate_v4>::call(CUcontext* pctx, CUctxCreateParams* params, unsigned int flags,
                                            CUdevice dev) noexcept {
  return context_call<Sym::cuCtxCreate_v4>(dev, pctx, params, flags, dev);
}
CUresult Handler<Sym::cuDevicePrimaryCtxRelease>::call(CUdevice dev) noexcept {
  return context_gone<Sym::cuDevicePrimaryCtxRelease>(dev);
}
CUresult Handler<Sym::cuDevicePrimaryCtxRelease_v2>::call(CUdevice dev) noexcept {
  return context_gone<Sym::cuDevicePrimaryCtxRelease_v2>(dev);
}
CUresult Handler<Sym::cuDevicePrimaryCtxReset>::call(CUdevice dev) noexcept {
  return context_gone<Sym::cuDevicePrimaryCtxReset>(dev);
}
CUresult Handler<Sym::cuDevicePrimaryCtxReset_v2>::call(CUdevice dev) noexcept {
  return context_gone<Sym::cuDevicePrimaryCtxReset_v2>(dev);
}
CUresult Handler<Sym::cuCtxDestroy>::call(CUcontext ctx) noexcept { return context_gone<Sym::cuCtxDestroy>(ctx); }
CUresult Handler<Sym::cuCtxDestroy_v2>::call(CUcontext ctx) noexcept {
  return context_gone<Sym::cuCtxDestroy_v2>(ctx);
}
CUresult Handler<Sym::cuModuleLoad>::call(CUmodule* module, const char* fname) noexcept {
  return then_remeasure_current<Sym::cuModuleLoad>(module, fname);
}
CUresult Handler<Sym::cuModuleLoadData>::call(CUmodule* module, const void* image) noexcept {
  return then_remeasure_current<Sym::cuModuleLoadData>(module, image);
}
CUresult Handler<Sym::cuModuleLoadDataEx>::call(CUmodule* module, const void* image, unsigned int n,
                                                CUjit_option* options, void** values) noexcept {
  return then_remeasure_current<Sym::cuModuleLoadDataEx>(module, image, n, options, values);
}
CUresult Handler<Sym::cuModuleLoadFatBinary>::call(CUmodule* module, const void* fatCubin) noexcept {
  return then_remeasure_current<Sym::cuModuleLoadFatBinary>(module, fatCubin);
}
CUresult Handler<Sym::cuModuleUnload>::call(CUmodule hmod) noexcept {
  return then_remeasure_current<Sym::cuModuleUnload>(hmod);
}
CUresult Handler<Sym::cuLibraryLoadData>::call(CUlibrary* library, const void* code, CUjit_option* jo,
                                               void** jv, unsigned int nj, CUlibraryOption* lo, void** lv,
                                               unsigned int nl) noexcept {
  return then_remeasure_current<Sym::cuLibraryLoadData>(library, code, jo, jv, nj, lo, lv, nl);
}
CUresult Handler<Sym::cuLibraryLoadFromFile>::call(CUlibrary* library, const char* file, CUjit_option* jo,
                                                   void** jv, unsigned int nj, CUlibraryOption* lo,
                                                   void** lv, unsigned int nl) noexcept {
  return then_remeasure_current<Sym::cuLibraryLoadFromFile>(library, file, jo, jv, nj, lo, lv, nl);
}
CUresult Handler<Sym::cuLibraryUnload>::call(CUlibrary library) noexcept {
  return then_remeasure_current<Sym::cuLibraryUnload>(library);
}
CUresult Handler<Sym::cuGraphInstantiateWithFlags>::call(CUgraphExec* exec, CUgraph graph,
                                                         unsigned long long flags) noexcept {
  return then_remeasure_current<Sym::cuGraphInstantiateWithFlags>(exec, graph, flags);
}
CUresult Handler<Sym::cuGraphExecDestroy>::call(CUgraphExec exec) noexcept {
  return then_remeasure_current<Sym::cuGraphExecDestroy>(exec);
}
CUresult Handler<Sym::cuDeviceGraphMemTrim>::call(CUdevice device) noexcept {
  const CUresult rc = forward<Sym::cuDeviceGraphMemTrim>(device);
  if (rc == CUDA_SUCCESS) remeasure(device, true);
  return rc;
}

}  // namespace softmig::hooks
