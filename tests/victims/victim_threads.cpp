// SPDX-License-Identifier: Apache-2.0
/// victim_threads: 16 threads, each doing 1000 allocations of random sizes and freeing all of
/// them, on one shared primary context. Afterwards the process must hold exactly its context,
/// and softmig must have seen every call once.
#include "victim_common.hpp"

#include <atomic>
#include <random>
#include <thread>

namespace {

constexpr int kThreads = 16;
constexpr int kPairs = 1000;
constexpr int kLive = 8;  // allocations a thread keeps alive at once, freed in random order

std::atomic<int> g_errors{0};

void worker(int id, CUcontext ctx) {
  if (cuCtxSetCurrent(ctx) != CUDA_SUCCESS) {
    g_errors.fetch_add(1);
    return;
  }
  std::mt19937_64 rng(0x5eed0000ULL + static_cast<unsigned>(id));
  std::vector<CUdeviceptr> live;
  for (int i = 0; i < kPairs; ++i) {
    const size_t bytes = 1 + rng() % (4ULL << 20U);
    CUdeviceptr p = 0;
    if (cuMemAlloc_v2(&p, bytes) != CUDA_SUCCESS || p == 0) {
      g_errors.fetch_add(1);
      return;
    }
    live.push_back(p);
    if (live.size() == kLive) {
      const size_t victim = rng() % live.size();
      if (cuMemFree_v2(live[victim]) != CUDA_SUCCESS) {
        g_errors.fetch_add(1);
      }
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
    }
  }
  for (const CUdeviceptr p : live) {
    if (cuMemFree_v2(p) != CUDA_SUCCESS) {
      g_errors.fetch_add(1);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_threads");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  const auto fake = victim::FakeCuda::find(RTLD_DEFAULT);

  victim::expect_cu("cuInit", cuInit(0));
  CUdevice dev = -1;
  victim::expect_cu("cuDeviceGet", cuDeviceGet(&dev, 0));
  CUcontext ctx = nullptr;
  victim::expect_cu("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(&ctx, dev));
  const unsigned long long context_only = fake.process_used(0);
  VICTIM_CHECK(context_only > 0, "the context costs no memory in the fake");

  const auto alloc_before = fake.count("cuMemAlloc_v2");
  const auto free_before = fake.count("cuMemFree_v2");
  const auto hook_alloc_before = softmig.calls("cuMemAlloc_v2");
  const auto hook_free_before = softmig.calls("cuMemFree_v2");
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back(worker, i, ctx);
  }
  for (auto& t : threads) {
    t.join();
  }
  VICTIM_CHECK(g_errors.load() == 0, "%d driver calls failed in the threads", g_errors.load());

  const unsigned long long used = fake.process_used(0);
  VICTIM_CHECK(used == context_only,
               "the process uses %llu bytes after freeing everything, its "
               "context alone is %llu",
               used, context_only);
  constexpr unsigned long long kCalls = static_cast<unsigned long long>(kThreads) * kPairs;
  const auto allocs = fake.count("cuMemAlloc_v2") - alloc_before;
  const auto frees = fake.count("cuMemFree_v2") - free_before;
  VICTIM_CHECK(allocs == kCalls && frees == kCalls,
               "the driver saw %llu allocations and %llu "
               "frees, expected %llu each",
               allocs, frees, kCalls);
  if (softmig.loaded()) {
    const auto hooked_allocs = softmig.calls("cuMemAlloc_v2") - hook_alloc_before;
    const auto hooked_frees = softmig.calls("cuMemFree_v2") - hook_free_before;
    VICTIM_CHECK(hooked_allocs == kCalls && hooked_frees == kCalls,
                 "softmig saw %llu allocations and %llu frees, expected %llu each", hooked_allocs,
                 hooked_frees, kCalls);
  }
  victim::expect_cu("cuDevicePrimaryCtxRelease_v2", cuDevicePrimaryCtxRelease_v2(dev));
  VICTIM_CHECK(fake.process_used(0) == 0, "%llu bytes left after releasing the context",
               fake.process_used(0));
  return 0;
}
