// SPDX-License-Identifier: Apache-2.0
/// victim_interposer: run with LD_PRELOAD holding both softmig and libinterposer.so (in either
/// order). A cuMemAlloc_v2 call of the program must pass through the interposer once, softmig
/// once and the driver once, and the interposer's dlsym(RTLD_NEXT, "getenv") must still find
/// the C library's getenv: softmig's dlsym must never break RTLD_NEXT for other symbols.
#include "victim_common.hpp"

int main(int argc, char** argv) {
  const auto opts = victim::parse_options(argc, argv, "victim_interposer");
  const auto softmig = victim::Softmig::find(opts.softmig_expected);
  const auto fake = victim::FakeCuda::find(RTLD_DEFAULT);
  const auto interposer_calls = reinterpret_cast<unsigned long long (*)(const char*)>(
      ::dlsym(RTLD_DEFAULT, "interposer_calls"));
  const auto interposer_next_getenv =
      reinterpret_cast<void* (*)()>(::dlsym(RTLD_DEFAULT, "interposer_next_getenv"));
  VICTIM_CHECK(interposer_calls != nullptr && interposer_next_getenv != nullptr,
               "libinterposer.so is not preloaded");

  // getenv: the program's call goes to the interposer, which forwards to the C library.
  const auto getenv_before = interposer_calls("getenv");
  const char* probe = std::getenv("SOFTMIG_INTERPOSER_PROBE");
  VICTIM_CHECK(probe != nullptr && std::strcmp(probe, "42") == 0,
               "getenv(SOFTMIG_INTERPOSER_PROBE) through the interposer gave %s, expected 42",
               probe ? probe : "NULL");
  VICTIM_CHECK(interposer_calls("getenv") == getenv_before + 1,
               "the program's getenv did not go through the interposer exactly once");
  void* next = interposer_next_getenv();
  Dl_info info{};
  VICTIM_CHECK(next != nullptr && ::dladdr(next, &info) != 0 && info.dli_fname != nullptr,
               "the interposer's dlsym(RTLD_NEXT, \"getenv\") resolved to %p, in no library", next);
  VICTIM_CHECK(
      std::strstr(info.dli_fname, "libc.so") != nullptr,
      "the interposer's dlsym(RTLD_NEXT, \"getenv\") resolved to %s in %s, not libc's getenv",
      info.dli_sname ? info.dli_sname : "?", info.dli_fname);

  // cuMemAlloc_v2: once through each layer.
  victim::expect_cu("cuInit", cuInit(0));
  CUcontext ctx = nullptr;
  victim::expect_cu("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(&ctx, 0));
  victim::expect_cu("cuCtxSetCurrent", cuCtxSetCurrent(ctx));
  const auto through_interposer = interposer_calls("cuMemAlloc_v2");
  const auto through_softmig = softmig.calls("cuMemAlloc_v2");
  const auto through_driver = fake.count("cuMemAlloc_v2");
  CUdeviceptr p = 0;
  const CUresult r = cuMemAlloc_v2(&p, 16ULL << 20U);
  const auto i = interposer_calls("cuMemAlloc_v2") - through_interposer;
  const auto s = softmig.calls("cuMemAlloc_v2") - through_softmig;
  const auto d = fake.count("cuMemAlloc_v2") - through_driver;
  if (interposer_calls("reentered") != 0) {
    const auto next_alloc =
        reinterpret_cast<void* (*)()>(::dlsym(RTLD_DEFAULT, "interposer_next_alloc"));
    void* target = next_alloc != nullptr ? next_alloc() : nullptr;
    Dl_info where{};
    const bool known =
        target != nullptr && ::dladdr(target, &where) != 0 && where.dli_fname != nullptr;
    victim::fail(
        "the interposer's dlsym(RTLD_NEXT, \"cuMemAlloc_v2\") gave %p (%s in %s): "
        "forwarding came back into the interposer (softmig saw %llu call(s))",
        target, known && where.dli_sname ? where.dli_sname : "?", known ? where.dli_fname : "?", s);
  }
  victim::expect_cu("cuMemAlloc_v2", r);
  VICTIM_CHECK(
      i == 1 && s == (softmig.loaded() ? 1U : 0U) && d == 1,
      "one cuMemAlloc_v2 reached the interposer %llu time(s), softmig %llu, the driver %llu", i, s,
      d);
  victim::expect_cu("cuMemFree_v2", cuMemFree_v2(p));
  return 0;
}
