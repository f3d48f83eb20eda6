// SPDX-License-Identifier: Apache-2.0
#include "core/job.hpp"

#include <cstring>

namespace softmig::core {

bool is_decimal_id(std::string_view s) noexcept {
  if (s.empty() || s.size() > 20) return false;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool job_id_from_cgroup(std::string_view text, char* out, std::size_t out_size) noexcept {
  constexpr std::string_view kTag = "job_";
  std::size_t pos = 0;
  while ((pos = text.find(kTag, pos)) != std::string_view::npos) {
    // The tag must start a path component: "/job_123/" or "/job_123\n".
    const bool at_component = pos > 0 && text[pos - 1] == '/';
    std::size_t end = pos + kTag.size();
    while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
    const std::string_view digits = text.substr(pos + kTag.size(), end - pos - kTag.size());
    const bool ends_component = end == text.size() || text[end] == '/' || text[end] == '\n';
    if (at_component && ends_component && is_decimal_id(digits) && digits.size() < out_size) {
      std::memcpy(out, digits.data(), digits.size());
      out[digits.size()] = '\0';
      return true;
    }
    pos = end;
  }
  return false;
}

JobIdentity identify_job(std::string_view cgroup_text, const char* env_job_id,
                         const char* env_array_task) noexcept {
  JobIdentity id;
  if (job_id_from_cgroup(cgroup_text, id.job_id, sizeof(id.job_id))) {
    id.in_slurm = true;
    id.from_cgroup = true;
  } else if (env_job_id != nullptr) {
    id.in_slurm = true;
    const std::string_view v(env_job_id);
    if (is_decimal_id(v) && v.size() < sizeof(id.job_id)) {
      std::memcpy(id.job_id, v.data(), v.size());
    }
  }
  if (id.in_slurm && env_array_task != nullptr) {
    const std::string_view t(env_array_task);
    if (is_decimal_id(t) && t.size() < sizeof(id.array_task)) {
      std::memcpy(id.array_task, t.data(), t.size());
    }
  }
  return id;
}

}  // namespace softmig::core
