// SPDX-License-Identifier: Apache-2.0
/// @file launch_handlers.hpp
/// @brief Handlers of the work-submission entry points, paced by the compute share
///        (hooks/pace.hpp). Included by handlers.hpp.
#pragma once

namespace softmig::hooks {

#define SOFTMIG_LAUNCH_PARAMS                                                                  \
  (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,          \
   unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                     \
   unsigned int sharedMemBytes, CUstream hStream, void** kernelParams, void** extra)
#define SOFTMIG_COOPERATIVE_PARAMS                                                             \
  (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,          \
   unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                     \
   unsigned int sharedMemBytes, CUstream hStream, void** kernelParams)

SOFTMIG_HANDLER(cuLaunchKernel, CUresult, SOFTMIG_LAUNCH_PARAMS);
SOFTMIG_HANDLER(cuLaunchKernel_ptsz, CUresult, SOFTMIG_LAUNCH_PARAMS);
SOFTMIG_HANDLER(cuLaunchKernelEx, CUresult,
                (const CUlaunchConfig* config, CUfunction f, void** kernelParams, void** extra));
SOFTMIG_HANDLER(cuLaunchKernelEx_ptsz, CUresult,
                (const CUlaunchConfig* config, CUfunction f, void** kernelParams, void** extra));
SOFTMIG_HANDLER(cuLaunchCooperativeKernel, CUresult, SOFTMIG_COOPERATIVE_PARAMS);
SOFTMIG_HANDLER(cuLaunchCooperativeKernel_ptsz, CUresult, SOFTMIG_COOPERATIVE_PARAMS);
SOFTMIG_HANDLER(cuGraphLaunch, CUresult, (CUgraphExec hGraphExec, CUstream hStream));
SOFTMIG_HANDLER(cuGraphLaunch_ptsz, CUresult, (CUgraphExec hGraphExec, CUstream hStream));

#undef SOFTMIG_LAUNCH_PARAMS
#undef SOFTMIG_COOPERATIVE_PARAMS

}  // namespace softmig::hooks
