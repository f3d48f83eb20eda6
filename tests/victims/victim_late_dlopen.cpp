// SPDX-License-Identifier: Apache-2.0
/// victim_late_dlopen: a program that runs for a while without any driver mapped (softmig must
/// not load it on its own) and only then dlopens libcuda, as Python frameworks do on first use.
#include "scenario.hpp"

#include <algorithm>
#include <cmath>
#include <thread>

namespace {

// Ordinary libc / libstdc++ work before the driver appears.
void plain_work() {
  std::vector<std::string> words;
  for (int i = 0; i < 2000; ++i) {
    words.push_back(std::to_string(i * 7919 % 1000));
  }
  std::sort(words.begin(), words.end());
  double acc = 0;
  std::thread worker([&acc] {
    for (int i = 1; i < 10000; ++i) {
      acc += std::sqrt(static_cast<double>(i));
    }
  });
  worker.join();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s %.1f", words.front().c_str(), acc);
  VICTIM_CHECK(std::getenv("PATH") != nullptr || buf[0] != '\0', "unreachable");
  void* libm = ::dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);  // an unrelated dlopen
  VICTIM_CHECK(libm != nullptr && ::dlsym(libm, "cos") != nullptr, "dlopen/dlsym of libm failed");
  ::dlclose(libm);
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_late_dlopen");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  VICTIM_CHECK(!victim::mapped("libcuda.so"), "libcuda is mapped before the program loaded it");
  VICTIM_CHECK(!victim::mapped("libnvidia-ml.so"),
               "libnvidia-ml is mapped before the program loaded it");

  plain_work();
  VICTIM_CHECK(!victim::mapped("libcuda.so"), "libcuda got mapped during plain libc work");

  void* cuda = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  VICTIM_CHECK(cuda != nullptr, "dlopen(libcuda.so.1): %s", ::dlerror());
  VICTIM_CHECK(victim::mapped("libcuda.so"), "libcuda is not mapped after dlopen");
  void* nvml = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  VICTIM_CHECK(nvml != nullptr, "dlopen(libnvidia-ml.so.1): %s", ::dlerror());

  const auto fake = victim::FakeCuda::find(cuda);
  const auto fake_nvml = victim::FakeNvml::find(nvml);
  victim::Ledger cuda_calls;
  victim::Ledger nvml_calls;
  victim::run_scenario(victim::CudaApi::from(cuda), victim::NvmlApi::from(nvml), fake, cuda_calls,
                       nvml_calls, !softmig.loaded());
  cuda_calls.verify(softmig, fake.count, "driver");
  nvml_calls.verify(softmig, fake_nvml.count, "NVML");
  return 0;
}
