// SPDX-License-Identifier: Apache-2.0
/// @file fake_nvml.cpp
/// @brief A fake NVML, built as libnvidia-ml.so.1, reporting the devices and usage simulated by
///        the fake driver (tests/fakes/fake_cuda.cpp).
///
/// It exports every NVML symbol of src/hooks/entry_points.def plus fake_nvml_extras.def. Like the
/// real NVML it always sees every physical device (CUDA_VISIBLE_DEVICES does not apply) and
/// reports memory and processes of all processes: it reads the usage table the fake drivers of
/// all processes publish to (SOFTMIG_FAKE_STATE), or without one, the fake driver of its own
/// process. Every exported function counts its calls and can be told to fail (fake_control.h).

#include "abi/nvml_types.hpp"
#include "fake_common.hpp"
#include "fake_control.h"

#include <dlfcn.h>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <type_traits>

// Every exported NVML function, declared from the tables (see fake_cuda.cpp).
extern "C" {
#define SOFTMIG_NVML(name, params, args) nvmlReturn_t name params;
#define SOFTMIG_NVML_USE(name, params) nvmlReturn_t name params;
#include "hooks/entry_points.def"
#define FAKE_NVML_EXTRA(ret, name, params) ret name params;
#include "fake_nvml_extras.def"
}

struct nvmlDevice_st {
  unsigned int index;
};

namespace {

using fake::config;

constexpr const char* kSymNames[] = {
#define SOFTMIG_NVML(name, params, args) #name,
#define SOFTMIG_NVML_USE(name, params) #name,
#include "hooks/entry_points.def"
#define FAKE_NVML_EXTRA(ret, name, params) #name,
#include "fake_nvml_extras.def"
};

fake::CallTable& calls() {  // used by FAKE_ENTER (fake_common.hpp)
  static auto* table = new fake::CallTable(kSymNames);  // never destroyed: used until exit
  return *table;
}
using FakeResult = nvmlReturn_t;  // of the entry points FAKE_FORWARD defines

constexpr nvmlReturn_t NVML_ERROR_NOT_FOUND = 6;
constexpr unsigned int kNoInstance = 0xFFFFFFFFU;  // gpuInstanceId / computeInstanceId without MIG

nvmlDevice_st g_devices[fake::kMaxDevices];
std::atomic<int> g_init_count{0};

std::mutex g_table_mu;
fake::UsageTable g_table;

unsigned int device_count() { return static_cast<unsigned int>(config().device_bytes.size()); }

// The usage table: the shared file, or else the private table of the fake driver in this process
// (attached as soon as that driver is loaded). Callers hold g_table_mu.
fake::UsageTable& table_locked() {
  if (!g_table.attached()) {
    if (!config().state_path.empty()) {
      g_table.attach(nullptr);
    } else if (void* cuda = ::dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD); cuda != nullptr) {
      using TableFn = void* (*)();
      if (auto fn = reinterpret_cast<TableFn>(::dlsym(cuda, "fake_private_usage_table"))) {
        g_table.attach(fn());
      }
      ::dlclose(cuda);
    }
  }
  return g_table;
}

std::uint64_t used_by_all(int phys) {
  std::lock_guard lock(g_table_mu);
  return table_locked().used_by_all(phys);
}

std::vector<fake::UsageTable::Process> processes(int phys) {
  std::lock_guard lock(g_table_mu);
  return table_locked().processes(phys);
}

nvmlReturn_t check_init() {
  return g_init_count.load() > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
}

// The physical index behind a handle, or -1 if it is not one of ours.
int device_index(nvmlDevice_t device) {
  const auto* p = reinterpret_cast<const nvmlDevice_st*>(device);
  if (p < g_devices || p >= g_devices + device_count()) {
    return -1;
  }
  return static_cast<int>(p - g_devices);
}

nvmlReturn_t check_device(nvmlDevice_t device, int* index) {
  if (const nvmlReturn_t r = check_init(); r != NVML_SUCCESS) {
    return r;
  }
  *index = device_index(device);
  return *index < 0 ? NVML_ERROR_INVALID_ARGUMENT : NVML_SUCCESS;
}

nvmlReturn_t init() {
  (void)config();
  g_init_count.fetch_add(1);
  return NVML_SUCCESS;
}

nvmlReturn_t memory_of(nvmlDevice_t device, std::uint64_t* total, std::uint64_t* used) {
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  *total = config().device_bytes[static_cast<std::size_t>(index)];
  const std::uint64_t u = used_by_all(index);
  *used = u < *total ? u : *total;
  return NVML_SUCCESS;
}

// nvmlDeviceGetMemoryInfo (nvmlMemory_t) and _v2 (nvmlMemory_v2_t, which must carry its version
// and has a reserved field, always 0 here).
template <typename Memory>
nvmlReturn_t memory_info(nvmlDevice_t device, Memory* memory) {
  std::uint64_t total = 0;
  std::uint64_t used = 0;
  if (const nvmlReturn_t r = memory_of(device, &total, &used); r != NVML_SUCCESS) {
    return r;
  }
  if (memory == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  if constexpr (std::is_same_v<Memory, nvmlMemory_v2_t>) {
    if (memory->version != nvmlMemory_v2) {
      return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    }
    memory->reserved = 0;
  }
  memory->total = total;
  memory->used = used;
  memory->free = total - used;
  return NVML_SUCCESS;
}

// NVML's size-query protocol: with too small a buffer (or none) *infoCount receives the number
// of entries needed and the call fails with NVML_ERROR_INSUFFICIENT_SIZE; no processes is a
// success with *infoCount = 0 whatever the buffer.
template <typename Info>
nvmlReturn_t process_list(nvmlDevice_t device, unsigned int* infoCount, Info* infos, bool compute) {
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  if (infoCount == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  std::vector<fake::UsageTable::Process> procs;
  if (compute) {  // the fake has no graphics or MPS clients
    procs = processes(index);
  }
  const auto needed = static_cast<unsigned int>(procs.size());
  if (needed == 0) {
    *infoCount = 0;
    return NVML_SUCCESS;
  }
  if (infos == nullptr || *infoCount < needed) {
    *infoCount = needed;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  for (unsigned int i = 0; i < needed; ++i) {
    Info info{};
    info.pid = static_cast<unsigned int>(procs[i].pid);
    info.usedGpuMemory = procs[i].bytes;
    if constexpr (std::is_same_v<Info, nvmlProcessInfo_v2_t>) {
      info.gpuInstanceId = kNoInstance;
      info.computeInstanceId = kNoInstance;
    }
    infos[i] = info;
  }
  *infoCount = needed;
  return NVML_SUCCESS;
}

nvmlReturn_t device_count_into(unsigned int* count) {
  if (const nvmlReturn_t r = check_init(); r != NVML_SUCCESS) {
    return r;
  }
  if (count == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  *count = device_count();
  return NVML_SUCCESS;
}

nvmlReturn_t handle_by_index(unsigned int index, nvmlDevice_t* device) {
  if (const nvmlReturn_t r = check_init(); r != NVML_SUCCESS) {
    return r;
  }
  if (device == nullptr || index >= device_count()) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  *device = &g_devices[index];
  return NVML_SUCCESS;
}

// The CUDA version the fake driver reports (cuDriverGetVersion says the same).
nvmlReturn_t cuda_driver_version(int* version) {
  if (version == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  *version = 13000;
  return NVML_SUCCESS;
}

nvmlReturn_t copy_out(const std::string& text, char* out, unsigned int length) {
  if (out == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  return fake::copy_string(text, out, length) ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
}

__attribute__((constructor)) void fake_nvml_load() {
  (void)config();
  for (unsigned int i = 0; i < fake::kMaxDevices; ++i) {
    g_devices[i].index = i;
  }
  calls().inject_from_env("libnvidia-ml", "nvml");
}

}  // namespace

extern "C" {

// ---- initialisation ---------------------------------------------------------------------------
FAKE_FORWARD(nvmlInit, (void), init())
FAKE_FORWARD(nvmlInit_v2, (void), init())

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
  FAKE_ENTER(nvmlInitWithFlags);
  (void)flags;
  return init();
}

nvmlReturn_t nvmlShutdown(void) {
  FAKE_ENTER(nvmlShutdown);
  int count = g_init_count.load();
  while (count > 0 && !g_init_count.compare_exchange_weak(count, count - 1)) {
  }
  return count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
}

const char* nvmlErrorString(nvmlReturn_t result) {
  // Counted; an injected result cannot apply here.
  (void)calls().enter(fake::symbol_index(kSymNames, "nvmlErrorString"));
  switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument Version Mismatch";
    default: return "Unknown Error";
  }
}

// ---- system -------------------------------------------------------------------------------------
nvmlReturn_t nvmlSystemGetDriverVersion(char* version, unsigned int length) {
  FAKE_ENTER(nvmlSystemGetDriverVersion);
  if (const nvmlReturn_t r = check_init(); r != NVML_SUCCESS) {
    return r;
  }
  return copy_out("580.00.00", version, length);
}

FAKE_FORWARD(nvmlSystemGetCudaDriverVersion, (int* cudaDriverVersion),
             cuda_driver_version(cudaDriverVersion))
FAKE_FORWARD(nvmlSystemGetCudaDriverVersion_v2, (int* cudaDriverVersion),
             cuda_driver_version(cudaDriverVersion))

// ---- devices ------------------------------------------------------------------------------------
FAKE_FORWARD(nvmlDeviceGetCount, (unsigned int* deviceCount), device_count_into(deviceCount))
FAKE_FORWARD(nvmlDeviceGetCount_v2, (unsigned int* deviceCount), device_count_into(deviceCount))
FAKE_FORWARD(nvmlDeviceGetHandleByIndex, (unsigned int index, nvmlDevice_t* device),
             handle_by_index(index, device))
FAKE_FORWARD(nvmlDeviceGetHandleByIndex_v2, (unsigned int index, nvmlDevice_t* device),
             handle_by_index(index, device))

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char* uuid, nvmlDevice_t* device) {
  FAKE_ENTER(nvmlDeviceGetHandleByUUID);
  if (const nvmlReturn_t r = check_init(); r != NVML_SUCCESS) {
    return r;
  }
  if (uuid == nullptr || device == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  for (unsigned int i = 0; i < device_count(); ++i) {
    if (fake::uuid_string(static_cast<int>(i)) == uuid) {
      *device = &g_devices[i];
      return NVML_SUCCESS;
    }
  }
  return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  FAKE_ENTER(nvmlDeviceGetUUID);
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  return copy_out(fake::uuid_string(index), uuid, length);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  FAKE_ENTER(nvmlDeviceGetName);
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  return copy_out(fake::device_name(index), name, length);
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int* index) {
  FAKE_ENTER(nvmlDeviceGetIndex);
  int i = -1;
  if (const nvmlReturn_t r = check_device(device, &i); r != NVML_SUCCESS) {
    return r;
  }
  if (index == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  *index = static_cast<unsigned int>(i);
  return NVML_SUCCESS;
}

// ---- memory -------------------------------------------------------------------------------------
FAKE_FORWARD(nvmlDeviceGetMemoryInfo, (nvmlDevice_t device, nvmlMemory_t* memory),
             memory_info(device, memory))
FAKE_FORWARD(nvmlDeviceGetMemoryInfo_v2, (nvmlDevice_t device, nvmlMemory_v2_t* memory),
             memory_info(device, memory))

// ---- processes ----------------------------------------------------------------------------------
// Every version of the three process lists (v1, v2 and the current info struct); only the compute
// list has entries, the fake has no graphics or MPS clients.
#define FAKE_PROCESS_LIST(name, Info, compute)                                               \
  FAKE_FORWARD(name, (nvmlDevice_t device, unsigned int* infoCount, Info* infos),           \
               process_list(device, infoCount, infos, compute))
FAKE_PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses, nvmlProcessInfo_v1_t, true)
FAKE_PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses_v2, nvmlProcessInfo_v2_t, true)
FAKE_PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses_v3, nvmlProcessInfo_t, true)
FAKE_PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses, nvmlProcessInfo_v1_t, false)
FAKE_PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses_v2, nvmlProcessInfo_v2_t, false)
FAKE_PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses_v3, nvmlProcessInfo_t, false)
FAKE_PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses, nvmlProcessInfo_v1_t, false)
FAKE_PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses_v2, nvmlProcessInfo_v2_t, false)
FAKE_PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses_v3, nvmlProcessInfo_t, false)
#undef FAKE_PROCESS_LIST

nvmlReturn_t nvmlDeviceGetRunningProcessDetailList(nvmlDevice_t device,
                                                   nvmlProcessDetailList_t* plist) {
  FAKE_ENTER(nvmlDeviceGetRunningProcessDetailList);
  (void)plist;
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  return NVML_ERROR_NOT_SUPPORTED;
}

// ---- utilisation --------------------------------------------------------------------------------
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t* utilization) {
  FAKE_ENTER(nvmlDeviceGetUtilizationRates);
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  if (utilization == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  utilization->gpu = 0;
  utilization->memory = 0;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                             nvmlProcessUtilizationSample_t* utilization,
                                             unsigned int* processSamplesCount,
                                             unsigned long long lastSeenTimeStamp) {
  FAKE_ENTER(nvmlDeviceGetProcessUtilization);
  (void)utilization, (void)lastSeenTimeStamp;
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  if (processSamplesCount == nullptr) {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  *processSamplesCount = 0;
  return NVML_ERROR_NOT_FOUND;  // no samples: what NVML says for an idle device
}

nvmlReturn_t nvmlDeviceGetProcessesUtilizationInfo(
    nvmlDevice_t device, nvmlProcessesUtilizationInfo_t* procesesUtilInfo) {
  FAKE_ENTER(nvmlDeviceGetProcessesUtilizationInfo);
  (void)procesesUtilInfo;
  int index = -1;
  if (const nvmlReturn_t r = check_device(device, &index); r != NVML_SUCCESS) {
    return r;
  }
  return NVML_ERROR_NOT_SUPPORTED;
}

// ================================ control API (not counted) ===================================
unsigned long long fake_nvml_call_count(const char* symbol) { return calls().count(symbol); }

void fake_nvml_reset_counts(void) { calls().reset(); }

void fake_nvml_inject_result(const char* symbol, int result, int n_calls) {
  if (!calls().inject(symbol, result, n_calls)) {
    fake::warn("libnvidia-ml", "fake_nvml_inject_result: unknown symbol \"%s\"",
               symbol ? symbol : "(null)");
  }
}

}  // extern "C"
