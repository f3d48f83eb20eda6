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
