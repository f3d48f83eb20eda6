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

  // Reconciliation of the ledger with the driver's view (docs/design.md, "The ledger can be
  // edited"). Plain fields are only touched while holding the job's ledger lock.
  std::uint64_t charged = 0;         ///< what this process's slot must hold as `alloc` here
  std::uint64_t overhead_set = 0;    ///< what it must hold as `overhead` here
  bool seen = false;                 ///< seen_used / seen_added are valid
  std::atomic<std::uint64_t> seen_used{0};   ///< the device's `used` when this process last released the lock
  std::atomic<std::uint64_t> seen_added{0};  ///< its `added` then
  std::atomic<std::uint64_t> suspicions{0};  ///< changes of the ledger this process could not explain
  std::uint64_t settled = 0;         ///< `suspicions` already covered by an observation
  bool observed = false;             ///< the job's usage here was observed through NVML at least once
  bool foreign = false;              ///< the last observation found job processes with no slot here
  std::uint64_t unrecorded = 0;      ///< job usage the last observation found beyond the ledger
};

/// Carries what a reservation was decided on to confirm(), which runs after the driver call.
struct Ticket {
  bool verify = false;               ///< decided on an observation: check again after the call
  std::uint64_t suspicions = 0;      ///< GpuState::suspicions when it was decided
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
/// ledger cannot be used while a limit applies (fail closed). The job's usage is the ledger's,
/// raised by what NVML shows beyond it whenever the ledger changed in a way this process cannot
/// explain (docs/design.md). `ticket`, if given, is what confirm() needs after the driver call.
bool reserve(GpuState& g, std::uint64_t bytes, Ticket* ticket = nullptr) noexcept;

/// After a reserved allocation succeeded in the driver: false if the job's slice, observed
/// through NVML, no longer holds it because the ledger was edited while it was in flight. The
/// caller then frees it, release()s the bytes and returns CUDA_ERROR_OUT_OF_MEMORY. Costs a few
/// loads unless the reservation was decided on an observation or the ledger changed since.
bool confirm(GpuState& g, const Ticket& ticket) noexcept;

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

/// Adds `ns` of launches held back by the compute share on `g` to the job's ledger (for
/// `softmig status`). Lock-free; nothing happens without a ledger.
void note_held(const GpuState& g, std::uint64_t ns) noexcept;

/// The job's processes using `g` (core::read_holders), or UINT32_MAX when this process has not
/// joined the job's ledger (not known).
unsigned job_processes_on(const GpuState& g) noexcept;

/// The job's shared record of its compute-share spills on `g` (core::LedgerDevice::
/// spill_until_ns), or nullptr when this process has not joined the job's ledger.
std::uint64_t* job_spill_record(const GpuState& g) noexcept;

/// True if `pid` belongs to this job (same SLURM job, or a member of this ledger outside SLURM).
bool pid_in_this_job(unsigned pid) noexcept;

/// The process-local records of what was charged for each allocation.
platform::PointerMap& pointer_charges() noexcept;  ///< device pointers
platform::PointerMap& handle_charges() noexcept;   ///< VMM handles, arrays, mipmapped arrays

}  // namespace softmig::hooks
