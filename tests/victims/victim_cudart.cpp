// SPDX-License-Identifier: Apache-2.0
/// victim_cudart: cudaMalloc / cudaFree through the toolkit's CUDA runtime (libcudart), run
/// against the fake driver. Built only where a toolkit exists; not registered as a test because
/// the runtime cannot initialise against the fake (see docs/testing.md). It prints what happens.
#include "victim_common.hpp"

extern "C" {
// The few runtime entry points used, declared here so no toolkit header is needed.
int cudaRuntimeGetVersion(int* version);
int cudaDriverGetVersion(int* version);
int cudaGetDeviceCount(int* count);
int cudaMalloc(void** ptr, size_t size);
int cudaFree(void* ptr);
const char* cudaGetErrorName(int error);
const char* cudaGetErrorString(int error);
}

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_cudart");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  int runtime = 0;
  int driver = 0;
  cudaRuntimeGetVersion(&runtime);
  const int dv = cudaDriverGetVersion(&driver);
  std::printf("runtime %d, cudaDriverGetVersion -> %d (%s), driver %d\n", runtime, dv,
              cudaGetErrorName(dv), driver);
  int devices = 0;
  const int dc = cudaGetDeviceCount(&devices);
  std::printf("cudaGetDeviceCount -> %d (%s: %s), %d devices\n", dc, cudaGetErrorName(dc),
              cudaGetErrorString(dc), devices);
  void* p = nullptr;
  const int m = cudaMalloc(&p, 1 << 20);
  std::printf("cudaMalloc -> %d (%s: %s), %p\n", m, cudaGetErrorName(m), cudaGetErrorString(m), p);

  // Which driver entry points the runtime reached: the fake is loaded by the runtime, locally.
  using CountFn = unsigned long long (*)(const char*);
  void* cuda = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  const auto calls =
      cuda != nullptr ? reinterpret_cast<CountFn>(::dlsym(cuda, "fake_call_count")) : nullptr;
  std::printf("libcuda %s\n", cuda == nullptr    ? "not loaded"
                              : calls == nullptr ? "is not the fake"
                                                 : "is the fake");
  for (const char* s : {"cuInit", "cuDriverGetVersion", "cuGetProcAddress", "cuGetProcAddress_v2",
                        "cuGetExportTable", "cuDeviceGetCount", "cuDeviceGet",
                        "cuDevicePrimaryCtxRetain", "cuMemAlloc_v2"}) {
    if (calls != nullptr) {
      std::printf("  fake %s: %llu call(s)\n", s, calls(s));
    }
  }
  if (m != 0) {
    victim::fail("cudaMalloc failed with %d (%s)", m, cudaGetErrorName(m));
  }
  const int f = cudaFree(p);
  VICTIM_CHECK(f == 0, "cudaFree failed with %d", f);
  if (softmig.loaded()) {
    VICTIM_CHECK(softmig.calls("cuMemAlloc_v2") + softmig.calls("cuMemAllocAsync") > 0,
                 "cudaMalloc did not reach softmig");
  }
  return 0;
}
