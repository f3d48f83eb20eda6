// SPDX-License-Identifier: Apache-2.0
#include "tool/status_format.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/units.hpp"

namespace softmig::tool {
namespace {

std::string sm_text(const std::optional<unsigned>& sm) {
  if (!sm) return "n/a";
  return fmt::format("{}%", *sm);
}

std::string throttled_text(const GpuView& g) {
  const std::optional<double> s = g.throttled_seconds();
  if (!s) return "n/a";
  return fmt::format("{:.1f}s", *s);
}

constexpr std::size_t kSizeW = 10;

}  // namespace

std::string human_bytes(std::uint64_t bytes) {
  char buf[32];
  core::format_bytes(bytes, buf, sizeof buf);
  return buf;
}

std::string format_table(const Snapshot& s) {
  // Column widths follow the content, so long session names and UUIDs stay aligned.
  std::size_t job_w = 3;
  std::size_t user_w = 4;
  std::size_t gpu_w = 3;
  for (const JobView& j : s.jobs) {
    job_w = std::max(job_w, j.job.size());
    user_w = std::max(user_w, j.owner.size());
    for (const GpuView& g : j.gpus) {
      gpu_w = std::max(gpu_w, g.uuid.size());
      for (const ProcessView& p : g.processes) {
        job_w = std::max(job_w, fmt::formatted_size("  pid {}", p.pid));
        user_w = std::max(user_w, p.user.size());
      }
    }
  }
  std::string out;
  auto row = [&](std::string_view job, std::string_view user, std::string_view gpu, std::string_view limit,
                 std::string_view used, std::string_view peak, std::string_view oom, std::string_view sm,
                 std::string_view share, std::string_view throttled) {
    std::string line = fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>{}}  {:>{}}  {:>{}}  {:>5}  {:>4}  {:>5}  {:>9}", job,
                                   job_w, user, user_w, gpu, gpu_w, limit, kSizeW, used, kSizeW, peak, kSizeW, oom,
                                   sm, share, throttled);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  row("JOB", "USER", "GPU", "LIMIT", "USED", "PEAK", "OOM", "SM", "SHARE", "THROTTLED");
  for (const JobView& j : s.jobs) {
    if (j.gpus.empty()) {
      row(j.job, j.owner, "(no GPU used yet)", "", "", "", "", "", "", "");
      continue;
    }
    for (const GpuView& g : j.gpus) {
      row(j.job, j.owner, g.uuid, g.memory_limit ? human_bytes(*g.memory_limit) : "none", human_bytes(g.used),
          human_bytes(g.peak), std::to_string(g.oom_refusals), sm_text(g.sm_percent), "n/a", throttled_text(g));
      for (const ProcessView& p : g.processes) {
        row(fmt::format("  pid {}", p.pid), p.user, "", "", human_bytes(p.bytes()), "", "", "", "", "");
      }
      if (g.stale_processes != 0) {
        out += fmt::format("  ({} exited process{} still counted: {}; reclaimed by the next allocation that needs the room)\n",
                           g.stale_processes, g.stale_processes == 1 ? "" : "es", human_bytes(g.stale_bytes));
      }
    }
  }
  if (s.jobs.empty()) out += "(no jobs with a softmig ledger)\n";
  for (const LedgerProblem& p : s.problems) out += fmt::format("cannot read {}: {}\n", p.ledger, p.error);
  return out;
}

std::string format_json(const Snapshot& s) {
  // ordered_json keeps the keys in the order written, so the document is stable for golden files.
  using Json = nlohmann::ordered_json;
  Json doc;
  doc["version"] = kStatusJsonVersion;
  Json jobs = Json::array();
  for (const JobView& j : s.jobs) {
    Json job;
    job["job"] = j.job;
    job["owner"] = j.owner;
    job["owner_uid"] = j.owner_uid;
    job["ledger"] = j.ledger;
    job["config"] = j.config.empty() ? Json(nullptr) : Json(j.config);
    job["created_unix"] = j.created_unix;
    Json gpus = Json::array();
    for (const GpuView& g : j.gpus) {
      Json gpu;
      gpu["uuid"] = g.uuid;
      gpu["memory_limit_bytes"] = g.memory_limit ? Json(*g.memory_limit) : Json(nullptr);
      gpu["memory_used_bytes"] = g.used;
      gpu["memory_peak_bytes"] = g.peak;
      gpu["oom_refusals"] = g.oom_refusals;
      gpu["sm_limit_percent"] = g.sm_percent ? Json(*g.sm_percent) : Json(nullptr);
      gpu["delivered_share_percent"] = nullptr;  // not measured yet
      const std::optional<double> held = g.throttled_seconds();
      gpu["throttled_seconds"] = held ? Json(*held) : Json(nullptr);
      gpu["stale_processes"] = g.stale_processes;
      gpu["stale_bytes"] = g.stale_bytes;
      Json procs = Json::array();
      for (const ProcessView& p : g.processes) {
        Json proc;
        proc["pid"] = p.pid;
        proc["user"] = p.user;
        proc["uid"] = p.uid;
        proc["bytes"] = p.bytes();
        proc["alloc_bytes"] = p.alloc;
        proc["overhead_bytes"] = p.overhead;
        procs.push_back(std::move(proc));
      }
      gpu["processes"] = std::move(procs);
      gpus.push_back(std::move(gpu));
    }
    job["gpus"] = std::move(gpus);
    jobs.push_back(std::move(job));
  }
  doc["jobs"] = std::move(jobs);
  Json problems = Json::array();
  for (const LedgerProblem& p : s.problems) problems.push_back(Json{{"ledger", p.ledger}, {"error", p.error}});
  doc["problems"] = std::move(problems);
  return doc.dump(2) + "\n";
}

}  // namespace softmig::tool
