// SPDX-License-Identifier: Apache-2.0
/// victim_direct: a program linked against libcuda and libnvidia-ml (-lcuda -lnvidia-ml), the way
/// most CUDA programs are. Every call it makes to an interposed symbol must reach softmig's
/// wrapper exactly once and then the driver exactly once.
#include "scenario.hpp"

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_direct");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  const auto fake = victim::FakeCuda::find(RTLD_DEFAULT);
  const auto fake_nvml = victim::FakeNvml::find(RTLD_DEFAULT);

  victim::Ledger cuda_calls;
  victim::Ledger nvml_calls;
  victim::run_scenario(victim::CudaApi::linked(), victim::NvmlApi::linked(), fake, cuda_calls,
                       nvml_calls, !softmig.loaded());
  cuda_calls.verify(softmig, fake.count, "driver");
  nvml_calls.verify(softmig, fake_nvml.count, "NVML");
  return 0;
}
