// SPDX-License-Identifier: Apache-2.0
/// @file nvml_hooks.cpp
/// @brief NVML as seen from inside a slice: memory queries report the slice (total = limit,
///        used = the job's usage, free = the rest) and process lists contain only the job's
///        own processes. Outside a slice (no limit) every query passes through unchanged.
#include <cstdlib>
#include <cstring>

#include "hooks/handlers.hpp"
#include "hooks/runtime.hpp"
#include "platform/env.hpp"
#include "platform/settings.hpp"

namespace softmig::hooks {
namespace {

/// The CUDA ordinal under which this process sees NVML device (index, uuid): its position in
/// CUDA_VISIBLE_DEVICES (entries are indices or UUID prefixes), or the index if unset.
/// -1 if CUDA cannot see the device.
int cuda_ordinal_of(unsigned index, const char* uuid) noexcept {
  const char* cvd = platform::env("CUDA_VISIBLE_DEVICES");
  if (cvd == nullptr) return static_cast<int>(index);
  int ordinal = 0;
  const char* p = cvd;
  while (*p != '\0') {
    const char* end = std::strchr(p, ',');
    const std::size_t len = end != nullptr ? static_cast<std::size_t>(end - p) : std::strlen(p);
    if (len > 0 && p[0] >= '0' && p[0] <= '9') {
      char* stop = nullptr;
      const unsigned long v = std::strtoul(p, &stop, 10);
      if (stop == p + len && v == index) return ordinal;
      if (stop != p + len) return -1;  // CUDA stops at the first malformed entry
    } else if (len >= 4 && std::strncmp(uuid, p, len) == 0) {
      return ordinal;
    } else if (len == 0 || (std::strncmp(p, "GPU-", 4) != 0 && std::strncmp(p, "MIG-", 4) != 0)) {
      return -1;
    }
    ++ordinal;
    if (end == nullptr) break;
    p = end + 1;
  }
  return -1;
}

struct SliceView {
  bool limited = false;
  std::uint64_t limit = 0;
  char uuid[core::kUuidChars] = {};
};

SliceView slice_of(nvmlDevice_t device) noexcept {
  SliceView v;
  if (!limits_active()) return v;
  auto* get_uuid = real<Sym::nvmlDeviceGetUUID>();
  auto* get_index = real<Sym::nvmlDeviceGetIndex>();
  unsigned index = 0;
  if (get_uuid == nullptr || get_uuid(device, v.uuid, sizeof(v.uuid)) != NVML_SUCCESS) return v;
  if (get_index == nullptr || get_index(device, &index) != NVML_SUCCESS) index = ~0U;
  const core::DeviceLimit l =
      platform::settings().limits.resolve(index == ~0U ? -1 : cuda_ordinal_of(index, v.uuid), v.uuid);
  if (l.memory_bytes) {
    v.limited = true;
    v.limit = *l.memory_bytes;
  }
  return v;
}

/// Rewrites total/used/free to the slice. Returns false (nothing changed) if the device has no
/// memory limit.
template <typename Mem>
bool report_slice(nvmlDevice_t device, Mem* m) noexcept {
  const SliceView v = slice_of(device);
  if (!v.limited) return false;
  const std::uint64_t total = v.limit < m->total ? v.limit : m->total;
  std::uint64_t used = job_used_by_uuid(v.uuid);
  if (used > total) used = total;
  m->total = total;
  m->used = used;
  m->free = total - used;
  return true;
}

/// Filters a process list down to the job's processes with NVML's size-query contract.
template <Sym S, typename Info>
nvmlReturn_t filtered_processes(nvmlDevice_t device, unsigned int* infoCount, Info* infos) noexcept {
  if (!limits_active() || infoCount == nullptr) return forward<S>(device, infoCount, infos);
  constexpr unsigned kCap = 512;
  Info all[kCap];
  unsigned n = kCap;
  const nvmlReturn_t rc = forward<S>(device, &n, all);
  if (rc != NVML_SUCCESS) {
    // More than kCap processes on one GPU, or an error: answer as NVML would, unfiltered.
    return forward<S>(device, infoCount, infos);
  }
  unsigned kept = 0;
  for (unsigned i = 0; i < n && i < kCap; ++i) {
    if (pid_in_this_job(all[i].pid)) all[kept++] = all[i];
  }
  if (infos == nullptr || *infoCount < kept) {
    *infoCount = kept;
    return kept == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
  }
  std::memcpy(infos, all, kept * sizeof(Info));
  *infoCount = kept;
  return NVML_SUCCESS;
}

}  // namespace

nvmlReturn_t Handler<Sym::nvmlDeviceGetMemoryInfo>::call(nvmlDevice_t device, nvmlMemory_t* memory) noexcept {
  const nvmlReturn_t rc = forward<Sym::nvmlDeviceGetMemoryInfo>(device, memory);
  if (rc == NVML_SUCCESS && memory != nullptr) report_slice(device, memory);
  return rc;
}

nvmlReturn_t Handler<Sym::nvmlDeviceGetMemoryInfo_v2>::call(nvmlDevice_t device, nvmlMemory_v2_t* memory) noexcept {
  const nvmlReturn_t rc = forward<Sym::nvmlDeviceGetMemoryInfo_v2>(device, memory);
  if (rc == NVML_SUCCESS && memory != nullptr && report_slice(device, memory)) {
    memory->reserved = 0;  // a slice has no firmware reservation
  }
  return rc;
}

// `info` is a type name: it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define SOFTMIG_PROCESS_LIST(sym, info)                                                   \
  nvmlReturn_t Handler<Sym::sym>::call(nvmlDevice_t device, unsigned int* infoCount,       \
                                       info* infos) noexcept {                            \
    return filtered_processes<Sym::sym>(device, infoCount, infos);                        \
  }
// NOLINTEND(bugprone-macro-parentheses)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses, nvmlProcessInfo_v1_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses_v2, nvmlProcessInfo_v2_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses_v3, nvmlProcessInfo_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses, nvmlProcessInfo_v1_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses_v2, nvmlProcessInfo_v2_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses_v3, nvmlProcessInfo_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses, nvmlProcessInfo_v1_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses_v2, nvmlProcessInfo_v2_t)
SOFTMIG_PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses_v3, nvmlProcessInfo_t)
#undef SOFTMIG_PROCESS_LIST

}  // namespace softmig::hooks
