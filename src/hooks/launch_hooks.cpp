// SPDX-License-Identifier: Apache-2.0
// Work submission: every kernel, cooperative and graph launch passes the compute-share pacer
// (hooks/pace.hpp) when the process has a share; otherwise it goes straight to the driver.
#include "hooks/handlers.hpp"
#include "hooks/pace.hpp"

namespace softmig::hooks {
namespace {

/// `per_thread`: a _ptsz entry point, for which stream 0 means the calling thread's stream.
template <Sym S, bool per_thread, typename... A>
CUresult paced(CUstream stream, A... a) noexcept {
  if (!pacing_active()) return forward<S>(a...);
  const CUstream s = (per_thread && stream == nullptr) ? CU_STREAM_PER_THREAD : stream;
  const PaceTicket t = pace_before(s);
  const CUresult rc = forward<S>(a...);
  pace_after(t, s, rc);
  return rc;
}

}  // namespace

#define SOFTMIG_PACED_KERNEL(sym, per_thread)                                                               \
  CUresult Handler<Sym::sym>::call(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, \
                                   unsigned int bx, unsigned int by, unsigned int bz,           \
                                   unsigned int shmem, CUstream s, void** params, void** extra) noexcept { \
    return paced<Sym::sym, per_thread>(s, f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);              \
  }
SOFTMIG_PACED_KERNEL(cuLaunchKernel, false)
SOFTMIG_PACED_KERNEL(cuLaunchKernel_ptsz, true)
#undef SOFTMIG_PACED_KERNEL

#define SOFTMIG_PACED_COOPERATIVE(sym, per_thread)                                                          \
  CUresult Handler<Sym::sym>::call(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, \
                                   unsigned int bx, unsigned int by, unsigned int bz,           \
                                   unsigned int shmem, CUstream s, void** params) noexcept {    \
    return paced<Sym::sym, per_thread>(s, f, gx, gy, gz, bx, by, bz, shmem, s, params);                     \
  }
SOFTMIG_PACED_COOPERATIVE(cuLaunchCooperativeKernel, false)
SOFTMIG_PACED_COOPERATIVE(cuLaunchCooperativeKernel_ptsz, true)
#undef SOFTMIG_PACED_COOPERATIVE

CUresult Handler<Sym::cuLaunchKernelEx>::call(const CUlaunchConfig* config, CUfunction f,
                                              void** params, void** extra) noexcept {
  return paced<Sym::cuLaunchKernelEx, false>(config != nullptr ? config->hStream : nullptr, config, f, params, extra);
}
CUresult Handler<Sym::cuLaunchKernelEx_ptsz>::call(const CUlaunchConfig* config, CUfunction f,
                                                   void** params, void** extra) noexcept {
  return paced<Sym::cuLaunchKernelEx_ptsz, true>(config != nullptr ? config->hStream : nullptr, config, f,
                                           params, extra);
}
CUresult Handler<Sym::cuGraphLaunch>::call(CUgraphExec exec, CUstream s) noexcept {
  return paced<Sym::cuGraphLaunch, false>(s, exec, s);
}
CUresult Handler<Sym::cuGraphLaunch_ptsz>::call(CUgraphExec exec, CUstream s) noexcept {
  return paced<Sym::cuGraphLaunch_ptsz, true>(s, exec, s);
}

}  // namespace softmig::hooks
