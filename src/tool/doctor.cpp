// SPDX-License-Identifier: Apache-2.0
#include "tool/doctor.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "core/limits.hpp"
#include "tool/install_check.hpp"
#include "tool/ledger_reader.hpp"
#include "tool/library_lookup.hpp"
#include "tool/preload_file.hpp"
#include "tool/tool_error.hpp"

#ifndef SOFTMIG_CONFIG_DIR
#define SOFTMIG_CONFIG_DIR "/var/run/softmig"
#endif
#ifndef SOFTMIG_LOG_DIR
#define SOFTMIG_LOG_DIR "/var/log/softmig"
#endif

namespace softmig::tool {
namespace fs = std::filesystem;
namespace {

constexpr std::size_t kMaxConfigBytes = 16384;

std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string mode_text(mode_t m) { return fmt::format("{:04o}", m & 07777); }

class Doctor {
 public:
  explicit Doctor(const DoctorOptions& o) : o_(o) {}

  std::vector<Finding> run() {
    for (const auto& name : doctor_checks()) {
      if (o_.skip.contains(name)) {
        add(Verdict::kSkipped, name, "skipped (--skip)");
        continue;
      }
      if (name == "library") library();
      if (name == "preload") preload();
      if (name == "config-dir") config_dir();
      if (name == "job-files") job_files();
      if (name == "log-dir") log_dir();
      if (name == "driver") driver();
      if (name == "nvml") nvml();
      if (name == "slice-table") slice_table();
    }
    return std::move(out_);
  }

 private:
  void add(Verdict v, const std::string& check, std::string what, std::string fix = {}) {
    out_.push_back({v, check, std::move(what), std::move(fix)});
  }
  [[nodiscard]] std::string path(const std::string& p) const { return under_root(o_.root, p); }
  [[nodiscard]] std::string shown(const std::string& p) const {
    return o_.root == "/" ? p : fmt::format("{} (under {})", p, o_.root);
  }

  /// The library the node is meant to preload, as the node sees it.
  std::string wanted_library() {
    if (!o_.library.empty()) return o_.library;
    if (const auto text = slurp(path("/etc/ld.so.preload"))) {
      for (const auto& e : preload_entries(*text)) {
        if (is_softmig_entry(e) && fs::exists(path(e))) return e;
      }
    }
    if (std::string found = find_installed_library(o_.root); !found.empty()) return found;
    if (o_.root == "/") {
      try {
        return find_library("");
      } catch (const ToolError&) {
      }
    }
    return {};
  }

  void library() {
    library_ = wanted_library();
    if (library_.empty()) {
      std::string where;
      for (const auto& l : library_locations()) where += "\n    " + path(l);
      add(Verdict::kProblem, "library", "libsoftmig.so not found; looked in:" + where,
          "install the softmig package (or give --library PATH if it lives elsewhere)");
      return;
    }
    const std::string file = path(library_);
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      add(Verdict::kProblem, "library", fmt::format("{}: {}", shown(library_), std::strerror(errno)),
          "install the softmig package, or fix the path given with --library");
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      add(Verdict::kProblem, "library", fmt::format("{} is not a regular file", shown(library_)), "reinstall the softmig package");
      return;
    }
    if (const std::string why = elf_problem(file); !why.empty()) {
      add(Verdict::kProblem, "library", fmt::format("{} is {}", shown(library_), why),
          "reinstall the softmig package built for this machine");
      return;
    }
    if (st.st_uid != 0 || (st.st_mode & 022) != 0) {
      add(Verdict::kProblem, "library",
          fmt::format("{} is owned by uid {} with mode {}: whoever can write it controls every program on the node",
                      shown(library_), st.st_uid, mode_text(st.st_mode)),
          fmt::format("chown root:root {0} && chmod 0644 {0}", library_));
      return;
    }
    const ChildReport r = try_dlopen(file, o_.timeout_ms);
    if (!r.ok) {
      add(Verdict::kProblem, "library", fmt::format("{} does not load: {}", shown(library_), r.text),
          "reinstall the softmig package; `ldd` on the library shows missing dependencies");
      return;
    }
    add(Verdict::kOk, "library", fmt::format("{}: 64-bit ELF shared library, loads", shown(library_)));
  }

  void preload() {
    const std::string file = path("/etc/ld.so.preload");
    const auto text = slurp(file);
    std::vector<std::string> softmig;
    std::vector<std::string> missing_others;
    if (text) {
      for (const auto& e : preload_entries(*text)) {
        if (is_softmig_entry(e)) {
          softmig.push_back(e);
        } else if (!e.empty() && e.front() == '/' && !fs::exists(path(e))) {
          missing_others.push_back(e);
        }
      }
    }
    for (const auto& e : missing_others) {
      add(Verdict::kWarning, "preload",
          fmt::format("/etc/ld.so.preload names {}, which does not exist: every program prints a loader error", e),
          fmt::format("remove {} from /etc/ld.so.preload", e));
    }
    if (softmig.size() > 1) {
      add(Verdict::kProblem, "preload",
          fmt::format("/etc/ld.so.preload names libsoftmig.so {} times ({}): allocations would be counted twice",
                      softmig.size(), fmt::join(softmig, ", ")),
          "softmig install-preload (keeps exactly one entry)");
      return;
    }
    if (softmig.size() == 1) {
      const std::string& e = softmig.front();
      if (!fs::exists(path(e))) {
        add(Verdict::kProblem, "preload",
            fmt::format("/etc/ld.so.preload names {}, which does not exist: programs print a loader error and run "
                        "WITHOUT limits", e),
            "softmig install-preload (points it at the installed library), or softmig remove-preload");
        return;
      }
      if (!library_.empty() && e != library_) {
        add(Verdict::kWarning, "preload",
            fmt::format("/etc/ld.so.preload names {}, but the library checked is {}", e, library_),
            "softmig install-preload --library PATH with the copy you mean");
        return;
      }
      add(Verdict::kOk, "preload", fmt::format("/etc/ld.so.preload preloads {}", e));
      return;
    }
    for (const auto& e : preload_entries(o_.ld_preload_env)) {
      if (is_softmig_entry(e)) {
        add(Verdict::kWarning, "preload",
            fmt::format("libsoftmig.so is only in this shell's LD_PRELOAD ({}); programs that do not inherit it "
                        "(ssh sessions, other jobs) run without limits", e),
            "softmig install-preload, to preload it for every program on the node");
        return;
      }
    }
    add(Verdict::kProblem, "preload",
        text ? "/etc/ld.so.preload does not name libsoftmig.so, nor does LD_PRELOAD: CUDA programs run without limits"
             : "/etc/ld.so.preload does not exist and LD_PRELOAD does not name libsoftmig.so: CUDA programs run "
               "without limits",
        "softmig install-preload   (undo: softmig remove-preload)");
  }

  void config_dir() {
    const std::string dir = path(SOFTMIG_CONFIG_DIR);
    const std::string create = fmt::format("install -d -m 0755 -o root -g root {} (the package's tmpfiles.d entry "
                                           "recreates it at boot: systemd-tmpfiles --create softmig.conf)",
                                           SOFTMIG_CONFIG_DIR);
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) {
      add(Verdict::kProblem, "config-dir",
          fmt::format("{} does not exist: the SLURM prolog cannot write job limits, so slice jobs get whole GPUs",
                      shown(SOFTMIG_CONFIG_DIR)),
          create);
      return;
    }
    if (!S_ISDIR(st.st_mode)) {
      add(Verdict::kProblem, "config-dir", fmt::format("{} is not a directory (a symbolic link is not trusted either)", shown(SOFTMIG_CONFIG_DIR)),
          fmt::format("rm {} && {}", SOFTMIG_CONFIG_DIR, create));
      return;
    }
    if (st.st_uid != 0 || (st.st_mode & 022) != 0) {
      add(Verdict::kProblem, "config-dir",
          fmt::format("{} is owned by uid {} with mode {}: the library refuses job files there (jobs get no GPU memory)",
                      shown(SOFTMIG_CONFIG_DIR), st.st_uid, mode_text(st.st_mode)),
          fmt::format("chown root:root {0} && chmod 0755 {0}", SOFTMIG_CONFIG_DIR));
      return;
    }
    add(Verdict::kOk, "config-dir", fmt::format("{}: root-owned, mode {}", shown(SOFTMIG_CONFIG_DIR), mode_text(st.st_mode)));
  }

  void job_files() {
    const std::string dir = path(SOFTMIG_CONFIG_DIR);
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".conf") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      add(Verdict::kOk, "job-files", fmt::format("no job files in {} (no slice job running)", shown(SOFTMIG_CONFIG_DIR)));
      return;
    }
    unsigned good = 0;
    for (const auto& f : files) {
      const std::string name = std::string(SOFTMIG_CONFIG_DIR) + "/" + f.filename().string();
      struct stat st {};
      if (::lstat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0) {
        add(Verdict::kProblem, "job-files",
            fmt::format("{} is not a root-owned regular file writable only by root (uid {}, mode {}): the job "
                        "is refused all GPU memory (fail closed)", name, st.st_uid, mode_text(st.st_mode)),
            fmt::format("chown root:root {0} && chmod 0644 {0} (the SLURM prolog writes these)", name));
        continue;
      }
      const auto text = slurp(f.string());
      if (!text || text->size() >= kMaxConfigBytes) {
        add(Verdict::kProblem, "job-files", fmt::format("{} cannot be read or is larger than {} bytes", name, kMaxConfigBytes - 1),
            "rewrite it from the slice table (rerun the prolog)");
        continue;
      }
      core::LimitIssues issues;
      (void)core::parse_limits_file(*text, issues);
      std::string_view ledger_dir;
      const bool bad_ledger_dir = core::find_setting(*text, "SOFTMIG_LEDGER_DIR", ledger_dir) &&
                                  (ledger_dir.empty() || ledger_dir.front() != '/');
      if (issues.count == 0 && !bad_ledger_dir) {
        ++good;
        continue;
      }
      std::string what = fmt::format("{} has problems the library resolves by refusing memory (fail closed):", name);
      for (unsigned i = 0; i < issues.count; ++i) what += fmt::format("\n    {}", issues.items[i].text);
      if (issues.dropped != 0) what += fmt::format("\n    ({} more)", issues.dropped);
      if (bad_ledger_dir) what += fmt::format("\n    SOFTMIG_LEDGER_DIR '{}' is not an absolute path", ledger_dir);
      add(Verdict::kProblem, "job-files", what,
          "fix the slice table or the prolog that wrote it; keys are CUDA_DEVICE_MEMORY_LIMIT[_N|_UUID]=SIZE and "
          "CUDA_DEVICE_SM_LIMIT[_N|_UUID]=PERCENT");
    }
    if (good != 0) add(Verdict::kOk, "job-files", fmt::format("{} job file{} parse cleanly", good, good == 1 ? "" : "s"));
  }

  void log_dir() {
    const std::string create = fmt::format("install -d -m 1733 -o root -g root {}", SOFTMIG_LOG_DIR);
    struct stat st {};
    if (::lstat(path(SOFTMIG_LOG_DIR).c_str(), &st) != 0) {
      add(Verdict::kProblem, "log-dir",
          fmt::format("{} does not exist: jobs' softmig logs cannot be kept on the node", shown(SOFTMIG_LOG_DIR)), create);
      return;
    }
    if (!S_ISDIR(st.st_mode)) {
      add(Verdict::kProblem, "log-dir", fmt::format("{} is not a directory", shown(SOFTMIG_LOG_DIR)),
          fmt::format("rm {} && {}", SOFTMIG_LOG_DIR, create));
      return;
    }
    const mode_t m = st.st_mode & 07777;
    if (st.st_uid != 0) {
      add(Verdict::kProblem, "log-dir", fmt::format("{} is owned by uid {}, not root", shown(SOFTMIG_LOG_DIR), st.st_uid),
          fmt::format("chown root:root {}", SOFTMIG_LOG_DIR));
      return;
    }
    if ((m & 0002) != 0 && (m & 01000) == 0) {
      add(Verdict::kProblem, "log-dir",
          fmt::format("{} is world-writable without the sticky bit (mode {}): users can delete each other's logs",
                      shown(SOFTMIG_LOG_DIR), mode_text(m)),
          fmt::format("chmod 1733 {}", SOFTMIG_LOG_DIR));
      return;
    }
    if ((m & 0003) != 0003) {
      add(Verdict::kWarning, "log-dir",
          fmt::format("{} (mode {}) is not writable by users: jobs log to $SLURM_TMPDIR instead", shown(SOFTMIG_LOG_DIR),
                      mode_text(m)),
          fmt::format("chmod 1733 {} (sticky, users can create but not list or delete others' logs)", SOFTMIG_LOG_DIR));
      return;
    }
    add(Verdict::kOk, "log-dir", fmt::format("{}: root-owned, mode {}", shown(SOFTMIG_LOG_DIR), mode_text(m)));
  }

  void driver() {
    const ChildReport r = probe_driver(o_.timeout_ms);
    if (!r.ok) {
      add(Verdict::kProblem, "driver", fmt::format("CUDA driver: {}", r.text),
          "install the NVIDIA driver (libcuda.so.1 must be in the loader's path: ldconfig -p | grep libcuda); "
          "`nvidia-smi` must work");
      return;
    }
    add(Verdict::kOk, "driver", fmt::format("libcuda.so.1 loads, cuInit succeeds, {} GPU(s)", r.text));
  }

  void nvml() {
    const ChildReport r = probe_nvml(o_.timeout_ms);
    if (!r.ok) {
      add(Verdict::kProblem, "nvml", fmt::format("NVML: {}", r.text),
          "install the NVIDIA driver's NVML (libnvidia-ml.so.1); softmig measures driver memory and rewrites "
          "nvidia-smi through it");
      return;
    }
    std::istringstream in(r.text);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) models_.push_back(line);
    }
    nvml_ok_ = true;
    add(Verdict::kOk, "nvml",
        fmt::format("libnvidia-ml.so.1 initialises; GPUs: {}", models_.empty() ? "none" : fmt::format("{}", fmt::join(models_, ", "))));
  }

  static std::string lower(std::string_view text) {
    std::string out;
    for (const char c : text) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }

  static std::string trim(std::string_view v) {
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front())) != 0) v.remove_prefix(1);
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back())) != 0) v.remove_suffix(1);
    return std::string(v);
  }

  /// What identifies each GPU type of a slice table (slurm/examples/slices.conf): the `match`
  /// value of a "[gpu <type>]" section, else the type itself. Compared case-insensitively with
  /// pieces of the NVML device name.
  static std::vector<std::string> table_matches(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    bool in_gpu = false;
    std::string type;
    std::string match;
    auto flush = [&] {
      if (in_gpu) out.push_back(lower(match.empty() ? type : match));
      in_gpu = false;
      match.clear();
    };
    for (std::string line; std::getline(in, line);) {
      if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
      const std::string t = trim(line);
      if (t.size() > 2 && t.front() == '[' && t.back() == ']') {
        flush();
        const std::string section = trim(std::string_view(t).substr(1, t.size() - 2));
        if (section.rfind("gpu ", 0) == 0) {
          in_gpu = true;
          type = trim(std::string_view(section).substr(4));
        }
        continue;
      }
      if (const auto eq = t.find('='); in_gpu && eq != std::string::npos && trim(std::string_view(t).substr(0, eq)) == "match") {
        match = trim(std::string_view(t).substr(eq + 1));
      }
    }
    flush();
    return out;
  }

  void slice_table() {
    const std::string table = "/etc/softmig/slices.conf";
    const auto text = slurp(path(table));
    if (!text) {
      add(Verdict::kSkipped, "slice-table",
          fmt::format("no slice table at {}; GPU models not compared (only slice jobs need one: see "
                      "/usr/share/softmig/slurm/examples/slices.conf)", shown(table)));
      return;
    }
    const std::vector<std::string> matches = table_matches(*text);
    if (matches.empty()) {
      add(Verdict::kProblem, "slice-table", fmt::format("{} defines no [gpu <type>] section", shown(table)),
          "add a section per GPU model (see /usr/share/softmig/slurm/examples/slices.conf)");
      return;
    }
    if (!nvml_ok_) {
      add(Verdict::kSkipped, "slice-table",
          fmt::format("{} has {} GPU type(s); not compared with this node's GPUs (NVML not available)", shown(table),
                      matches.size()));
      return;
    }
    std::vector<std::string> unknown;
    for (const auto& m : models_) {
      const std::string name = lower(m);
      if (std::none_of(matches.begin(), matches.end(), [&](const std::string& k) { return !k.empty() && name.find(k) != std::string::npos; })) {
        unknown.push_back(m);
      }
    }
    if (!unknown.empty()) {
      add(Verdict::kProblem, "slice-table",
          fmt::format("{} knows none of the GPU types of: {} (its types match: {}); slice jobs on them fail",
                      shown(table), fmt::join(unknown, ", "), fmt::join(matches, ", ")),
          fmt::format("add a [gpu <type>] section with `match = <piece of the NVML name>` to {}", table));
      return;
    }
    add(Verdict::kOk, "slice-table", fmt::format("{} knows every GPU model of this node", shown(table)));
  }

  const DoctorOptions& o_;
  std::vector<Finding> out_;
  std::string library_;
  std::vector<std::string> models_;
  bool nvml_ok_ = false;
};

const char* label(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kWarning: return "WARNING";
    case Verdict::kProblem: return "PROBLEM";
    case Verdict::kSkipped: return "skipped";
  }
  return "?";
}

}  // namespace

const std::vector<std::string>& doctor_checks() {
  static const std::vector<std::string> names = {"library", "preload", "config-dir", "job-files",
                                                 "log-dir", "driver",  "nvml",       "slice-table"};
  return names;
}

std::vector<Finding> run_doctor(const DoctorOptions& o) { return Doctor(o).run(); }

std::string format_findings(const std::vector<Finding>& findings) {
  std::string out;
  unsigned problems = 0;
  unsigned warnings = 0;
  for (const Finding& f : findings) {
    out += fmt::format("{:<8} {:<12} {}\n", label(f.verdict), f.check, f.what);
    if (!f.fix.empty()) out += fmt::format("{:<8} {:<12} fix: {}\n", "", "", f.fix);
    problems += f.verdict == Verdict::kProblem ? 1U : 0U;
    warnings += f.verdict == Verdict::kWarning ? 1U : 0U;
  }
  out += fmt::format("\n{} problem{}, {} warning{}: {}\n", problems, problems == 1 ? "" : "s", warnings,
                     warnings == 1 ? "" : "s", problems == 0 ? "the install looks right" : "the install needs fixing");
  return out;
}

int doctor_exit_code(const std::vector<Finding>& findings) {
  return std::any_of(findings.begin(), findings.end(), [](const Finding& f) { return f.verdict == Verdict::kProblem; })
             ? kExitFailure
             : kExitOk;
}

}  // namespace softmig::tool
