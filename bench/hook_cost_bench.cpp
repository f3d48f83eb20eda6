// SPDX-License-Identifier: Apache-2.0
// Host cost of the calls softmig interposes, measured against the fake driver. Run it twice
// (bench/run_fake.sh does): bare, and with libsoftmig.so preloaded under a memory limit; the
// difference is softmig's cost per call.
#include <benchmark/benchmark.h>

#include "abi/cuda_types.hpp"

extern "C" {
CUresult cuInit(unsigned int);
CUresult cuDeviceGet(CUdevice*, int);
CUresult cuDevicePrimaryCtxRetain(CUcontext*, CUdevice);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuMemAlloc_v2(CUdeviceptr*, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemAllocAsync(CUdeviceptr*, size_t, CUstream);
CUresult cuMemFreeAsync(CUdeviceptr, CUstream);
CUresult cuMemGetInfo_v2(size_t*, size_t*);
CUresult cuLaunchKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                        CUstream, void**, void**);
}

namespace {

void setup() {
  static bool done = false;
  if (done) return;
  done = true;
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  cuInit(0);
  cuDeviceGet(&dev, 0);
  cuDevicePrimaryCtxRetain(&ctx, dev);
  cuCtxSetCurrent(ctx);
}

void BM_AllocFree(benchmark::State& state) {
  setup();
  for (auto _ : state) {
    CUdeviceptr p = 0;
    if (cuMemAlloc_v2(&p, 1 << 20) != CUDA_SUCCESS) state.SkipWithError("cuMemAlloc_v2 failed");
    cuMemFree_v2(p);
  }
}
BENCHMARK(BM_AllocFree);

void BM_AllocFreeAsync(benchmark::State& state) {
  setup();
  for (auto _ : state) {
    CUdeviceptr p = 0;
    if (cuMemAllocAsync(&p, 1 << 20, nullptr) != CUDA_SUCCESS) state.SkipWithError("cuMemAllocAsync failed");
    cuMemFreeAsync(p, nullptr);
  }
}
BENCHMARK(BM_AllocFreeAsync);

void BM_MemGetInfo(benchmark::State& state) {
  setup();
  for (auto _ : state) {
    size_t f = 0, t = 0;
    cuMemGetInfo_v2(&f, &t);
    benchmark::DoNotOptimize(f);
  }
}
BENCHMARK(BM_MemGetInfo);

void BM_LaunchKernel(benchmark::State& state) {
  setup();
  for (auto _ : state) {
    cuLaunchKernel(nullptr, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr);
  }
}
BENCHMARK(BM_LaunchKernel);

}  // namespace

BENCHMARK_MAIN();
