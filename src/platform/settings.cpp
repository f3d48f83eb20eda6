// SPDX-License-Identifier: Apache-2.0
#include "platform/settings.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "core/units.hpp"
#include "platform/env.hpp"
#include "platform/files.hpp"
#include "platform/log.hpp"
#include "platform/once.hpp"
#include "platform/process.hpp"

namespace softmig::platform {
namespace {

Once g_once;
Settings g_settings;

constexpr std::size_t kMaxConfigBytes = 16384;

void log_issues(const core::LimitIssues& issues, const char* where) noexcept {
  for (unsigned i = 0; i < issues.count; ++i) log_error("%s: %s", where, issues.items[i].text);
  if (issues.dropped != 0) log_error("%s: %u more problems not shown", where, issues.dropped);
}

/// Finds the job's file: {job}_{array}.conf, {job}.conf, or any {job}_<digits>.conf (the job id
/// from the cgroup is unique per array task, so a scrubbed SLURM_ARRAY_TASK_ID cannot hide it).
bool find_job_file(const core::JobIdentity& job, char* name, std::size_t size) noexcept {
  char candidate[96];
  const char* dir = SOFTMIG_CONFIG_DIR;
  char probe[1];
  long n = 0;
  auto exists = [&](const char* file) {
    const TrustCheck c = read_root_owned(dir, file, probe, sizeof(probe), &n);
    return c != TrustCheck::kMissing;
  };
  if (job.array_task[0] != '\0') {
    std::snprintf(candidate, sizeof(candidate), "%s_%s.conf", job.job_id, job.array_task);
    if (exists(candidate)) return std::snprintf(name, size, "%s", candidate) > 0;
  }
  std::snprintf(candidate, sizeof(candidate), "%s.conf", job.job_id);
  if (exists(candidate)) return std::snprintf(name, size, "%s", candidate) > 0;
  const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  struct Search {
    const core::JobIdentity& job;
    std::size_t id_len;
    char* name;
    std::size_t size;
    bool found;
  } search{job, std::strlen(job.job_id), name, size, false};
  scan_dir(fd, [](const char* f, void* ctx) {
    auto& q = *static_cast<Search*>(ctx);
    if (std::strncmp(f, q.job.job_id, q.id_len) != 0 || f[q.id_len] != '_') return true;
    const char* p = f + q.id_len + 1;
    const char* digits = p;
    while (*p >= '0' && *p <= '9') ++p;
    if (p == digits || std::strcmp(p, ".conf") != 0) return true;
    q.found = std::snprintf(q.name, q.size, "%s", f) > 0;
    return false;
  }, &search);
  close(fd);
  return search.found;
}

void read_job_file(Settings& s, const core::JobIdentity& job, char* text, std::size_t size) noexcept {
  char name[96];
  if (!find_job_file(job, name, sizeof(name))) {
    s.source = LimitSource::kNone;
    log_info("job %s: no configuration file in %s; this job has whole GPUs (no limits)", job.job_id,
             SOFTMIG_CONFIG_DIR);
    return;
  }
  std::snprintf(s.config_path, sizeof(s.config_path), "%s/%s", SOFTMIG_CONFIG_DIR, name);
  long n = 0;
  const TrustCheck c = read_root_owned(SOFTMIG_CONFIG_DIR, name, text, size, &n);
  if (c != TrustCheck::kOk) {
    s.source = LimitSource::kJobFileRejected;
    s.limits = core::Limits::fail_closed();
    text[0] = '\0';
    log_error("%s is %s; refusing all GPU memory until an administrator fixes it",
              s.config_path, describe(c));
    return;
  }
  core::LimitIssues issues;
  s.limits = core::parse_limits_file(std::string_view(text, static_cast<std::size_t>(n)), issues);
  s.source = LimitSource::kJobFile;
  log_issues(issues, s.config_path);
}

bool safe_key_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

/// Picks the directory of the ledger and its lock. Inside SLURM: the job file's
/// SOFTMIG_LEDGER_DIR (set by the root prolog, so every process of the job agrees), else
/// $SLURM_TMPDIR; outside SLURM or as a fallback: a private per-user directory.
void choose_ledger(Settings& s, const core::JobIdentity& job, std::string_view config_text) noexcept {
  if (job.in_slurm) {
    std::snprintf(s.ledger_key, sizeof(s.ledger_key), "%s", job.has_job_id() ? job.job_id : "unknown");
  } else {
    const char* session = env("SOFTMIG_SESSION");
    char clean[48] = "default";
    if (session != nullptr && session[0] != '\0') {
      std::size_t i = 0;
      for (; session[i] != '\0' && i + 1 < sizeof(clean); ++i) clean[i] = safe_key_char(session[i]) ? session[i] : '_';
      clean[i] = '\0';
    }
    std::snprintf(s.ledger_key, sizeof(s.ledger_key), "session-%s", clean);
  }
  char dir[400] = {};
  std::string_view from_config;
  if (job.in_slurm && core::find_setting(config_text, "SOFTMIG_LEDGER_DIR", from_config) &&
      !from_config.empty() && from_config.size() < sizeof(dir) && from_config.front() == '/') {
    std::memcpy(dir, from_config.data(), from_config.size());
  } else if (const char* tmp = path_env("SLURM_TMPDIR"); job.in_slurm && tmp != nullptr && tmp[0] == '/') {
    std::snprintf(dir, sizeof(dir), "%s", tmp);
  }
  if (dir[0] == '\0' || !usable_dir(dir)) {
    const char* base = path_env("XDG_RUNTIME_DIR");
    if (base != nullptr && base[0] == '/' && usable_dir(base)) {
      std::snprintf(dir, sizeof(dir), "%s/softmig", base);
    } else {
      std::snprintf(dir, sizeof(dir), "/tmp/softmig-%u", static_cast<unsigned>(geteuid()));
    }
    if (!ensure_private_dir(dir)) {
      log_error("no usable directory for the job's ledger (%s is not a private directory)", dir);
      return;
    }
  }
  char lock_dir[460];
  std::snprintf(lock_dir, sizeof(lock_dir), "%s/vgpulock", dir);
  if (!ensure_private_dir(lock_dir)) {
    log_error("cannot use lock directory %s", lock_dir);
    return;
  }
  std::snprintf(s.ledger_path, sizeof(s.ledger_path), "%s/cudevshr.cache.%s", dir, s.ledger_key);
  std::snprintf(s.lock_path, sizeof(s.lock_path), "%s/lock.%s", lock_dir, s.ledger_key);
}

const char* env_lookup(const char* name, void*) { return env(name); }

/// The compute-share settings: from the root-owned job file inside SLURM (a user cannot change
/// them there), from the environment outside it. Bad values keep the safe default and are
/// logged; none of them can lift a share.
void choose_compute(Settings& s, const core::JobIdentity& job, std::string_view config_text) noexcept {
  auto lookup = [&](const char* key, std::string_view& out, bool names_path = false) {
    if (job.in_slurm) return core::find_setting(config_text, key, out);
    const char* v = names_path ? path_env(key) : env(key);
    if (v == nullptr) return false;
    out = v;
    return true;
  };
  std::string_view v;
  if (lookup("SOFTMIG_SM_POLICY", v)) {
    if (v == "burst") {
      s.sm_burst = true;
    } else if (v != "strict" && !v.empty()) {
      log_error("SOFTMIG_SM_POLICY=%.*s is neither strict nor burst; using strict",
                static_cast<int>(v.size()), v.data());
    }
  }
  if (lookup("SOFTMIG_SM_PERIOD_MS", v)) {
    const auto ms = core::parse_count(v, 6);
    const std::int64_t ns = ms ? static_cast<std::int64_t>(*ms) * core::kNsPerMs : 0;
    if (ns >= core::kMinPeriodNs && ns <= core::kMaxPeriodNs) {
      s.sm_period_ns = ns;
    } else {
      log_error("SOFTMIG_SM_PERIOD_MS=%.*s is not a number of milliseconds in 10-1000; using %lld",
                static_cast<int>(v.size()), v.data(),
                static_cast<long long>(core::kDefaultPeriodNs / core::kNsPerMs));
    }
  }
  if (lookup("SOFTMIG_SM_BOARD", v, /*names_path=*/true)) {
    if (!v.empty() && v.front() == '/' && v.size() < sizeof(s.sm_board)) {
      std::memcpy(s.sm_board, v.data(), v.size());
      s.sm_board[v.size()] = '\0';
    } else {
      log_error("SOFTMIG_SM_BOARD=%.*s is not an absolute path; jobs on the GPU cannot see each "
                "other (burst mode stays within the share)",
                static_cast<int>(v.size() > 80 ? 80 : v.size()), v.data());
    }
  }
}

void load() noexcept {
  Settings& s = g_settings;
  const core::JobIdentity& job = job_identity();
  char text[kMaxConfigBytes];
  text[0] = '\0';
  if (job.in_slurm) {
    if (!job.has_job_id()) {
      s.source = LimitSource::kJobUnknown;
      s.limits = core::Limits::fail_closed();
      log_error("inside a SLURM job whose id cannot be read (SLURM_JOB_ID is not a number and "
                "the cgroup names no job); refusing all GPU memory");
    } else {
      read_job_file(s, job, text, sizeof(text));
    }
  } else {
    core::LimitIssues issues;
    s.limits = core::limits_from_env(env_lookup, nullptr, issues);
    s.source = s.limits.any() ? LimitSource::kEnvironment : LimitSource::kNone;
    log_issues(issues, "environment");
  }
  choose_ledger(s, job, text);
  choose_compute(s, job, text);
  log_info("settings: job=%s%s source=%s ledger=%s", job.in_slurm ? job.job_id : "none",
           job.from_cgroup ? " (cgroup)" : "", describe(s.source),
           s.ledger_path[0] != '\0' ? s.ledger_path : "(none)");
}

}  // namespace

const char* describe(LimitSource s) noexcept {
  switch (s) {
    case LimitSource::kNone: return "none";
    case LimitSource::kJobFile: return "job file";
    case LimitSource::kJobFileRejected: return "job file rejected (fail closed)";
    case LimitSource::kJobUnknown: return "unknown job (fail closed)";
    case LimitSource::kEnvironment: return "environment";
  }
  return "?";
}

const Settings& settings() noexcept {
  g_once.run(load);
  return g_settings;
}

}  // namespace softmig::platform
