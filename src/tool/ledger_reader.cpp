// SPDX-License-Identifier: Apache-2.0
#include "tool/ledger_reader.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "core/job.hpp"
#include "core/ledger.hpp"
#include "core/limits.hpp"
#include "platform/process.hpp"
#include "platform/shared_region.hpp"

#ifndef SOFTMIG_CONFIG_DIR
#define SOFTMIG_CONFIG_DIR "/var/run/softmig"
#endif

namespace softmig::tool {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kLedgerPrefix = "cudevshr.cache.";
constexpr std::size_t kMaxConfigBytes = 16384;

std::string user_of(std::uint64_t uid) {
  passwd pw{};
  passwd* result = nullptr;
  char buf[2048];
  if (getpwuid_r(static_cast<uid_t>(uid), &pw, buf, sizeof buf, &result) == 0 && result != nullptr &&
      result->pw_name != nullptr) {
    return result->pw_name;
  }
  return std::to_string(uid);
}

std::optional<std::string> read_small_file(const std::string& path, std::size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text(limit, '\0');
  in.read(text.data(), static_cast<std::streamsize>(limit));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return fs::is_directory(fs::symlink_status(p, ec));
}

/// SOFTMIG_LEDGER_DIR of every job configuration file in `config_dir`.
std::vector<std::string> ledger_dirs_from_configs(const std::string& root, const std::string& config_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(config_dir, ec)) {
    if (e.path().extension() != ".conf" || !e.is_regular_file(ec)) continue;
    const auto text = read_small_file(e.path().string(), kMaxConfigBytes);
    std::string_view dir;
    if (text && core::find_setting(*text, "SOFTMIG_LEDGER_DIR", dir) && !dir.empty() && dir.front() == '/') {
      out.push_back(under_root(root, std::string(dir)));
    }
  }
  return out;
}

/// Directories under `parent` whose name matches `prefix` followed by digits.
std::vector<std::string> numbered_dirs(const std::string& parent, std::string_view prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    if (!core::is_decimal_id(std::string_view(name).substr(prefix.size()))) continue;
    if (is_dir(e.path().string())) out.push_back(e.path().string());
  }
  return out;
}

/// The configuration file of SLURM job `job` in `config_dir`, or empty.
std::string job_config_file(const std::string& config_dir, const std::string& job) {
  if (!core::is_decimal_id(job)) return {};
  std::error_code ec;
  std::string plain = fmt::format("{}/{}.conf", config_dir, job);
  if (fs::is_regular_file(plain, ec)) return plain;
  for (const auto& e : fs::directory_iterator(config_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > job.size() + 6 && name.compare(0, job.size() + 1, job + "_") == 0 &&
        name.size() > 5 && name.compare(name.size() - 5, 5, ".conf") == 0 &&
        core::is_decimal_id(std::string_view(name).substr(job.size() + 1, name.size() - job.size() - 6))) {
      return e.path().string();
    }
  }
  return {};
}

const char* lookup_in_map(const char* name, void* ctx) {
  const auto* m = static_cast<const std::map<std::string, std::string>*>(ctx);
  const auto it = m->find(name);
  return it == m->end() ? nullptr : it->second.c_str();
}

/// The limits in a live process's environment (sessions outside SLURM), if readable.
std::optional<core::Limits> limits_of_process(std::uint64_t pid) {
  const auto text = read_small_file(fmt::format("/proc/{}/environ", pid), 1U << 20U);
  if (!text) return std::nullopt;
  std::map<std::string, std::string> env;
  std::size_t start = 0;
  while (start < text->size()) {
    std::size_t end = text->find('\0', start);
    if (end == std::string::npos) end = text->size();
    const std::string entry = text->substr(start, end - start);
    if (const auto eq = entry.find('='); eq != std::string::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
    start = end + 1;
  }
  core::LimitIssues issues;
  return core::limits_from_env(lookup_in_map, &env, issues);
}

/// Why a ledger cannot be attached, found out again with plain reads (the attach itself only
/// logs its reason to the library's log).
std::string diagnose(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::strerror(errno);
  struct stat st {};
  std::string why;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    why = "not a regular file";
  } else if ((st.st_mode & 077) != 0) {
    why = fmt::format("not private to its owner (mode {:o}); the library refuses to use it", st.st_mode & 0777);
  } else {
    auto region = std::make_unique<core::LedgerRegion>();
    std::memset(static_cast<void*>(region.get()), 0, sizeof(core::LedgerRegion));
    const ssize_t n = ::pread(fd, region.get(), sizeof(core::LedgerRegion), 0);
    const auto size = static_cast<std::size_t>(st.st_size);
    const core::RegionCheck c = n < 0 ? core::RegionCheck::kWrongSize : core::check_region(*region, size);
    why = c == core::RegionCheck::kOk ? "cannot be mapped" : core::describe(c);
  }
  ::close(fd);
  return why;
}

/// Attaches read-only; as root, under the owner's effective uid (see the file comment).
bool attach_as_owner(platform::SharedRegion& region, const std::string& path, uid_t owner, std::string& error) {
  const uid_t me = geteuid();
  const bool switch_uid = me == 0 && owner != 0;
  if (switch_uid && seteuid(owner) != 0) {
    error = fmt::format("cannot take the owner's uid {} to read it: {}", owner, std::strerror(errno));
    return false;
  }
  const bool ok = region.attach(path.c_str(), "", "", /*create=*/false);
  if (switch_uid && seteuid(me) != 0) {
    // Never go on with another user's identity.
    std::fprintf(stderr, "softmig: cannot return to uid %u: %s\n", me, std::strerror(errno));
    std::abort();
  }
  if (!ok) error = diagnose(path);
  return ok;
}

JobView copy_ledger(const core::LedgerRegion& r, const std::string& path, const std::string& config_dir) {
  using core::load_u64;
  JobView j;
  j.ledger = path;
  j.job.assign(r.header.job_id, strnlen(r.header.job_id, sizeof(r.header.job_id)));
  j.owner_uid = r.header.owner_uid;
  j.owner = user_of(j.owner_uid);
  j.created_unix = r.header.created_unix;

  const platform::ProcLiveness liveness;
  struct Slot {
    std::uint64_t pid, uid;
    bool alive;
    std::uint64_t alloc[core::kMaxDevices], overhead[core::kMaxDevices];
  };
  std::vector<Slot> slots;
  for (const core::LedgerSlot& s : r.slots) {
    const std::uint64_t pid = load_u64(s.pid);
    if (pid == 0) continue;
    Slot c{};
    c.pid = pid;
    c.uid = load_u64(s.uid);
    c.alive = liveness.alive(pid, load_u64(s.start_time));
    for (unsigned d = 0; d < core::kMaxDevices; ++d) {
      c.alloc[d] = load_u64(s.alloc[d]);
      c.overhead[d] = load_u64(s.overhead[d]);
    }
    slots.push_back(c);
  }
  std::sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) { return a.pid < b.pid; });

  // Compute shares: a SLURM job's configuration file, else the environment of a live process.
  std::optional<core::Limits> limits;
  if (core::is_decimal_id(j.job)) {
    j.config = job_config_file(config_dir, j.job);
    if (!j.config.empty()) {
      if (const auto text = read_small_file(j.config, kMaxConfigBytes)) {
        core::LimitIssues issues;
        limits = core::parse_limits_file(*text, issues);
      }
    } else {
      limits = core::Limits{};  // a SLURM job without a file has whole GPUs
    }
  } else {
    for (const Slot& s : slots) {
      if (s.alive && (limits = limits_of_process(s.pid))) break;
    }
  }

  std::map<std::uint64_t, std::string> users;
  for (unsigned d = 0; d < core::kMaxDevices; ++d) {
    const core::LedgerDevice& dev = r.devices[d];
    if (dev.uuid[0] == '\0') continue;
    GpuView g;
    g.uuid.assign(dev.uuid, strnlen(dev.uuid, sizeof(dev.uuid)));
    const std::uint64_t limit = load_u64(dev.limit);
    if (limit != 0) g.memory_limit = limit;
    g.used = load_u64(dev.used);
    g.peak = load_u64(dev.peak);
    g.oom_refusals = load_u64(dev.oom_refusals);
    g.held_ns = load_u64(dev.held_ns);
    if (limits) {
      g.sm_percent = limits->resolve(-1, g.uuid).sm_percent;
    } else if (const std::uint64_t sm = load_u64(dev.sm_percent); sm >= 1 && sm <= 100) {
      g.sm_percent = static_cast<unsigned>(sm);  // what the job's last process enforced
    }
    for (const Slot& s : slots) {
      const std::uint64_t bytes = s.alloc[d] + s.overhead[d];
      if (!s.alive) {
        if (bytes != 0) {
          g.stale_processes += 1;
          g.stale_bytes += bytes;
        }
        continue;
      }
      if (bytes == 0) continue;
      auto [it, fresh] = users.try_emplace(s.uid);
      if (fresh) it->second = user_of(s.uid);
      g.processes.push_back(ProcessView{s.pid, s.uid, it->second, s.alloc[d], s.overhead[d]});
    }
    j.gpus.push_back(std::move(g));
  }
  return j;
}

}  // namespace

std::string under_root(const std::string& root, const std::string& path) {
  if (root.empty() || root == "/") return path;
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return path.empty() || path.front() != '/' ? r + "/" + path : r + path;
}

bool visible_to(unsigned owner, unsigned viewer) noexcept { return viewer == 0 || owner == viewer; }

std::vector<std::string> ledgers_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= kLedgerPrefix.size() || name.compare(0, kLedgerPrefix.size(), kLedgerPrefix) != 0) continue;
    if (fs::is_regular_file(fs::symlink_status(e.path(), ec))) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

DiscoveryOptions current_discovery(const std::string& root) {
  DiscoveryOptions o;
  o.root = root.empty() ? "/" : root;
  o.config_dir = under_root(o.root, SOFTMIG_CONFIG_DIR);
  if (const char* t = std::getenv("SLURM_TMPDIR"); t != nullptr && t[0] == '/') o.slurm_tmpdir = t;
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && x[0] == '/') o.xdg_runtime_dir = x;
  o.uid = static_cast<unsigned>(geteuid());
  return o;
}

Discovered discover_ledgers(const DiscoveryOptions& o) {
  Discovered out;
  std::vector<std::string> dirs = ledger_dirs_from_configs(o.root, o.config_dir);
  if (!o.slurm_tmpdir.empty()) dirs.push_back(o.slurm_tmpdir);
  if (!o.xdg_runtime_dir.empty()) dirs.push_back(o.xdg_runtime_dir + "/softmig");
  for (auto& d : numbered_dirs(under_root(o.root, "/tmp"), "softmig-")) dirs.push_back(std::move(d));
  if (o.uid == 0) {
    for (const auto& d : numbered_dirs(under_root(o.root, "/run/user"), "")) dirs.push_back(d + "/softmig");
  }
  std::set<std::string> seen_dirs;
  std::set<std::string> seen_files;
  for (const auto& d : dirs) {
    std::error_code ec;
    const std::string key = fs::weakly_canonical(d, ec).string();
    if (!seen_dirs.insert(ec ? d : key).second) continue;
    out.searched.push_back(d);
    for (const auto& f : ledgers_in(d)) {
      struct stat st {};
      if (::lstat(f.c_str(), &st) != 0 || !visible_to(st.st_uid, o.uid)) continue;
      const std::string canon = fs::weakly_canonical(f, ec).string();
      if (seen_files.insert(ec ? f : canon).second) out.ledgers.push_back(f);
    }
  }
  std::sort(out.ledgers.begin(), out.ledgers.end());
  return out;
}

std::vector<std::string> expand_ledger_arguments(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const auto& a : args) {
    if (is_dir(a)) {
      for (auto& f : ledgers_in(a)) out.push_back(std::move(f));
    } else {
      out.push_back(a);
    }
  }
  return out;
}

Snapshot read_snapshot(const std::vector<std::string>& ledgers, const std::string& config_dir) {
  Snapshot s;
  for (const auto& path : ledgers) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      s.problems.push_back({path, std::strerror(errno)});
      continue;
    }
    if (!visible_to(st.st_uid, static_cast<unsigned>(geteuid()))) {
      s.problems.push_back({path, fmt::format("owned by uid {}; only its owner and root may read it", st.st_uid)});
      continue;
    }
    platform::SharedRegion region;
    std::string error;
    if (!attach_as_owner(region, path, st.st_uid, error)) {
      s.problems.push_back({path, error});
      continue;
    }
    s.jobs.push_back(copy_ledger(*region.region(), path, config_dir));
  }
  std::sort(s.jobs.begin(), s.jobs.end(), [](const JobView& a, const JobView& b) {
    return a.job != b.job ? a.job < b.job : a.ledger < b.ledger;
  });
  return s;
}

}  // namespace softmig::tool
