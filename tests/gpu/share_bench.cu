// SPDX-License-Identifier: Apache-2.0
// The GPU loads of the compute-share benchmark (tests/gpu/compute_share.sh).
// Build: nvcc -O2 -std=c++17 -arch=sm_90 -o share_bench share_bench.cu -lcublas -lcuda
// Usage: share_bench LOAD SECONDS [--timeline]
//   matmul     bf16 8192x8192x8192 cublasGemmEx (fp32 accumulation); unit = 1 GEMM
//   launch     a tiny kernel (1 block of 64 threads writes one int); unit = 1 launch
//   graph      a CUDA graph of 8 FMA kernels of ~150 us each; unit = 1 cudaGraphLaunch
//   coop       a cooperative kernel (whole GPU, 4 grid.sync() between FMA loops, ~0.5 ms); unit = 1 launch
//   bandwidth  out[i] = 2 * in[i] over 1 GiB of floats; unit = 1 kernel
// Each load repeats its unit on one non-blocking stream for SECONDS, after a 0.3 s warm-up. The
// queue is bounded without draining it: an event follows every batch of units, and a batch waits
// for the batch DEPTH batches before it (no pipeline bubble, no sync per unit). At the end the
// stream is synchronised before the end time is read, so every unit counted completed inside the
// timed interval.
//
// Output (stdout):
//   READY                  only with SHARE_WAIT_GO=1: set up (matmul: one GEMM done, see there),
//                          then one line is read from stdin before going on (lets a script start
//                          jobs together)
//   BEGIN <ns>             CLOCK_MONOTONIC (= Python's time.monotonic_ns()) just before the first
//                          GPU work (buffer fill, then warm-up)
//   START <ns>             start of the timed interval
//   TL <ms> <units>        with --timeline: units completed by <ms> after START, about every 20 ms
//                          and on both sides of any gap over 10 ms between completions
//   SHARE load=L units=N seconds=S rate=R [extra key=value...]   the last line; matmul adds
//                          unit_gpu_ms (median GPU time of one GEMM) and busy (rate * unit_gpu_ms:
//                          the share of the GPU's time its GEMMs took, meaningful for one process)
// Environment: SHARE_WAIT_GO (above); SHARE_SERVE=1: after the SHARE line, read a line and, if it
// is "go", measure again (BEGIN ... SHARE), until one is not (or EOF); SHARE_WARM_MS: warm-up
// before each measurement (default 300); SHARE_QUEUE=<batches>
// overrides the queue depth;
// SHARE_DUTY=<percent>: the program pauses itself outside its windows (see Duty), no softmig;
// SHARE_DUTY_PERIOD_MS: their period (default 200, softmig's default); SHARE_DUTY_PHASE=<percent>:
// where in the period the window opens (default 0, as CUDA_DEVICE_SM_PHASE).
// SHARE_GREEN_SMS=<n>: the load runs in a green context of n SMs (see enter_green_context).
#include <cooperative_groups.h>
#include <cuda.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace cg = cooperative_groups;

namespace {

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "FAIL %s -> %s at line %d\n", #x, cudaGetErrorString(e_), __LINE__); \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

#define CKB(x)                                                                   \
  do {                                                                           \
    cublasStatus_t s_ = (x);                                                     \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                           \
      std::fprintf(stderr, "FAIL %s -> cublas %d at line %d\n", #x, static_cast<int>(s_), __LINE__); \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

long long now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

constexpr long long kMs = 1000000LL;

__global__ void fill_bf16(__nv_bfloat16* p, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    p[i] = __float2bfloat16(0.01f * static_cast<float>(static_cast<int>(i % 7) - 3));
  }
}

__global__ void fill_f32(float* p, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    p[i] = static_cast<float>(i % 1000) * 0.001f;
  }
}

__global__ void tiny_kernel(int* p, int v) {
  if (threadIdx.x == 0) *p = v;
}

// A dependent chain of FMAs per thread: b and c are kernel arguments, so nothing folds.
__global__ void fma_kernel(float* out, int iters, float b, float c) {
  float a = threadIdx.x * 1e-3f;
#pragma unroll 8
  for (int i = 0; i < iters; ++i) a = fmaf(a, b, c);
  out[blockIdx.x * blockDim.x + threadIdx.x] = a;
}

__global__ void coop_kernel(float* out, int iters, int phases, float b, float c) {
  cg::grid_group grid = cg::this_grid();
  float a = threadIdx.x * 1e-3f;
  for (int p = 0; p < phases; ++p) {
#pragma unroll 8
    for (int i = 0; i < iters; ++i) a = fmaf(a, b, c);
    grid.sync();
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = a;
}

__global__ void stream_kernel(const float4* __restrict__ in, float4* __restrict__ out, size_t n4) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    float4 v = in[i];
    v.x *= 2.f;
    v.y *= 2.f;
    v.z *= 2.f;
    v.w *= 2.f;
    out[i] = v;
  }
}

struct Load {
  int per_event = 1;              // units between two events
  bool timed = false;             // time single units (per_event 1): unit_gpu_ms, busy
  int depth = 32;                 // batches that may be queued
  std::function<void(int)> submit;  // enqueue this many units on the stream
  std::function<void()> init;     // GPU work before the warm-up (buffer fills); after BEGIN
};

/// Timeline: (time, units) observations after START, printed as TL lines.
struct Timeline {
  bool on = false;
  long long start = 0;
  long long last_t = 0, last_u = 0;  // last observation
  long long tl_t = 0;                // last printed
  bool last_printed = true;

  void print(long long t, long long u) {
    std::printf("TL %.3f %lld\n", static_cast<double>(t - start) / kMs, u);
    tl_t = t;
  }
  void reset(long long t0) {
    start = last_t = tl_t = t0;
    last_u = 0;
    last_printed = true;
    if (on) print(t0, 0);
  }
  void observe(long long t, long long u) {
    if (!on) return;
    const bool gap = t - last_t > 10 * kMs;
    if (gap && !last_printed) print(last_t, last_u);
    const bool now = gap || t - tl_t >= 20 * kMs;
    if (now) print(t, u);
    last_t = t;
    last_u = u;
    last_printed = now;
  }
};

/// SHARE_DUTY=P: the program pauses itself outside the first P % of every 200 ms (or
/// SHARE_DUTY_PERIOD_MS) of CLOCK_MONOTONIC, shifted by SHARE_DUTY_PHASE % of the period (the
/// windows softmig gives a job at that phase), after finishing its queued work, without softmig.
/// What a host-bound load can do in P % of the time on this machine: the best any time-division
/// share could deliver to it.
struct Duty {
  long long period = 200 * kMs;  // softmig's default
  long long open = 0;  // 0: off
  long long offset = 0;
};
Duty g_duty;

void duty_wait(cudaStream_t s) {
  if (g_duty.open == 0) return;
  long long t = now_ns();
  const long long in_period = (t - g_duty.offset) % g_duty.period;
  if (in_period < g_duty.open) return;
  CK(cudaStreamSynchronize(s));
  const long long until = t - in_period + g_duty.period;
  const long long spin = 200 * 1000;  // as softmig: sleep to just before the window, then yield
  while ((t = now_ns()) < until) {
    if (until - t > spin) {
      const long long d = std::min(until - t - spin, 5 * kMs);
      timespec ts{static_cast<time_t>(d / 1000000000LL), static_cast<long>(d % 1000000000LL)};
      nanosleep(&ts, nullptr);
    } else {
      sched_yield();
    }
  }
}

/// GPU time of single units, from timing events on consecutive units (Load::timed): their
/// median is the unit's GPU time at the clock the GPU ran at (a pause between two units, e.g. a
/// closed window, makes one interval long; the median ignores it).
struct UnitTimes {
  std::vector<float> ms;
  [[nodiscard]] double median() {
    if (ms.empty()) return 0;
    std::nth_element(ms.begin(), ms.begin() + static_cast<long>(ms.size() / 2), ms.end());
    return ms[ms.size() / 2];
  }
};

/// Submits batches until `until`; returns the units submitted. Before a batch reuses an event
/// slot, the batch that used it (depth batches earlier) must have completed. With `times`, one
/// slot fewer is in flight, so that the event before the one just completed is still intact.
long long run_until(const Load& load, cudaStream_t s, std::vector<cudaEvent_t>& ev, long long until,
                    Timeline& tl, UnitTimes* times = nullptr) {
  const long long depth = static_cast<long long>(ev.size());
  const long long in_flight = times != nullptr ? depth - 1 : depth;
  long long issued = 0, completed = 0;
  for (;;) {
    if (issued - completed >= in_flight) {
      CK(cudaEventSynchronize(ev[completed % depth]));
      if (times != nullptr && completed > 0) {
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, ev[(completed - 1) % depth], ev[completed % depth]));
        times->ms.push_back(ms);
      }
      ++completed;
      tl.observe(now_ns(), completed * load.per_event);
    }
    if (now_ns() >= until) break;
    duty_wait(s);
    load.submit(load.per_event);
    CK(cudaEventRecord(ev[issued % depth], s));
    ++issued;
  }
  return issued * load.per_event;
}

/// SHARE_GREEN_SMS=N: makes a green context of (about) N SMs current before any of the load's
/// work, so that its streams, cuBLAS handle and kernels use only those SMs: the spatial slice a
/// time share is compared with (run without softmig). Returns the SMs granted, or 0.
int enter_green_context(int want) {
  CUdevice dev = 0;
  CUdevResource all{}, part{}, rest{};
  unsigned groups = 1;
  CUdevResourceDesc desc = nullptr;
  CUgreenCtx green = nullptr;
  CUcontext ctx = nullptr;
  if (cuDeviceGet(&dev, 0) != CUDA_SUCCESS || cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM) != CUDA_SUCCESS ||
      cuDevSmResourceSplitByCount(&part, &groups, &all, &rest, 0, static_cast<unsigned>(want)) != CUDA_SUCCESS ||
      groups != 1 || cuDevResourceGenerateDesc(&desc, &part, 1) != CUDA_SUCCESS ||
      cuGreenCtxCreate(&green, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM) != CUDA_SUCCESS ||
      cuCtxFromGreenCtx(&ctx, green) != CUDA_SUCCESS || cuCtxSetCurrent(ctx) != CUDA_SUCCESS) {
    return 0;
  }
  return static_cast<int>(part.sm.smCount);
}

int usage() {
  std::fprintf(stderr, "usage: share_bench matmul|launch|graph|coop|bandwidth SECONDS [--timeline]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string name = argv[1];
  const double seconds = std::atof(argv[2]);
  const bool timeline = argc > 3 && std::strcmp(argv[3], "--timeline") == 0;
  if (seconds <= 0) return usage();

  CK(cudaSetDevice(0));
  CK(cudaFree(nullptr));  // creates the context
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  int green_sms = 0;
  if (const char* g = std::getenv("SHARE_GREEN_SMS"); g != nullptr && std::atoi(g) > 0) {
    green_sms = enter_green_context(std::atoi(g));
    if (green_sms == 0) {
      std::fprintf(stderr, "FAIL green context of %s SMs\n", g);
      return 1;
    }
  }
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  Load load;
  std::string extra_name;        // name of an extra per-unit figure in the SHARE line
  double extra_per_unit = 0;     // its value per unit per second (e.g. TFLOP per GEMM)
  cublasHandle_t handle = nullptr;
  cudaGraphExec_t exec = nullptr;
  int coop_grid = 0;

  if (name == "matmul") {
    const int n = 8192;
    const size_t elems = static_cast<size_t>(n) * n;
    __nv_bfloat16 *a, *b, *c;
    CK(cudaMalloc(&a, elems * sizeof(__nv_bfloat16)));
    CK(cudaMalloc(&b, elems * sizeof(__nv_bfloat16)));
    CK(cudaMalloc(&c, elems * sizeof(__nv_bfloat16)));
    CKB(cublasCreate(&handle));
    CKB(cublasSetStream(handle, s));
    load.init = [=] {
      fill_bf16<<<sms * 8, 256, 0, s>>>(a, elems);
      fill_bf16<<<sms * 8, 256, 0, s>>>(b, elems);
      CK(cudaGetLastError());
    };
    // A process's first GEMM reached the GPU only 0.17-0.2 s after it was called on the H100
    // (cuBLAS setting itself up): done here, so that the first GEMM after READY goes at once.
    static const float one = 1.0f, zero = 0.0f;
    CKB(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n, &zero, c,
                     CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CK(cudaStreamSynchronize(s));
    load.submit = [=](int k) {
      static const float alpha = 1.0f, beta = 0.0f;
      for (int i = 0; i < k; ++i) {
        CKB(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n,
                         &beta, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      }
    };
    load.per_event = 1;
    load.depth = 32;  // ~50 ms of GEMMs queued
    load.timed = true;
    extra_name = "tflops";
    extra_per_unit = 2.0 * n * n * static_cast<double>(n) / 1e12;
  } else if (name == "launch") {
    int* p;
    CK(cudaMalloc(&p, sizeof(int)));
    load.submit = [=](int k) {
      for (int i = 0; i < k; ++i) tiny_kernel<<<1, 64, 0, s>>>(p, i);
      CK(cudaGetLastError());
    };
    load.per_event = 1024;
    load.depth = 4;  // up to 4096 launches queued
  } else if (name == "graph") {
    const int kernels = 8, blocks = 4 * sms, threads = 256;
    const int iters = 24576;  // dependent FMAs, 32 warps per SM: ~155 us on an H100 (measured)
    float* out;
    CK(cudaMalloc(&out, static_cast<size_t>(blocks) * threads * sizeof(float)));
    cudaGraph_t graph;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < kernels; ++i) fma_kernel<<<blocks, threads, 0, s>>>(out, iters, 0.999f, 1e-4f);
    CK(cudaGetLastError());
    CK(cudaStreamEndCapture(s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    load.submit = [=](int k) {
      for (int i = 0; i < k; ++i) CK(cudaGraphLaunch(exec, s));
    };
    load.per_event = 1;
    load.depth = 32;
    extra_name = "kernels_per_s";
    extra_per_unit = kernels;
  } else if (name == "coop") {
    int supported = 0;
    CK(cudaDeviceGetAttribute(&supported, cudaDevAttrCooperativeLaunch, 0));
    if (!supported) {
      std::fprintf(stderr, "FAIL cooperative launch not supported\n");
      return 1;
    }
    const int threads = 256;
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, coop_kernel, threads, 0));
    coop_grid = per_sm * sms;
    float* out;
    CK(cudaMalloc(&out, static_cast<size_t>(coop_grid) * threads * sizeof(float)));
    load.submit = [=](int k) {
      float* o = out;
      int iters = 6656, phases = 4;  // at full occupancy: ~125 us a phase on an H100 (measured)
      float b = 0.999f, c = 1e-4f;
      void* args[] = {&o, &iters, &phases, &b, &c};
      for (int i = 0; i < k; ++i) {
        CK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(coop_kernel), dim3(coop_grid), dim3(threads), args,
                                       0, s));
      }
    };
    load.per_event = 1;
    load.depth = 64;
  } else if (name == "bandwidth") {
    const size_t n = size_t{1} << 28;  // 1 GiB of floats
    float *in, *out;
    CK(cudaMalloc(&in, n * sizeof(float)));
    CK(cudaMalloc(&out, n * sizeof(float)));
    load.init = [=] {
      fill_f32<<<sms * 8, 256, 0, s>>>(in, n);
      CK(cudaGetLastError());
    };
    load.submit = [=](int k) {
      for (int i = 0; i < k; ++i) {
        stream_kernel<<<sms * 16, 256, 0, s>>>(reinterpret_cast<const float4*>(in), reinterpret_cast<float4*>(out),
                                               n / 4);
      }
      CK(cudaGetLastError());
    };
    load.per_event = 1;
    load.depth = 64;
    extra_name = "gbps";
    extra_per_unit = 2.0 * n * sizeof(float) / 1e9;
  } else {
    return usage();
  }
  if (const char* q = std::getenv("SHARE_QUEUE")) {
    if (std::atoi(q) > 0) load.depth = std::atoi(q);
  }
  if (timeline) {
    // Completion times must be seen when they happen: at most two batches in flight.
    load.depth = 2;
    if (name == "launch") load.per_event = 64;
  }
  if (const char* d = std::getenv("SHARE_DUTY"); d != nullptr && std::atoi(d) > 0 && std::atoi(d) < 100) {
    if (const char* p = std::getenv("SHARE_DUTY_PERIOD_MS"); p != nullptr && std::atoi(p) >= 10) {
      g_duty.period = std::atoi(p) * kMs;
    }
    g_duty.open = g_duty.period * std::atoi(d) / 100;
    if (const char* ph = std::getenv("SHARE_DUTY_PHASE"); ph != nullptr && std::atoi(ph) > 0 && std::atoi(ph) < 100) {
      g_duty.offset = g_duty.period * std::atoi(ph) / 100;
    }
    // Pauses are taken between batches: batches much shorter than a window.
    if (name == "launch") {
      load.per_event = 64;
      load.depth = 64;  // as many launches queued as without pauses
    }
  }
  std::vector<cudaEvent_t> ev(load.depth);
  if (timeline) load.timed = false;
  for (auto& e : ev) CK(cudaEventCreateWithFlags(&e, load.timed ? cudaEventDefault : cudaEventDisableTiming));

  const char* go = std::getenv("SHARE_WAIT_GO");
  if (go && *go && std::strcmp(go, "0") != 0) {
    std::printf("READY\n");
    std::fflush(stdout);
    char line[64];
    if (std::fgets(line, sizeof line, stdin) == nullptr) line[0] = 0;  // EOF: go on at once
  }
  const char* serve = std::getenv("SHARE_SERVE");
  const char* warm = std::getenv("SHARE_WARM_MS");
  const long long warm_ms = warm != nullptr && std::atoi(warm) >= 0 ? std::atoi(warm) : 300;
  for (bool again = true, first = true; again; first = false) {
    std::printf("BEGIN %lld\n", now_ns());
    std::fflush(stdout);
    if (first && load.init) load.init();
    Timeline off;
    run_until(load, s, ev, now_ns() + warm_ms * kMs, off);
    CK(cudaStreamSynchronize(s));

    Timeline tl;
    tl.on = timeline;
    const long long t0 = now_ns();
    std::printf("START %lld\n", t0);
    std::fflush(stdout);
    tl.reset(t0);
    UnitTimes times;
    const long long units =
        run_until(load, s, ev, t0 + static_cast<long long>(seconds * 1e9), tl, load.timed ? &times : nullptr);
    CK(cudaStreamSynchronize(s));
    const long long t1 = now_ns();
    if (timeline) tl.print(t1, units);
    CK(cudaGetLastError());

    const double elapsed = static_cast<double>(t1 - t0) / 1e9;
    const double rate = static_cast<double>(units) / elapsed;
    std::printf("SHARE load=%s units=%lld seconds=%.4f rate=%.3f ms_per_unit=%.4f", name.c_str(), units, elapsed, rate,
                units > 0 ? 1000.0 / rate : 0.0);
    if (!extra_name.empty()) std::printf(" %s=%.2f", extra_name.c_str(), rate * extra_per_unit);
    if (name == "coop") std::printf(" grid=%d", coop_grid);
    if (load.timed && !times.ms.empty()) {
      // busy: the share of the GPU's time the load's units took (one process; with several,
      // their units interleave and single intervals stop being one unit's time).
      const double unit_ms = times.median();
      std::printf(" unit_gpu_ms=%.4f busy=%.4f", unit_ms, rate * unit_ms / 1000.0);
    }
    std::printf(" sms=%d queue=%d", sms, load.depth);
    if (green_sms > 0) std::printf(" green_sms=%d", green_sms);
    std::printf("\n");
    std::fflush(stdout);
    // SHARE_SERVE=1: measure again on every further "go" line (the process stays set up).
    char line[64];
    again = serve != nullptr && std::strcmp(serve, "1") == 0 && std::fgets(line, sizeof line, stdin) != nullptr &&
            std::strncmp(line, "go", 2) == 0;
  }
  if (handle) cublasDestroy(handle);
  return 0;
}
