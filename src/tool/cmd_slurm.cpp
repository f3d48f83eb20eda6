// SPDX-License-Identifier: Apache-2.0
/// @file cmd_slurm.cpp
/// @brief `softmig slurm prolog|epilog`: what slurmd runs (as root, through slurm/prolog.sh and
///        slurm/epilog.sh) before and after every job on a node.
///
/// prolog: finds the job's allocation (`scontrol -d show job`: the Prolog's environment has no
///   shard count), sizes a GPU-slice job's limits from the slice table and NVML, and writes
///   /var/run/softmig/<job>[_<task>].conf (root:root 0644, atomically) with per-UUID keys and a
///   per-job ledger directory. Whole-GPU and CPU jobs get no file.
///   A slice job's compute share gets a window of every pacing period that no other job on that
///   GPU uses (<config dir>/sm-slots/<UUID>, first fit) and an activity stamp per GPU
///   (<config dir>/board/<UUID>.<job>, owned by the job's user), for libsoftmig's time division.
/// epilog: removes the job's file(s), ledger directory, windows and stamps.
///
/// Failure policy (docs/slurm.md, "Failure modes"): exit 0 for anything transient (scontrol or
/// NVML unavailable, a bad slice table): a slice job then gets a fail-closed file (it may
/// allocate nothing) rather than no limits, and the node stays up. Exit 1 only when a slice
/// job's limits cannot be put in place at all (the directory libsoftmig reads is unusable): SLURM
/// then drains the node and requeues the job instead of running it without limits. The epilog
/// always exits 0.
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/job.hpp"
#include "tool/command.hpp"
#include "tool/slurm_job.hpp"
#include "tool/slurm_slices.hpp"
#include "tool/slurm_system.hpp"
#include "tool/tool_error.hpp"

#ifndef SOFTMIG_CONFIG_DIR
#define SOFTMIG_CONFIG_DIR "/var/run/softmig"
#endif

namespace softmig::tool {
namespace {

struct SlurmArgs {
  std::string config_dir = SOFTMIG_CONFIG_DIR;
  std::string ledger_base;  // default: <config_dir>/ledger
  std::string slices;
  std::string scontrol;
  std::string nvml;
  std::string log_file;
  int scontrol_tries = 3;
  int scontrol_timeout = 20;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] != '\0') ? std::string(v) : fallback;
}

/// Messages go to syslog (daemon facility), stderr (slurmd's log at debug levels) and, if set,
/// a file.
class Log {
 public:
  Log(const char* tag, std::string file) : tag_(tag), file_(std::move(file)) { ::openlog(tag_, LOG_PID, LOG_DAEMON); }
  ~Log() { ::closelog(); }
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;
  void info(const std::string& m) { emit(LOG_INFO, "info", m); }
  void warning(const std::string& m) { emit(LOG_WARNING, "warning", m); }
  void error(const std::string& m) { emit(LOG_ERR, "error", m); }

 private:
  void emit(int prio, const char* level, const std::string& m) {
    ::syslog(prio, "%s", m.c_str());
    fmt::print(stderr, "{}: {}: {}\n", tag_, level, m);
    if (!file_.empty()) {
      std::ofstream out(file_, std::ios::app);
      char stamp[32];
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      ::gmtime_r(&now, &tm);
      std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
      out << stamp << ' ' << tag_ << '[' << ::getpid() << "] " << level << ": " << m << '\n';
    }
  }
  const char* tag_;
  std::string file_;
};

void resolve_defaults(SlurmArgs& a) {
  if (a.slices.empty()) a.slices = env_or("SOFTMIG_SLICES_CONF", "/etc/softmig/slices.conf");
  if (a.scontrol.empty()) a.scontrol = env_or("SOFTMIG_SCONTROL", "/usr/bin/scontrol");
  if (a.nvml.empty()) a.nvml = env_or("SOFTMIG_NVML_LIBRARY", "libnvidia-ml.so.1");
  if (a.log_file.empty()) a.log_file = env_or("SOFTMIG_SLURM_LOG", "");
  if (a.ledger_base.empty()) a.ledger_base = a.config_dir + "/ledger";
}

/// The job's user and group, as SLURM hands them to the prolog (0 if absent).
std::pair<uid_t, gid_t> job_owner() {
  return {static_cast<uid_t>(std::strtoul(env_or("SLURM_JOB_UID", "0").c_str(), nullptr, 10)),
          static_cast<gid_t>(std::strtoul(env_or("SLURM_JOB_GID", "0").c_str(), nullptr, 10))};
}

std::string slots_dir(const SlurmArgs& a) { return a.config_dir + "/sm-slots"; }
std::string board_dir(const SlurmArgs& a) { return a.config_dir + "/board"; }

/// Removes the job's compute windows and activity stamps; returns what was removed, for the log.
std::string release_sm(const SlurmArgs& args, const std::string& job_id, Log& log) {
  std::vector<std::string> done;
  try {
    for (const auto& uuid : slurm::release_sm_slots(slots_dir(args), job_id)) {
      done.push_back(fmt::format("window in {}/{}", slots_dir(args), uuid));
    }
  } catch (const std::exception& e) {
    log.error(fmt::format("job {}: cannot remove its compute windows: {}", job_id, e.what()));
  }
  try {
    for (const auto& name : slurm::remove_board_files(board_dir(args), job_id)) {
      done.push_back(fmt::format("{}/{}", board_dir(args), name));
    }
  } catch (const std::exception& e) {
    log.error(fmt::format("job {}: cannot remove its activity stamps: {}", job_id, e.what()));
  }
  return fmt::format("{}", fmt::join(done, ", "));
}

/// The compute schedule of a slice job whose compute is limited: a window per GPU (first fit
/// in that GPU's table), its activity stamps, the policy. Never fails the job: what cannot be
/// done is logged and left out of the file.
void schedule_compute(const SlurmArgs& args, const std::string& job_id, const slurm::SliceTable& table,
                      slurm::Plan& plan, Log& log) {
  slurm::SmSchedule schedule;
  const std::string partition = env_or("SLURM_JOB_PARTITION", "");
  schedule.policy = table.policy_for(plan.gpu_type, partition);
  schedule.period_ms = table.sm_period_ms;
  if (plan.shares.empty()) {
    release_sm(args, job_id, log);  // an earlier run's
    log.warning(fmt::format("job {}: the GPU's UUID is unknown (no NVML): no compute window placed, the job's "
                            "window starts at the beginning of each period",
                            job_id));
  } else {
    try {
      std::vector<std::string> notes;
      for (const auto& p : slurm::place_sm_slots(slots_dir(args), job_id, plan.shares, notes)) {
        schedule.phases.push_back({p.uuid, p.choice.start});
        if (p.choice.overlap > 0) {
          unsigned length = 0;
          for (const auto& s : plan.shares) {
            if (s.uuid == p.uuid) length = s.sm_percent;
          }
          log.warning(fmt::format(
              "job {}: no free window of {} % on {} (over-subscribed GPU or stale lines in {}/{}): placed at {} %, "
              "overlapping job(s) {} by {} percent-point(s); the jobs share that time",
              job_id, length, p.uuid, slots_dir(args), p.uuid, p.choice.start, fmt::join(p.choice.overlapping_jobs, ", "),
              p.choice.overlap));
        }
      }
      for (const auto& n : notes) log.warning(fmt::format("job {}: {}", job_id, n));
    } catch (const std::exception& e) {
      schedule.phases.clear();
      log.error(fmt::format("job {}: cannot place its compute windows ({}); its windows start at the beginning of "
                            "each period and may overlap other jobs'",
                            job_id, e.what()));
    }
    const auto [uid, gid] = job_owner();
    bool board = true;
    try {
      slurm::remove_board_files(board_dir(args), job_id);  // an earlier run's, maybe on other GPUs
    } catch (const std::exception& e) {
      log.error(fmt::format("job {}: {}", job_id, e.what()));
    }
    for (const auto& share : plan.shares) {
      try {
        slurm::create_board_file(board_dir(args), share.uuid, job_id, uid, gid);
      } catch (const std::exception& e) {
        board = false;
        log.error(fmt::format("job {}: no activity stamp ({}); SOFTMIG_SM_BOARD is left out of its file", job_id,
                              e.what()));
        break;
      }
    }
    if (board) schedule.board_dir = board_dir(args);
  }
  slurm::add_sm_schedule(plan, schedule);
}

std::string job_id_from_env() {
  std::string id = env_or("SLURM_JOB_ID", "");
  if (!core::is_decimal_id(id)) {
    throw ToolError(kExitUsage, "SLURM_JOB_ID is missing or not a number: this command is run by slurmd "
                                "(Prolog=/Epilog= in slurm.conf)");
  }
  return id;
}

int prolog(const SlurmArgs& args_in) {
  SlurmArgs args = args_in;
  resolve_defaults(args);
  const std::string job_id = job_id_from_env();
  Log log("softmig-prolog", args.log_file);
  const std::string node = env_or("SLURMD_NODENAME", "");
  const std::string env_gpus = env_or("SLURM_JOB_GPUS", env_or("CUDA_VISIBLE_DEVICES", ""));

  // 1. The allocation, from scontrol (retried: slurmctld may be busy).
  std::optional<slurm::JobAllocation> job;
  std::string scontrol_error;
  for (int attempt = 1; attempt <= args.scontrol_tries && !job; ++attempt) {
    const auto r = slurm::run_command({args.scontrol, "-d", "show", "job", job_id},
                                      {"SLURM_CONF=" + env_or("SLURM_CONF", "/etc/slurm/slurm.conf")},
                                      args.scontrol_timeout);
    if (r.exit_code == 0) {
      try {
        job = slurm::parse_scontrol_job(r.output, job_id, node);
      } catch (const std::exception& e) {
        scontrol_error = e.what();
      }
    } else {
      std::string err = r.errors;
      while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
      scontrol_error = fmt::format("{} failed (exit {}): {}", args.scontrol, r.exit_code, err);
    }
    if (!job && attempt < args.scontrol_tries) std::this_thread::sleep_for(std::chrono::seconds(attempt));
  }

  slurm::Plan plan;
  std::string array_task;
  std::optional<slurm::SliceTable> table;
  if (!job) {
    if (env_gpus.empty()) {
      log.info(fmt::format("job {}: scontrol unavailable ({}), but the job has no GPU: no limits needed",
                           job_id, scontrol_error));
      slurm::remove_job_files(args.config_dir, job_id);
      return kExitOk;
    }
    // Slice or whole GPU? Unknown: fail closed (a whole-GPU job is refused GPU memory rather
    // than a slice job running unlimited).
    plan.kind = slurm::Plan::Kind::kFailClosed;
    plan.text = slurm::fail_closed_text(fmt::format("job {}", job_id),
                                        fmt::format("its allocation is unknown: {}", scontrol_error));
    plan.summary = fmt::format("job {}: GPUs {} but scontrol failed ({}): FAIL-CLOSED", job_id, env_gpus, scontrol_error);
  } else {
    array_task = job->array_task_id;
    // 2. The slice table, 3. NVML: both only needed for a slice job.
    std::string table_error;
    std::vector<slurm::GpuInfo> gpus;
    std::string nvml_error;
    std::string ledger;
    if (job->count_of("shard") > 0) {
      try {
        std::ifstream in(args.slices);
        if (!in) throw slurm::SliceTableError(fmt::format("cannot read {}", args.slices));
        std::stringstream text;
        text << in.rdbuf();
        table = slurm::parse_slice_table(text.str());
      } catch (const slurm::SliceTableError& e) {
        table_error = fmt::format("{}: {}", args.slices, e.what());
        log.error(table_error);
      }
      std::vector<unsigned> indices;
      if (auto from_env = slurm::parse_index_list(env_gpus); from_env && !from_env->empty()) {
        indices = *from_env;
      } else if (const auto* e = job->find("shard"); e != nullptr) {
        indices = e->indices;
      }
      if (indices.empty()) {
        nvml_error = "the job's GPU index is unknown (no SLURM_JOB_GPUS)";
      } else {
        try {
          gpus = slurm::query_nvml(args.nvml, indices);
        } catch (const slurm::SystemError& e) {
          nvml_error = e.what();
          log.error(fmt::format("job {}: {}", job_id, nvml_error));
        }
      }
      const auto [uid, gid] = job_owner();
      try {
        slurm::ensure_config_dir(args.config_dir);
        ledger = slurm::make_ledger_dir(args.ledger_base, job_id, uid, gid);
      } catch (const slurm::SystemError& e) {
        log.error(fmt::format("job {}: no per-job ledger directory ({}); the library falls back to "
                              "SLURM_TMPDIR or a per-user directory",
                              job_id, e.what()));
      }
    }
    plan = slurm::plan_job(*job, table ? &*table : nullptr, table_error, gpus, nvml_error, ledger);
  }

  // 4. The compute share: a window of each period on each GPU, the activity stamps. Anything
  // else (a whole GPU, a fail-closed file): no window of this job id may stay from an earlier
  // run of its prolog.
  if (plan.kind == slurm::Plan::Kind::kLimits && plan.sm_limited && table) {
    schedule_compute(args, job_id, *table, plan, log);
  } else if (const std::string removed = release_sm(args, job_id, log); !removed.empty()) {
    log.info(fmt::format("job {}: removed stale {}", job_id, removed));
  }

  // 5. Put it in place.
  const std::string name = slurm::job_file_name(job_id, array_task);
  if (plan.kind == slurm::Plan::Kind::kNoLimits) {
    try {
      for (const auto& f : slurm::remove_job_files(args.config_dir, job_id)) {
        log.info(fmt::format("job {}: removed stale {}/{}", job_id, args.config_dir, f));
      }
    } catch (const slurm::SystemError& e) {
      log.error(fmt::format("job {}: {}", job_id, e.what()));
    }
    log.info(plan.summary);
    return kExitOk;
  }
  try {
    slurm::ensure_config_dir(args.config_dir);
    slurm::write_file_atomically(args.config_dir, name, plan.text);
    slurm::remove_job_files(args.config_dir, job_id, name);
  } catch (const slurm::SystemError& e) {
    log.error(fmt::format("{}; cannot write {}/{}: {}. Failing the prolog: SLURM drains this node and "
                          "requeues the job rather than run a GPU slice without limits",
                          plan.summary, args.config_dir, name, e.what()));
    release_sm(args, job_id, log);
    return kExitFailure;
  }
  if (plan.kind == slurm::Plan::Kind::kFailClosed) {
    log.error(fmt::format("{} -> {}/{}", plan.summary, args.config_dir, name));
  } else {
    log.info(fmt::format("{} -> {}/{}", plan.summary, args.config_dir, name));
  }
  return kExitOk;
}

int epilog(const SlurmArgs& args_in) {
  SlurmArgs args = args_in;
  resolve_defaults(args);
  const std::string job_id = job_id_from_env();
  Log log("softmig-epilog", args.log_file);
  try {
    const auto removed = slurm::remove_job_files(args.config_dir, job_id);
    const bool ledger = slurm::remove_ledger_dir(args.ledger_base, job_id);
    if (!removed.empty() || ledger) {
      log.info(fmt::format("job {}: removed {}{}", job_id, fmt::join(removed, ", "),
                           ledger ? fmt::format("{}ledger {}/{}", removed.empty() ? "" : " and ", args.ledger_base, job_id)
                                  : std::string()));
    }
  } catch (const std::exception& e) {
    log.error(fmt::format("job {}: cleaning up failed: {}", job_id, e.what()));
  }
  if (const std::string sm = release_sm(args, job_id, log); !sm.empty()) {
    log.info(fmt::format("job {}: removed {}", job_id, sm));
  }
  return kExitOk;
}

void add_common_flags(CLI::App* app, SlurmArgs& a) {
  app->add_option("--config-dir", a.config_dir, "Directory of the job files (what libsoftmig reads)")
      ->capture_default_str();
  app->add_option("--ledger-base", a.ledger_base,
                  "Parent of the per-job ledger directories (default: <config-dir>/ledger)");
  app->add_option("--log", a.log_file, "Also append messages to this file (env SOFTMIG_SLURM_LOG)");
}

}  // namespace

Command add_slurm_command(CLI::App& parent) {
  auto args = std::make_shared<SlurmArgs>();
  CLI::App* app = parent.add_subcommand("slurm", "SLURM integration: the node prolog and epilog (run as root by slurmd)");
  app->require_subcommand(1, 1);
  CLI::App* pro = app->add_subcommand(
      "prolog", "Write the job's GPU-slice limits (env: SLURM_JOB_ID, SLURM_JOB_UID, SLURM_JOB_GID, SLURM_JOB_GPUS, SLURM_JOB_PARTITION)");
  add_common_flags(pro, *args);
  pro->add_option("--slices", args->slices, "Slice table (env SOFTMIG_SLICES_CONF; default /etc/softmig/slices.conf)");
  pro->add_option("--scontrol", args->scontrol, "scontrol executable (env SOFTMIG_SCONTROL; default /usr/bin/scontrol)");
  pro->add_option("--nvml-library", args->nvml, "NVML library to load (env SOFTMIG_NVML_LIBRARY; default libnvidia-ml.so.1)");
  pro->add_option("--scontrol-tries", args->scontrol_tries, "Attempts before giving up on scontrol")
      ->capture_default_str()->check(CLI::Range(1, 10));
  CLI::App* epi = app->add_subcommand(
      "epilog", "Remove the job's limits file(s), ledger directory, compute windows and activity stamps (env: SLURM_JOB_ID)");
  add_common_flags(epi, *args);
  for (CLI::App* sub : {pro, epi}) {
    for (CLI::Option* o : sub->get_options()) o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // the last one wins
  }
  return {app, [args, pro, epi] {
            if (pro->parsed()) return prolog(*args);
            if (epi->parsed()) return epilog(*args);
            return kExitUsage;
          }};
}

}  // namespace softmig::tool
