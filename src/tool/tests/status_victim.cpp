// SPDX-License-Identifier: Apache-2.0
/// @file status_victim.cpp
/// @brief status_victim [--try BYTES] BYTES...: a CUDA program (linked with the fake driver, run
///        with libsoftmig.so preloaded) that creates a context, allocates each BYTES with
///        cuMemAlloc_v2, attempts the --try allocation (expected to be refused at the slice's
///        limit), prints "ready <pid>" and holds everything until its stdin closes (at most
///        120 s). The status tests compare `softmig status` with what it holds.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "abi/cuda_types.hpp"

extern "C" {
CUresult cuInit(unsigned int flags);
CUresult cuDeviceGet(CUdevice* device, int ordinal);
CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned int flags, CUdevice dev);
CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize);
}

int main(int argc, char** argv) {
  alarm(120);  // never outlive a test that forgot it
  std::vector<unsigned long long> sizes;
  unsigned long long attempt = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--try") == 0 && i + 1 < argc) {
      attempt = std::strtoull(argv[++i], nullptr, 10);
    } else {
      sizes.push_back(std::strtoull(argv[i], nullptr, 10));
    }
  }
  CUdevice dev{};
  CUcontext ctx{};
  if (cuInit(0) != 0 || cuDeviceGet(&dev, 0) != 0 || cuCtxCreate_v2(&ctx, 0, dev) != 0) {
    std::fprintf(stderr, "status_victim: no CUDA context\n");
    return 1;
  }
  for (const unsigned long long bytes : sizes) {
    CUdeviceptr p = 0;
    if (const CUresult rc = cuMemAlloc_v2(&p, bytes); rc != 0) {
      std::fprintf(stderr, "status_victim: cuMemAlloc_v2(%llu) failed: %d\n", bytes, rc);
      return 1;
    }
  }
  if (attempt != 0) {
    CUdeviceptr p = 0;
    if (cuMemAlloc_v2(&p, attempt) == 0) {
      std::fprintf(stderr, "status_victim: cuMemAlloc_v2(%llu) should have been refused\n", attempt);
      return 1;
    }
  }
  std::printf("ready %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  char buf[64];
  while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
  }
  return 0;
}
