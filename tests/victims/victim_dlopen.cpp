// SPDX-License-Identifier: Apache-2.0
/// victim_dlopen: a program that is not linked against the driver and reaches it only through
/// dlopen("libcuda.so.1") + dlsym(handle, name), as the CUDA runtime, PyTorch and JAX do. softmig
/// must hand out its wrappers from dlsym (route "dlsym") so every call is still seen once.
#include "scenario.hpp"

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_dlopen");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);

  void* cuda = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  VICTIM_CHECK(cuda != nullptr, "dlopen(libcuda.so.1): %s", ::dlerror());
  void* nvml = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  VICTIM_CHECK(nvml != nullptr, "dlopen(libnvidia-ml.so.1): %s", ::dlerror());
  const auto fake = victim::FakeCuda::find(cuda);
  const auto fake_nvml = victim::FakeNvml::find(nvml);

  const auto routed_before = softmig.route("dlsym");
  const auto cu = victim::CudaApi::from(cuda);
  const auto nv = victim::NvmlApi::from(nvml);
  if (softmig.loaded()) {
    VICTIM_CHECK(softmig.route("dlsym") > routed_before,
                 "softmig_route_count(\"dlsym\") did not grow while looking up interposed symbols");
  }

  victim::Ledger cuda_calls;
  victim::Ledger nvml_calls;
  victim::run_scenario(cu, nv, fake, cuda_calls, nvml_calls, !softmig.loaded());
  cuda_calls.verify(softmig, fake.count, "driver");
  nvml_calls.verify(softmig, fake_nvml.count, "NVML");
  return 0;
}
