// SPDX-License-Identifier: Apache-2.0
/// @file memory_handlers.hpp
/// @brief Handlers of the calls the memory slice acts on (memory_hooks.cpp) and of the NVML
///        queries it rewrites (nvml_hooks.cpp). Included from handlers.hpp only.
#pragma once

namespace softmig::hooks {

// Sizes reported to the program.
SOFTMIG_HANDLER(cuDeviceTotalMem, CUresult, (unsigned int* bytes, CUdevice dev));
SOFTMIG_HANDLER(cuDeviceTotalMem_v2, CUresult, (size_t* bytes, CUdevice dev));
SOFTMIG_HANDLER(cuMemGetInfo, CUresult, (unsigned int* free, unsigned int* total));
SOFTMIG_HANDLER(cuMemGetInfo_v2, CUresult, (size_t* free, size_t* total));

// Linear, managed and stream-ordered allocations.
SOFTMIG_HANDLER(cuMemAlloc, CUresult, (CUdeviceptr_v1* dptr, unsigned int bytesize));
SOFTMIG_HANDLER(cuMemAlloc_v2, CUresult, (CUdeviceptr* dptr, size_t bytesize));
SOFTMIG_HANDLER(cuMemAllocPitch, CUresult,
                (CUdeviceptr_v1* dptr, unsigned int* pPitch, unsigned int WidthInBytes,
                 unsigned int Height, unsigned int ElementSizeBytes));
SOFTMIG_HANDLER(cuMemAllocPitch_v2, CUresult,
                (CUdeviceptr* dptr, size_t* pPitch, size_t WidthInBytes, size_t Height,
                 unsigned int ElementSizeBytes));
SOFTMIG_HANDLER(cuMemAllocManaged, CUresult, (CUdeviceptr* dptr, size_t bytesize, unsigned int flags));
SOFTMIG_HANDLER(cuMemFree, CUresult, (CUdeviceptr_v1 dptr));
SOFTMIG_HANDLER(cuMemFree_v2, CUresult, (CUdeviceptr dptr));
SOFTMIG_HANDLER(cuMemAllocAsync, CUresult, (CUdeviceptr* dptr, size_t bytesize, CUstream hStream));
SOFTMIG_HANDLER(cuMemAllocAsync_ptsz, CUresult, (CUdeviceptr* dptr, size_t bytesize, CUstream hStream));
SOFTMIG_HANDLER(cuMemAllocFromPoolAsync, CUresult,
                (CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream));
SOFTMIG_HANDLER(cuMemAllocFromPoolAsync_ptsz, CUresult,
                (CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream));
SOFTMIG_HANDLER(cuMemFreeAsync, CUresult, (CUdeviceptr dptr, CUstream hStream));
SOFTMIG_HANDLER(cuMemFreeAsync_ptsz, CUresult, (CUdeviceptr dptr, CUstream hStream));
SOFTMIG_HANDLER(cuMemPoolTrimTo, CUresult, (CUmemoryPool pool, size_t minBytesToKeep));

// Virtual memory management.
SOFTMIG_HANDLER(cuMemCreate, CUresult,
                (CUmemGenericAllocationHandle* handle, size_t size, const CUmemAllocationProp* prop,
                 unsigned long long flags));
SOFTMIG_HANDLER(cuMemRelease, CUresult, (CUmemGenericAllocationHandle handle));

// Arrays.
SOFTMIG_HANDLER(cuArrayCreate, CUresult, (CUarray* pHandle, const CUDA_ARRAY_DESCRIPTOR_v1* pAllocateArray));
SOFTMIG_HANDLER(cuArrayCreate_v2, CUresult, (CUarray* pHandle, const CUDA_ARRAY_DESCRIPTOR* pAllocateArray));
SOFTMIG_HANDLER(cuArray3DCreate, CUresult, (CUarray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1* pAllocateArray));
SOFTMIG_HANDLER(cuArray3DCreate_v2, CUresult, (CUarray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR* pAllocateArray));
SOFTMIG_HANDLER(cuArrayDestroy, CUresult, (CUarray hArray));
SOFTMIG_HANDLER(cuMipmappedArrayCreate, CUresult,
                (CUmipmappedArray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR* pMipmappedArrayDesc,
                 unsigned int numMipmapLevels));
SOFTMIG_HANDLER(cuMipmappedArrayDestroy, CUresult, (CUmipmappedArray hMipmappedArray));

// Driver-owned memory (contexts, code, graphs, pools): measured after these calls.
SOFTMIG_HANDLER(cuDevicePrimaryCtxRetain, CUresult, (CUcontext* pctx, CUdevice dev));
SOFTMIG_HANDLER(cuDevicePrimaryCtxRelease, CUresult, (CUdevice dev));
SOFTMIG_HANDLER(cuDevicePrimaryCtxRelease_v2, CUresult, (CUdevice dev));
SOFTMIG_HANDLER(cuDevicePrimaryCtxReset, CUresult, (CUdevice dev));
SOFTMIG_HANDLER(cuDevicePrimaryCtxReset_v2, CUresult, (CUdevice dev));
SOFTMIG_HANDLER(cuCtxCreate, CUresult, (CUcontext* pctx, unsigned int flags, CUdevice dev));
SOFTMIG_HANDLER(cuCtxCreate_v2, CUresult, (CUcontext* pctx, unsigned int flags, CUdevice dev));
SOFTMIG_HANDLER(cuCtxCreate_v3, CUresult,
                (CUcontext* pctx, CUexecAffinityParam* paramsArray, int numParams, unsigned int flags,
                 CUdevice dev));
SOFTMIG_HANDLER(cuCtxCreate_v4, CUresult,
                (CUcontext* pctx, CUctxCreateParams* ctxCreateParams, unsigned int flags, CUdevice dev));
SOFTMIG_HANDLER(cuCtxDestroy, CUresult, (CUcontext ctx));
SOFTMIG_HANDLER(cuCtxDestroy_v2, CUresult, (CUcontext ctx));
SOFTMIG_HANDLER(cuModuleLoad, CUresult, (CUmodule* module, const char* fname));
SOFTMIG_HANDLER(cuModuleLoadData, CUresult, (CUmodule* module, const void* image));
SOFTMIG_HANDLER(cuModuleLoadDataEx, CUresult,
                (CUmodule* module, const void* image, unsigned int numOptions, CUjit_option* options,
                 void** optionValues));
SOFTMIG_HANDLER(cuModuleLoadFatBinary, CUresult, (CUmodule* module, const void* fatCubin));
SOFTMIG_HANDLER(cuModuleUnload, CUresult, (CUmodule hmod));
SOFTMIG_HANDLER(cuLibraryLoadData, CUresult,
                (CUlibrary* library, const void* code, CUjit_option* jitOptions, void** jitOptionsValues,
                 unsigned int numJitOptions, CUlibraryOption* libraryOptions, void** libraryOptionValues,
                 unsigned int numLibraryOptions));
SOFTMIG_HANDLER(cuLibraryLoadFromFile, CUresult,
                (CUlibrary* library, const char* fileName, CUjit_option* jitOptions,
                 void** jitOptionsValues, unsigned int numJitOptions, CUlibraryOption* libraryOptions,
                 void** libraryOptionValues, unsigned int numLibraryOptions));
SOFTMIG_HANDLER(cuLibraryUnload, CUresult, (CUlibrary library));
SOFTMIG_HANDLER(cuGraphInstantiateWithFlags, CUresult,
                (CUgraphExec* phGraphExec, CUgraph hGraph, unsigned long long flags));
SOFTMIG_HANDLER(cuGraphExecDestroy, CUresult, (CUgraphExec hGraphExec));
SOFTMIG_HANDLER(cuDeviceGraphMemTrim, CUresult, (CUdevice device));

// NVML views of the slice.
SOFTMIG_HANDLER(nvmlDeviceGetMemoryInfo, nvmlReturn_t, (nvmlDevice_t device, nvmlMemory_t* memory));
SOFTMIG_HANDLER(nvmlDeviceGetMemoryInfo_v2, nvmlReturn_t, (nvmlDevice_t device, nvmlMemory_v2_t* memory));
SOFTMIG_HANDLER(nvmlDeviceGetComputeRunningProcesses, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_v1_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetComputeRunningProcesses_v2, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_v2_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetComputeRunningProcesses_v3, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetGraphicsRunningProcesses, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_v1_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetGraphicsRunningProcesses_v2, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_v2_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetGraphicsRunningProcesses_v3, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetMPSComputeRunningProcesses, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_v1_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetMPSComputeRunningProcesses_v2, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_v2_t* infos));
SOFTMIG_HANDLER(nvmlDeviceGetMPSComputeRunningProcesses_v3, nvmlReturn_t,
                (nvmlDevice_t device, unsigned int* infoCount, nvmlProcessInfo_t* infos));

}  // namespace softmig::hooks
