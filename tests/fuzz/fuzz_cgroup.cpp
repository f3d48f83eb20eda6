// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_cgroup.cpp
/// @brief Fuzz target for core::job_id_from_cgroup and core::identify_job, which decide from
///        /proc/self/cgroup (and SLURM_JOB_ID) whether a process is inside a SLURM job.
///
/// Input: one byte for the output buffer size (0..40), one flags byte, then the cgroup text
/// (and, after a NUL, an environment job id). Properties:
///   - nothing is written beyond the given size, and nothing at all when no job is found;
///   - a job id found is 1..20 decimal digits, NUL-terminated, shorter than the buffer, and the
///     text names it as a whole path component "/job_<id>" (followed by '/', a newline or the end);
///   - identify_job prefers the cgroup; a set SLURM_JOB_ID always means "inside SLURM" (it can
///     never be used to leave); the job id kept is decimal or empty.
#include <cstdint>
#include <cstring>
#include <string>

#include "core/job.hpp"
#include "fuzz_check.hpp"

namespace {

namespace core = softmig::core;

bool names_job(std::string_view text, std::string_view id) {
  const std::string tag = "/job_" + std::string(id);
  std::size_t pos = 0;
  while ((pos = text.find(tag, pos)) != std::string_view::npos) {
    const std::size_t end = pos + tag.size();
    if (end == text.size() || text[end] == '/' || text[end] == '\n') return true;
    ++pos;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 8192) return 0;
  fuzz::Input in(data, size);
  const std::size_t out_size = in.byte() % 41U;
  const std::uint8_t flags = in.byte();
  const std::string_view all = in.rest();
  const std::size_t nul = all.find('\0');
  const std::string_view text = all.substr(0, nul);
  const std::string env_id(nul == std::string_view::npos ? std::string_view{} : all.substr(nul + 1));

  char buf[48];
  std::memset(buf, 0x5a, sizeof buf);
  const bool found = core::job_id_from_cgroup(text, buf, out_size);
  for (std::size_t i = out_size; i < sizeof buf; ++i) FUZZ_CHECK(buf[i] == 0x5a, "byte %zu written past the buffer", i);
  if (!found) {
    for (std::size_t i = 0; i < sizeof buf; ++i) FUZZ_CHECK(buf[i] == 0x5a, "written without a job");
  } else {
    const std::size_t n = ::strnlen(buf, out_size);
    FUZZ_CHECK(n < out_size && n >= 1 && n <= 20, "job id of %zu characters in a %zu-byte buffer", n, out_size);
    const std::string_view id(buf, n);
    FUZZ_CHECK(core::is_decimal_id(id), "job id '%s' is not decimal", std::string(id).c_str());
    FUZZ_CHECK(names_job(text, id), "'%s' is not a job_<id> component of the text", std::string(id).c_str());
  }

  const char* env_job = (flags & 1U) != 0 ? env_id.c_str() : nullptr;
  const char* env_task = (flags & 2U) != 0 ? env_id.c_str() : nullptr;
  const core::JobIdentity id = core::identify_job(text, env_job, env_task);
  char cg[24];
  const bool in_cgroup = core::job_id_from_cgroup(text, cg, sizeof cg);
  FUZZ_CHECK(id.in_slurm == (in_cgroup || env_job != nullptr), "in_slurm wrong");
  FUZZ_CHECK(id.from_cgroup == in_cgroup, "from_cgroup wrong");
  FUZZ_CHECK(::strnlen(id.job_id, sizeof id.job_id) < sizeof id.job_id, "job id unterminated");
  FUZZ_CHECK(::strnlen(id.array_task, sizeof id.array_task) < sizeof id.array_task, "array task unterminated");
  if (in_cgroup) {
    FUZZ_CHECK(std::strcmp(id.job_id, cg) == 0, "the environment beat the cgroup");
  } else if (id.has_job_id()) {
    FUZZ_CHECK(env_job != nullptr && std::strcmp(id.job_id, env_job) == 0, "job id from nowhere");
  }
  if (id.has_job_id()) FUZZ_CHECK(core::is_decimal_id(id.job_id), "job id not decimal");
  if (id.array_task[0] != '\0') FUZZ_CHECK(id.in_slurm && core::is_decimal_id(id.array_task), "array task");
  return 0;
}
