/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file softmig.h
 * @brief The only non-driver symbols libsoftmig.so exports: a small, stable C API that tests,
 *        benchmarks and the softmig tool use to ask a preloaded library what it has seen.
 *        Programs should look these up with dlsym(RTLD_DEFAULT, ...) so that they still run
 *        when the library is not loaded.
 */
#ifndef SOFTMIG_SOFTMIG_H
#define SOFTMIG_SOFTMIG_H

#ifdef __cplusplus
extern "C" {
#endif

/** Version string of the loaded library, e.g. "0.1.0". */
const char* softmig_version(void);

/** Number of calls that reached softmig's wrapper of `symbol` in this process (0 if `symbol`
 *  is not interposed). */
unsigned long long softmig_hook_calls(const char* symbol);

/** How wrappers were handed out in this process. `route` is one of:
 *   "dlsym"            lookups of an interposed symbol answered with softmig's wrapper
 *   "cuGetProcAddress" cuGetProcAddress/_v2 results replaced by softmig's wrapper
 *   "unmapped"         cuGetProcAddress results for an interposed name that could not be mapped
 *                      to a wrapper (must stay 0; each one is logged)
 *  Returns 0 for an unknown route. */
unsigned long long softmig_route_count(const char* route);

#ifdef __cplusplus
}
#endif

#endif /* SOFTMIG_SOFTMIG_H */
