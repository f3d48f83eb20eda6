// SPDX-License-Identifier: Apache-2.0
#include "tool/metrics_format.hpp"

#include <fmt/format.h>

namespace softmig::tool {
namespace {

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

std::string gpu_labels(const JobView& j, const GpuView& g) {
  return fmt::format("job=\"{}\",gpu=\"{}\",user=\"{}\"", escape_label_value(j.job), escape_label_value(g.uuid),
                     escape_label_value(j.owner));
}

template <typename Value>
void per_gpu(std::string& out, const Snapshot& s, std::string_view name, Value value) {
  for (const JobView& j : s.jobs) {
    for (const GpuView& g : j.gpus) {
      if (const auto v = value(g)) out += fmt::format("{}{{{}}} {}\n", name, gpu_labels(j, g), *v);
    }
  }
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_prometheus(const Snapshot& s) {
  std::string out;
  family(out, "softmig_memory_limit_bytes", "gauge", "GPU memory limit of the job's slice in bytes (absent: no limit).");
  per_gpu(out, s, "softmig_memory_limit_bytes", [](const GpuView& g) { return g.memory_limit; });
  family(out, "softmig_memory_used_bytes", "gauge", "GPU memory the job's processes hold in bytes (allocations and driver overhead).");
  per_gpu(out, s, "softmig_memory_used_bytes", [](const GpuView& g) { return std::optional<std::uint64_t>(g.used); });
  family(out, "softmig_memory_peak_bytes", "gauge", "Highest GPU memory use of the job in bytes.");
  per_gpu(out, s, "softmig_memory_peak_bytes", [](const GpuView& g) { return std::optional<std::uint64_t>(g.peak); });
  family(out, "softmig_oom_refusals_total", "counter", "Allocations refused because they would exceed the job's memory limit.");
  per_gpu(out, s, "softmig_oom_refusals_total",
          [](const GpuView& g) { return std::optional<std::uint64_t>(g.oom_refusals); });
  family(out, "softmig_sm_limit_percent", "gauge", "Compute share of the job's slice in percent (100: no limit).");
  per_gpu(out, s, "softmig_sm_limit_percent", [](const GpuView& g) { return g.sm_percent; });
  family(out, "softmig_compute_throttled_seconds_total", "counter",
         "Thread-time the compute share held the job's launches back, summed over its processes.");
  per_gpu(out, s, "softmig_compute_throttled_seconds_total", [](const GpuView& g) { return g.throttled_seconds(); });
  family(out, "softmig_process_memory_bytes", "gauge", "GPU memory a live process of the job holds in bytes.");
  for (const JobView& j : s.jobs) {
    for (const GpuView& g : j.gpus) {
      for (const ProcessView& p : g.processes) {
        out += fmt::format("softmig_process_memory_bytes{{{},pid=\"{}\",process_user=\"{}\"}} {}\n", gpu_labels(j, g),
                           p.pid, escape_label_value(p.user), p.bytes());
      }
    }
  }
  family(out, "softmig_ledgers", "gauge", "Job ledgers read for this exposition.");
  out += fmt::format("softmig_ledgers {}\n", s.jobs.size());
  family(out, "softmig_ledger_errors", "gauge", "Job ledgers found but not readable (see softmig status).");
  out += fmt::format("softmig_ledger_errors {}\n", s.problems.size());
  return out;
}

}  // namespace softmig::tool
