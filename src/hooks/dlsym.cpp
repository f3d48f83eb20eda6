// SPDX-License-Identifier: Apache-2.0
/// @file dlsym.cpp
/// @brief The two lookup routes that would otherwise bypass the exported wrappers:
///        dlsym(handle, "cu...") on a driver handle, and cuGetProcAddress(_v2), which the CUDA
///        12/13 runtime (and so PyTorch, JAX, CuPy) uses for every driver entry point.
///
/// dlsym is exported through a small assembly trampoline. Lookups that softmig does not need to
/// rewrite leave through a tail jump into the C library's dlsym with the caller's own return
/// address still on the stack, so dlsym(RTLD_NEXT, ...) keeps meaning "next after the caller"
/// for every other interposer (a plain C++ wrapper would make it "next after softmig").
#include <dlfcn.h>

#include <cstring>

#include "hooks/handlers.hpp"
#include "hooks/introspection.hpp"
#include "hooks/preload_chain.hpp"
#include "platform/log.hpp"

extern "C" {
/// Address compared against by the trampoline: "jump to the real dlsym with the original
/// arguments".
__attribute__((visibility("hidden"))) char softmig_dlsym_passthrough = 0;
/// The C library's dlsym, loaded by the trampoline for the tail jump.
__attribute__((visibility("hidden"))) void* softmig_real_dlsym_fn = nullptr;
__attribute__((visibility("hidden"))) void* softmig_dlsym_route(void* handle, const char* name,
                                                                const void* caller) noexcept;
}

namespace softmig::hooks {
namespace {

void* passthrough() noexcept { return &softmig_dlsym_passthrough; }

/// dlsym(RTLD_NEXT, name) for an interposed name (see preload_chain.hpp): a preloaded library
/// gets its next link; any other caller gets the chain's first link, never the driver itself.
void* route_next(const char* name, Sym s, const void* caller) noexcept {
  const Library lib = kSymInfo[index_of(s)].library;
  const PreloadChain chain;
  void* next = nullptr;
  if (chain.contains(caller)) {
    if (chain.next_definition(caller, name, &next)) return next;
    return ensure_resolved(lib) ? driver_ptr(s) : nullptr;
  }
  if (chain.next_definition(nullptr, name, &next)) return next;
  if (!ensure_resolved(lib) || driver_ptr(s) == nullptr) return nullptr;
  count_route(Route::kDlsym);
  return wrapper_ptr(s);
}

/// Decides the answer to dlsym(handle, name) for an interposed name.
void* route_interposed(void* handle, const char* name, Sym s, const void* caller) noexcept {
  if (handle == RTLD_NEXT) return route_next(name, s, caller);
  const Library lib = kSymInfo[index_of(s)].library;
  void* wrapper = wrapper_ptr(s);
  void* found = real_dlsym(handle, name);
  if (found == nullptr) return nullptr;
  if (found == wrapper) {
    // RTLD_DEFAULT finds softmig's own export first. That is only a valid answer if the driver
    // library is loaded and really has the symbol; otherwise the program must see what it
    // would see without softmig: nothing.
    if (!ensure_resolved(lib) || driver_ptr(s) == nullptr) return nullptr;
    count_route(Route::kDlsym);
    return wrapper;
  }
  ensure_resolved(lib);
  if (found == driver_ptr(s) || in_library(lib, found)) {
    count_route(Route::kDlsym);
    return wrapper;
  }
  return found;  // another interposer's function: it calls on through the chain by itself
}

/// Replaces a function pointer the driver handed out by softmig's wrapper of the same symbol.
void map_procaddress(const char* symbol, void** pfn) noexcept {
  if (pfn == nullptr || *pfn == nullptr) return;
  Sym s{};
  if (find_by_real(*pfn, s)) {
    *pfn = wrapper_ptr(s);
    count_route(Route::kGetProcAddress);
    return;
  }
  // Not one of the addresses softmig resolved. If the driver's answer is an exported symbol
  // softmig interposes (an alias, say), that is a bypass: report it loudly.
  Dl_info info{};
  if (dladdr(*pfn, &info) != 0 && info.dli_sname != nullptr && info.dli_saddr == *pfn &&
      find_exported(info.dli_sname, s)) {
    count_route(Route::kUnmapped);
    platform::log_error("cuGetProcAddress(%s) returned %s at %p, which is not the address softmig "
                        "resolved for it; calls through it are not seen",
                        symbol != nullptr ? symbol : "(null)", info.dli_sname, *pfn);
  }
}

}  // namespace

CUresult Handler<Sym::cuGetProcAddress>::call(const char* symbol, void** pfn, int cudaVersion,
                                              cuuint64_t flags) noexcept {
  const CUresult rc = forward<Sym::cuGetProcAddress>(symbol, pfn, cudaVersion, flags);
  if (rc == CUDA_SUCCESS) map_procaddress(symbol, pfn);
  return rc;
}

CUresult Handler<Sym::cuGetProcAddress_v2>::call(const char* symbol, void** pfn, int cudaVersion,
                                                 cuuint64_t flags,
                                                 CUdriverProcAddressQueryResult* symbolStatus) noexcept {
  const CUresult rc =
      forward<Sym::cuGetProcAddress_v2>(symbol, pfn, cudaVersion, flags, symbolStatus);
  if (rc == CUDA_SUCCESS) map_procaddress(symbol, pfn);
  return rc;
}

}  // namespace softmig::hooks

extern "C" void* softmig_dlsym_route(void* handle, const char* name, const void* caller) noexcept {
  using namespace softmig::hooks;
  if (__atomic_load_n(&softmig_real_dlsym_fn, __ATOMIC_ACQUIRE) == nullptr) {
    void* fn = real_dlsym_address();  // racing threads store the same value
    if (fn == nullptr) return nullptr;  // no C library dlsym to pass to: fail the lookup
    __atomic_store_n(&softmig_real_dlsym_fn, fn, __ATOMIC_RELEASE);
  }
  Sym s{};
  if (name == nullptr || in_internal_section() || !find_exported(name, s)) return passthrough();
  InternalSection guard;  // lookups the driver makes while we work are not rewritten
  return route_interposed(handle, name, s, caller);
}

// The exported dlsym. It asks softmig_dlsym_route first; unless the route returns the
// passthrough marker, its answer is returned. Otherwise the original arguments are restored and
// control jumps (not calls) into the C library's dlsym, which therefore sees the caller's return
// address, exactly as if softmig were not there.
#if defined(__x86_64__)
asm(R"(
    .text
    .globl dlsym
    .type dlsym, @function
    .p2align 4
dlsym:
    .cfi_startproc
    pushq %rdi
    .cfi_adjust_cfa_offset 8
    pushq %rsi
    .cfi_adjust_cfa_offset 8
    subq $8, %rsp
    .cfi_adjust_cfa_offset 8
    movq 24(%rsp), %rdx
    call softmig_dlsym_route
    addq $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq %rsi
    .cfi_adjust_cfa_offset -8
    popq %rdi
    .cfi_adjust_cfa_offset -8
    leaq softmig_dlsym_passthrough(%rip), %rcx
    cmpq %rcx, %rax
    je 1f
    ret
1:
    jmp *softmig_real_dlsym_fn(%rip)
    .cfi_endproc
    .size dlsym, .-dlsym
)");
#elif defined(__aarch64__)
asm(R"(
    .text
    .globl dlsym
    .type dlsym, %function
    .p2align 4
dlsym:
    .cfi_startproc
    stp x29, x30, [sp, #-32]!
    .cfi_def_cfa_offset 32
    .cfi_offset 29, -32
    .cfi_offset 30, -24
    mov x29, sp
    stp x0, x1, [sp, #16]
    mov x2, x30
    bl softmig_dlsym_route
    adrp x9, softmig_dlsym_passthrough
    add x9, x9, :lo12:softmig_dlsym_passthrough
    cmp x0, x9
    b.eq 1f
    ldp x29, x30, [sp], #32
    .cfi_remember_state
    .cfi_def_cfa_offset 0
    ret
1:
    .cfi_restore_state
    ldp x0, x1, [sp, #16]
    ldp x29, x30, [sp], #32
    .cfi_def_cfa_offset 0
    adrp x9, softmig_real_dlsym_fn
    ldr x9, [x9, :lo12:softmig_real_dlsym_fn]
    br x9
    .cfi_endproc
    .size dlsym, .-dlsym
)");
#else
#error "softmig's dlsym trampoline supports x86_64 and aarch64"
#endif
