// SPDX-License-Identifier: Apache-2.0
/// @file fake_cuda.cpp
/// @brief A fake CUDA driver, built as libcuda.so.1, that lets softmig be tested without a GPU.
///
/// It exports every driver symbol of src/hooks/entry_points.def (so it always matches the table
/// softmig interposes) plus tests/fakes/fake_cuda_extras.def, and simulates what softmig observes:
///  * devices of configurable sizes, CUDA_VISIBLE_DEVICES (indices or UUIDs) as the real driver
///    reads it at cuInit, deterministic UUIDs;
///  * device memory: contexts, modules, allocations of every kind consume memory of the physical
///    device and fail with CUDA_ERROR_OUT_OF_MEMORY when it is full, counting other processes
///    through the optional shared usage table; addresses are unique, never dereferenceable
///    (they lie above the canonical user address range) and 512-byte aligned;
///  * thread-local current contexts, primary-context reference counts;
///  * cuGetProcAddress / _v2 answered from the fake's own table with the driver's rules for
///    cudaVersion and per-thread default stream flags;
///  * GPU time: every kernel launch occupies its device for SOFTMIG_FAKE_KERNEL_NS, every graph
///    launch for SOFTMIG_FAKE_GRAPH_NS, on one timeline per device on which the work of all
///    streams of the process runs serially in submission order; at most SOFTMIG_FAKE_QUEUE_DEPTH
///    launches are pending per device (a further launch blocks, like the driver's full queue);
///    events are stamped with the completion time of the work submitted before them, and
///    stream / context synchronisation and synchronous copies sleep until that work is done;
///    work on a stream marked capturing (fake_set_capturing) is captured, not executed.
/// Every exported function counts its calls and can be told to fail (fake_control.h).
///
/// Deliberate simplifications: kernels and copies compute nothing and copies take no GPU time;
/// events and synchronisation follow the device timeline, not the individual stream; a child forked
/// after cuInit gets CUDA_ERROR_NOT_INITIALIZED from every call (as with the real driver, CUDA
/// cannot be used in such a child); handle objects are never freed, so stale handles are caught
/// instead of being reused; cuMemCreate sizes must be multiples of the 2 MiB granularity.

#include "abi/cuda_types.hpp"
#include "fake_common.hpp"
#include "fake_control.h"

#include <pthread.h>
#include <sys/mman.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

// Every exported driver function, declared from the tables: a definition below whose parameters
// differ from its table line is a compile error (conflicting declaration of a C function).
extern "C" {
#define SOFTMIG_CUDA(name, params, args) CUresult name params;
#define SOFTMIG_CUDA_USE(name, params) CUresult name params;
#include "hooks/entry_points.def"
#define FAKE_CUDA_EXTRA(name, params) CUresult name params;
#include "fake_cuda_extras.def"
}

// ---- handle objects (the driver's opaque types, completed here) -----------------------------
struct CUctx_st {
  int ordinal = -1;
  int phys = -1;
  bool primary = false;
  bool active = false;     // primary: memory allocated; created: until destroyed
  bool destroyed = false;  // created contexts only
  int refcount = 0;        // primary contexts only
  unsigned int flags = 0;
};
struct CUstream_st {
  CUctx_st* ctx;
  bool destroyed;
};
struct CUfunc_st {
  CUmod_st* module;
};
struct CUmod_st {
  std::map<std::string, CUfunc_st*> functions;
};
struct CUlib_st {
  int unused;
};
struct CUarray_st {
  int unused;
};
struct CUmipmappedArray_st {
  int unused;
};
struct CUmemPoolHandle_st {
  int phys;
  bool is_default;
  bool destroyed;
};
struct CUgraph_st {
  bool destroyed;
};
struct CUgraphExec_st {
  bool destroyed;
};

namespace {

using fake::config;

// ---- symbol table ---------------------------------------------------------------------------
constexpr const char* kSymNames[] = {
#define SOFTMIG_CUDA(name, params, args) #name,
#define SOFTMIG_CUDA_USE(name, params) #name,
#include "hooks/entry_points.def"
#define FAKE_CUDA_EXTRA(name, params) #name,
#include "fake_cuda_extras.def"
};
constexpr std::size_t kSymCount = std::size(kSymNames);

void* const kSymFunctions[] = {
#define SOFTMIG_CUDA(name, params, args) reinterpret_cast<void*>(&name),
#define SOFTMIG_CUDA_USE(name, params) reinterpret_cast<void*>(&name),
#include "hooks/entry_points.def"
#define FAKE_CUDA_EXTRA(name, params) reinterpret_cast<void*>(&name),
#include "fake_cuda_extras.def"
};

fake::CallTable& calls() {  // used by FAKE_ENTER (fake_common.hpp)
  static auto* table = new fake::CallTable(kSymNames);  // never destroyed: used until exit
  return *table;
}
using FakeResult = CUresult;  // of the entry points FAKE_FORWARD defines

// ---- the simulated driver -------------------------------------------------------------------
constexpr CUresult CUDA_ERROR_FILE_NOT_FOUND = 301;
constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900;
constexpr CUstreamCaptureStatus CU_STREAM_CAPTURE_STATUS_ACTIVE = 1;
constexpr CUstreamCaptureStatus CU_STREAM_CAPTURE_STATUS_INVALIDATED = 2;
constexpr unsigned int CU_EVENT_BLOCKING_SYNC = 0x1;
constexpr unsigned int CU_EVENT_INTERPROCESS = 0x4;

constexpr std::uint64_t kAlign = 512;
// Device addresses: 4 TiB per physical device from 2^47, i.e. just above the canonical user
// address range, so no host mapping can ever be hit through one of them.
constexpr CUdeviceptr kVaBase = 1ULL << 47U;
constexpr CUdeviceptr kVaStride = 1ULL << 42U;
constexpr CUdeviceptr kVaReserveBase = kVaBase + kVaStride * fake::kMaxDevices;
// Legacy 32-bit allocations (cuMemAlloc v1) share one low range.
constexpr CUdeviceptr kVa32Base = 0x40000000ULL;
constexpr CUdeviceptr kVa32End = 0xFFFF0000ULL;
constexpr std::uint64_t kVmmGranularity = 2ULL << 20U;

enum class Kind { Device, Managed, Array, Mipmap, Module, Library };

struct Charge {
  std::uint64_t bytes = 0;
  int phys = -1;
  CUctx_st* ctx = nullptr;  // freed with this context; nullptr: lives until freed explicitly
  Kind kind = Kind::Device;
};

// One device's GPU timeline: the work of every stream of the process runs on it serially, in
// submission order. Times are CLOCK_MONOTONIC nanoseconds.
struct Timeline {
  std::uint64_t busy_until = 0;       // completion time of the last work submitted
  std::uint64_t busy_ns = 0;          // GPU time of all work submitted so far
  std::uint64_t launches = 0;         // launches executed (captured ones excluded)
  std::deque<std::uint64_t> pending;  // completion times of launches not yet complete
  // When the GPU was busy: [start, end) spans, back-to-back work merged (fake_gpu_busy_outside_ns).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
};
constexpr std::size_t kMaxSpans = 1U << 20U;  // the oldest are dropped beyond this

// An event: handles are synthetic values (never dereferenced, never reused), so a destroyed or
// forged handle is always recognised.
struct Event {
  unsigned int flags = 0;
  CUctx_st* ctx = nullptr;
  bool recorded = false;
  std::uint64_t stamp = 0;  // completion time of the work before the last record
};
constexpr std::uintptr_t kEventBase = 0xe7e0000000000000ULL;  // not a canonical address

struct Driver {
  std::mutex mu;
  bool initialized = false;
  bool forked_after_init = false;  // a child of a process that had called cuInit
  std::vector<int> visible;        // CUDA ordinal -> physical index
  std::uint64_t used[fake::kMaxDevices] = {};
  CUctx_st primary[fake::kMaxDevices];
  CUmemPoolHandle_st default_pool[fake::kMaxDevices];
  std::map<CUdeviceptr, Charge> allocs;             // linear allocations by base address
  std::unordered_map<const void*, Charge> objects;  // arrays, modules, libraries
  std::unordered_map<CUmemGenericAllocationHandle, Charge> handles;  // cuMemCreate
  std::map<CUdeviceptr, std::size_t> reservations;                   // cuMemAddressReserve
  std::unordered_set<const void*> created;  // live contexts, streams, pools, graphs, execs
  CUdeviceptr next_va[fake::kMaxDevices] = {};
  CUdeviceptr next_va32 = kVa32Base;
  CUdeviceptr next_reserve = kVaReserveBase;
  CUmemGenericAllocationHandle next_handle = 0x1000;
  fake::UsageTable table;
  void* private_table = nullptr;
  // GPU time (see Timeline); durations start from the environment, fake_set_kernel_ns changes them.
  Timeline timeline[fake::kMaxDevices];
  std::uint64_t kernel_ns = 0;
  std::uint64_t graph_ns = 0;
  std::unordered_map<CUevent, Event> events;
  std::uintptr_t next_event = 1;
  std::unordered_map<std::uintptr_t, CUstreamCaptureStatus> capture;  // stream handle -> status
};

Driver* new_driver() {
  auto* d = new Driver;
  for (int i = 0; i < fake::kMaxDevices; ++i) {
    d->next_va[i] = kVaBase + kVaStride * static_cast<CUdeviceptr>(i);
    d->default_pool[i] = {i, true, false};
  }
  d->kernel_ns = config().kernel_ns;
  d->graph_ns = config().graph_ns;
  return d;
}

Driver*& driver_slot() {
  static Driver* d = new_driver();  // never destroyed: other libraries may call us during exit
  return d;
}

Driver& drv() {
  Driver& d = *driver_slot();
  if (!d.table.attached()) {  // first use: the table needs the configuration
    static std::once_flag once;
    std::call_once(once, [&d] {
      d.private_table = ::mmap(nullptr, fake::UsageTable::bytes_needed(), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      d.table.attach(d.private_table);
    });
  }
  return d;
}

// Thread-local context stack (fixed size: no TLS destructor in a library that may be unloaded).
constexpr int kStackDepth = 64;
thread_local CUctx_st* t_stack[kStackDepth];
thread_local int t_depth = 0;

CUctx_st* top_context() { return t_depth > 0 ? t_stack[t_depth - 1] : nullptr; }

void remove_from_stack(const CUctx_st* ctx) {
  int out = 0;
  for (int i = 0; i < t_depth; ++i) {
    if (t_stack[i] != ctx) {
      t_stack[out++] = t_stack[i];
    }
  }
  t_depth = out;
}

int ordinal_of_phys(const Driver& d, int phys) {
  for (std::size_t i = 0; i < d.visible.size(); ++i) {
    if (d.visible[i] == phys) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// Charges `bytes` to physical device `phys`; fails if all processes together would exceed it.
CUresult charge(Driver& d, int phys, std::uint64_t bytes) {
  d.used[phys] += bytes;
  d.table.publish(phys, d.used[phys]);
  if (d.table.used_by_all(phys) > config().device_bytes[static_cast<std::size_t>(phys)]) {
    d.used[phys] -= bytes;
    d.table.publish(phys, d.used[phys]);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  return CUDA_SUCCESS;
}

void uncharge(Driver& d, int phys, std::uint64_t bytes) {
  d.used[phys] -= bytes < d.used[phys] ? bytes : d.used[phys];
  d.table.publish(phys, d.used[phys]);
}

CUresult check_init(const Driver& d) {
  return d.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

CUresult check_device(const Driver& d, CUdevice dev) {
  if (!d.initialized) {
    return CUDA_ERROR_NOT_INITIALIZED;
  }
  return dev >= 0 && static_cast<std::size_t>(dev) < d.visible.size() ? CUDA_SUCCESS
                                                                      : CUDA_ERROR_INVALID_DEVICE;
}

bool context_valid(const Driver& d, const CUctx_st* ctx) {
  if (ctx == nullptr) {
    return false;
  }
  if (ctx->primary) {
    return ctx >= d.primary && ctx < d.primary + fake::kMaxDevices;
  }
  return d.created.contains(ctx) && !ctx->destroyed;
}

// The calling thread's current context, activated if it is a primary context that was reset
// while still retained.
CUresult current_context(Driver& d, CUctx_st** out) {
  if (!d.initialized) {
    return CUDA_ERROR_NOT_INITIALIZED;
  }
  CUctx_st* ctx = top_context();
  if (!context_valid(d, ctx)) {
    return CUDA_ERROR_INVALID_CONTEXT;
  }
  if (ctx->primary && !ctx->active) {
    if (ctx->refcount == 0) {
      return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (const CUresult r = charge(d, ctx->phys, config().context_bytes); r != CUDA_SUCCESS) {
      return r;
    }
    ctx->active = true;
  }
  *out = ctx;
  return CUDA_SUCCESS;
}

// Returns the memory of one entry of a map of charges (allocs, objects, handles) and removes
// the entry; the iterator past it.
template <typename Map>
typename Map::iterator release(Driver& d, Map& charges, typename Map::iterator it) {
  uncharge(d, it->second.phys, it->second.bytes);
  return charges.erase(it);
}

// Releases every charge of `charges` that belongs to context `ctx`.
template <typename Map>
void release_owned(Driver& d, Map& charges, const CUctx_st* ctx) {
  for (auto it = charges.begin(); it != charges.end();) {
    it = it->second.ctx == ctx ? release(d, charges, it) : std::next(it);
  }
}

// Frees everything a context owns, then the context's own memory.
void release_context_memory(Driver& d, CUctx_st* ctx) {
  release_owned(d, d.allocs, ctx);
  release_owned(d, d.objects, ctx);
  if (ctx->active) {
    uncharge(d, ctx->phys, config().context_bytes);
    ctx->active = false;
  }
}

// Stream handles: NULL, CU_STREAM_LEGACY (0x1), CU_STREAM_PER_THREAD (0x2) or a live stream.
CUresult stream_context(Driver& d, CUstream stream, CUctx_st** ctx) {
  const auto value = reinterpret_cast<std::uintptr_t>(stream);
  if (value > 2) {
    if (!d.created.contains(stream) || stream->destroyed || !context_valid(d, stream->ctx)) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
  }
  return current_context(d, ctx);
}

// ---- entry-point preambles ------------------------------------------------------------------
// Nearly every entry point locks the driver and checks one precondition before doing its work;
// these run `body` under the lock once the check passed, and otherwise return the check's error.

// cuInit has succeeded: body(d).
template <typename Body>
CUresult with_init(Body&& body) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  if (const CUresult r = check_init(d); r != CUDA_SUCCESS) {
    return r;
  }
  return body(d);
}

// `dev` is a valid CUDA ordinal: body(d).
template <typename Body>
CUresult with_device(CUdevice dev, Body&& body) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  if (const CUresult r = check_device(d, dev); r != CUDA_SUCCESS) {
    return r;
  }
  return body(d);
}

// The calling thread has a usable current context: body(d, ctx).
template <typename Body>
CUresult with_context(Body&& body) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  CUctx_st* ctx = nullptr;
  if (const CUresult r = current_context(d, &ctx); r != CUDA_SUCCESS) {
    return r;
  }
  return body(d, ctx);
}

// `stream` is a usable stream handle (stream_context): body(d, ctx).
template <typename Body>
CUresult with_stream(CUstream stream, Body&& body) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  CUctx_st* ctx = nullptr;
  if (const CUresult r = stream_context(d, stream, &ctx); r != CUDA_SUCCESS) {
    return r;
  }
  return body(d, ctx);
}

// ---- handle objects created and destroyed by the entry points --------------------------------

// Registers a new stream, pool, graph or graph exec as live and hands it out.
template <typename Handle>
CUresult hand_out(Driver& d, Handle* handle, Handle** out) {
  d.created.insert(handle);
  *out = handle;
  return CUDA_SUCCESS;
}

// Marks a live stream, graph or graph exec destroyed (the object itself is never freed, so a
// stale handle is caught); `invalid` for a handle that is unknown or already destroyed.
template <typename Handle>
CUresult destroy_created(Handle* handle, CUresult invalid) {
  return with_init([&](Driver& d) {
    if (!d.created.contains(handle) || handle->destroyed) {
      return invalid;
    }
    handle->destroyed = true;
    return CUDA_SUCCESS;
  });
}

CUresult new_address(Driver& d, int phys, std::uint64_t bytes, bool low32, CUdeviceptr* out) {
  CUdeviceptr& next = low32 ? d.next_va32 : d.next_va[phys];
  const CUdeviceptr end =
      low32 ? kVa32End : kVaBase + kVaStride * static_cast<CUdeviceptr>(phys + 1);
  const std::uint64_t span = round_up(bytes, kAlign);
  if (span < bytes || end - next < span) {
    return CUDA_ERROR_OUT_OF_MEMORY;  // the fake's address range is exhausted
  }
  *out = next;
  next += span;
  return CUDA_SUCCESS;
}

CUresult allocate(Driver& d, CUctx_st* ctx, int phys, std::uint64_t bytes, Kind kind, bool low32,
                  CUdeviceptr* out) {
  if (out == nullptr || bytes == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (const CUresult r = charge(d, phys, bytes); r != CUDA_SUCCESS) {
    return r;
  }
  CUdeviceptr address = 0;
  if (const CUresult r = new_address(d, phys, bytes, low32, &address); r != CUDA_SUCCESS) {
    uncharge(d, phys, bytes);
    return r;
  }
  d.allocs[address] = Charge{bytes, phys, ctx, kind};
  *out = address;
  return CUDA_SUCCESS;
}

CUresult allocate_in_current(CUdeviceptr* out, std::uint64_t bytes, Kind kind, bool low32) {
  return with_context([&](Driver& d, CUctx_st* ctx) {
    return allocate(d, ctx, ctx->phys, bytes, kind, low32, out);
  });
}

CUresult free_address(CUdeviceptr ptr) {
  return with_init([&](Driver& d) {
    if (ptr == 0) {
      return CUDA_SUCCESS;  // like the real driver, freeing NULL is allowed
    }
    const auto it = d.allocs.find(ptr);
    if (it == d.allocs.end()) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    release(d, d.allocs, it);
    return CUDA_SUCCESS;
  });
}

// The allocation containing `ptr`, if any.
const std::pair<const CUdeviceptr, Charge>* find_containing(const Driver& d, CUdeviceptr ptr) {
  auto it = d.allocs.upper_bound(ptr);
  if (it == d.allocs.begin()) {
    return nullptr;
  }
  --it;
  return ptr < it->first + it->second.bytes ? &*it : nullptr;
}

CUresult pitch_alloc(CUdeviceptr* dptr, std::uint64_t* pitch, std::uint64_t width,
                     std::uint64_t height, unsigned int element_size, bool low32) {
  if (dptr == nullptr || pitch == nullptr || width == 0 || height == 0 ||
      (element_size != 4 && element_size != 8 && element_size != 16)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  const std::uint64_t p = round_up(width, kAlign);
  const CUresult r = allocate_in_current(dptr, p * height, Kind::Device, low32);
  if (r == CUDA_SUCCESS) {
    *pitch = p;
  }
  return r;
}

// Charges an object (array, module, library) to the current context and registers its handle.
template <typename Handle>
CUresult create_object(Handle** out, std::uint64_t bytes, Kind kind, bool context_bound) {
  return with_context([&](Driver& d, CUctx_st* ctx) {
    if (bytes > 0) {
      if (const CUresult r = charge(d, ctx->phys, bytes); r != CUDA_SUCCESS) {
        return r;
      }
    }
    auto* handle = new Handle{};
    d.objects[handle] = Charge{bytes, ctx->phys, context_bound ? ctx : nullptr, kind};
    *out = handle;
    return CUDA_SUCCESS;
  });
}

CUresult destroy_object(const void* handle, Kind kind) {
  return with_init([&](Driver& d) {
    const auto it = d.objects.find(handle);
    if (it == d.objects.end() || it->second.kind != kind) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
    release(d, d.objects, it);
    return CUDA_SUCCESS;
  });
}

// clang-format off
std::uint64_t format_bytes(CUarray_format format) {
  switch (format) {
    case 0x01: case 0x08: return 1;             // (un)signed int8
    case 0x02: case 0x09: case 0x10: return 2;  // (un)signed int16, half
    default: return 4;                          // int32, float and everything exotic
  }
}
// clang-format on

CUresult array_bytes(std::uint64_t w, std::uint64_t h, std::uint64_t depth, CUarray_format format,
                     unsigned int channels, std::uint64_t* out) {
  if (w == 0 || (channels != 1 && channels != 2 && channels != 4)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *out = w * (h == 0 ? 1 : h) * (depth == 0 ? 1 : depth) * format_bytes(format) * channels;
  return CUDA_SUCCESS;
}

CUresult make_array(CUarray* handle, std::uint64_t w, std::uint64_t h, std::uint64_t depth,
                    CUarray_format format, unsigned int channels) {
  std::uint64_t bytes = 0;
  if (handle == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (const CUresult r = array_bytes(w, h, depth, format, channels, &bytes); r != CUDA_SUCCESS) {
    return r;
  }
  return create_object(handle, bytes, Kind::Array, true);
}

// cuArrayCreate / cuArray3DCreate with any version of their descriptor.
template <typename Descriptor>
CUresult array_create(CUarray* handle, const Descriptor* desc) {
  if (desc == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::uint64_t depth = 1;
  if constexpr (requires { desc->Depth; }) {
    depth = desc->Depth;
  }
  return make_array(handle, desc->Width, desc->Height, depth, desc->Format, desc->NumChannels);
}

// ---- contexts -------------------------------------------------------------------------------
CUresult create_context(CUcontext* pctx, unsigned int flags, CUdevice dev) {
  return with_device(dev, [&](Driver& d) {
    if (pctx == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    if (t_depth == kStackDepth) {
      return CUDA_ERROR_UNKNOWN;
    }
    const int phys = d.visible[static_cast<std::size_t>(dev)];
    if (const CUresult r = charge(d, phys, config().context_bytes); r != CUDA_SUCCESS) {
      return r;
    }
    auto* ctx = new CUctx_st{dev, phys, false, true, false, 0, flags};
    d.created.insert(ctx);
    t_stack[t_depth++] = ctx;  // a new context becomes current
    *pctx = ctx;
    return CUDA_SUCCESS;
  });
}

CUresult destroy_context(CUcontext ctx) {
  return with_init([&](Driver& d) {
    if (ctx == nullptr || ctx->primary || !context_valid(d, ctx)) {
      return CUDA_ERROR_INVALID_CONTEXT;
    }
    release_context_memory(d, ctx);
    ctx->destroyed = true;
    remove_from_stack(ctx);
    return CUDA_SUCCESS;
  });
}

CUresult primary_retain(CUcontext* pctx, CUdevice dev) {
  return with_device(dev, [&](Driver& d) {
    if (pctx == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    CUctx_st& ctx = d.primary[dev];
    if (!ctx.active) {
      if (const CUresult r = charge(d, ctx.phys, config().context_bytes); r != CUDA_SUCCESS) {
        return r;
      }
      ctx.active = true;
    }
    ++ctx.refcount;
    *pctx = &ctx;
    return CUDA_SUCCESS;
  });
}

CUresult primary_release(CUdevice dev) {
  return with_device(dev, [&](Driver& d) {
    CUctx_st& ctx = d.primary[dev];
    if (ctx.refcount == 0) {
      return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (--ctx.refcount == 0) {
      release_context_memory(d, &ctx);
    }
    return CUDA_SUCCESS;
  });
}

CUresult primary_reset(CUdevice dev) {
  return with_device(dev, [&](Driver& d) {
    release_context_memory(d, &d.primary[dev]);  // stays retained; re-activated on next use
    return CUDA_SUCCESS;
  });
}

// ---- CUDA_VISIBLE_DEVICES ---------------------------------------------------------------------
bool iequal_prefix(std::string_view prefix, std::string_view text) {
  if (prefix.size() > text.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const auto a = static_cast<unsigned char>(prefix[i]);
    const auto b = static_cast<unsigned char>(text[i]);
    if (std::tolower(a) != std::tolower(b)) {
      return false;
    }
  }
  return true;
}

// Like the driver: entries are indices or (unique prefixes of) UUIDs, "GPU-" optional; the list
// ends at the first entry that is invalid, out of range or a repeat.
std::vector<int> visible_devices() {
  const int count = static_cast<int>(config().device_bytes.size());
  std::vector<int> out;
  const char* env = std::getenv("CUDA_VISIBLE_DEVICES");
  if (env == nullptr) {
    for (int i = 0; i < count; ++i) {
      out.push_back(i);
    }
    return out;
  }
  std::string_view rest(env);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') {
      item.remove_prefix(1);
    }
    while (!item.empty() && item.back() == ' ') {
      item.remove_suffix(1);
    }
    int phys = -1;
    if (!item.empty() && item.find_first_not_of("0123456789") == std::string_view::npos) {
      const long index =
          item.size() > 3 ? count : std::strtol(std::string(item).c_str(), nullptr, 10);
      phys = index < count ? static_cast<int>(index) : -1;
    } else if (!item.empty()) {
      std::string_view wanted = item;
      if (!iequal_prefix("GPU-", wanted)) {
        wanted = {};  // MIG-..., negative numbers and junk end the list
      }
      int matches = 0;
      for (int i = 0; i < count && !wanted.empty(); ++i) {
        if (iequal_prefix(wanted, fake::uuid_string(i))) {
          phys = i;
          ++matches;
        }
      }
      if (matches != 1) {
        phys = -1;
      }
    }
    if (phys < 0 || std::find(out.begin(), out.end(), phys) != out.end()) {
      break;
    }
    out.push_back(phys);
  }
  return out;
}

// ---- cuGetProcAddress -------------------------------------------------------------------------
// First toolkit version (CUDA_VERSION style) of each exported symbol's ABI, as the PFN_<name>_v<N>
// typedefs of the toolkit's cudaTypedefs.h record them (checked against CUDA 13.0). Unlisted
// symbols date from 2000. The fake lacks a few pre-3.2 ABIs (cuCtxPushCurrent, cuMemcpyHtoD, ...
// without _v2), so requests older than their _v2 report VERSION_NOT_SUFFICIENT.
struct MinVersion {
  const char* symbol;
  int version;
};
// clang-format off
constexpr MinVersion kMinVersions[] = {
    {"cuMemAlloc_v2", 3020}, {"cuMemAllocPitch_v2", 3020}, {"cuMemFree_v2", 3020},
    {"cuMemGetInfo_v2", 3020}, {"cuDeviceTotalMem_v2", 3020}, {"cuArrayCreate_v2", 3020},
    {"cuArray3DCreate_v2", 3020}, {"cuCtxCreate_v2", 3020}, {"cuMemGetAddressRange_v2", 3020},
    {"cuMemcpyHtoD_v2", 3020}, {"cuMemcpyDtoH_v2", 3020},
    {"cuCtxDestroy_v2", 4000}, {"cuCtxPushCurrent_v2", 4000}, {"cuCtxPopCurrent_v2", 4000},
    {"cuEventDestroy_v2", 4000},
    {"cuStreamDestroy_v2", 4000}, {"cuLaunchKernel", 4000}, {"cuPointerGetAttribute", 4000},
    {"cuCtxSetCurrent", 4000}, {"cuCtxGetCurrent", 4000},
    {"cuMipmappedArrayCreate", 5000}, {"cuMipmappedArrayDestroy", 5000},
    {"cuMemAllocManaged", 6000}, {"cuGetErrorString", 6000}, {"cuGetErrorName", 6000},
    {"cuLaunchKernel_ptsz", 7000}, {"cuMemcpyHtoD_v2_ptds", 7000},
    {"cuMemcpyDtoH_v2_ptds", 7000}, {"cuStreamSynchronize_ptsz", 7000},
    {"cuDevicePrimaryCtxRetain", 7000}, {"cuDevicePrimaryCtxRelease", 7000},
    {"cuDevicePrimaryCtxReset", 7000}, {"cuDevicePrimaryCtxGetState", 7000},
    {"cuLaunchCooperativeKernel", 9000}, {"cuLaunchCooperativeKernel_ptsz", 9000},
    {"cuDeviceGetUuid", 9020},
    {"cuStreamIsCapturing", 10000},
    {"cuGraphCreate", 10000}, {"cuGraphDestroy", 10000}, {"cuGraphLaunch", 10000},
    {"cuGraphLaunch_ptsz", 10000}, {"cuGraphExecDestroy", 10000},
    {"cuMemCreate", 10020}, {"cuMemRelease", 10020}, {"cuMemAddressReserve", 10020},
    {"cuMemAddressFree", 10020}, {"cuMemMap", 10020}, {"cuMemUnmap", 10020},
    {"cuMemSetAccess", 10020}, {"cuMemGetAllocationGranularity", 10020},
    {"cuDevicePrimaryCtxRelease_v2", 11000}, {"cuDevicePrimaryCtxReset_v2", 11000},
    {"cuMemAllocAsync", 11020}, {"cuMemAllocAsync_ptsz", 11020}, {"cuMemFreeAsync", 11020},
    {"cuMemFreeAsync_ptsz", 11020}, {"cuMemAllocFromPoolAsync", 11020},
    {"cuMemAllocFromPoolAsync_ptsz", 11020}, {"cuMemPoolTrimTo", 11020},
    {"cuMemPoolCreate", 11020}, {"cuMemPoolDestroy", 11020}, {"cuDeviceGetDefaultMemPool", 11020},
    {"cuGetProcAddress", 11030},
    {"cuCtxCreate_v3", 11040}, {"cuDeviceGetUuid_v2", 11040},
    {"cuGraphInstantiateWithFlags", 11040}, {"cuDeviceGraphMemTrim", 11040},
    {"cuLaunchKernelEx", 11060}, {"cuLaunchKernelEx_ptsz", 11060},
    {"cuGetProcAddress_v2", 12000}, {"cuLibraryLoadData", 12000},
    {"cuLibraryLoadFromFile", 12000}, {"cuLibraryUnload", 12000},
    {"cuCtxCreate_v4", 12050}, {"cuEventElapsedTime_v2", 12080},
    {"cuCtxGetDevice_v2", 13000}, {"cuCtxSynchronize_v2", 13000},
    {"cuModuleLoadDataEx", 2010}, {"cuDriverGetVersion", 2020}, {"cuGetExportTable", 3000},
};
// clang-format on

int min_version(std::string_view symbol) {
  for (const auto& m : kMinVersions) {
    if (symbol == m.symbol) {
      return m.version;
    }
  }
  return 2000;
}

struct ProcEntry {
  std::string base;  // name as cuGetProcAddress is asked for it
  std::size_t sym;   // index into kSymNames / kSymFunctions
  int min_version;
  bool per_thread;  // a _ptsz / _ptds variant
};

bool strip_suffix(std::string& s, std::string_view suffix) {
  if (s.size() > suffix.size() && std::string_view(s).substr(s.size() - suffix.size()) == suffix) {
    s.resize(s.size() - suffix.size());
    return true;
  }
  return false;
}

const std::vector<ProcEntry>& proc_table() {
  static const auto* table = [] {
    auto* t = new std::vector<ProcEntry>;
    for (std::size_t i = 0; i < kSymCount; ++i) {
      std::string base = kSymNames[i];
      const bool per_thread = strip_suffix(base, "_ptsz") || strip_suffix(base, "_ptds");
      if (const auto v = base.rfind("_v");
          v != std::string::npos && v + 2 < base.size() &&
          base.find_first_not_of("0123456789", v + 2) == std::string::npos) {
        base.resize(v);
      }
      t->push_back({base, i, min_version(kSymNames[i]), per_thread});
    }
    return t;
  }();
  return *table;
}

bool valid_proc_flags(cuuint64_t flags) {
  return flags == CU_GET_PROC_ADDRESS_DEFAULT || flags == CU_GET_PROC_ADDRESS_LEGACY_STREAM ||
         flags == CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
}

// The newest variant of `base` not newer than `version`; with the per-thread flag a _ptsz/_ptds
// variant is preferred when one qualifies.
int resolve(std::string_view base, int version, cuuint64_t flags, const ProcEntry** out) {
  const ProcEntry* normal = nullptr;
  const ProcEntry* per_thread = nullptr;
  bool known = false;
  for (const auto& e : proc_table()) {
    if (e.base != base) {
      continue;
    }
    known = true;
    if (e.min_version > version) {
      continue;
    }
    const ProcEntry*& best = e.per_thread ? per_thread : normal;
    if (best == nullptr || e.min_version > best->min_version) {
      best = &e;
    }
  }
  *out = nullptr;
  if (!known) {
    return CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  }
  const bool want_per_thread = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  *out = want_per_thread && per_thread != nullptr ? per_thread : normal;
  return *out != nullptr ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
}

CUresult get_proc_address(const char* symbol, void** pfn, int version, cuuint64_t flags,
                          CUdriverProcAddressQueryResult* status) {
  if (symbol == nullptr || pfn == nullptr || !valid_proc_flags(flags)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  const ProcEntry* entry = nullptr;
  const int result = resolve(symbol, version, flags, &entry);
  if (status != nullptr) {
    *status = result;
  }
  if (entry == nullptr) {
    *pfn = nullptr;
    return CUDA_ERROR_NOT_FOUND;
  }
  *pfn = kSymFunctions[entry->sym];
  return CUDA_SUCCESS;
}

// ---- error strings ----------------------------------------------------------------------------
struct ErrorText {
  CUresult code;
  const char* name;
  const char* text;
};
constexpr ErrorText kErrors[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {34, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {46, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {301, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {709, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {800, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
    {801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

CUresult error_text(CUresult error, const char** out, bool name) {
  if (out == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  for (const auto& e : kErrors) {
    if (e.code == error) {
      *out = name ? e.name : e.text;
      return CUDA_SUCCESS;
    }
  }
  *out = nullptr;
  return CUDA_ERROR_INVALID_VALUE;
}

// ---- GPU time ---------------------------------------------------------------------------------
std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// Sleeps until CLOCK_MONOTONIC reaches `deadline` (ns). Called without the driver lock.
void sleep_until(std::uint64_t deadline) {
  if (deadline <= now_ns()) {
    return;  // the usual case without GPU time: no system call
  }
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(deadline / 1000000000ULL);
  ts.tv_nsec = static_cast<long>(deadline % 1000000000ULL);
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

bool special_stream(CUstream stream) { return reinterpret_cast<std::uintptr_t>(stream) <= 2; }

// Physical device whose timeline runs work of `stream` (validated), `ctx` being current.
int work_phys(CUstream stream, const CUctx_st* ctx) {
  return special_stream(stream) ? ctx->phys : stream->ctx->phys;
}

// Context of a (validated) stream: its own, or the current one for NULL / legacy / per-thread.
CUctx_st* stream_owner(CUstream stream, CUctx_st* current) {
  return special_stream(stream) ? current : stream->ctx;
}

CUstreamCaptureStatus capture_status(const Driver& d, CUstream stream) {
  const auto it = d.capture.find(reinterpret_cast<std::uintptr_t>(stream));
  return it == d.capture.end() ? CU_STREAM_CAPTURE_STATUS_NONE : it->second;
}

// Completion time of the work submitted to `phys` so far (now if it is idle).
std::uint64_t work_done_at(const Driver& d, int phys) {
  return std::max(now_ns(), d.timeline[phys].busy_until);
}

// Submits work of `stream` that `check(d, ctx)` validates (under the driver lock, after the stream
// itself): unless the stream is capturing, it occupies the device for `duration` ns after the
// work already submitted. Blocks while the device already has SOFTMIG_FAKE_QUEUE_DEPTH launches
// pending, as a launch into the driver's full queue does.
template <typename Check>
CUresult submit(CUstream stream, bool graph, Check&& check) {
  Driver& d = drv();
  std::unique_lock lock(d.mu);
  CUctx_st* ctx = nullptr;
  if (const CUresult r = stream_context(d, stream, &ctx); r != CUDA_SUCCESS) {
    return r;
  }
  if (const CUresult r = check(d, ctx); r != CUDA_SUCCESS) {
    return r;
  }
  if (capture_status(d, stream) != CU_STREAM_CAPTURE_STATUS_NONE) {
    return CUDA_SUCCESS;  // recorded into the graph being captured, not executed
  }
  Timeline& t = d.timeline[work_phys(stream, ctx)];
  const std::uint64_t depth = config().queue_depth;
  std::uint64_t now = now_ns();
  while (true) {
    while (!t.pending.empty() && t.pending.front() <= now) {
      t.pending.pop_front();
    }
    if (depth == 0 || t.pending.size() < depth) {
      break;
    }
    const std::uint64_t wake = t.pending.front();
    lock.unlock();
    sleep_until(wake);
    lock.lock();
    now = now_ns();
  }
  if (const std::uint64_t host = config().launch_host_ns; host != 0) {
    // A real launch costs the host a few microseconds: spin (sleeping would take far longer).
    lock.unlock();
    while (now_ns() < now + host) {
    }
    lock.lock();
    now = now_ns();
  }
  const std::uint64_t duration = graph ? d.graph_ns : d.kernel_ns;
  const std::uint64_t begin = std::max(now, t.busy_until);
  if (duration != 0) {
    if (!t.spans.empty() && t.spans.back().second == begin) {
      t.spans.back().second = begin + duration;
    } else {
      if (t.spans.size() == kMaxSpans) {
        t.spans.erase(t.spans.begin(), t.spans.begin() + kMaxSpans / 2);
      }
      t.spans.emplace_back(begin, begin + duration);
    }
  }
  t.busy_until = begin + duration;
  t.busy_ns += duration;
  ++t.launches;
  if (t.busy_until > now) {
    t.pending.push_back(t.busy_until);
  }
  return CUDA_SUCCESS;
}

// Waits for the work submitted so far to the device that runs `stream` (validated by
// stream_context); CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED on a capturing stream, whose capture it
// invalidates, as the driver does.
CUresult stream_sync(CUstream stream) {
  std::uint64_t deadline = 0;
  {
    Driver& d = drv();
    std::lock_guard lock(d.mu);
    CUctx_st* ctx = nullptr;
    if (const CUresult r = stream_context(d, stream, &ctx); r != CUDA_SUCCESS) {
      return r;
    }
    if (capture_status(d, stream) != CU_STREAM_CAPTURE_STATUS_NONE) {
      d.capture[reinterpret_cast<std::uintptr_t>(stream)] = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
      return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    deadline = d.timeline[work_phys(stream, ctx)].busy_until;
  }
  sleep_until(deadline);
  return CUDA_SUCCESS;
}

// Waits for the work submitted so far to the device of `ctx` (NULL: the current context).
CUresult context_sync(CUcontext ctx) {
  std::uint64_t deadline = 0;
  {
    Driver& d = drv();
    std::lock_guard lock(d.mu);
    if (ctx == nullptr) {
      if (const CUresult r = current_context(d, &ctx); r != CUDA_SUCCESS) {
        return r;
      }
    } else {
      if (const CUresult r = check_init(d); r != CUDA_SUCCESS) {
        return r;
      }
      if (!context_valid(d, ctx)) {
        return CUDA_ERROR_INVALID_CONTEXT;
      }
    }
    deadline = d.timeline[ctx->phys].busy_until;
  }
  sleep_until(deadline);
  return CUDA_SUCCESS;
}

// ---- events -----------------------------------------------------------------------------------
// The live event behind `handle`, or nullptr (unknown, destroyed, or its context destroyed).
Event* find_event(Driver& d, CUevent handle) {
  const auto it = d.events.find(handle);
  if (it == d.events.end() || !context_valid(d, it->second.ctx)) {
    return nullptr;
  }
  return &it->second;
}

CUresult event_create(CUevent* out, unsigned int flags) {
  return with_context([&](Driver& d, CUctx_st* ctx) {
    constexpr unsigned int kKnown =
        CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
    if (out == nullptr || (flags & ~kKnown) != 0 ||
        ((flags & CU_EVENT_INTERPROCESS) != 0 && (flags & CU_EVENT_DISABLE_TIMING) == 0)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    auto* handle = reinterpret_cast<CUevent>(kEventBase + (d.next_event++ << 4U));
    d.events[handle] = Event{flags, ctx, false, 0};
    *out = handle;
    return CUDA_SUCCESS;
  });
}

CUresult event_destroy(CUevent handle) {
  return with_init([&](Driver& d) {
    // Like the driver, an event whose recorded work is still pending may be destroyed.
    return d.events.erase(handle) != 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
  });
}

CUresult event_record(CUevent handle, CUstream stream) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  if (const CUresult r = check_init(d); r != CUDA_SUCCESS) {
    return r;
  }
  Event* e = find_event(d, handle);
  if (e == nullptr) {
    return CUDA_ERROR_INVALID_HANDLE;
  }
  CUctx_st* ctx = nullptr;
  if (const CUresult r = stream_context(d, stream, &ctx); r != CUDA_SUCCESS) {
    return r;
  }
  if (stream_owner(stream, ctx) != e->ctx) {
    return CUDA_ERROR_INVALID_HANDLE;  // event and stream of different contexts
  }
  if (capture_status(d, stream) != CU_STREAM_CAPTURE_STATUS_NONE) {
    return CUDA_SUCCESS;  // becomes a node of the graph being captured; the event is untouched
  }
  e->recorded = true;
  // Even behind no work, a real event takes a little while to be reached and written.
  e->stamp = std::max(work_done_at(d, work_phys(stream, ctx)), now_ns() + config().event_ns);
  return CUDA_SUCCESS;
}

CUresult event_query(CUevent handle) {
  return with_init([&](Driver& d) {
    const Event* e = find_event(d, handle);
    if (e == nullptr) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
    // Never recorded: complete, as the driver documents.
    return !e->recorded || now_ns() >= e->stamp ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
  });
}

CUresult event_synchronize(CUevent handle) {
  std::uint64_t deadline = 0;
  {
    Driver& d = drv();
    std::lock_guard lock(d.mu);
    if (const CUresult r = check_init(d); r != CUDA_SUCCESS) {
      return r;
    }
    const Event* e = find_event(d, handle);
    if (e == nullptr) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
    deadline = e->recorded ? e->stamp : 0;
  }
  sleep_until(deadline);
  return CUDA_SUCCESS;
}

CUresult event_elapsed(float* ms, CUevent start, CUevent end) {
  return with_init([&](Driver& d) {
    if (ms == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    const Event* a = find_event(d, start);
    const Event* b = find_event(d, end);
    if (a == nullptr || b == nullptr || ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING) != 0 ||
        !a->recorded || !b->recorded) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
    const std::uint64_t now = now_ns();
    if (now < a->stamp || now < b->stamp) {
      return CUDA_ERROR_NOT_READY;
    }
    const double diff = static_cast<double>(b->stamp) - static_cast<double>(a->stamp);
    *ms = static_cast<float>(diff / 1e6);
    return CUDA_SUCCESS;
  });
}

CUresult stream_is_capturing(CUstream stream, CUstreamCaptureStatus* status) {
  return with_stream(stream, [&](Driver& d, CUctx_st*) {
    if (status == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *status = capture_status(d, stream);
    return CUDA_SUCCESS;
  });
}

// ---- launches ---------------------------------------------------------------------------------
CUresult launch(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                unsigned int by, unsigned int bz, CUstream stream) {
  return submit(stream, false, [&](Driver&, CUctx_st*) {
    if (f == nullptr) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;  // the kernel "runs" for SOFTMIG_FAKE_KERNEL_NS
  });
}

CUresult launch_ex(const CUlaunchConfig* c, CUfunction f) {
  if (c == nullptr || (c->numAttrs > 0 && c->attrs == nullptr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return launch(f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY,
                c->blockDimZ, c->hStream);
}

CUresult graph_launch(CUgraphExec exec, CUstream stream) {
  return submit(stream, true, [&](Driver& d, CUctx_st*) {
    if (!d.created.contains(exec) || exec->destroyed) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
  });
}

// ---- stream-ordered allocation ------------------------------------------------------------------
CUresult alloc_async(CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  return with_stream(stream, [&](Driver& d, CUctx_st* ctx) {
    return allocate(d, ctx, ctx->phys, bytes, Kind::Device, false, dptr);
  });
}

bool pool_valid(const Driver& d, CUmemoryPool pool) {
  if (pool >= d.default_pool && pool < d.default_pool + fake::kMaxDevices) {
    return ordinal_of_phys(d, pool->phys) >= 0;
  }
  return pool != nullptr && d.created.contains(pool) && !pool->destroyed;
}

CUresult alloc_from_pool(CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool, CUstream stream) {
  return with_stream(stream, [&](Driver& d, CUctx_st* ctx) {
    if (!pool_valid(d, pool)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    return allocate(d, ctx, pool->phys, bytes, Kind::Device, false, dptr);
  });
}

CUresult free_async(CUdeviceptr ptr, CUstream stream) {
  {
    Driver& d = drv();
    std::lock_guard lock(d.mu);
    CUctx_st* ctx = nullptr;
    if (const CUresult r = stream_context(d, stream, &ctx); r != CUDA_SUCCESS) {
      return r;
    }
  }
  return free_address(ptr);
}

// A synchronous copy: runs after the work already submitted to the device (it takes no time
// itself) and returns once that work is done.
CUresult copy(CUdeviceptr device, const void* host, size_t bytes) {
  std::uint64_t deadline = 0;
  const CUresult r = with_context([&](Driver& d, CUctx_st* ctx) {
    if (bytes > 0 && (device == 0 || host == nullptr)) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    deadline = d.timeline[ctx->phys].busy_until;
    return CUDA_SUCCESS;
  });
  if (r == CUDA_SUCCESS) {
    sleep_until(deadline);
  }
  return r;
}

CUresult module_load(CUmodule* module, const void* source) {
  if (module == nullptr || source == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return create_object(module, config().module_bytes, Kind::Module, true);
}

CUresult library_load(CUlibrary* library, const void* source, unsigned int n_jit,
                      CUjit_option* jit_options, void** jit_values, unsigned int n_lib,
                      CUlibraryOption* lib_options, void** lib_values) {
  if (library == nullptr || source == nullptr ||
      (n_jit > 0 && (jit_options == nullptr || jit_values == nullptr)) ||
      (n_lib > 0 && (lib_options == nullptr || lib_values == nullptr))) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  Driver& d = drv();
  {
    std::lock_guard lock(d.mu);
    if (const CUresult r = check_init(d); r != CUDA_SUCCESS) {
      return r;
    }
    if (!context_valid(d, top_context())) {
      // Context-independent loading without a current context: nothing is resident yet.
      auto* handle = new CUlib_st{};
      d.objects[handle] = Charge{0, 0, nullptr, Kind::Library};
      *library = handle;
      return CUDA_SUCCESS;
    }
  }
  return create_object(library, config().module_bytes, Kind::Library, false);
}

CUresult device_uuid(CUuuid* uuid, CUdevice dev) {
  return with_device(dev, [&](Driver& d) {
    if (uuid == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    unsigned char bytes[16];
    fake::uuid_bytes(d.visible[static_cast<std::size_t>(dev)], bytes);
    std::memcpy(uuid->bytes, bytes, sizeof bytes);
    return CUDA_SUCCESS;
  });
}

CUresult total_mem(std::uint64_t* bytes, CUdevice dev) {
  return with_device(dev, [&](Driver& d) {
    *bytes =
        config().device_bytes[static_cast<std::size_t>(d.visible[static_cast<std::size_t>(dev)])];
    return CUDA_SUCCESS;
  });
}

CUresult mem_info(std::uint64_t* free_bytes, std::uint64_t* total_bytes) {
  return with_context([&](Driver& d, CUctx_st* ctx) {
    const std::uint64_t total = config().device_bytes[static_cast<std::size_t>(ctx->phys)];
    const std::uint64_t used = d.table.used_by_all(ctx->phys);
    *total_bytes = total;
    *free_bytes = used < total ? total - used : 0;
    return CUDA_SUCCESS;
  });
}

// A byte count for the caller's type: the legacy entry points (without _v2) report through
// unsigned int and see at most UINT_MAX; the others get the full 64-bit value.
template <typename Size>
Size narrow(std::uint64_t v) {
  if constexpr (sizeof(Size) < sizeof(std::uint64_t)) {
    return v > UINT_MAX ? UINT_MAX : static_cast<Size>(v);
  } else {
    return static_cast<Size>(v);
  }
}

// cuDeviceTotalMem(_v2) in the caller's size type.
template <typename Size>
CUresult total_mem_as(Size* bytes, CUdevice dev) {
  if (bytes == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::uint64_t total = 0;
  const CUresult r = total_mem(&total, dev);
  if (r == CUDA_SUCCESS) {
    *bytes = narrow<Size>(total);
  }
  return r;
}

// cuMemGetInfo(_v2) in the caller's size type.
template <typename Size>
CUresult mem_info_as(Size* free_bytes, Size* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::uint64_t f = 0;
  std::uint64_t t = 0;
  const CUresult r = mem_info(&f, &t);
  if (r == CUDA_SUCCESS) {
    *free_bytes = narrow<Size>(f);
    *total_bytes = narrow<Size>(t);
  }
  return r;
}

CUresult stream_destroy(CUstream stream) {
  return destroy_created(stream, CUDA_ERROR_INVALID_HANDLE);
}

// Device of `ctx`, or of the current context when `ctx` is NULL.
CUresult context_device(CUcontext ctx, CUdevice* device) {
  return with_init([&](Driver& d) {
    if (device == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    CUctx_st* c = ctx != nullptr ? ctx : top_context();
    if (!context_valid(d, c)) {
      return CUDA_ERROR_INVALID_CONTEXT;
    }
    *device = c->ordinal;
    return CUDA_SUCCESS;
  });
}

void after_fork_child() {
  Driver* old = driver_slot();
  Driver* fresh = new_driver();  // the old one may be mid-update by a thread that is gone
  fresh->forked_after_init = old->initialized || old->forked_after_init;
  fresh->table = old->table;
  fresh->private_table = old->private_table;
  fresh->table.after_fork_child();
  fresh->kernel_ns = old->kernel_ns;  // settings survive fork; queued GPU work does not
  fresh->graph_ns = old->graph_ns;
  driver_slot() = fresh;
  t_depth = 0;
}

__attribute__((constructor)) void fake_cuda_load() {
  (void)config();
  (void)drv();
  calls().inject_from_env("libcuda", "cu");
  (void)proc_table();
  pthread_atfork(nullptr, nullptr, after_fork_child);
}

}  // namespace

// ================================ exported driver API ========================================
extern "C" {

// ---- entry and lookup -------------------------------------------------------------------------
CUresult cuInit(unsigned int flags) {
  FAKE_ENTER(cuInit);
  if (flags != 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  if (d.forked_after_init) {
    return CUDA_ERROR_NOT_INITIALIZED;
  }
  if (d.initialized) {
    return CUDA_SUCCESS;
  }
  d.visible = visible_devices();
  if (d.visible.empty()) {
    return CUDA_ERROR_NO_DEVICE;
  }
  for (std::size_t i = 0; i < d.visible.size(); ++i) {
    d.primary[i] = CUctx_st{static_cast<int>(i), d.visible[i], true, false, false, 0, 0};
  }
  d.initialized = true;
  return CUDA_SUCCESS;
}

FAKE_FORWARD(cuGetProcAddress, (const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags),
             get_proc_address(symbol, pfn, cudaVersion, flags, nullptr))
FAKE_FORWARD(cuGetProcAddress_v2,
             (const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags,
              CUdriverProcAddressQueryResult* symbolStatus),
             get_proc_address(symbol, pfn, cudaVersion, flags, symbolStatus))

CUresult cuDriverGetVersion(int* driverVersion) {
  FAKE_ENTER(cuDriverGetVersion);
  if (driverVersion == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *driverVersion = 13000;
  return CUDA_SUCCESS;
}

CUresult cuGetExportTable(const void** ppExportTable, const CUuuid* pExportTableId) {
  FAKE_ENTER(cuGetExportTable);
  if (ppExportTable != nullptr) {
    *ppExportTable = nullptr;
  }
  (void)pExportTableId;
  return CUDA_ERROR_NOT_SUPPORTED;  // the runtime's private tables are not simulated
}

FAKE_FORWARD(cuGetErrorString, (CUresult error, const char** pStr), error_text(error, pStr, false))
FAKE_FORWARD(cuGetErrorName, (CUresult error, const char** pStr), error_text(error, pStr, true))

// ---- devices ----------------------------------------------------------------------------------
CUresult cuDeviceGetCount(int* count) {
  FAKE_ENTER(cuDeviceGetCount);
  return with_init([&](Driver& d) {
    if (count == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *count = static_cast<int>(d.visible.size());
    return CUDA_SUCCESS;
  });
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  FAKE_ENTER(cuDeviceGet);
  return with_device(ordinal, [&](Driver&) {
    if (device == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *device = ordinal;
    return CUDA_SUCCESS;
  });
}

FAKE_FORWARD(cuDeviceGetUuid, (CUuuid* uuid, CUdevice dev), device_uuid(uuid, dev))
FAKE_FORWARD(cuDeviceGetUuid_v2, (CUuuid* uuid, CUdevice dev), device_uuid(uuid, dev))

CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  FAKE_ENTER(cuDeviceGetName);
  return with_device(dev, [&](Driver& d) {
    if (name == nullptr || len <= 0) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    // Like the driver, a short buffer receives a truncated, NUL-terminated name.
    std::snprintf(name, static_cast<std::size_t>(len), "%s",
                  fake::device_name(d.visible[static_cast<std::size_t>(dev)]).c_str());
    return CUDA_SUCCESS;
  });
}

CUresult cuDeviceGetAttribute(int* pi, int attrib, CUdevice dev) {
  FAKE_ENTER(cuDeviceGetAttribute);
  return with_device(dev, [&](Driver& d) {
    if (pi == nullptr || attrib <= 0 || attrib > 200) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    // clang-format off
    // An H100-like device; attributes not listed are 0.
    switch (attrib) {
      case 1: *pi = 1024; break;                  // MAX_THREADS_PER_BLOCK
      case 2: case 3: *pi = 1024; break;          // MAX_BLOCK_DIM_X / Y
      case 4: *pi = 64; break;                    // MAX_BLOCK_DIM_Z
      case 5: *pi = 2147483647; break;            // MAX_GRID_DIM_X
      case 6: case 7: *pi = 65535; break;         // MAX_GRID_DIM_Y / Z
      case 8: *pi = 49152; break;                 // MAX_SHARED_MEMORY_PER_BLOCK
      case 9: *pi = 65536; break;                 // TOTAL_CONSTANT_MEMORY
      case 10: *pi = 32; break;                   // WARP_SIZE
      case 11: *pi = 2147483647; break;           // MAX_PITCH
      case 12: *pi = 65536; break;                // MAX_REGISTERS_PER_BLOCK
      case 13: *pi = 1980000; break;              // CLOCK_RATE (kHz)
      case 14: *pi = 512; break;                  // TEXTURE_ALIGNMENT
      case 16: *pi = 132; break;                  // MULTIPROCESSOR_COUNT
      case 19: case 31: case 32: *pi = 1; break;  // CAN_MAP_HOST_MEMORY, CONCURRENT_KERNELS, ECC
      case 33: *pi = 0x10 + d.visible[static_cast<std::size_t>(dev)]; break;  // PCI_BUS_ID
      case 36: *pi = 2619000; break;              // MEMORY_CLOCK_RATE (kHz)
      case 37: *pi = 5120; break;                 // GLOBAL_MEMORY_BUS_WIDTH
      case 38: *pi = 50 << 20; break;             // L2_CACHE_SIZE
      case 39: *pi = 2048; break;                 // MAX_THREADS_PER_MULTIPROCESSOR
      case 40: *pi = 3; break;                    // ASYNC_ENGINE_COUNT
      case 41: *pi = 1; break;                    // UNIFIED_ADDRESSING
      case 75: *pi = 9; break;                    // COMPUTE_CAPABILITY_MAJOR
      case 76: *pi = 0; break;                    // COMPUTE_CAPABILITY_MINOR
      case 81: *pi = 233472; break;               // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
      case 82: *pi = 65536; break;                // MAX_REGISTERS_PER_MULTIPROCESSOR
      case 83: case 89: case 95: *pi = 1; break;  // MANAGED_MEMORY, CONCURRENT_MANAGED, COOPERATIVE
      case 97: *pi = 232448; break;               // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
      case 102: case 115: *pi = 1; break;         // VIRTUAL_MEMORY_MANAGEMENT, MEMORY_POOLS
      case 106: *pi = 32; break;                  // MAX_BLOCKS_PER_MULTIPROCESSOR
      default: *pi = 0; break;
    }
    // clang-format on
    return CUDA_SUCCESS;
  });
}

CUresult cuDeviceComputeCapability(int* major, int* minor, CUdevice dev) {
  FAKE_ENTER(cuDeviceComputeCapability);
  return with_device(dev, [&](Driver&) {
    if (major == nullptr || minor == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *major = 9;
    *minor = 0;
    return CUDA_SUCCESS;
  });
}

FAKE_FORWARD(cuDeviceTotalMem, (unsigned int* bytes, CUdevice dev), total_mem_as(bytes, dev))
FAKE_FORWARD(cuDeviceTotalMem_v2, (size_t* bytes, CUdevice dev), total_mem_as(bytes, dev))
FAKE_FORWARD(cuMemGetInfo, (unsigned int* free, unsigned int* total), mem_info_as(free, total))
FAKE_FORWARD(cuMemGetInfo_v2, (size_t* free, size_t* total), mem_info_as(free, total))

// ---- linear memory ------------------------------------------------------------------------------
CUresult cuMemAlloc(CUdeviceptr_v1* dptr, unsigned int bytesize) {
  FAKE_ENTER(cuMemAlloc);
  if (dptr == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  CUdeviceptr p = 0;
  const CUresult r = allocate_in_current(&p, bytesize, Kind::Device, true);
  if (r == CUDA_SUCCESS) {
    *dptr = static_cast<CUdeviceptr_v1>(p);
  }
  return r;
}

FAKE_FORWARD(cuMemAlloc_v2, (CUdeviceptr* dptr, size_t bytesize),
             allocate_in_current(dptr, bytesize, Kind::Device, false))

CUresult cuMemAllocPitch(CUdeviceptr_v1* dptr, unsigned int* pPitch, unsigned int WidthInBytes,
                         unsigned int Height, unsigned int ElementSizeBytes) {
  FAKE_ENTER(cuMemAllocPitch);
  if (dptr == nullptr || pPitch == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  CUdeviceptr p = 0;
  std::uint64_t pitch = 0;
  const CUresult r = pitch_alloc(&p, &pitch, WidthInBytes, Height, ElementSizeBytes, true);
  if (r == CUDA_SUCCESS) {
    *dptr = static_cast<CUdeviceptr_v1>(p);
    *pPitch = static_cast<unsigned int>(pitch);
  }
  return r;
}

CUresult cuMemAllocPitch_v2(CUdeviceptr* dptr, size_t* pPitch, size_t WidthInBytes, size_t Height,
                            unsigned int ElementSizeBytes) {
  FAKE_ENTER(cuMemAllocPitch_v2);
  if (pPitch == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  std::uint64_t pitch = 0;
  const CUresult r = pitch_alloc(dptr, &pitch, WidthInBytes, Height, ElementSizeBytes, false);
  if (r == CUDA_SUCCESS) {
    *pPitch = pitch;
  }
  return r;
}

CUresult cuMemAllocManaged(CUdeviceptr* dptr, size_t bytesize, unsigned int flags) {
  FAKE_ENTER(cuMemAllocManaged);
  if (flags != 1 && flags != 2) {  // CU_MEM_ATTACH_GLOBAL / CU_MEM_ATTACH_HOST
    return CUDA_ERROR_INVALID_VALUE;
  }
  return allocate_in_current(dptr, bytesize, Kind::Managed, false);
}

FAKE_FORWARD(cuMemFree, (CUdeviceptr_v1 dptr), free_address(dptr))
FAKE_FORWARD(cuMemFree_v2, (CUdeviceptr dptr), free_address(dptr))

CUresult cuMemGetAddressRange_v2(CUdeviceptr* pbase, size_t* psize, CUdeviceptr dptr) {
  FAKE_ENTER(cuMemGetAddressRange_v2);
  return with_init([&](Driver& d) {
    const auto* found = find_containing(d, dptr);
    if (found == nullptr) {
      return CUDA_ERROR_NOT_FOUND;
    }
    if (pbase != nullptr) {
      *pbase = found->first;
    }
    if (psize != nullptr) {
      *psize = found->second.bytes;
    }
    return CUDA_SUCCESS;
  });
}

CUresult cuPointerGetAttribute(void* data, int attribute, CUdeviceptr ptr) {
  FAKE_ENTER(cuPointerGetAttribute);
  return with_init([&](Driver& d) {
    const auto* found = find_containing(d, ptr);
    if (data == nullptr || found == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    const Charge& a = found->second;
    static_assert(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL == 9 &&
                  CU_POINTER_ATTRIBUTE_RANGE_SIZE == 12);
    // clang-format off
    switch (attribute) {
      case 1: *static_cast<CUcontext*>(data) = a.ctx; break;                  // CONTEXT
      case 2: *static_cast<unsigned int*>(data) = 2; break;                   // MEMORY_TYPE: DEVICE
      case 3: *static_cast<CUdeviceptr*>(data) = ptr; break;                  // DEVICE_POINTER
      case 7: *static_cast<unsigned long long*>(data) = found->first; break;  // BUFFER_ID
      case 8: *static_cast<bool*>(data) = a.kind == Kind::Managed; break;     // IS_MANAGED
      case 9: *static_cast<int*>(data) = ordinal_of_phys(d, a.phys); break;   // DEVICE_ORDINAL
      case 11: *static_cast<CUdeviceptr*>(data) = found->first; break;        // RANGE_START_ADDR
      case 12: *static_cast<size_t*>(data) = a.bytes; break;                  // RANGE_SIZE
      case 13: *static_cast<bool*>(data) = true; break;                       // MAPPED
      case 17: *static_cast<CUmemoryPool*>(data) = nullptr; break;            // MEMPOOL_HANDLE
      default: return CUDA_ERROR_INVALID_VALUE;
    }
    // clang-format on
    return CUDA_SUCCESS;
  });
}

FAKE_FORWARD(cuMemcpyHtoD_v2, (CUdeviceptr dstDevice, const void* srcHost, size_t ByteCount),
             copy(dstDevice, srcHost, ByteCount))
FAKE_FORWARD(cuMemcpyDtoH_v2, (void* dstHost, CUdeviceptr srcDevice, size_t ByteCount),
             copy(srcDevice, dstHost, ByteCount))
FAKE_FORWARD(cuMemcpyHtoD_v2_ptds, (CUdeviceptr dstDevice, const void* srcHost, size_t ByteCount),
             copy(dstDevice, srcHost, ByteCount))
FAKE_FORWARD(cuMemcpyDtoH_v2_ptds, (void* dstHost, CUdeviceptr srcDevice, size_t ByteCount),
             copy(srcDevice, dstHost, ByteCount))

// ---- stream-ordered allocation and pools
// ----------------------------------------------------------
FAKE_FORWARD(cuMemAllocAsync, (CUdeviceptr* dptr, size_t bytesize, CUstream hStream),
             alloc_async(dptr, bytesize, hStream))
FAKE_FORWARD(cuMemAllocAsync_ptsz, (CUdeviceptr* dptr, size_t bytesize, CUstream hStream),
             alloc_async(dptr, bytesize, hStream))
FAKE_FORWARD(cuMemAllocFromPoolAsync,
             (CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream),
             alloc_from_pool(dptr, bytesize, pool, hStream))
FAKE_FORWARD(cuMemAllocFromPoolAsync_ptsz,
             (CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream),
             alloc_from_pool(dptr, bytesize, pool, hStream))
FAKE_FORWARD(cuMemFreeAsync, (CUdeviceptr dptr, CUstream hStream), free_async(dptr, hStream))
FAKE_FORWARD(cuMemFreeAsync_ptsz, (CUdeviceptr dptr, CUstream hStream), free_async(dptr, hStream))

CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool_out, CUdevice dev) {
  FAKE_ENTER(cuDeviceGetDefaultMemPool);
  return with_device(dev, [&](Driver& d) {
    if (pool_out == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *pool_out = &d.default_pool[d.visible[static_cast<std::size_t>(dev)]];
    return CUDA_SUCCESS;
  });
}

CUresult cuMemPoolCreate(CUmemoryPool* pool, const CUmemPoolProps* poolProps) {
  FAKE_ENTER(cuMemPoolCreate);
  return with_init([&](Driver& d) {
    if (pool == nullptr || poolProps == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    // CUmemPoolProps starts like CUmemAllocationProp: type, handle types, location.
    const auto* props = reinterpret_cast<const CUmemAllocationProp*>(poolProps);
    const int ordinal = props->location.id;
    if (props->location.type != CU_MEM_LOCATION_TYPE_DEVICE || ordinal < 0 ||
        static_cast<std::size_t>(ordinal) >= d.visible.size()) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    return hand_out(
        d, new CUmemPoolHandle_st{d.visible[static_cast<std::size_t>(ordinal)], false, false},
        pool);
  });
}

CUresult cuMemPoolDestroy(CUmemoryPool pool) {
  FAKE_ENTER(cuMemPoolDestroy);
  return with_init([&](Driver& d) {
    if (!pool_valid(d, pool) || pool->is_default) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    pool->destroyed = true;  // outstanding allocations stay until freed, as in the driver
    return CUDA_SUCCESS;
  });
}

CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep) {
  FAKE_ENTER(cuMemPoolTrimTo);
  (void)minBytesToKeep;
  return with_init([&](Driver& d) {
    return pool_valid(d, pool) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;  // nothing is cached
  });
}

// ---- virtual memory management
// -------------------------------------------------------------------
CUresult cuMemGetAllocationGranularity(size_t* granularity, const CUmemAllocationProp* prop,
                                       int option) {
  FAKE_ENTER(cuMemGetAllocationGranularity);
  (void)option;
  if (granularity == nullptr || prop == nullptr) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  *granularity = kVmmGranularity;
  return CUDA_SUCCESS;
}

CUresult cuMemCreate(CUmemGenericAllocationHandle* handle, size_t size,
                     const CUmemAllocationProp* prop, unsigned long long flags) {
  FAKE_ENTER(cuMemCreate);
  return with_init([&](Driver& d) {
    if (handle == nullptr || prop == nullptr || flags != 0 || size == 0 ||
        size % kVmmGranularity != 0 || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        prop->location.id < 0 || static_cast<std::size_t>(prop->location.id) >= d.visible.size()) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    const int phys = d.visible[static_cast<std::size_t>(prop->location.id)];
    if (const CUresult r = charge(d, phys, size); r != CUDA_SUCCESS) {
      return r;
    }
    const CUmemGenericAllocationHandle h = d.next_handle++;
    d.handles[h] = Charge{size, phys, nullptr, Kind::Device};
    *handle = h;
    return CUDA_SUCCESS;
  });
}

CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  FAKE_ENTER(cuMemRelease);
  return with_init([&](Driver& d) {
    const auto it = d.handles.find(handle);
    if (it == d.handles.end()) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    release(d, d.handles, it);
    return CUDA_SUCCESS;
  });
}

CUresult cuMemAddressReserve(CUdeviceptr* ptr, size_t size, size_t alignment, CUdeviceptr addr,
                             unsigned long long flags) {
  FAKE_ENTER(cuMemAddressReserve);
  (void)addr;
  return with_init([&](Driver& d) {
    if (ptr == nullptr || size == 0 || size % kVmmGranularity != 0 || flags != 0) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    const std::uint64_t align = alignment > kVmmGranularity ? alignment : kVmmGranularity;
    const CUdeviceptr start = round_up(d.next_reserve, align);
    d.next_reserve = start + size;
    d.reservations[start] = size;
    *ptr = start;
    return CUDA_SUCCESS;
  });
}

CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  FAKE_ENTER(cuMemAddressFree);
  return with_init([&](Driver& d) {
    const auto it = d.reservations.find(ptr);
    if (it == d.reservations.end() || it->second != size) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    d.reservations.erase(it);
    return CUDA_SUCCESS;
  });
}

CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                  unsigned long long flags) {
  FAKE_ENTER(cuMemMap);
  return with_init([&](Driver& d) {
    const auto h = d.handles.find(handle);
    if (ptr == 0 || size == 0 || flags != 0 || h == d.handles.end() ||
        offset + size > h->second.bytes) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
  });
}

CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) {
  FAKE_ENTER(cuMemUnmap);
  return with_init([&](Driver&) {
    return ptr == 0 || size == 0 ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
  });
}

CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const void* desc, size_t count) {
  FAKE_ENTER(cuMemSetAccess);
  return with_init([&](Driver&) {
    return ptr == 0 || size == 0 || desc == nullptr || count == 0 ? CUDA_ERROR_INVALID_VALUE
                                                                  : CUDA_SUCCESS;
  });
}

// ---- arrays -------------------------------------------------------------------------------------
// The un-suffixed entry points take the _v1 descriptors (32-bit extents), the _v2 ones the
// current descriptors; 2D descriptors have no depth.
FAKE_FORWARD(cuArrayCreate, (CUarray* pHandle, const CUDA_ARRAY_DESCRIPTOR_v1* pAllocateArray),
             array_create(pHandle, pAllocateArray))
FAKE_FORWARD(cuArrayCreate_v2, (CUarray* pHandle, const CUDA_ARRAY_DESCRIPTOR* pAllocateArray),
             array_create(pHandle, pAllocateArray))
FAKE_FORWARD(cuArray3DCreate, (CUarray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1* pAllocateArray),
             array_create(pHandle, pAllocateArray))
FAKE_FORWARD(cuArray3DCreate_v2, (CUarray* pHandle, const CUDA_ARRAY3D_DESCRIPTOR* pAllocateArray),
             array_create(pHandle, pAllocateArray))
FAKE_FORWARD(cuArrayDestroy, (CUarray hArray), destroy_object(hArray, Kind::Array))

CUresult cuMipmappedArrayCreate(CUmipmappedArray* pHandle,
                                const CUDA_ARRAY3D_DESCRIPTOR* pMipmappedArrayDesc,
                                unsigned int numMipmapLevels) {
  FAKE_ENTER(cuMipmappedArrayCreate);
  if (pHandle == nullptr || pMipmappedArrayDesc == nullptr || numMipmapLevels == 0) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  const auto& a = *pMipmappedArrayDesc;
  std::uint64_t w = a.Width;
  std::uint64_t h = a.Height;
  std::uint64_t depth = a.Depth;
  std::uint64_t total = 0;
  for (unsigned int level = 0; level < numMipmapLevels; ++level) {
    std::uint64_t bytes = 0;
    if (const CUresult r = array_bytes(w, h, depth, a.Format, a.NumChannels, &bytes);
        r != CUDA_SUCCESS) {
      return r;
    }
    total += bytes;
    w = w > 1 ? w / 2 : 1;
    h = h > 1 ? h / 2 : h;
    depth = depth > 1 ? depth / 2 : depth;
  }
  return create_object(pHandle, total, Kind::Mipmap, true);
}

FAKE_FORWARD(cuMipmappedArrayDestroy, (CUmipmappedArray hMipmappedArray),
             destroy_object(hMipmappedArray, Kind::Mipmap))

// ---- contexts
// -------------------------------------------------------------------------------------
FAKE_FORWARD(cuDevicePrimaryCtxRetain, (CUcontext* pctx, CUdevice dev), primary_retain(pctx, dev))
FAKE_FORWARD(cuDevicePrimaryCtxRelease, (CUdevice dev), primary_release(dev))
FAKE_FORWARD(cuDevicePrimaryCtxRelease_v2, (CUdevice dev), primary_release(dev))
FAKE_FORWARD(cuDevicePrimaryCtxReset, (CUdevice dev), primary_reset(dev))
FAKE_FORWARD(cuDevicePrimaryCtxReset_v2, (CUdevice dev), primary_reset(dev))

CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags, int* active) {
  FAKE_ENTER(cuDevicePrimaryCtxGetState);
  return with_device(dev, [&](Driver& d) {
    if (flags == nullptr || active == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *flags = d.primary[dev].flags;
    *active = d.primary[dev].active && d.primary[dev].refcount > 0 ? 1 : 0;
    return CUDA_SUCCESS;
  });
}

FAKE_FORWARD(cuCtxCreate, (CUcontext* pctx, unsigned int flags, CUdevice dev),
             create_context(pctx, flags, dev))
FAKE_FORWARD(cuCtxCreate_v2, (CUcontext* pctx, unsigned int flags, CUdevice dev),
             create_context(pctx, flags, dev))

CUresult cuCtxCreate_v3(CUcontext* pctx, CUexecAffinityParam* paramsArray, int numParams,
                        unsigned int flags, CUdevice dev) {
  FAKE_ENTER(cuCtxCreate_v3);
  if (numParams < 0 || (numParams > 0 && paramsArray == nullptr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return create_context(pctx, flags, dev);
}

CUresult cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams* ctxCreateParams, unsigned int flags,
                        CUdevice dev) {
  FAKE_ENTER(cuCtxCreate_v4);
  (void)ctxCreateParams;  // optional; its contents are not simulated
  return create_context(pctx, flags, dev);
}

FAKE_FORWARD(cuCtxDestroy, (CUcontext ctx), destroy_context(ctx))
FAKE_FORWARD(cuCtxDestroy_v2, (CUcontext ctx), destroy_context(ctx))

CUresult cuCtxGetCurrent(CUcontext* pctx) {
  FAKE_ENTER(cuCtxGetCurrent);
  return with_init([&](Driver&) {
    if (pctx == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    *pctx = top_context();
    return CUDA_SUCCESS;
  });
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
  FAKE_ENTER(cuCtxSetCurrent);
  return with_init([&](Driver& d) {
    if (ctx == nullptr) {  // unbinds: pops the top of the stack, if any
      if (t_depth > 0) {
        --t_depth;
      }
      return CUDA_SUCCESS;
    }
    if (!context_valid(d, ctx)) {
      return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (t_depth == 0) {
      t_depth = 1;
    }
    t_stack[t_depth - 1] = ctx;
    return CUDA_SUCCESS;
  });
}

CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
  FAKE_ENTER(cuCtxPushCurrent_v2);
  return with_init([&](Driver& d) {
    if (!context_valid(d, ctx)) {
      return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (t_depth == kStackDepth) {
      return CUDA_ERROR_UNKNOWN;
    }
    t_stack[t_depth++] = ctx;
    return CUDA_SUCCESS;
  });
}

CUresult cuCtxPopCurrent_v2(CUcontext* pctx) {
  FAKE_ENTER(cuCtxPopCurrent_v2);
  return with_init([&](Driver&) {
    if (t_depth == 0) {
      return CUDA_ERROR_INVALID_CONTEXT;
    }
    CUctx_st* ctx = t_stack[--t_depth];
    if (pctx != nullptr) {
      *pctx = ctx;
    }
    return CUDA_SUCCESS;
  });
}

FAKE_FORWARD(cuCtxGetDevice, (CUdevice* device), context_device(nullptr, device))
FAKE_FORWARD(cuCtxGetDevice_v2, (CUdevice* device, CUcontext ctx), context_device(ctx, device))

FAKE_FORWARD(cuCtxSynchronize, (void), context_sync(nullptr))
FAKE_FORWARD(cuCtxSynchronize_v2, (CUcontext ctx), context_sync(ctx))

// ---- streams
// ----------------------------------------------------------------------------------------
CUresult cuStreamCreate(CUstream* phStream, unsigned int flags) {
  FAKE_ENTER(cuStreamCreate);
  return with_context([&](Driver& d, CUctx_st* ctx) {
    if (phStream == nullptr || flags > 1) {  // CU_STREAM_DEFAULT / CU_STREAM_NON_BLOCKING
      return CUDA_ERROR_INVALID_VALUE;
    }
    return hand_out(d, new CUstream_st{ctx, false}, phStream);
  });
}

FAKE_FORWARD(cuStreamDestroy, (CUstream hStream), stream_destroy(hStream))
FAKE_FORWARD(cuStreamDestroy_v2, (CUstream hStream), stream_destroy(hStream))
FAKE_FORWARD(cuStreamSynchronize, (CUstream hStream), stream_sync(hStream))
FAKE_FORWARD(cuStreamSynchronize_ptsz, (CUstream hStream), stream_sync(hStream))
FAKE_FORWARD(cuStreamIsCapturing, (CUstream hStream, CUstreamCaptureStatus* captureStatus),
             stream_is_capturing(hStream, captureStatus))

// ---- events
// -------------------------------------------------------------------------------------------
FAKE_FORWARD(cuEventCreate, (CUevent* phEvent, unsigned int Flags), event_create(phEvent, Flags))
FAKE_FORWARD(cuEventDestroy_v2, (CUevent hEvent), event_destroy(hEvent))
FAKE_FORWARD(cuEventRecord, (CUevent hEvent, CUstream hStream), event_record(hEvent, hStream))
FAKE_FORWARD(cuEventQuery, (CUevent hEvent), event_query(hEvent))
FAKE_FORWARD(cuEventSynchronize, (CUevent hEvent), event_synchronize(hEvent))
FAKE_FORWARD(cuEventElapsedTime, (float* pMilliseconds, CUevent hStart, CUevent hEnd),
             event_elapsed(pMilliseconds, hStart, hEnd))
FAKE_FORWARD(cuEventElapsedTime_v2, (float* pMilliseconds, CUevent hStart, CUevent hEnd),
             event_elapsed(pMilliseconds, hStart, hEnd))

// ---- modules and libraries
// ----------------------------------------------------------------------------
CUresult cuModuleLoad(CUmodule* module, const char* fname) {
  FAKE_ENTER(cuModuleLoad);
  if (fname != nullptr && *fname == '\0') {
    return CUDA_ERROR_FILE_NOT_FOUND;
  }
  return module_load(module, fname);
}

FAKE_FORWARD(cuModuleLoadData, (CUmodule* module, const void* image), module_load(module, image))

CUresult cuModuleLoadDataEx(CUmodule* module, const void* image, unsigned int numOptions,
                            CUjit_option* options, void** optionValues) {
  FAKE_ENTER(cuModuleLoadDataEx);
  if (numOptions > 0 && (options == nullptr || optionValues == nullptr)) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  return module_load(module, image);
}

FAKE_FORWARD(cuModuleLoadFatBinary, (CUmodule* module, const void* fatCubin),
             module_load(module, fatCubin))
FAKE_FORWARD(cuModuleUnload, (CUmodule hmod), destroy_object(hmod, Kind::Module))

CUresult cuModuleGetFunction(CUfunction* hfunc, CUmodule hmod, const char* name) {
  FAKE_ENTER(cuModuleGetFunction);
  return with_init([&](Driver& d) {
    const auto it = d.objects.find(hmod);
    if (it == d.objects.end() || it->second.kind != Kind::Module) {
      return CUDA_ERROR_INVALID_HANDLE;
    }
    if (hfunc == nullptr || name == nullptr) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    if (*name == '\0') {
      return CUDA_ERROR_NOT_FOUND;
    }
    CUfunc_st*& fn = hmod->functions[name];
    if (fn == nullptr) {
      fn = new CUfunc_st{hmod};
    }
    *hfunc = fn;
    return CUDA_SUCCESS;
  });
}

FAKE_FORWARD(cuLibraryLoadData,
             (CUlibrary* library, const void* code, CUjit_option* jitOptions,
              void** jitOptionsValues, unsigned int numJitOptions, CUlibraryOption* libraryOptions,
              void** libraryOptionValues, unsigned int numLibraryOptions),
             library_load(library, code, numJitOptions, jitOptions, jitOptionsValues,
                          numLibraryOptions, libraryOptions, libraryOptionValues))

CUresult cuLibraryLoadFromFile(CUlibrary* library, const char* fileName, CUjit_option* jitOptions,
                               void** jitOptionsValues, unsigned int numJitOptions,
                               CUlibraryOption* libraryOptions, void** libraryOptionValues,
                               unsigned int numLibraryOptions) {
  FAKE_ENTER(cuLibraryLoadFromFile);
  if (fileName != nullptr && *fileName == '\0') {
    return CUDA_ERROR_FILE_NOT_FOUND;
  }
  return library_load(library, fileName, numJitOptions, jitOptions, jitOptionsValues,
                      numLibraryOptions, libraryOptions, libraryOptionValues);
}

FAKE_FORWARD(cuLibraryUnload, (CUlibrary library), destroy_object(library, Kind::Library))

// ---- graphs
// -------------------------------------------------------------------------------------------
CUresult cuGraphCreate(CUgraph* phGraph, unsigned int flags) {
  FAKE_ENTER(cuGraphCreate);
  return with_init([&](Driver& d) {
    if (phGraph == nullptr || flags != 0) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    return hand_out(d, new CUgraph_st{false}, phGraph);
  });
}

FAKE_FORWARD(cuGraphDestroy, (CUgraph hGraph), destroy_created(hGraph, CUDA_ERROR_INVALID_VALUE))

CUresult cuGraphInstantiateWithFlags(CUgraphExec* phGraphExec, CUgraph hGraph,
                                     unsigned long long flags) {
  FAKE_ENTER(cuGraphInstantiateWithFlags);
  (void)flags;
  return with_context([&](Driver& d, CUctx_st*) {
    if (phGraphExec == nullptr || !d.created.contains(hGraph) || hGraph->destroyed) {
      return CUDA_ERROR_INVALID_VALUE;
    }
    return hand_out(d, new CUgraphExec_st{false}, phGraphExec);
  });
}

FAKE_FORWARD(cuGraphExecDestroy, (CUgraphExec hGraphExec),
             destroy_created(hGraphExec, CUDA_ERROR_INVALID_VALUE))

CUresult cuDeviceGraphMemTrim(CUdevice device) {
  FAKE_ENTER(cuDeviceGraphMemTrim);
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  return check_device(d, device);
}

FAKE_FORWARD(cuGraphLaunch, (CUgraphExec hGraphExec, CUstream hStream),
             graph_launch(hGraphExec, hStream))
FAKE_FORWARD(cuGraphLaunch_ptsz, (CUgraphExec hGraphExec, CUstream hStream),
             graph_launch(hGraphExec, hStream))

// ---- launches
// -----------------------------------------------------------------------------------------
CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                        unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                        unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                        void** kernelParams, void** extra) {
  FAKE_ENTER(cuLaunchKernel);
  (void)sharedMemBytes, (void)kernelParams, (void)extra;
  return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                             unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                             unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                             void** kernelParams, void** extra) {
  FAKE_ENTER(cuLaunchKernel_ptsz);
  (void)sharedMemBytes, (void)kernelParams, (void)extra;
  return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void** kernelParams,
                          void** extra) {
  FAKE_ENTER(cuLaunchKernelEx);
  (void)kernelParams, (void)extra;
  return launch_ex(config, f);
}

CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f, void** kernelParams,
                               void** extra) {
  FAKE_ENTER(cuLaunchKernelEx_ptsz);
  (void)kernelParams, (void)extra;
  return launch_ex(config, f);
}

CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                   unsigned int gridDimZ, unsigned int blockDimX,
                                   unsigned int blockDimY, unsigned int blockDimZ,
                                   unsigned int sharedMemBytes, CUstream hStream,
                                   void** kernelParams) {
  FAKE_ENTER(cuLaunchCooperativeKernel);
  (void)sharedMemBytes, (void)kernelParams;
  return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                        unsigned int gridDimZ, unsigned int blockDimX,
                                        unsigned int blockDimY, unsigned int blockDimZ,
                                        unsigned int sharedMemBytes, CUstream hStream,
                                        void** kernelParams) {
  FAKE_ENTER(cuLaunchCooperativeKernel_ptsz);
  (void)sharedMemBytes, (void)kernelParams;
  return launch(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, hStream);
}

// ================================ control API (not counted) ===================================
unsigned long long fake_call_count(const char* symbol) { return calls().count(symbol); }

void fake_reset_counts(void) { calls().reset(); }

void fake_inject_result(const char* symbol, int result, int n_calls) {
  if (!calls().inject(symbol, result, n_calls)) {
    fake::warn("libcuda", "fake_inject_result: unknown symbol \"%s\"", symbol ? symbol : "(null)");
  }
}

unsigned long long fake_process_used(int cuda_ordinal) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  if (!d.initialized || cuda_ordinal < 0 ||
      static_cast<std::size_t>(cuda_ordinal) >= d.visible.size()) {
    return 0;
  }
  return d.used[d.visible[static_cast<std::size_t>(cuda_ordinal)]];
}

int fake_proc_symbol(const char* base, int cudaVersion, unsigned long long flags,
                     const char** symbol) {
  if (symbol != nullptr) {
    *symbol = nullptr;
  }
  if (base == nullptr || !valid_proc_flags(flags)) {
    return -1;
  }
  const ProcEntry* entry = nullptr;
  const int status = resolve(base, cudaVersion, flags, &entry);
  if (entry != nullptr && symbol != nullptr) {
    *symbol = kSymNames[entry->sym];
  }
  return status;
}

unsigned long long fake_gpu_busy_ns(int cuda_ordinal) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  if (!d.initialized || cuda_ordinal < 0 ||
      static_cast<std::size_t>(cuda_ordinal) >= d.visible.size()) {
    return 0;
  }
  return d.timeline[d.visible[static_cast<std::size_t>(cuda_ordinal)]].busy_ns;
}

unsigned long long fake_gpu_busy_outside_ns(int cuda_ordinal, unsigned long long period,
                                            unsigned long long window, unsigned long long offset) {
  const std::uint64_t period_ns = period, window_ns = window, offset_ns = offset;
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  if (!d.initialized || cuda_ordinal < 0 || period_ns == 0 || window_ns >= period_ns ||
      static_cast<std::size_t>(cuda_ordinal) >= d.visible.size()) {
    return 0;
  }
  // Time of [a, b) inside the windows [k * period + offset, + window), by whole periods.
  const auto inside = [&](std::uint64_t a, std::uint64_t b) {
    std::uint64_t in = 0;
    for (std::uint64_t k = (a > offset_ns ? (a - offset_ns) / period_ns : 0);; ++k) {
      const std::uint64_t ws = k * period_ns + offset_ns;
      if (ws >= b) {
        break;
      }
      const std::uint64_t lo = std::max(a, ws);
      const std::uint64_t hi = std::min(b, ws + window_ns);
      in += hi > lo ? hi - lo : 0;
    }
    return in;
  };
  unsigned long long outside = 0;
  for (const auto& [a, b] : d.timeline[d.visible[static_cast<std::size_t>(cuda_ordinal)]].spans) {
    outside += (b - a) - inside(a, b);
  }
  return outside;
}

unsigned long long fake_launch_count(void) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  unsigned long long n = 0;
  for (const Timeline& t : d.timeline) {
    n += t.launches;
  }
  return n;
}

void fake_set_capturing(void* stream, int capturing) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  const auto key = reinterpret_cast<std::uintptr_t>(stream);
  if (capturing == 0) {
    d.capture.erase(key);
  } else {
    d.capture[key] = capturing == CU_STREAM_CAPTURE_STATUS_INVALIDATED
                         ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                         : CU_STREAM_CAPTURE_STATUS_ACTIVE;
  }
}

void fake_set_kernel_ns(unsigned long long kernel_ns, unsigned long long graph_ns) {
  Driver& d = drv();
  std::lock_guard lock(d.mu);
  d.kernel_ns = kernel_ns;
  d.graph_ns = graph_ns;
}

/// For the fake NVML of the same process when no SOFTMIG_FAKE_STATE file is shared: the private
/// usage table (same layout as the file).
void* fake_private_usage_table(void) { return drv().private_table; }

}  // extern "C"
