// SPDX-License-Identifier: Apache-2.0
// Plain CUDA programs for the GPU checks and benchmarks (built by tests/gpu/run.sh with nvcc):
//   driver         driver-API calls, each counted by the program and compared with softmig's counts
//   runtime        cudaMalloc/cudaMemcpy/kernel; prints a checksum to compare bare vs preloaded
//   slice          cuMemAlloc_v2 in 256 MiB blocks until CUDA_ERROR_OUT_OF_MEMORY
//   bench-launch   host cost of enqueueing empty kernels (batches of 256, below the queue depth)
//   bench-alloc    host cost of cudaMalloc + cudaFree of 1 MiB
//   bench-launch-ab  in one process: cuLaunchKernel as the program gets it vs the driver's own
//   bench-async    host cost of cudaMallocAsync + cudaFreeAsync of 1 MiB (pool; no driver trip)
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

unsigned long long softmig_calls(const char* sym) {
  using Fn = unsigned long long (*)(const char*);
  auto f = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "softmig_hook_calls"));
  return f ? f(sym) : 0;
}

#define CHECK_DRV(x)                                                            \
  do {                                                                          \
    CUresult rc_ = (x);                                                         \
    if (rc_ != CUDA_SUCCESS) {                                                  \
      std::fprintf(stderr, "FAIL %s -> %d at line %d\n", #x, rc_, __LINE__);    \
      return 1;                                                                 \
    }                                                                           \
  } while (0)

__global__ void empty_kernel() {}
__global__ void fill(float* p, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = 0.5f * static_cast<float>(i % 1000);
}

/// cuInit, then device 0's primary context made current.
int open_device0(CUdevice& dev) {
  CHECK_DRV(cuInit(0));
  CHECK_DRV(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CHECK_DRV(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK_DRV(cuCtxSetCurrent(ctx));
  return 0;
}

int driver_mode() {
  CUdevice dev;
  if (open_device0(dev) != 0) return 1;
  const int n = 50;
  for (int i = 0; i < n; ++i) {
    CUdeviceptr p;
    CHECK_DRV(cuMemAlloc(&p, (i + 1) * 1024 * 1024));
    CHECK_DRV(cuMemFree(p));
  }
  size_t free_b, total_b;
  CHECK_DRV(cuMemGetInfo(&free_b, &total_b));
  size_t tm;
  CHECK_DRV(cuDeviceTotalMem(&tm, dev));
  const bool ok = softmig_calls("cuMemAlloc_v2") == n && softmig_calls("cuMemFree_v2") == n &&
                  softmig_calls("cuMemGetInfo_v2") >= 1 && softmig_calls("cuDeviceTotalMem_v2") >= 1 &&
                  softmig_calls("cuDevicePrimaryCtxRetain") >= 1;
  std::printf("RESULT {\"check\": \"driver_routes\", \"cuMemAlloc_v2\": %llu, \"cuMemFree_v2\": %llu, "
              "\"expected\": %d, \"total\": %zu, \"ok\": %s}\n",
              softmig_calls("cuMemAlloc_v2"), softmig_calls("cuMemFree_v2"), n, total_b, ok ? "true" : "false");
  cuDevicePrimaryCtxRelease(dev);
  return 0;
}

int runtime_mode() {
  const int n = 1 << 24;
  float* d = nullptr;
  if (cudaMalloc(&d, n * sizeof(float)) != cudaSuccess) return 1;
  fill<<<(n + 255) / 256, 256>>>(d, n);
  std::vector<float> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost);
  double sum = 0;
  for (float v : h) sum += v;
  cudaFree(d);
  std::printf("RESULT {\"check\": \"runtime_routes\", \"checksum\": %.1f, \"cuMemAlloc_v2\": %llu, "
              "\"cuLaunchKernel\": %llu}\n",
              sum, softmig_calls("cuMemAlloc_v2"), softmig_calls("cuLaunchKernel") + softmig_calls("cuLaunchKernel_ptsz"));
  return 0;
}

int slice_mode() {
  CUdevice dev;
  if (open_device0(dev) != 0) return 1;
  size_t free_b, total_b;
  CHECK_DRV(cuMemGetInfo(&free_b, &total_b));
  std::vector<CUdeviceptr> held;
  CUresult rc = CUDA_SUCCESS;
  for (;;) {
    CUdeviceptr p;
    rc = cuMemAlloc(&p, 256ull << 20);
    if (rc != CUDA_SUCCESS) break;
    held.push_back(p);
  }
  for (CUdeviceptr p : held) cuMemFree(p);
  std::printf("RESULT {\"check\": \"driver_slice\", \"total\": %zu, \"free\": %zu, \"usable\": %zu, \"error\": %d}\n",
              total_b, free_b, static_cast<size_t>(held.size() * (256ull << 20)), static_cast<int>(rc));
  return 0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int bench_launch() {
  empty_kernel<<<1, 1>>>();
  cudaDeviceSynchronize();
  const int batch = 256, batches = 400;  // 102400 launches per repetition
  std::vector<double> reps;
  for (int r = 0; r < 5; ++r) {
    double ns = 0;
    for (int b = 0; b < batches; ++b) {
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < batch; ++i) empty_kernel<<<1, 1>>>();
      auto t1 = std::chrono::steady_clock::now();
      ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
      cudaDeviceSynchronize();  // drain outside the timed region
    }
    reps.push_back(ns / (batch * batches));
  }
  std::printf("BENCH launch_ns %.1f\n", median(reps));
  return 0;
}

int bench_alloc() {
  void* p;
  cudaMalloc(&p, 1 << 20);
  cudaFree(p);
  std::vector<double> reps;
  for (int r = 0; r < 5; ++r) {
    const int n = 2000;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      cudaMalloc(&p, 1 << 20);
      cudaFree(p);
    }
    auto t1 = std::chrono::steady_clock::now();
    reps.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / n);
  }
  std::printf("BENCH alloc_free_ns %.1f\n", median(reps));
  return 0;
}

int bench_async() {
  cudaStream_t s;
  cudaStreamCreate(&s);
  void* p;
  cudaMallocAsync(&p, 1 << 20, s);
  cudaFreeAsync(p, s);
  cudaStreamSynchronize(s);
  std::vector<double> reps;
  for (int r = 0; r < 5; ++r) {
    const int n = 20000;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      cudaMallocAsync(&p, 1 << 20, s);
      cudaFreeAsync(p, s);
    }
    auto t1 = std::chrono::steady_clock::now();
    cudaStreamSynchronize(s);
    reps.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / n);
  }
  std::printf("BENCH async_alloc_free_ns %.1f\n", median(reps));
  cudaStreamDestroy(s);
  return 0;
}

// The driver's own cuLaunchKernel, found in libcuda's dynamic symbol table directly, so that
// neither the preloaded dlsym nor symbol interposition can hand back softmig's wrapper.
void* raw_driver_symbol(const char* name) {
  struct Ctx {
    const char* name;
    void* found;
  } ctx{name, nullptr};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* p) -> int {
        auto* c = static_cast<Ctx*>(p);
        if (info->dlpi_name == nullptr || std::strstr(info->dlpi_name, "libcuda.so") == nullptr) return 0;
        const ElfW(Dyn)* dyn = nullptr;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
            dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
          }
        }
        const ElfW(Sym)* symtab = nullptr;
        const char* strtab = nullptr;
        const uint32_t* gnu_hash = nullptr;
        for (; dyn != nullptr && dyn->d_tag != DT_NULL; ++dyn) {
          if (dyn->d_tag == DT_SYMTAB) symtab = reinterpret_cast<const ElfW(Sym)*>(dyn->d_un.d_ptr);
          if (dyn->d_tag == DT_STRTAB) strtab = reinterpret_cast<const char*>(dyn->d_un.d_ptr);
          if (dyn->d_tag == DT_GNU_HASH) gnu_hash = reinterpret_cast<const uint32_t*>(dyn->d_un.d_ptr);
        }
        if (symtab == nullptr || strtab == nullptr || gnu_hash == nullptr) return 0;
        // Symbol count from the GNU hash table: last chain of the highest bucket.
        const uint32_t nbuckets = gnu_hash[0], symoffset = gnu_hash[1], bloom = gnu_hash[2];
        const auto* buckets = reinterpret_cast<const uint32_t*>(
            reinterpret_cast<const ElfW(Addr)*>(gnu_hash + 4) + bloom);
        const uint32_t* chain = buckets + nbuckets;
        uint32_t last = 0;
        for (uint32_t b = 0; b < nbuckets; ++b) last = buckets[b] > last ? buckets[b] : last;
        if (last < symoffset) return 0;
        while ((chain[last - symoffset] & 1U) == 0) ++last;
        for (uint32_t i = 0; i <= last; ++i) {
          if (symtab[i].st_value != 0 && std::strcmp(strtab + symtab[i].st_name, c->name) == 0) {
            c->found = reinterpret_cast<void*>(info->dlpi_addr + symtab[i].st_value);
            return 1;
          }
        }
        return 0;
      },
      &ctx);
  return ctx.found;
}

// Host cost of cuLaunchKernel through whatever the program normally gets (softmig's wrapper when
// preloaded) against the driver's own function, in one process, alternating batches.
int bench_launch_ab() {
  empty_kernel<<<1, 1>>>();
  cudaDeviceSynchronize();
  cudaFunction_t fn = nullptr;
  if (cudaGetFuncBySymbol(&fn, reinterpret_cast<const void*>(empty_kernel)) != cudaSuccess) return 1;
  using Launch = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                              unsigned, CUstream, void**, void**);
  auto wrapped = reinterpret_cast<Launch>(dlsym(RTLD_DEFAULT, "cuLaunchKernel"));
  auto raw = reinterpret_cast<Launch>(raw_driver_symbol("cuLaunchKernel"));
  if (wrapped == nullptr || raw == nullptr) {
    std::fprintf(stderr, "FAIL cannot find cuLaunchKernel (wrapped %p raw %p)\n", reinterpret_cast<void*>(wrapped),
                 reinterpret_cast<void*>(raw));
    return 1;
  }
  auto f = reinterpret_cast<CUfunction>(fn);
  const int batch = 256, pairs = 800;
  std::vector<double> a, b;
  for (int p = 0; p < pairs; ++p) {
    for (int which = 0; which < 2; ++which) {
      Launch l = ((p + which) % 2 == 0) ? wrapped : raw;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < batch; ++i) l(f, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr);
      auto t1 = std::chrono::steady_clock::now();
      cudaDeviceSynchronize();
      (l == wrapped ? a : b).push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / batch);
    }
  }
  const double ma = median(a), mb = median(b);
  std::printf("RESULT {\"check\": \"launch_ab\", \"through_program_path_ns\": %.1f, \"driver_direct_ns\": %.1f, "
              "\"added_pct\": %.2f, \"same_function\": %s}\n",
              ma, mb, 100.0 * (ma - mb) / mb, wrapped == raw ? "true" : "false");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (!std::strcmp(mode, "driver")) return driver_mode();
  if (!std::strcmp(mode, "runtime")) return runtime_mode();
  if (!std::strcmp(mode, "slice")) return slice_mode();
  if (!std::strcmp(mode, "bench-launch")) return bench_launch();
  if (!std::strcmp(mode, "bench-alloc")) return bench_alloc();
  if (!std::strcmp(mode, "bench-async")) return bench_async();
  if (!std::strcmp(mode, "bench-launch-ab")) return bench_launch_ab();
  std::fprintf(stderr, "usage: %s driver|runtime|slice|bench-launch|bench-alloc|bench-async\n", argv[0]);
  return 2;
}
