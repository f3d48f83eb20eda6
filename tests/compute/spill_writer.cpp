// SPDX-License-Identifier: Apache-2.0
/// spill_writer: stands in for another process of a job whose work runs past every window's end.
///
///   spill_writer LEDGER UUID PERCENT SPILL_US SECONDS [--edited-first]
///
/// Waits (up to 10 s) for the job's ledger LEDGER to be initialised and to have an entry for
/// UUID, then for SECONDS keeps that entry's spill record (spill_until_ns) at SPILL_US past the
/// end of the job's latest window (PERCENT of every period, phase 0; the period is
/// SOFTMIG_SM_PERIOD_MS if set, else the library's default), raising it as a process of the job
/// does. --edited-first: first writes a record an hour ahead, as a hand edit
/// could (the record then stays there until a process of the job resets it). Exits 1 if the
/// ledger never shows up.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/ledger.hpp"
#include "core/pacer.hpp"
#include "platform/clock.hpp"

namespace {

using softmig::platform::sleep_ns;
std::int64_t now_ns() { return softmig::platform::monotonic_ns(); }

/// The job's device entry for `uuid` once the ledger is initialised and has one, or nullptr.
softmig::core::LedgerDevice* find_entry(const char* path, const char* uuid) {
  const int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st {};
  void* mem = MAP_FAILED;
  if (fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) >= sizeof(softmig::core::LedgerRegion)) {
    mem = mmap(nullptr, sizeof(softmig::core::LedgerRegion), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  close(fd);
  if (mem == MAP_FAILED) return nullptr;
  auto* r = static_cast<softmig::core::LedgerRegion*>(mem);
  if (softmig::core::check_region(*r, sizeof(*r)) == softmig::core::RegionCheck::kOk) {
    for (auto& d : r->devices) {
      if (std::strncmp(d.uuid, uuid, softmig::core::kUuidChars) == 0) return &d;
    }
  }
  munmap(mem, sizeof(softmig::core::LedgerRegion));
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const bool edited_first = argc == 7 && std::strcmp(argv[6], "--edited-first") == 0;
  if (argc != 6 && !edited_first) {
    std::fprintf(stderr, "usage: spill_writer LEDGER UUID PERCENT SPILL_US SECONDS [--edited-first]\n");
    return 2;
  }
  std::int64_t period = softmig::core::kDefaultPeriodNs;
  if (const char* ms = std::getenv("SOFTMIG_SM_PERIOD_MS"); ms != nullptr && std::atoi(ms) > 0) {
    period = std::atoll(ms) * softmig::core::kNsPerMs;
  }
  const softmig::core::ShareSchedule s{period, static_cast<unsigned>(std::atoi(argv[3])), 0};
  const std::int64_t spill = std::atoll(argv[4]) * 1000;
  softmig::core::LedgerDevice* entry = nullptr;
  for (std::int64_t waited = 0; entry == nullptr; waited += 10'000'000) {
    if (waited > 10'000'000'000) {
      std::fprintf(stderr, "FAIL spill_writer: no ledger entry for %s in %s\n", argv[2], argv[1]);
      return 1;
    }
    sleep_ns(10'000'000);
    entry = find_entry(argv[1], argv[2]);
  }
  if (edited_first) softmig::core::store_u64(entry->spill_until_ns, static_cast<std::uint64_t>(now_ns() + 3'600'000'000'000));
  const std::int64_t until = now_ns() + static_cast<std::int64_t>(std::atof(argv[5]) * 1e9);
  for (std::int64_t t = now_ns(); t < until; t = now_ns()) {
    const std::int64_t latest = s.current_or_next(t) - 1;  // the latest window that has ended
    softmig::core::max_u64(entry->spill_until_ns, static_cast<std::uint64_t>(s.end(latest) + spill));
    sleep_ns(1'000'000);
  }
  return 0;
}
