// SPDX-License-Identifier: Apache-2.0
/// @file tamper.cpp
/// @brief Tamper resistance inside a SLURM job, simulated without SLURM: as root the test puts a
///        process into a cgroup v1 directory named job_<id> (how the library recognises a job),
///        writes the root-owned job file SOFTMIG_CONFIG_DIR/<id>.conf (a 1 GiB slice), and runs
///        the job's processes as an ordinary user (nobody). Each subcommand is one kind of attempt
///        to get more than the slice, to write where the user may not, or to read another user's
///        ledger; every attempt is run and must be blocked. Job ids are 99<pid>, which no real
///        job has; everything the test creates is removed at the end.
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>

#include "platform/env.hpp"
#include "reliability.hpp"

extern char** environ;

namespace reltest {

using namespace memtest;  // NOLINT(google-build-using-namespace): the tests' shared helpers

namespace {

constexpr uid_t kJobUser = 65534;    // nobody: the job's owner
constexpr uid_t kOtherUser = 65533;  // another user of the node
constexpr std::uint64_t kSlice = kGiB;
constexpr std::uint64_t kStep = 64 * kMiB;
/// What a process of the job obtains in 64 MiB steps: the slice less its 300 MiB context.
constexpr std::uint64_t kFull = (kSlice - kContext) / kStep * kStep;

struct Job {
  std::string id;
  std::string dir;      // the job's private directory: ledger, fake state, logs
  std::string cgroup;   // .../job_<id>
  std::string conf;     // SOFTMIG_CONFIG_DIR/<id>.conf
  std::vector<std::string> extra_files;  // other files to remove at the end
  [[nodiscard]] std::string ledger() const { return dir + "/cudevshr.cache." + id; }
};

Job g_job;
std::string g_self;

void write_root_file(const std::string& path, const std::string& text, unsigned mode, uid_t owner = 0) {
  write_bytes(path, text, mode);
  MT_CHECK(::chown(path.c_str(), owner, owner) == 0, "chown %s", path.c_str());
  MT_CHECK(::chmod(path.c_str(), mode) == 0, "chmod %s", path.c_str());
}

std::string job_conf_text(const std::string& limit) {
  return "CUDA_DEVICE_MEMORY_LIMIT=" + limit + "\nSOFTMIG_LEDGER_DIR=" + g_job.dir + "\n";
}

/// Creates the job: a cgroup job_<id> in a writable cgroup v1 (or v2) hierarchy, the job's
/// directory owned by the job's user, and its root-owned job file. False if it cannot.
bool setup_job() {
  g_job.id = "99" + std::to_string(getpid());
  g_job.dir = "/tmp/softmig-tamper-" + g_job.id;
  std::filesystem::remove_all(g_job.dir);
  MT_CHECK(::mkdir(g_job.dir.c_str(), 0700) == 0, "mkdir %s", g_job.dir.c_str());
  MT_CHECK(::chown(g_job.dir.c_str(), kJobUser, kJobUser) == 0, "chown %s", g_job.dir.c_str());
  for (const char* base : {"/sys/fs/cgroup/pids", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/cpu",
                           "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    const std::string parent = std::string(base) + "/softmig_tamper_" + g_job.id;
    const std::string cg = parent + "/job_" + g_job.id;
    if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) continue;
    if (::mkdir(cg.c_str(), 0755) != 0 && errno != EEXIST) {
      ::rmdir(parent.c_str());
      continue;
    }
    if (::access((cg + "/cgroup.procs").c_str(), W_OK) != 0) {
      ::rmdir(cg.c_str());
      ::rmdir(parent.c_str());
      continue;
    }
    g_job.cgroup = cg;
    break;
  }
  if (g_job.cgroup.empty()) return false;
  const std::string dir = SOFTMIG_TEST_CONFIG_DIR;
  if (::mkdir(dir.c_str(), 0755) != 0) MT_CHECK(errno == EEXIST, "mkdir %s", dir.c_str());
  struct stat st {};
  MT_CHECK(::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 022) == 0,
           "%s must be a root-owned directory not writable by others", dir.c_str());
  g_job.conf = dir + "/" + g_job.id + ".conf";
  write_root_file(g_job.conf, job_conf_text("1G"), 0644);
  return true;
}

/// The id of the "other job" whose file attempt_slurm_vars plants, for the tamper process `pid`.
std::string other_job_id(pid_t pid) { return "98" + std::to_string(pid); }

void cleanup_job() {
  if (!g_job.conf.empty()) ::unlink(g_job.conf.c_str());
  ::unlink((std::string(SOFTMIG_TEST_CONFIG_DIR) + "/" + other_job_id(getpid()) + ".conf").c_str());
  for (const std::string& f : g_job.extra_files) ::unlink(f.c_str());
  if (!g_job.cgroup.empty()) {
    for (int i = 0; i < 100 && ::rmdir(g_job.cgroup.c_str()) != 0 && errno == EBUSY; ++i) sleep_ms(10);
    ::rmdir(g_job.cgroup.substr(0, g_job.cgroup.rfind('/')).c_str());
  }
  std::error_code ec;
  std::filesystem::remove_all(g_job.dir, ec);
}

struct Outcome {
  bool exited = false;
  int status = -1;
  std::uint64_t obtained = 0;
  bool saw_softmig = true;  // every lookup returned softmig's wrapper
  std::string out;
};

/// A process of the job: `reliability_victim tamper-child <args>` as `uid`, inside the job's
/// cgroup unless `in_job` is false, with the job's base environment changed by `env`
/// ("VAR=value" sets, "-VAR" removes). Its stdout is `from`; its stdin is `to` (or /dev/null).
struct Spawned {
  pid_t pid = -1;
  int to = -1;
  int from = -1;
};

Spawned spawn(const std::vector<std::string>& args, const std::vector<std::string>& env, uid_t uid, bool in_job,
              const std::string& program, bool with_stdin) {
  std::vector<std::string> e = {"LD_PRELOAD=" SOFTMIG_TEST_LIBRARY,
                                "LD_LIBRARY_PATH=" SOFTMIG_TEST_FAKE_DIR,
                                "SOFTMIG_FAKE_STATE=" + g_job.dir + "/fake.state",
                                "MEMORY_VICTIM_FRESH=1",
                                "PATH=/usr/bin:/bin"};
  for (const std::string& v : env) {
    const std::string name = v[0] == '-' ? v.substr(1) : v.substr(0, v.find('='));
    std::erase_if(e, [&](const std::string& x) { return x.compare(0, name.size() + 1, name + "=") == 0; });
    if (v[0] != '-') e.push_back(v);
  }
  std::vector<char*> envp;
  for (std::string& x : e) envp.push_back(x.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_s = {"reliability_victim", "tamper-child"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& x : argv_s) argv.push_back(x.data());
  argv.push_back(nullptr);
  int out[2];
  int in[2] = {-1, -1};
  // Close-on-exec: another process of the job spawned later must not keep this one's stdin open.
  MT_CHECK(::pipe2(out, O_CLOEXEC) == 0 && (!with_stdin || ::pipe2(in, O_CLOEXEC) == 0), "pipe");
  const pid_t pid = fork_child(role() + " child");
  if (pid == 0) {
    ::close(out[0]);
    ::dup2(out[1], 1);
    if (with_stdin) {
      ::close(in[1]);
      ::dup2(in[0], 0);
    }
    if (in_job) {
      const std::string procs = g_job.cgroup + "/cgroup.procs";
      const std::string me = std::to_string(getpid());
      const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, me.data(), me.size()) != static_cast<ssize_t>(me.size())) std::_Exit(90);
      ::close(fd);
    }
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) std::_Exit(91);
    ::execve(program.c_str(), argv.data(), envp.data());
    std::_Exit(92);
  }
  ::close(out[1]);
  Spawned sp;
  sp.pid = pid;
  sp.from = out[0];
  if (with_stdin) {
    ::close(in[0]);
    sp.to = in[1];
  }
  return sp;
}

/// Reads the rest of a spawned process's output, waits for it and parses "obtained=".
Outcome finish(Spawned& sp) {
  if (sp.to >= 0) ::close(sp.to);
  sp.to = -1;
  Outcome o;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(sp.from, buf, sizeof buf);
    if (n <= 0) break;
    o.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(sp.from);
  const int status = reap(sp.pid, 60000);
  o.exited = WIFEXITED(status);
  o.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  unsigned long long got = 0;
  int softmig = 1;
  const std::size_t at = o.out.find("obtained=");
  if (at != std::string::npos) std::sscanf(o.out.c_str() + at, "obtained=%llu softmig=%d", &got, &softmig);
  o.obtained = got;
  o.saw_softmig = softmig != 0;
  MT_CHECK(o.exited && o.status == 0, "the job's process failed (status %d): %s", o.status, o.out.c_str());
  return o;
}

/// Runs a process of the job to its end (see spawn()).
Outcome run_child(const std::vector<std::string>& args, const std::vector<std::string>& env, uid_t uid = kJobUser,
                  bool in_job = true, const std::string& program = g_self) {
  Spawned sp = spawn(args, env, uid, in_job, program, /*with_stdin=*/false);
  return finish(sp);
}

/// A process of the job that stays alive and allocates when told to (`tamper-child interactive`).
class Holder {
 public:
  explicit Holder(const std::vector<std::string>& env = {})
      : sp_(spawn({"interactive"}, env, kJobUser, true, g_self, /*with_stdin=*/true)) {
    (void)answer("ready");
  }
  ~Holder() {
    if (sp_.pid > 0) (void)finish(sp_);
  }
  Holder(const Holder&) = delete;
  Holder& operator=(const Holder&) = delete;
  [[nodiscard]] pid_t pid() const { return sp_.pid; }
  /// Allocates up to `blocks` blocks of kStep (0: until refused); returns the bytes obtained.
  std::uint64_t fill(int blocks = 0) {
    say("fill " + std::to_string(blocks));
    return std::strtoull(answer("got=").c_str(), nullptr, 10);
  }
  /// Frees everything this process allocated.
  void free_all() {
    say("free");
    (void)answer("freed");
  }
  Outcome stop() {
    Outcome o = finish(sp_);
    sp_.pid = -1;
    return o;
  }

 private:
  void say(const std::string& line) {
    const std::string l = line + "\n";
    MT_CHECK(::write(sp_.to, l.data(), l.size()) == static_cast<ssize_t>(l.size()), "write to the job's process");
  }
  /// Waits (at most 60 s) for a line starting with `prefix`; returns the rest of it.
  std::string answer(const std::string& prefix) {
    for (int waited = 0;;) {
      for (std::size_t nl = buf_.find('\n'); nl != std::string::npos; nl = buf_.find('\n')) {
        const std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (line.compare(0, prefix.size(), prefix) == 0) return line.substr(prefix.size());
      }
      pollfd p{sp_.from, POLLIN, 0};
      MT_CHECK(::poll(&p, 1, 1000) >= 0, "poll");
      if ((p.revents & (POLLIN | POLLHUP)) != 0) {
        char buf[512];
        const ssize_t n = ::read(sp_.from, buf, sizeof buf);
        MT_CHECK(n > 0, "the job's process %d ended before answering '%s': %s", static_cast<int>(sp_.pid),
                 prefix.c_str(), buf_.c_str());
        buf_.append(buf, static_cast<std::size_t>(n));
      } else {
        MT_CHECK(++waited < 60, "no answer '%s' from the job's process %d", prefix.c_str(), static_cast<int>(sp_.pid));
      }
    }
  }
  Spawned sp_;
  std::string buf_;
};

struct Tally {
  const char* name;
  int tried = 0;
  int blocked = 0;
  /// One attempt: `ok` means the attempt was blocked.
  void attempt(bool ok, const char* what, const Outcome& o) {
    ++tried;
    if (ok) {
      ++blocked;
      note("blocked: %s (obtained %s)", what, mib(o.obtained).c_str());
    } else {
      std::fprintf(stderr, "NOT BLOCKED: %s: obtained %s; output: %s\n", what, mib(o.obtained).c_str(), o.out.c_str());
    }
  }
  int finish() const {
    std::printf("tamper %s: %d attempts, %d blocked\n", name, tried, blocked);
    return tried > 0 && tried == blocked ? 0 : 1;
  }
};

/// The job's process gets exactly its slice: the baseline every attempt is compared with.
void baseline() {
  const Outcome o = run_child({"fill"}, {});
  MT_CHECK(o.obtained == kFull, "baseline: a process of the job obtained %s, expected %s (is the job set up?)",
           mib(o.obtained).c_str(), mib(kFull).c_str());
}

/// Attempts that change the environment of a process of the job.
int env_attempts(Tally& t, const std::vector<std::pair<const char*, std::vector<std::string>>>& attempts) {
  baseline();
  for (const auto& [what, env] : attempts) {
    const Outcome o = run_child({"fill"}, env);
    t.attempt(o.obtained <= kFull, what, o);
  }
  return t.finish();
}

int attempt_env_limits() {
  Tally t{"env-limits"};
  return env_attempts(t, {
      {"CUDA_DEVICE_MEMORY_LIMIT=100G", {"CUDA_DEVICE_MEMORY_LIMIT=100G"}},
      {"CUDA_DEVICE_MEMORY_LIMIT_0=100G", {"CUDA_DEVICE_MEMORY_LIMIT_0=100G"}},
      {"CUDA_DEVICE_MEMORY_LIMIT=0 (no limit)", {"CUDA_DEVICE_MEMORY_LIMIT=0"}},
      {"CUDA_DEVICE_MEMORY_LIMIT unset", {"-CUDA_DEVICE_MEMORY_LIMIT", "-CUDA_DEVICE_MEMORY_LIMIT_0"}},
      {"CUDA_DEVICE_SM_LIMIT=100 and memory 16G", {"CUDA_DEVICE_SM_LIMIT=100", "CUDA_DEVICE_MEMORY_LIMIT=16G"}},
  });
}

int attempt_slurm_vars() {
  Tally t{"slurm-vars"};
  // Another job with a large slice, whose root-owned file exists: naming it must not help.
  // The attempts run in a child: the name derives from the parent's pid, which removes it.
  const std::string other = other_job_id(getppid());
  const std::string other_conf = std::string(SOFTMIG_TEST_CONFIG_DIR) + "/" + other + ".conf";
  write_root_file(other_conf, "CUDA_DEVICE_MEMORY_LIMIT=16G\n", 0644);
  return env_attempts(t, {
      {"SLURM_JOB_ID of another job with a 16G slice", {"SLURM_JOB_ID=" + other}},
      {"SLURM_JOB_ID of a job without a file", {"SLURM_JOB_ID=1"}},
      {"SLURM_JOB_ID empty", {"SLURM_JOB_ID="}},
      {"SLURM_JOB_ID not a number", {"SLURM_JOB_ID=none"}},
      {"SLURM_ARRAY_TASK_ID=7", {"SLURM_JOB_ID=" + other, "SLURM_ARRAY_TASK_ID=7"}},
      {"SLURM_TMPDIR elsewhere", {"SLURM_TMPDIR=/tmp"}},
  });
}

int attempt_softmig_vars() {
  Tally t{"softmig-vars"};
  // A user-writable configuration directory with a generous job file.
  const std::string fake_dir = g_job.dir + "/conf";
  MT_CHECK(::mkdir(fake_dir.c_str(), 0700) == 0 && ::chown(fake_dir.c_str(), kJobUser, kJobUser) == 0, "mkdir");
  write_root_file(fake_dir + "/" + g_job.id + ".conf", "CUDA_DEVICE_MEMORY_LIMIT=100G\n", 0600, kJobUser);
  return env_attempts(t, {
      {"SOFTMIG_CONFIG_DIR pointing at a user-written job file", {"SOFTMIG_CONFIG_DIR=" + fake_dir}},
      {"SOFTMIG_SESSION", {"SOFTMIG_SESSION=escape"}},
      {"SOFTMIG_LEDGER_DIR elsewhere", {"SOFTMIG_LEDGER_DIR=" + fake_dir}},
      {"SOFTMIG_LOG_FILE and SOFTMIG_DISABLE", {"SOFTMIG_LOG_FILE=" + fake_dir + "/log", "SOFTMIG_DISABLE=1"}},
      {"SOFTMIG_* and CUDA limits together",
       {"SOFTMIG_CONFIG_DIR=" + fake_dir, "CUDA_DEVICE_MEMORY_LIMIT=100G", "-SLURM_JOB_ID"}},
  });
}

int attempt_log_level() {
  Tally t{"log-level"};
  return env_attempts(t, {
      {"LIBCUDA_LOG_LEVEL=4", {"LIBCUDA_LOG_LEVEL=4"}},
      {"LIBCUDA_LOG_LEVEL=junk", {"LIBCUDA_LOG_LEVEL=-1x"}},
      {"LIBCUDA_LOG_LEVEL=0", {"LIBCUDA_LOG_LEVEL=0"}},
  });
}

/// Maps the job's ledger (as root) and lets `edit` change it.
void edit_ledger(const std::function<void(core::LedgerRegion&)>& edit) {
  const int fd = ::open(g_job.ledger().c_str(), O_RDWR | O_CLOEXEC);
  MT_CHECK(fd >= 0, "cannot open %s", g_job.ledger().c_str());
  void* p = ::mmap(nullptr, sizeof(core::LedgerRegion), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  MT_CHECK(p != MAP_FAILED, "mmap");
  edit(*static_cast<core::LedgerRegion*>(p));
  ::munmap(p, sizeof(core::LedgerRegion));
  ::close(fd);
}

int attempt_ledger() {
  Tally t{"ledger"};
  baseline();  // creates the ledger
  edit_ledger([](core::LedgerRegion& r) {
    for (core::LedgerDevice& d : r.devices) d.limit = 100 * kGiB;
  });
  Outcome o = run_child({"fill"}, {});
  t.attempt(o.obtained == kFull, "the ledger's limit fields set to 100G", o);
  edit_ledger([](core::LedgerRegion& r) {
    for (core::LedgerDevice& d : r.devices) d.used = 0;
    for (core::LedgerSlot& s : r.slots) std::memset(s.alloc, 0, sizeof s.alloc);
  });
  o = run_child({"fill"}, {});
  t.attempt(o.obtained == kFull, "the ledger's usage zeroed: one process still gets only its slice", o);
  // Replacements: whatever the user puts there, allocations fail closed or stay in the slice.
  const std::string path = g_job.ledger();
  const std::string good = read_bytes(path);
  struct Replacement {
    const char* what;
    std::function<void()> make;
    bool fails_closed;
  };
  const std::vector<Replacement> replacements = {
      {"replaced by random bytes", [&] {
         std::string junk(sizeof(core::LedgerRegion), '\0');
         for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 2654435761U) >> 13U);
         write_root_file(path, junk, 0600, kJobUser);
       }, true},
      {"replaced by a truncated copy", [&] { write_root_file(path, good.substr(0, 4096), 0600, kJobUser); }, true},
      {"replaced by a copy of another version", [&] {
         std::string v = good;
         v[8] = 7;
         write_root_file(path, v, 0600, kJobUser);
       }, true},
      {"replaced by a symbolic link", [&] {
         write_root_file(g_job.dir + "/elsewhere", good, 0600, kJobUser);
         ::unlink(path.c_str());
         MT_CHECK(::symlink((g_job.dir + "/elsewhere").c_str(), path.c_str()) == 0, "symlink");
         MT_CHECK(::lchown(path.c_str(), kJobUser, kJobUser) == 0, "lchown");
       }, true},
      {"replaced by a world-readable copy", [&] { write_root_file(path, good, 0644, kJobUser); }, true},
      {"replaced by a fresh, empty ledger", [&] { ::unlink(path.c_str()); }, false},
  };
  for (const Replacement& r : replacements) {
    r.make();
    o = run_child({"fill"}, {});
    t.attempt(r.fails_closed ? o.obtained == 0 : o.obtained == kFull, r.what, o);
    ::unlink(path.c_str());
  }
  return t.finish();
}

/// Maps the job's ledger (as root) and lets `slot` change the slot of process `pid`, and
/// `device` every device entry: what a user who edits the file by hand (it is theirs) can do.
void edit_ledger_of(pid_t pid, const std::function<void(core::LedgerSlot&)>& slot,
                    const std::function<void(core::LedgerDevice&)>& device) {
  edit_ledger([&](core::LedgerRegion& r) {
    bool found = false;
    for (core::LedgerSlot& s : r.slots) {
      if (s.pid == static_cast<std::uint64_t>(pid)) {
        slot(s);
        found = true;
      }
    }
    MT_CHECK(found, "process %d has no slot in the job's ledger", static_cast<int>(pid));
    for (core::LedgerDevice& d : r.devices) device(d);
  });
}

void zero_bytes(core::LedgerSlot& s) {
  std::memset(s.alloc, 0, sizeof s.alloc);
  std::memset(s.overhead, 0, sizeof s.overhead);
}
void zero_total(core::LedgerDevice& d) { d.used = 0; }
void keep_total(core::LedgerDevice& /*d*/) {}

/// Lowering the job's recorded usage in the ledger (the file is the user's) must not let the
/// job's processes together hold more than the slice: a reservation that cannot trust the ledger
/// counts what NVML shows of the job's processes (its cgroup) beyond it. Each attempt leaves one
/// process holding memory, edits the file, and allocates from another (or the same) process.
int attempt_ledger_edits() {
  Tally t{"ledger-edits"};
  baseline();
  ::unlink(g_job.ledger().c_str());
  {
    // Control: processes sharing the slice without edits get exactly what is free, including
    // after another process frees memory (which makes the others check with NVML).
    Holder a;
    Holder b;
    MT_CHECK(a.fill(3) == 3 * kStep, "control: the first process got less than 3 blocks");
    const std::uint64_t b_first = b.fill();
    const std::uint64_t free_then = (kSlice - 2 * kContext - 3 * kStep) / kStep * kStep;
    MT_CHECK(b_first == free_then, "control: the second process got %s, expected %s", mib(b_first).c_str(),
             mib(free_then).c_str());
    a.free_all();
    const std::uint64_t b_more = b.fill();
    const std::uint64_t free_now = (kSlice - 2 * kContext - b_first) / kStep * kStep;
    MT_CHECK(b_more == free_now, "control: after the first process freed, the second got %s, expected %s",
             mib(b_more).c_str(), mib(free_now).c_str());
    MT_CHECK(a.fill() == 0, "control: the slice is full, yet the first process got more");
    note("control: two processes shared the slice exactly (%s, then %s more after a free)", mib(b_first).c_str(),
         mib(b_more).c_str());
  }
  ::unlink(g_job.ledger().c_str());
  {
    // (a1) Another live process's slot and the device total zeroed; a new process fills.
    Holder a;
    MT_CHECK(a.fill() == kFull, "a process of the job did not get the slice");
    edit_ledger_of(a.pid(), zero_bytes, zero_total);
    const Outcome o = run_child({"fill"}, {});
    t.attempt(o.obtained == 0, "a live process's slot and the total zeroed; a new process fills", o);
  }
  ::unlink(g_job.ledger().c_str());
  {
    // (a2) The same, allocating from a process that was running (and trusted the ledger) before.
    Holder b;
    MT_CHECK(b.fill(1) == kStep, "one block");
    Holder a;
    const std::uint64_t a_got = a.fill();
    MT_CHECK(a_got == (kSlice - 2 * kContext - kStep) / kStep * kStep, "the second process got %s",
             mib(a_got).c_str());
    edit_ledger_of(a.pid(), zero_bytes, zero_total);
    Outcome o;
    o.obtained = b.fill();
    t.attempt(o.obtained == 0, "another process's slot and the total zeroed; a running process fills", o);
  }
  ::unlink(g_job.ledger().c_str());
  {
    // (a3) The slot emptied altogether: the process is no longer a member of the ledger.
    Holder a;
    MT_CHECK(a.fill() == kFull, "a process of the job did not get the slice");
    edit_ledger_of(
        a.pid(),
        [](core::LedgerSlot& s) {
          zero_bytes(s);
          s.pid = 0;
        },
        zero_total);
    Outcome o = run_child({"fill"}, {});
    t.attempt(o.obtained == 0, "a live process's slot emptied and the total zeroed; a new process fills", o);
    o = Outcome{};
    o.obtained = a.fill();
    t.attempt(o.obtained == 0, "the process whose slot was emptied fills again", o);
  }
  ::unlink(g_job.ledger().c_str());
  {
    // (a4) The start time rewritten: the slot looks like a dead process's and is reaped.
    Holder a;
    MT_CHECK(a.fill() == kFull, "a process of the job did not get the slice");
    edit_ledger_of(a.pid(), [](core::LedgerSlot& s) { s.start_time += 1; }, keep_total);
    Outcome o = run_child({"fill"}, {});
    t.attempt(o.obtained == 0, "a live process's start time rewritten (reaped as dead); a new process fills", o);
    o = Outcome{};
    o.obtained = a.fill();
    t.attempt(o.obtained == 0, "the process that was reaped fills again", o);
  }
  return t.finish();
}

/// The ledger deleted while processes of the job run (its directory is the user's): processes
/// that start afterwards create a fresh, empty one.
int attempt_ledger_replaced() {
  Tally t{"ledger-replaced"};
  baseline();
  ::unlink(g_job.ledger().c_str());
  {
    // (b1) A process holds the slice; the ledger is deleted; a new process fills.
    Holder a;
    MT_CHECK(a.fill() == kFull, "a process of the job did not get the slice");
    MT_CHECK(::unlink(g_job.ledger().c_str()) == 0, "unlink the ledger");
    const Outcome o = run_child({"fill"}, {});
    t.attempt(o.obtained == 0, "the ledger deleted under a process that holds the slice; a new process fills", o);
  }
  ::unlink(g_job.ledger().c_str());
  {
    // (b2) Both sides keep allocating: the process that started after the deletion (bounded by
    // NVML), then, later, the one that still maps the deleted file.
    Holder a;
    const std::uint64_t a_got = a.fill(5);
    MT_CHECK(a_got == 5 * kStep, "five blocks");
    MT_CHECK(::unlink(g_job.ledger().c_str()) == 0, "unlink the ledger");
    Holder b;
    Outcome o;
    o.obtained = b.fill();
    const std::uint64_t left = (kSlice - 2 * kContext - a_got) / kStep * kStep;
    t.attempt(o.obtained <= left, "after the deletion, a new process fills beside one that holds memory", o);
    const std::uint64_t b_got = o.obtained;
    sleep_ms(250);  // past the interval at which a process checks the ledger's path
    o.obtained = a.fill();
    t.attempt(o.obtained == 0, "after the deletion, the process that maps the deleted ledger fills again", o);
    (void)a.stop();
    const std::uint64_t b_more = b.fill();
    MT_CHECK(b_got + b_more == kFull, "once the other process exited, the new one holds %s, expected the slice (%s)",
             mib(b_got + b_more).c_str(), mib(kFull).c_str());
  }
  return t.finish();
}

int attempt_config() {
  Tally t{"config"};
  baseline();
  struct Bad {
    const char* what;
    unsigned mode;
    uid_t owner;
  };
  for (const Bad& b : {Bad{"job file owned by the user", 0644, kJobUser}, Bad{"job file writable by others", 0646, 0},
                       Bad{"job file writable by the group", 0664, 0}}) {
    write_root_file(g_job.conf, job_conf_text("100G"), b.mode, b.owner);
    const Outcome o = run_child({"fill"}, {});
    t.attempt(o.obtained == 0, b.what, o);  // untrustworthy: fail closed, not "no limit"
  }
  // A symbolic link in the configuration directory to a root-owned file elsewhere.
  const std::string target = g_job.dir + "/root.conf";
  write_root_file(target, job_conf_text("100G"), 0644);
  ::unlink(g_job.conf.c_str());
  MT_CHECK(::symlink(target.c_str(), g_job.conf.c_str()) == 0, "symlink");
  Outcome o = run_child({"fill"}, {});
  t.attempt(o.obtained == 0, "job file is a symbolic link", o);
  ::unlink(g_job.conf.c_str());
  write_root_file(g_job.conf, job_conf_text("1G"), 0644);
  o = run_child({"fill"}, {});
  MT_CHECK(o.obtained == kFull, "a good job file again: obtained %s", mib(o.obtained).c_str());
  return t.finish();
}

int attempt_dlsym() {
  Tally t{"dlsym"};
  baseline();
  for (const char* how : {"next", "library", "library-env", "handle", "default"}) {
    const Outcome o = run_child({"dlsym", how}, {});
    const std::string what = std::string("cuMemAlloc_v2 through dlsym (") + how + ")";
    t.attempt(o.saw_softmig && o.obtained <= kFull, what.c_str(), o);
  }
  return t.finish();
}

int attempt_log_symlink() {
  Tally t{"log-symlink"};
  baseline();
  const std::string target = g_job.dir + "/precious";
  write_root_file(target, "", 0600, kJobUser);
  // 1. SOFTMIG_LOG_FILE names a symbolic link.
  const std::string link = g_job.dir + "/softmig.log";
  MT_CHECK(::symlink(target.c_str(), link.c_str()) == 0, "symlink");
  Outcome o = run_child({"fill"}, {"LIBCUDA_LOG_LEVEL=4", "SOFTMIG_LOG_FILE=" + link});
  t.attempt(read_bytes(target).empty(), "SOFTMIG_LOG_FILE is a symbolic link", o);
  // 2. The default per-job log in SLURM_TMPDIR is a symbolic link. A control run first: without
  //    the link, the log is written there (so the attempt is not vacuous).
  const std::string tmpdir = g_job.dir + "/tmpdir";
  MT_CHECK(::mkdir(tmpdir.c_str(), 0700) == 0 && ::chown(tmpdir.c_str(), kJobUser, kJobUser) == 0, "mkdir");
  const std::string job_log = tmpdir + "/softmig_" + g_job.id + ".log";
  o = run_child({"fill"}, {"LIBCUDA_LOG_LEVEL=4", "SLURM_TMPDIR=" + tmpdir});
  const bool default_log_used = !read_bytes(job_log).empty();
  if (default_log_used) {
    ::unlink(job_log.c_str());
    MT_CHECK(::symlink(target.c_str(), job_log.c_str()) == 0, "symlink");
    MT_CHECK(::lchown(job_log.c_str(), kJobUser, kJobUser) == 0, "lchown");
    o = run_child({"fill"}, {"LIBCUDA_LOG_LEVEL=4", "SLURM_TMPDIR=" + tmpdir});
    t.attempt(read_bytes(target).empty(), "the job's log in SLURM_TMPDIR is a symbolic link", o);
  } else {
    note("the job's log went to %s/ (it exists): SLURM_TMPDIR's fallback is not tried", SOFTMIG_TEST_LOG_DIR);
  }
  // 3. A FIFO at the log path must not block the program.
  const std::string fifo = g_job.dir + "/fifo.log";
  MT_CHECK(::mkfifo(fifo.c_str(), 0600) == 0 && ::chown(fifo.c_str(), kJobUser, kJobUser) == 0, "mkfifo");
  o = run_child({"fill"}, {"LIBCUDA_LOG_LEVEL=4", "SOFTMIG_LOG_FILE=" + fifo});
  t.attempt(o.obtained == kFull, "SOFTMIG_LOG_FILE is a FIFO", o);
  return t.finish();
}

int attempt_secure_exec() {
  Tally t{"secure-exec"};
  // A setuid-root copy of this program, run by the job's user: a secure-exec process. It loads
  // libsoftmig.so itself (as /etc/ld.so.preload would put it there) and makes CUDA calls with
  // logging on and SOFTMIG_LOG_FILE pointing into a directory the user owns.
  const std::string dir = g_job.dir + "/suid";
  MT_CHECK(::mkdir(dir.c_str(), 0755) == 0, "mkdir");
  const std::string copy = dir + "/reliability_victim";
  write_root_file(copy, read_bytes(g_self), 0755);
  const std::string logs = g_job.dir + "/logs";
  MT_CHECK(::mkdir(logs.c_str(), 0700) == 0 && ::chown(logs.c_str(), kJobUser, kJobUser) == 0, "mkdir");
  const std::vector<std::string> env = {"LIBCUDA_LOG_LEVEL=4", "CUDA_DEVICE_MEMORY_LIMIT=1G",
                                        "SOFTMIG_LOG_FILE=" + logs + "/control.log", "-LD_PRELOAD"};
  // Control: not setuid. The log is written, and path_env() answers.
  Outcome o = run_child({"secure"}, env, kJobUser, false, copy);
  MT_CHECK(o.out.find("secure=0 path_env=set") != std::string::npos, "control run: %s", o.out.c_str());
  MT_CHECK(!read_bytes(logs + "/control.log").empty(), "control run wrote no log: the attempt would prove nothing");
  MT_CHECK(::chmod(copy.c_str(), 04755) == 0, "chmod u+s");
  std::vector<std::string> env2 = env;
  env2[2] = "SOFTMIG_LOG_FILE=" + logs + "/setuid.log";
  o = run_child({"secure"}, env2, kJobUser, false, copy);
  MT_CHECK(o.out.find("secure=1") != std::string::npos, "the setuid copy is not a secure-exec process: %s",
           o.out.c_str());
  t.attempt(o.out.find("path_env=unset") != std::string::npos, "path_env(SOFTMIG_LOG_FILE) in a setuid process", o);
  struct stat st {};
  t.attempt(::lstat((logs + "/setuid.log").c_str(), &st) != 0, "a setuid process writing SOFTMIG_LOG_FILE", o);
  return t.finish();
}

int attempt_other_user() {
  Tally t{"other-user"};
  baseline();  // leaves the ledger behind
  const std::string path = g_job.ledger();
  struct stat st {};
  MT_CHECK(::stat(path.c_str(), &st) == 0, "no ledger at %s", path.c_str());
  MT_CHECK(st.st_uid == kJobUser && (st.st_mode & 0777) == 0600, "the ledger is uid %u mode %o, expected %u 0600",
           static_cast<unsigned>(st.st_uid), static_cast<unsigned>(st.st_mode & 0777), static_cast<unsigned>(kJobUser));
  // Another user: read, write, remove or replace the ledger, directly and through setpriv.
  struct Try {
    const char* what;
    std::function<bool()> blocked;
  };
  const std::vector<Try> tries = {
      {"open the ledger for reading", [&] { return ::open(path.c_str(), O_RDONLY) < 0 && errno == EACCES; }},
      {"open the ledger for writing", [&] { return ::open(path.c_str(), O_RDWR) < 0 && errno == EACCES; }},
      {"remove the ledger", [&] { return ::unlink(path.c_str()) != 0; }},
      {"create a file in the job's ledger directory",
       [&] { return ::open((g_job.dir + "/x").c_str(), O_CREAT | O_WRONLY, 0600) < 0; }},
  };
  for (const Try& x : tries) {
    const pid_t pid = fork_child(role() + " other user");
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(kOtherUser, kOtherUser, kOtherUser) != 0 ||
          ::setresuid(kOtherUser, kOtherUser, kOtherUser) != 0) {
        std::_Exit(91);
      }
      std::_Exit(x.blocked() ? 0 : 1);
    }
    const int status = reap(pid, 10000);
    Outcome o;
    t.attempt(WIFEXITED(status) && WEXITSTATUS(status) == 0, x.what, o);
  }
  if (::access("/usr/bin/setpriv", X_OK) == 0) {
    const std::string cmd = "/usr/bin/setpriv --reuid=" + std::to_string(kOtherUser) + " --regid=" +
                            std::to_string(kOtherUser) + " --clear-groups cat " + path + " >/dev/null 2>&1";
    const int rc = std::system(cmd.c_str());
    Outcome o;
    t.attempt(rc != 0, "setpriv --reuid=65533 cat <ledger>", o);
  }
  return t.finish();
}

}  // namespace

// ---- a process of the job ------------------------------------------------------------------------

namespace {

using AllocFn = CUresult (*)(CUdeviceptr*, size_t);

bool is_softmig(void* fn) {
  Dl_info info{};
  return fn != nullptr && dladdr(fn, &info) != 0 && info.dli_fname != nullptr &&
         std::strstr(info.dli_fname, "libsoftmig") != nullptr;
}

std::uint64_t fill_with(AllocFn alloc) {
  open_device(0);
  std::uint64_t got = 0;
  for (int i = 0; i < 1000; ++i) {
    CUdeviceptr p = 0;
    if (alloc(&p, kStep) != CUDA_SUCCESS) break;
    got += kStep;
  }
  return got;
}

}  // namespace

int tamper_child(const Args& a) {
  MT_CHECK(!a.empty(), "usage: tamper-child fill|interactive|dlsym <how>|secure");
  if (a[0] == "fill") {
    std::printf("obtained=%" PRIu64 " softmig=1\n", fill_with(cuMemAlloc_v2));
    return 0;
  }
  if (a[0] == "interactive") {
    // Commands on stdin, one per line: "fill N" (N blocks, 0 = until refused), "free".
    open_device(0);
    std::vector<CUdeviceptr> held;
    std::printf("ready\n");
    std::fflush(stdout);
    char line[64];
    while (std::fgets(line, sizeof line, stdin) != nullptr) {
      if (std::strncmp(line, "fill", 4) == 0) {
        const long blocks = std::strtol(line + 4, nullptr, 10);
        std::uint64_t got = 0;
        for (long i = 0; i < (blocks > 0 ? blocks : 1000); ++i) {
          CUdeviceptr p = 0;
          if (cuMemAlloc_v2(&p, kStep) != CUDA_SUCCESS) break;
          held.push_back(p);
          got += kStep;
        }
        std::printf("got=%" PRIu64 "\n", got);
      } else if (std::strncmp(line, "free", 4) == 0) {
        for (const CUdeviceptr p : held) MT_CU(cuMemFree_v2(p));
        held.clear();
        std::printf("freed\n");
      }
      std::fflush(stdout);
    }
    std::printf("obtained=0 softmig=1\n");
    return 0;
  }
  if (a[0] == "dlsym") {
    MT_CHECK(a.size() == 2, "usage: tamper-child dlsym <how>");
    void* fn = nullptr;
    if (a[1] == "next") {
      fn = dlsym(RTLD_NEXT, "cuMemAlloc_v2");
    } else if (a[1] == "library" || a[1] == "library-env") {
      if (a[1] == "library-env") {
        // Claim that the helper is a preloaded library after softmig: "next after it" would then
        // be the driver itself.
        const char* pre = std::getenv("LD_PRELOAD");
        const std::string list = std::string(pre != nullptr ? pre : "") + ":" SOFTMIG_TEST_HELPER;
        ::setenv("LD_PRELOAD", list.c_str(), 1);
      }
      void* h = dlopen(SOFTMIG_TEST_HELPER, RTLD_NOW | RTLD_LOCAL);
      MT_CHECK(h != nullptr, "dlopen helper: %s", dlerror());
      auto* next = reinterpret_cast<void* (*)(const char*)>(dlsym(h, "dlsym_helper_next"));
      MT_CHECK(next != nullptr, "helper lookup");
      fn = next("cuMemAlloc_v2");
    } else if (a[1] == "handle") {
      void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
      MT_CHECK(h != nullptr, "libcuda not loaded");
      fn = dlsym(h, "cuMemAlloc_v2");
    } else {
      fn = dlsym(RTLD_DEFAULT, "cuMemAlloc_v2");
    }
    MT_CHECK(fn != nullptr, "dlsym(%s) found nothing", a[1].c_str());
    const bool wrapped = is_softmig(fn);
    std::printf("obtained=%" PRIu64 " softmig=%d\n", fill_with(reinterpret_cast<AllocFn>(fn)), wrapped ? 1 : 0);
    return 0;
  }
  if (a[0] == "secure") {
    const bool secure = getauxval(AT_SECURE) != 0;
    const bool path_set = softmig::platform::path_env("SOFTMIG_LOG_FILE") != nullptr;
    void* lib = dlopen(SOFTMIG_TEST_LIBRARY, RTLD_NOW | RTLD_GLOBAL);
    MT_CHECK(lib != nullptr, "dlopen libsoftmig: %s", dlerror());
    // softmig's own exports (it is not preloaded here); the rest straight from the driver.
    auto* alloc = reinterpret_cast<AllocFn>(dlsym(lib, "cuMemAlloc_v2"));
    MT_CHECK(alloc != nullptr, "libsoftmig.so exports no cuMemAlloc_v2");
    open_device(0);
    CUdeviceptr p = 0;
    (void)alloc(&p, kMiB);
    std::printf("secure=%d path_env=%s obtained=0 softmig=1\n", secure ? 1 : 0, path_set ? "set" : "unset");
    return 0;
  }
  fail(__FILE__, __LINE__, "unknown tamper-child mode %s", a[0].c_str());
}

int tamper(const Args& a) {
  MT_CHECK(a.size() == 1, "usage: tamper <attempt>");
  if (::geteuid() != 0) {
    std::printf("tamper %s: skipped (needs root to create a job cgroup and a root-owned job file)\n", a[0].c_str());
    return kSkip;
  }
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  MT_CHECK(n > 0, "readlink /proc/self/exe");
  g_self.assign(self, static_cast<std::size_t>(n));
  const std::map<std::string, int (*)()> attempts = {
      {"env-limits", attempt_env_limits}, {"slurm-vars", attempt_slurm_vars}, {"softmig-vars", attempt_softmig_vars},
      {"log-level", attempt_log_level},   {"ledger", attempt_ledger},         {"config", attempt_config},
      {"dlsym", attempt_dlsym},           {"log-symlink", attempt_log_symlink},
      {"secure-exec", attempt_secure_exec}, {"other-user", attempt_other_user},
      {"ledger-edits", attempt_ledger_edits}, {"ledger-replaced", attempt_ledger_replaced},
  };
  const auto it = attempts.find(a[0]);
  MT_CHECK(it != attempts.end(), "unknown attempt %s", a[0].c_str());
  if (!setup_job()) {
    cleanup_job();
    std::printf("tamper %s: skipped (no writable cgroup hierarchy to create a job_<id> cgroup in)\n", a[0].c_str());
    return kSkip;
  }
  // The attempts run in a child, so that a failed check (which exits at once) still lets this
  // process remove the cgroup, the job file and the job's directory.
  const pid_t pid = fork_child(role());
  if (pid == 0) {
    const int rc = it->second();
    std::fflush(nullptr);
    std::_Exit(rc);
  }
  const int status = reap(pid, 240000);
  cleanup_job();
  MT_CHECK(WIFEXITED(status), "the attempts were killed by signal %d", WTERMSIG(status));
  if (WEXITSTATUS(status) == 0) note("PASS");
  return WEXITSTATUS(status);
}

}  // namespace reltest
