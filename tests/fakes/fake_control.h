/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file fake_control.h
 * @brief Control API of the test fakes: the fake libcuda.so.1 and libnvidia-ml.so.1 that the
 *        preload tests run softmig against. None of these functions is counted as a call.
 *
 * Programs that link the fakes may call these directly; programs that dlopen them look them up
 * with dlsym(handle, ...) or dlsym(RTLD_DEFAULT, ...).
 *
 * Environment understood by both fakes (read once, when the library is loaded):
 *   SOFTMIG_FAKE_DEVICES        comma list of physical device sizes, e.g. "16G,8G" (binary units
 *                               K/M/G/T, optional "B"/"iB"; a bare number is bytes). Default: one
 *                               16 GiB device. At most 16 devices.
 *   SOFTMIG_FAKE_CONTEXT_BYTES  device memory a context costs (default 300M)
 *   SOFTMIG_FAKE_MODULE_BYTES   device memory a loaded module or library costs (default 2M)
 *   SOFTMIG_FAKE_STATE          file through which processes share their device usage (created
 *                               if missing); unset: usage is private to the process
 *   SOFTMIG_FAKE_INJECT         "symbol:result:count[,symbol:result:count...]": the next `count`
 *                               calls of `symbol` return `result` without doing anything
 * The fake libcuda also honours CUDA_VISIBLE_DEVICES (read at cuInit) like the real driver.
 *
 * GPU time, understood by the fake libcuda (durations: a number of ns, or with a suffix ns, us,
 * ms, s, e.g. "250us", "1.5ms"):
 *   SOFTMIG_FAKE_KERNEL_NS      GPU time of every kernel launch (cuLaunchKernel, cuLaunchKernelEx,
 *                               cuLaunchCooperativeKernel and their _ptsz variants). Default 0:
 *                               work takes no time and nothing ever waits.
 *   SOFTMIG_FAKE_GRAPH_NS       GPU time of every cuGraphLaunch(_ptsz). Default 8 x KERNEL_NS.
 *   SOFTMIG_FAKE_QUEUE_DEPTH    launches that may be pending on a device; a further launch blocks
 *                               until the oldest completes, like a launch into the driver's full
 *                               queue. Default 1024; 0 = unbounded.
 *   SOFTMIG_FAKE_LAUNCH_HOST_NS host time every launch call takes (a busy wait, like the few
 *                               microseconds a real launch costs). Default 0.
 *   SOFTMIG_FAKE_EVENT_NS       how late an event recorded behind no work completes (a real GPU
 *                               takes ~10-30 us to reach and write it). Default 0.
 * The model: each device has one timeline per process on which the work of all streams runs
 * serially in submission order (CLOCK_MONOTONIC): a launch submitted at `now` completes at
 * busy_until = max(now, busy_until) + duration. cuEventRecord stamps the event with
 * max(now + EVENT_NS, busy_until) of the stream's device; cuEventQuery is CUDA_ERROR_NOT_READY (600) until
 * then (CUDA_SUCCESS for an event never recorded, as the driver documents); cuEventElapsedTime(_v2)
 * gives the difference of the stamps (NOT_READY while either is pending, INVALID_HANDLE if either
 * is unknown, never recorded or created with CU_EVENT_DISABLE_TIMING). cuStreamSynchronize(_ptsz),
 * cuCtxSynchronize(_v2), cuEventSynchronize and the synchronous cuMemcpy* sleep until the device's
 * busy_until at the time of the call. Events and synchronisation follow the device, not the
 * individual stream (a stream sync also waits for other streams' earlier work).
 * On a stream marked capturing (fake_set_capturing), launches and cuEventRecord succeed but are
 * captured, not executed (no GPU time, not in fake_launch_count, the event is not stamped), and
 * cuStreamSynchronize fails with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (900) and invalidates the
 * capture, as in the driver.
 */
#ifndef SOFTMIG_TESTS_FAKE_CONTROL_H
#define SOFTMIG_TESTS_FAKE_CONTROL_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- fake libcuda.so.1 ------------------------------------------------------------------ */

/** Calls the fake driver received through its exported `symbol` (e.g. "cuMemAlloc_v2") in this
 *  process, injected failures included. 0 for a name the fake does not export. */
unsigned long long fake_call_count(const char* symbol);

/** Sets every call counter of the fake driver to zero. */
void fake_reset_counts(void);

/** The next `n_calls` calls of `symbol` return `result` and do nothing else. n_calls <= 0
 *  cancels a pending injection. Unknown symbols are reported on stderr and ignored. */
void fake_inject_result(const char* symbol, int result, int n_calls);

/** Bytes of device memory this process uses on the device with CUDA ordinal `cuda_ordinal`
 *  (allocations, contexts and modules). 0 before cuInit or for an invalid ordinal. */
unsigned long long fake_process_used(int cuda_ordinal);

/** What cuGetProcAddress_v2(base, &pfn, cudaVersion, flags, &status) of the fake answers:
 *  returns the CUdriverProcAddressQueryResult and stores the exported name of the function it
 *  would hand out in *symbol (NULL unless the result is CU_GET_PROC_ADDRESS_SUCCESS).
 *  Returns -1 for invalid flags. */
int fake_proc_symbol(const char* base, int cudaVersion, unsigned long long flags,
                     const char** symbol);

/** GPU time (ns) consumed by the launches of this process on the device with CUDA ordinal
 *  `cuda_ordinal`: the sum of the durations of every executed kernel and graph launch, counted
 *  when submitted (some of it may still be pending). 0 before cuInit or for an invalid ordinal. */
unsigned long long fake_gpu_busy_ns(int cuda_ordinal);

/** The part of fake_gpu_busy_ns(cuda_ordinal) that ran outside the windows
 *  [k * period_ns + offset_ns, k * period_ns + offset_ns + window_ns) of CLOCK_MONOTONIC: GPU
 *  time a job with those windows took from the others. Counted over the last ~10^6 spans of
 *  back-to-back work. 0 before cuInit, for an invalid ordinal, or for a window not shorter than
 *  the period. */
unsigned long long fake_gpu_busy_outside_ns(int cuda_ordinal, unsigned long long period_ns,
                                            unsigned long long window_ns, unsigned long long offset_ns);

/** Kernel and graph launches this process executed on all devices (captured ones excluded).
 *  Unlike fake_call_count, launches that failed or were injected to fail are not counted. */
unsigned long long fake_launch_count(void);

/** Marks stream handle `stream` (a stream from cuStreamCreate, or NULL, CU_STREAM_LEGACY,
 *  CU_STREAM_PER_THREAD as values) as capturing: cuStreamIsCapturing then reports `capturing`
 *  (1 = CU_STREAM_CAPTURE_STATUS_ACTIVE, 2 = CU_STREAM_CAPTURE_STATUS_INVALIDATED; other non-zero
 *  values mean 1). 0 ends the capture. The fake has no cuStreamBeginCapture. */
void fake_set_capturing(void* stream, int capturing);

/** Changes the GPU time of every later kernel launch and graph launch of this process
 *  (overrides SOFTMIG_FAKE_KERNEL_NS / SOFTMIG_FAKE_GRAPH_NS; work already submitted keeps its
 *  time). */
void fake_set_kernel_ns(unsigned long long kernel_ns, unsigned long long graph_ns);

/* ---- fake libnvidia-ml.so.1 ------------------------------------------------------------- */

/** Calls the fake NVML received through its exported `symbol` in this process. */
unsigned long long fake_nvml_call_count(const char* symbol);

/** Sets every call counter of the fake NVML to zero. */
void fake_nvml_reset_counts(void);

/** Like fake_inject_result, for NVML entry points. */
void fake_nvml_inject_result(const char* symbol, int result, int n_calls);

#ifdef __cplusplus
}
#endif

#endif /* SOFTMIG_TESTS_FAKE_CONTROL_H */
