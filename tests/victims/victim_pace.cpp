// SPDX-License-Identifier: Apache-2.0
/// victim_pace: a GPU-bound program for the compute pacer. Each of `threads` threads launches
/// kernels (or graphs) on its own stream in a tight loop for `seconds` of wall time, then
/// synchronises its stream; the fake driver's GPU-time model (SOFTMIG_FAKE_KERNEL_NS,
/// SOFTMIG_FAKE_GRAPH_NS, fake_control.h) says how much GPU time that work took.
///
///   victim_pace <seconds> [threads] [--graph] [--ex] [--coop] [--ptsz] [--timeline]
///     --graph     cuGraphLaunch instead of kernels
///     --ex        cuLaunchKernelEx
///     --coop      cuLaunchCooperativeKernel
///     --ptsz      the _ptsz variant of the launch and of cuStreamSynchronize
///     --timeline  also print "TL <ms since START> <launches so far>" every 10 ms
///     --capture   launch into streams that are being captured (nothing runs)
///     --gap US    after each launch, spend US microseconds on the host (asleep), as a thread
///                 that waits for another one or runs Python between its launches
///     --burst N   with --gap: N launches back to back before each gap (default 1)
///
/// Prints "START <CLOCK_MONOTONIC ns>" before the first launch and, at the end,
///   PACE launches=<n> gpu_busy_ns=<fake_gpu_busy_ns(0)> wall_ns=<start to last sync> share=<x>
///        records=<cuEventRecord calls the driver received> outside=<y> stamp_age_ms=<z>
/// where share = gpu_busy_ns / wall_ns, outside is the part of gpu_busy_ns that ran outside
/// the job's windows (promised_windows(); 0 without a limit), and stamp_age_ms the longest the
/// newest activity stamp in $SOFTMIG_SM_BOARD went unrenewed between the first launch and the
/// end of the launches (what a bursting job on the GPU would see; -1 without a board). It paces
/// nothing itself and runs with or without softmig (`--no-softmig-expected` is accepted and
/// ignored). Exits 1 with a FAIL line if a call fails.
#include "victim_common.hpp"

#include "core/pacer.hpp"  // kDefaultPeriodNs

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <thread>

namespace {

enum class Mode { Kernel, Ex, Coop, Graph };

struct Settings {
  double seconds = 0;
  int threads = 1;
  Mode mode = Mode::Kernel;
  bool ptsz = false;
  bool timeline = false;
  bool capture = false;
  std::uint64_t gap_ns = 0;
  int burst = 1;
};

std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// The windows the job was promised, from the same environment the library reads outside SLURM
/// (CUDA_DEVICE_SM_LIMIT, CUDA_DEVICE_SM_PHASE, SOFTMIG_SM_PERIOD_MS): window k is
/// [k * period + period * phase / 100, + period * limit / 100) of CLOCK_MONOTONIC. No limit: none.
struct Windows {
  unsigned long long period_ns = 0, window_ns = 0, offset_ns = 0;
};
Windows promised_windows() {
  const auto number = [](const char* name, long fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::strtol(v, nullptr, 10) : fallback;
  };
  const long limit = number("CUDA_DEVICE_SM_LIMIT", 100);
  if (limit <= 0 || limit >= 100) {
    return {};
  }
  const auto period = static_cast<unsigned long long>(
      number("SOFTMIG_SM_PERIOD_MS", softmig::core::kDefaultPeriodNs / softmig::core::kNsPerMs)) * 1000000ULL;
  return {period, period * static_cast<unsigned long long>(limit) / 100,
          period * static_cast<unsigned long long>(number("CUDA_DEVICE_SM_PHASE", 0)) / 100};
}

/// The newest modification time (CLOCK_REALTIME ns) of a regular file in `dir`, or 0.
std::int64_t newest_stamp_ns(const char* dir) {
  DIR* d = ::opendir(dir);
  if (d == nullptr) {
    return 0;
  }
  std::int64_t newest = 0;
  while (const dirent* e = ::readdir(d)) {
    struct stat st{};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
      newest = std::max<std::int64_t>(newest, st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
    }
  }
  ::closedir(d);
  return newest;
}

[[noreturn]] void usage() {
  victim::fail(
      "usage: victim_pace <seconds> [threads] [--graph] [--ex] [--coop] [--ptsz] [--timeline] "
      "[--capture] [--gap US] [--burst N]");
}

Settings parse(const std::vector<std::string>& args) {
  Settings s;
  int positional = 0;
  bool want_gap = false;
  bool want_burst = false;
  for (const auto& a : args) {
    if (want_gap || want_burst) {
      char* end = nullptr;
      const long n = std::strtol(a.c_str(), &end, 10);
      if (*end != '\0' || n < (want_gap ? 0 : 1) || n > 10000000) {
        usage();
      }
      if (want_gap) {
        s.gap_ns = static_cast<std::uint64_t>(n) * 1000ULL;
      } else {
        s.burst = static_cast<int>(n);
      }
      want_gap = want_burst = false;
    } else if (a == "--gap") {
      want_gap = true;
    } else if (a == "--burst") {
      want_burst = true;
    } else if (a == "--graph") {
      s.mode = Mode::Graph;
    } else if (a == "--ex") {
      s.mode = Mode::Ex;
    } else if (a == "--coop") {
      s.mode = Mode::Coop;
    } else if (a == "--ptsz") {
      s.ptsz = true;
    } else if (a == "--timeline") {
      s.timeline = true;
    } else if (a == "--capture") {
      s.capture = true;
    } else if (!a.empty() && a[0] != '-' && positional < 2) {
      char* end = nullptr;
      if (positional == 0) {
        s.seconds = std::strtod(a.c_str(), &end);
        if (*end != '\0' || !(s.seconds >= 0) || s.seconds > 86400) {
          usage();
        }
      } else {
        const long n = std::strtol(a.c_str(), &end, 10);
        if (*end != '\0' || n < 1 || n > 1024) {
          usage();
        }
        s.threads = static_cast<int>(n);
      }
      ++positional;
    } else {
      usage();
    }
  }
  if (positional == 0 || want_gap || want_burst) {
    usage();
  }
  return s;
}

struct Shared {
  Settings settings;
  CUcontext ctx = nullptr;
  CUfunction fn = nullptr;
  CUgraphExec exec = nullptr;
  std::uint64_t deadline = 0;
  std::atomic<unsigned long long> launches{0};
};

CUresult launch_once(const Shared& sh, CUstream stream) {
  const bool ptsz = sh.settings.ptsz;
  switch (sh.settings.mode) {
    case Mode::Kernel:
      return ptsz ? cuLaunchKernel_ptsz(sh.fn, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr)
                  : cuLaunchKernel(sh.fn, 1, 1, 1, 32, 1, 1, 0, stream, nullptr, nullptr);
    case Mode::Ex: {
      CUlaunchConfig cfg{};
      cfg.gridDimX = cfg.gridDimY = cfg.gridDimZ = 1;
      cfg.blockDimX = 32;
      cfg.blockDimY = cfg.blockDimZ = 1;
      cfg.hStream = stream;
      return ptsz ? cuLaunchKernelEx_ptsz(&cfg, sh.fn, nullptr, nullptr)
                  : cuLaunchKernelEx(&cfg, sh.fn, nullptr, nullptr);
    }
    case Mode::Coop:
      return ptsz ? cuLaunchCooperativeKernel_ptsz(sh.fn, 1, 1, 1, 32, 1, 1, 0, stream, nullptr)
                  : cuLaunchCooperativeKernel(sh.fn, 1, 1, 1, 32, 1, 1, 0, stream, nullptr);
    case Mode::Graph:
      return ptsz ? cuGraphLaunch_ptsz(sh.exec, stream) : cuGraphLaunch(sh.exec, stream);
  }
  return CUDA_ERROR_INVALID_VALUE;
}

void worker(Shared& sh) {
  victim::expect_cu("cuCtxSetCurrent", cuCtxSetCurrent(sh.ctx));
  CUstream stream = nullptr;
  victim::expect_cu("cuStreamCreate", cuStreamCreate(&stream, 0));
  if (sh.settings.capture) fake_set_capturing(stream, 1);
  int in_burst = 0;
  while (now_ns() < sh.deadline) {
    const CUresult r = launch_once(sh, stream);
    VICTIM_CHECK(r == CUDA_SUCCESS, "launch %llu failed with %d", sh.launches.load(), r);
    sh.launches.fetch_add(1, std::memory_order_relaxed);
    if (sh.settings.gap_ns > 0 && ++in_burst == sh.settings.burst) {
      in_burst = 0;
      const timespec gap{static_cast<time_t>(sh.settings.gap_ns / 1000000000ULL),
                         static_cast<long>(sh.settings.gap_ns % 1000000000ULL)};
      ::nanosleep(&gap, nullptr);
    }
  }
  if (sh.settings.capture) fake_set_capturing(stream, 0);
  const CUresult synced =
      sh.settings.ptsz ? cuStreamSynchronize_ptsz(stream) : cuStreamSynchronize(stream);
  victim::expect_cu("cuStreamSynchronize", synced);
  victim::expect_cu("cuStreamDestroy_v2", cuStreamDestroy_v2(stream));
}

}  // namespace

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_pace");
  Shared sh;
  sh.settings = parse(opts.args);

  victim::expect_cu("cuInit", cuInit(0));
  CUdevice dev = -1;
  victim::expect_cu("cuDeviceGet", cuDeviceGet(&dev, 0));
  victim::expect_cu("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(&sh.ctx, dev));
  victim::expect_cu("cuCtxSetCurrent", cuCtxSetCurrent(sh.ctx));
  static const char kImage[] = "softmig fake module image";
  CUmodule module = nullptr;
  victim::expect_cu("cuModuleLoadData", cuModuleLoadData(&module, kImage));
  victim::expect_cu("cuModuleGetFunction", cuModuleGetFunction(&sh.fn, module, "kernel"));
  CUgraph graph = nullptr;
  if (sh.settings.mode == Mode::Graph) {
    victim::expect_cu("cuGraphCreate", cuGraphCreate(&graph, 0));
    victim::expect_cu("cuGraphInstantiateWithFlags",
                      cuGraphInstantiateWithFlags(&sh.exec, graph, 0));
  }

  const std::uint64_t start = now_ns();
  sh.deadline = start + static_cast<std::uint64_t>(sh.settings.seconds * 1e9);
  std::printf("START %" PRIu64 "\n", start);
  std::fflush(stdout);

  std::atomic<bool> done{false};
  std::thread reporter;
  if (sh.settings.timeline) {
    reporter = std::thread([&] {
      std::uint64_t next = start + 10000000ULL;
      while (!done.load()) {
        const timespec ts{static_cast<time_t>(next / 1000000000ULL),
                          static_cast<long>(next % 1000000000ULL)};
        ::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
        if (done.load()) {
          break;
        }
        std::printf("TL %.3f %llu\n", static_cast<double>(now_ns() - start) / 1e6,
                    sh.launches.load());
        next += 10000000ULL;
      }
    });
  }

  // What a bursting job would see of this one: the age of its newest stamp, every millisecond,
  // from the first launch (the library stamps from then on) to the end of the launches.
  std::atomic<std::int64_t> stamp_age_ns{-1};
  std::thread watcher;
  if (const char* board = std::getenv("SOFTMIG_SM_BOARD"); board != nullptr && *board != '\0') {
    watcher = std::thread([&, board] {
      while (sh.launches.load() == 0 && now_ns() < sh.deadline) {
        ::usleep(1000);
      }
      std::int64_t worst = 0;
      while (now_ns() < sh.deadline) {
        timespec rt{};
        ::clock_gettime(CLOCK_REALTIME, &rt);
        const std::int64_t newest = newest_stamp_ns(board);
        if (newest > 0) {
          worst = std::max<std::int64_t>(worst, rt.tv_sec * 1000000000LL + rt.tv_nsec - newest);
        }
        ::usleep(1000);
      }
      stamp_age_ns.store(worst);
    });
  }

  std::vector<std::thread> threads;
  for (int i = 0; i < sh.settings.threads; ++i) {
    threads.emplace_back(worker, std::ref(sh));
  }
  for (auto& t : threads) {
    t.join();
  }
  const std::uint64_t wall = now_ns() - start;
  done.store(true);
  if (watcher.joinable()) {
    watcher.join();
  }
  if (reporter.joinable()) {
    reporter.join();
  }

  const unsigned long long busy = fake_gpu_busy_ns(0);
  const Windows w = promised_windows();
  const unsigned long long outside = fake_gpu_busy_outside_ns(0, w.period_ns, w.window_ns, w.offset_ns);
  const std::int64_t age = stamp_age_ns.load();
  std::printf("PACE launches=%llu gpu_busy_ns=%llu wall_ns=%" PRIu64
              " share=%.4f records=%llu outside=%.4f stamp_age_ms=%.1f\n",
              sh.launches.load(), busy, wall,
              wall > 0 ? static_cast<double>(busy) / static_cast<double>(wall) : 0.0,
              fake_call_count("cuEventRecord"),
              busy > 0 ? static_cast<double>(outside) / static_cast<double>(busy) : 0.0,
              age < 0 ? -1.0 : static_cast<double>(age) / 1e6);
  std::fflush(stdout);

  if (sh.exec != nullptr) {
    victim::expect_cu("cuGraphExecDestroy", cuGraphExecDestroy(sh.exec));
    victim::expect_cu("cuGraphDestroy", cuGraphDestroy(graph));
  }
  victim::expect_cu("cuModuleUnload", cuModuleUnload(module));
  victim::expect_cu("cuDevicePrimaryCtxRelease_v2", cuDevicePrimaryCtxRelease_v2(dev));
  return 0;
}
