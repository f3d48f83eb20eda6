// SPDX-License-Identifier: Apache-2.0
/// @file driver_api.hpp
/// @brief What the programs of the GPU-free tests (tests/victims, tests/memory) share: the
///        declarations of every driver and NVML function the fakes export, and the fakes' control
///        API (fake_control.h).
///
/// The declarations come from the tables the fakes are built from: softmig's entry-point table
/// (src/hooks/entry_points.def) plus the fakes' own extras (tests/fakes/fake_*_extras.def). A
/// program linked against the fakes (-lcuda -lnvidia-ml) calls them directly; one that is not
/// linked against them only uses them in decltype().
#pragma once

#include "abi/cuda_types.hpp"
#include "abi/nvml_types.hpp"
#include "fake_control.h"

extern "C" {
#define SOFTMIG_CUDA(name, params, args) CUresult name params;
#define SOFTMIG_CUDA_USE(name, params) CUresult name params;
#define SOFTMIG_NVML(name, params, args) nvmlReturn_t name params;
#define SOFTMIG_NVML_USE(name, params) nvmlReturn_t name params;
#include "hooks/entry_points.def"
#define FAKE_CUDA_EXTRA(name, params) CUresult name params;
#include "fake_cuda_extras.def"
#define FAKE_NVML_EXTRA(ret, name, params) ret name params;
#include "fake_nvml_extras.def"
}
