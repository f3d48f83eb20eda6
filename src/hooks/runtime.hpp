// SPDX-License-Identifier: Apache-2.0
/// @file runtime.hpp
/// @brief The per-process glue between intercepted calls and the job's ledger: which GPU a
///        call is about (CUDA ordinal -> UUID -> ledger entry), which limit applies to it,
///        and the reserve / release / measure operations the handlers perform.
///
/// Nothing here runs until a handler needs it, and a process with no limits never attaches a
/// ledger: without limits every handler forwards straight to the driver.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/ledger.hpp"
#include "core/limits.hpp"
#include "platform/pointer_map.hpp"

namespace softmig::hooks {

/// What this process knows about one GPU, by CUDA ordinal.
struct GpuState {
  std::atomic<int> state{0};        ///< 0 unknown, 1 ready, 2 unusable
  unsigned ledger_dev = core::kNoDevice;
  core::DeviceLimit limit;
  char uuid[core::kUuidChars] = {};
  std::atomic<std::uint64_t> committed{0};     ///< bytes of this process's live allocations
  std::atomic<std::uint64_t> committed_changes{0};  ///< bumped after every change of `committed`
  std::atomic<std::uint64_t> pending_release{0};  ///< frees not yet recorded (lock timed out)
  std::atomic<std::int64_t> last_measure_ns{0};
  std::atomic<unsigned> contexts{0};            ///< contexts created here (estimate fallback)
};

/// True if any memory or compute limit applies to this process (settings are read once).
bool limits_active() noexcept;

/// The GPU state for a CUDA ordinal, resolving its UUID and limit on first use. nullptr if the
/// ordinal is invalid or the driver cannot tell its UUID.
GpuState* gpu(int ordinal) noexcept;

/// The current context's CUDA ordinal, or -1.
int current_ordinal() noexcept;

/// Reserves `bytes` on `g` for this process before a driver allocation. Returns false if the
/// job's slice cannot hold them (the caller returns CUDA_ERROR_OUT_OF_MEMORY), or if the
/// ledger cannot be used while a limit applies (fail closed).
bool reserve(GpuState& g, std::uint64_t bytes) noexcept;

/// Returns a reservation (failed driver call) or the charge of a freed allocation.
void release(GpuState& g, std::uint64_t bytes) noexcept;

/// Marks `bytes` of a reservation as a live allocation (bookkeeping for overhead measurement).
void committed_add(GpuState& g, std::uint64_t bytes) noexcept;
void committed_sub(GpuState& g, std::uint64_t bytes) noexcept;

/// Re-measures the driver's own use of `g` by this process (contexts, modules, pools, graph
/// memory): NVML's per-process usage minus what this process has allocated. Rate-limited
/// unless `force`.
void measure_overhead(GpuState& g, bool force) noexcept;

/// The job's bytes in use on `g` (all processes), for reporting.
std::uint64_t job_used(const GpuState& g) noexcept;

/// Job usage on the GPU with this UUID, from a read-only view of the ledger (NVML-only
/// processes such as nvidia-smi never join the ledger). 0 if there is no ledger.
std::uint64_t job_used_by_uuid(const char* uuid) noexcept;

/// True if `pid` belongs to this job (same SLURM job, or a member of this ledger outside SLURM).
bool pid_in_this_job(unsigned pid) noexcept;

/// The process-local records of what was charged for each allocation.
platform::PointerMap& pointer_charges() noexcept;  ///< device pointers
platform::PointerMap& handle_charges() noexcept;   ///< VMM handles, arrays, mipmapped arrays

}  // namespace softmig::hooks
