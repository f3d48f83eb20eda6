// SPDX-License-Identifier: Apache-2.0
// `softmig status` and `softmig metrics` against real processes: fake-driver victims, with
// libsoftmig.so preloaded, hold known amounts in two sessions (two ledgers, one shared fake GPU);
// the tool's JSON, table, textfile and HTTP endpoint must report exactly what they hold.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/ledger.hpp"
#include "process_helpers.hpp"
#include "prom_parser.hpp"

namespace softmig::tool::test {
namespace {

constexpr std::uint64_t kMiB = 1ULL << 20U;
constexpr std::uint64_t kGiB = 1ULL << 30U;
constexpr std::uint64_t kContextBytes = 64 * kMiB;  // SOFTMIG_FAKE_CONTEXT_BYTES below

using Json = nlohmann::json;

struct Victim {
  std::unique_ptr<Child> child;
  std::string pid;
};

class StatusWithVictims : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    xdg_ = dir_->path() + "/xdg";
    std::filesystem::create_directory(xdg_);
    chmod(xdg_.c_str(), 0700);
    // Session a: 4 GiB and a 50 % compute share, two processes. Session b: 2 GiB, one process
    // that also has an allocation refused at the limit.
    start("tooltest-a", {"CUDA_DEVICE_MEMORY_LIMIT=4G", "CUDA_DEVICE_SM_LIMIT=50"}, {std::to_string(256 * kMiB)});
    start("tooltest-a", {"CUDA_DEVICE_MEMORY_LIMIT=4G", "CUDA_DEVICE_SM_LIMIT=50"},
          {std::to_string(512 * kMiB), std::to_string(64 * kMiB)});
    start("tooltest-b", {"CUDA_DEVICE_MEMORY_LIMIT=2G"}, {std::to_string(1 * kGiB), "--try", std::to_string(4 * kGiB)});
  }

  static void TearDownTestSuite() {
    for (auto& v : *victims_) {
      v.child->close_stdin();
      v.child->wait(5000);
    }
    delete victims_;
    victims_ = new std::vector<Victim>();
    delete dir_;
    dir_ = nullptr;
  }

  static void start(const std::string& session, EnvChanges limits, std::vector<std::string> args) {
    EnvChanges env = {"LD_PRELOAD=" SOFTMIG_LIBRARY_PATH,
                      "LD_LIBRARY_PATH=" SOFTMIG_FAKE_DIR,
                      "SOFTMIG_FAKE_STATE=" + dir_->path() + "/fake.state",
                      "SOFTMIG_FAKE_DEVICES=16G",
                      "SOFTMIG_FAKE_CONTEXT_BYTES=64M",
                      "SOFTMIG_SESSION=" + session,
                      "XDG_RUNTIME_DIR=" + xdg_,
                      "-SLURM_JOB_ID", "-SLURM_ARRAY_TASK_ID", "-SLURM_TMPDIR", "-CUDA_VISIBLE_DEVICES",
                      "-CUDA_DEVICE_MEMORY_LIMIT", "-CUDA_DEVICE_SM_LIMIT", "-CUDA_DEVICE_MEMORY_LIMIT_0",
                      "-CUDA_DEVICE_SM_LIMIT_0"};
    env.insert(env.end(), limits.begin(), limits.end());
    args.insert(args.begin(), STATUS_VICTIM_PATH);
    Victim v;
    v.child = std::make_unique<Child>(args, env);
    const std::string line = v.child->read_line(20000);
    ASSERT_EQ(line.rfind("ready ", 0), 0U) << "victim did not start: '" << line << "'";
    v.pid = line.substr(6);
    victims_->push_back(std::move(v));
  }

  static RunResult tool(std::vector<std::string> args, EnvChanges env = {}) {
    args.insert(args.begin(), SOFTMIG_TOOL_PATH);
    env.insert(env.end(), {"-SLURM_TMPDIR", "-SLURM_JOB_ID", "-LD_PRELOAD", "XDG_RUNTIME_DIR=" + xdg_});
    return run(args, env, 20000);
  }

  static std::string ledgers() { return xdg_ + "/softmig"; }
  static const std::string& pid(std::size_t i) { return (*victims_)[i].pid; }

  static TempDir* dir_;
  static std::string xdg_;
  static std::vector<Victim>* victims_;
};

TempDir* StatusWithVictims::dir_ = nullptr;
std::string StatusWithVictims::xdg_;
std::vector<Victim>* StatusWithVictims::victims_ = new std::vector<Victim>();

/// oom_refusals of the first device, read straight from the ledger file.
std::uint64_t ledger_oom_refusals(const std::string& path) {
  auto region = std::make_unique<core::LedgerRegion>();
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(region.get()), sizeof(core::LedgerRegion));
  EXPECT_EQ(static_cast<std::size_t>(in.gcount()), sizeof(core::LedgerRegion));
  return region->devices[0].oom_refusals;
}

const Json* find_process(const Json& gpu, const std::string& pid) {
  for (const auto& p : gpu.at("processes")) {
    if (std::to_string(p.at("pid").get<std::uint64_t>()) == pid) return &p;
  }
  return nullptr;
}

TEST_F(StatusWithVictims, JsonNumbersAreWhatTheVictimsAllocated) {
  const RunResult r = tool({"status", "--json", "--ledger", ledgers()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json doc = Json::parse(r.out);
  ASSERT_EQ(doc.at("version"), 1);
  ASSERT_EQ(doc.at("jobs").size(), 2U) << r.out;
  EXPECT_TRUE(doc.at("problems").empty());

  const Json& a = doc["jobs"][0];
  EXPECT_EQ(a.at("job"), "session-tooltest-a");
  ASSERT_EQ(a.at("gpus").size(), 1U);
  const Json& ga = a["gpus"][0];
  EXPECT_EQ(ga.at("uuid"), "GPU-fa4e0000-0000-0000-0000-000000000000");
  EXPECT_EQ(ga.at("memory_limit_bytes"), 4 * kGiB);
  EXPECT_EQ(ga.at("sm_limit_percent"), 50);
  EXPECT_EQ(ga.at("oom_refusals"), 0);
  EXPECT_TRUE(ga.at("delivered_share_percent").is_null());
  EXPECT_EQ(ga.at("throttled_seconds"), 0.0);  // a share, but no launch was ever held back
  ASSERT_EQ(ga.at("processes").size(), 2U);
  const Json* p0 = find_process(ga, pid(0));
  const Json* p1 = find_process(ga, pid(1));
  ASSERT_NE(p0, nullptr);
  ASSERT_NE(p1, nullptr);
  EXPECT_EQ(p0->at("alloc_bytes"), 256 * kMiB);
  EXPECT_EQ(p1->at("alloc_bytes"), 576 * kMiB);
  EXPECT_EQ(p0->at("overhead_bytes"), kContextBytes);
  EXPECT_EQ(p1->at("overhead_bytes"), kContextBytes);
  EXPECT_EQ(p0->at("bytes"), 256 * kMiB + kContextBytes);
  EXPECT_EQ(p0->at("uid"), static_cast<std::uint64_t>(geteuid()));
  const std::uint64_t used_a = (256 + 576) * kMiB + 2 * kContextBytes;
  EXPECT_EQ(ga.at("memory_used_bytes"), used_a);
  EXPECT_GE(ga.at("memory_peak_bytes").get<std::uint64_t>(), used_a);

  const Json& b = doc["jobs"][1];
  EXPECT_EQ(b.at("job"), "session-tooltest-b");
  const Json& gb = b["gpus"][0];
  EXPECT_EQ(gb.at("memory_limit_bytes"), 2 * kGiB);
  // One refused cuMemAlloc_v2. The library currently counts it twice: hooks/runtime.cpp reserve()
  // retries once after re-measuring the driver overhead and each refused reservation is counted
  // (reported as a library change). The tool must show exactly what the ledger holds.
  EXPECT_GE(gb.at("oom_refusals").get<std::uint64_t>(), 1U);
  EXPECT_LE(gb.at("oom_refusals").get<std::uint64_t>(), 2U);
  EXPECT_EQ(gb.at("oom_refusals"), ledger_oom_refusals(b.at("ledger")));
  EXPECT_EQ(gb.at("sm_limit_percent"), 100);
  EXPECT_TRUE(gb.at("throttled_seconds").is_null());  // no share: nothing to hold back
  ASSERT_EQ(gb.at("processes").size(), 1U);
  const Json* p2 = find_process(gb, pid(2));
  ASSERT_NE(p2, nullptr);
  EXPECT_EQ(p2->at("alloc_bytes"), 1 * kGiB);
  EXPECT_EQ(gb.at("memory_used_bytes"), 1 * kGiB + kContextBytes);
}

TEST_F(StatusWithVictims, ThrottledSecondsAreTheTimeTheShareHeldLaunchesBack) {
  // A process that launches 1 ms kernels (fake GPU time) as fast as it can for 0.8 s with a 25 %
  // share: its launches wait for its window about three quarters of the time (and its last one
  // may wait up to 37.5 ms past the 0.8 s). Its ledger goes to
  // a directory of its own, so the other tests' job counts stay as they are.
  const std::string xdg = dir_->path() + "/xdg-paced";
  std::filesystem::create_directory(xdg);
  chmod(xdg.c_str(), 0700);
  const RunResult v = run({VICTIM_PACE_PATH, "0.8"},
                          {"LD_PRELOAD=" SOFTMIG_LIBRARY_PATH, "LD_LIBRARY_PATH=" SOFTMIG_FAKE_DIR,
                           "SOFTMIG_FAKE_KERNEL_NS=1ms", "CUDA_DEVICE_SM_LIMIT=25", "SOFTMIG_SESSION=tooltest-paced",
                           "XDG_RUNTIME_DIR=" + xdg, "-SLURM_JOB_ID", "-SLURM_ARRAY_TASK_ID", "-SLURM_TMPDIR",
                           "-CUDA_VISIBLE_DEVICES", "-CUDA_DEVICE_MEMORY_LIMIT", "-CUDA_DEVICE_SM_LIMIT_0",
                           "-SOFTMIG_SM_POLICY", "-SOFTMIG_SM_BOARD"},
                          30000);
  ASSERT_EQ(v.exit_code, 0) << v.out << v.err;
  const RunResult r = tool({"status", "--json", "--ledger", xdg + "/softmig"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json doc = Json::parse(r.out);
  ASSERT_EQ(doc.at("jobs").size(), 1U) << r.out;
  ASSERT_EQ(doc["jobs"][0].at("gpus").size(), 1U) << r.out;
  const Json& g = doc["jobs"][0]["gpus"][0];
  // Its share, though no process of it is alive: the one its last process enforced (the ledger).
  EXPECT_EQ(g.at("sm_limit_percent"), 25) << r.out;
  const double held = g.at("throttled_seconds").get<double>();
  EXPECT_GE(held, 0.3) << r.out;
  EXPECT_LE(held, 0.85) << r.out;
  const RunResult t = tool({"status", "--ledger", xdg + "/softmig"});
  char text[32];
  std::snprintf(text, sizeof text, "%.1fs", held);
  EXPECT_NE(t.out.find(text), std::string::npos) << t.out;
}

TEST_F(StatusWithVictims, DiscoveryFindsBothSessionsWithoutLedgerFlag) {
  const RunResult r = tool({"status", "--json", "--job", "session-tooltest-a", "--job", "session-tooltest-b"});
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 1) << r.err;  // 1: some other, unrelated ledger is unreadable
  const Json doc = Json::parse(r.out);
  ASSERT_EQ(doc.at("jobs").size(), 2U) << r.out;
  EXPECT_EQ(doc["jobs"][0].at("ledger"), ledgers() + "/cudevshr.cache.session-tooltest-a");
}

TEST_F(StatusWithVictims, TableListsJobsGpusAndProcesses) {
  const RunResult r = tool({"status", "--ledger", ledgers()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("JOB"), std::string::npos);
  EXPECT_NE(r.out.find("session-tooltest-a"), std::string::npos);
  EXPECT_NE(r.out.find("  pid " + pid(0)), std::string::npos);
  EXPECT_NE(r.out.find("  pid " + pid(2)), std::string::npos);
  EXPECT_NE(r.out.find("4 GiB"), std::string::npos);
  EXPECT_NE(r.out.find("1.06 GiB"), std::string::npos) << r.out;  // session b: 1 GiB + 64 MiB
}

TEST_F(StatusWithVictims, WatchRefreshesAndStopsByItself) {
  const RunResult r = tool({"status", "--watch", "--interval", "0.1", "--count", "2", "--ledger", ledgers()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::size_t frames = 0;
  for (std::size_t pos = r.out.find("\x1b[H\x1b[2J"); pos != std::string::npos; pos = r.out.find("\x1b[H\x1b[2J", pos + 1)) {
    ++frames;
  }
  EXPECT_EQ(frames, 2U);
  EXPECT_NE(r.out.find("softmig status on "), std::string::npos);
  EXPECT_NE(r.out.find("session-tooltest-b"), std::string::npos);
}

TEST_F(StatusWithVictims, WatchAndJsonAreExclusive) {
  EXPECT_EQ(tool({"status", "--watch", "--json"}).exit_code, 2);
}

TEST_F(StatusWithVictims, TextfileIsValidAndMatches) {
  const std::string out = dir_->path() + "/textfile";
  std::filesystem::create_directory(out);
  const RunResult r = tool({"metrics", "--textfile", out, "--ledger", ledgers()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(out)) names.push_back(e.path().filename().string());
  ASSERT_EQ(names, std::vector<std::string>{"softmig.prom"});  // no temporary file left behind
  struct stat st {};
  ASSERT_EQ(stat((out + "/softmig.prom").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644U);
  std::ifstream in(out + "/softmig.prom");
  std::stringstream ss;
  ss << in.rdbuf();
  const PromExposition e = parse_prometheus(ss.str());
  ASSERT_TRUE(e.ok()) << e.error << "\n" << ss.str();
  const std::map<std::string, std::string> a = {
      {"job", "session-tooltest-a"}, {"gpu", "GPU-fa4e0000-0000-0000-0000-000000000000"}, {"user", e.samples.front().labels.at("user")}};
  EXPECT_EQ(e.value("softmig_memory_used_bytes", a), static_cast<double>((256 + 576) * kMiB + 2 * kContextBytes));
  EXPECT_EQ(e.value("softmig_memory_limit_bytes", a), static_cast<double>(4 * kGiB));
  EXPECT_EQ(e.value("softmig_sm_limit_percent", a), 50);
  auto b = a;
  b["job"] = "session-tooltest-b";
  EXPECT_EQ(e.value("softmig_oom_refusals_total", b), static_cast<double>(ledger_oom_refusals(ledgers() + "/cudevshr.cache.session-tooltest-b")));
  EXPECT_GE(e.value("softmig_oom_refusals_total", b), 1);
  EXPECT_EQ(e.count("softmig_process_memory_bytes"), 3U);
  EXPECT_EQ(e.value("softmig_ledgers", {}), 2);
  if (std::string(SOFTMIG_PROMTOOL).empty()) {
    std::cout << "promtool not installed: only the strict parser checked the file\n";
  } else {
    const RunResult p = run({"/bin/sh", "-c", std::string(SOFTMIG_PROMTOOL) + " check metrics < '" + out + "/softmig.prom'"});
    EXPECT_EQ(p.exit_code, 0) << "promtool: " << p.out << p.err;
  }
}

/// GET over a plain socket with 5 s timeouts; returns the whole response.
std::string http_get(unsigned port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n = 0;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<std::size_t>(n));
    }
  }
  close(fd);
  return response;
}

TEST_F(StatusWithVictims, HttpEndpointServesMetrics) {
  const bool curl = !std::string(SOFTMIG_CURL).empty();
  Child server({SOFTMIG_TOOL_PATH, "metrics", "--listen", "127.0.0.1:0", "--max-requests", curl ? "3" : "2",
                "--ledger", ledgers()},
               {"-LD_PRELOAD"});
  const std::string line = server.read_line(10000);
  const std::string prefix = "softmig metrics: listening on http://127.0.0.1:";
  ASSERT_EQ(line.rfind(prefix, 0), 0U) << line;
  const unsigned port = static_cast<unsigned>(std::stoul(line.substr(prefix.size())));
  ASSERT_NE(port, 0U);

  const std::string ok = http_get(port, "/metrics");
  ASSERT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << ok;
  EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos);
  const std::string body = ok.substr(ok.find("\r\n\r\n") + 4);
  const PromExposition e = parse_prometheus(body);
  ASSERT_TRUE(e.ok()) << e.error;
  EXPECT_EQ(e.count("softmig_process_memory_bytes"), 3U);

  EXPECT_EQ(http_get(port, "/nothing-here").rfind("HTTP/1.1 404", 0), 0U);
  if (curl) {
    const RunResult c = run({SOFTMIG_CURL, "-sS", "--fail", "--max-time", "5",
                             "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
    EXPECT_EQ(c.exit_code, 0) << c.err;
    EXPECT_TRUE(parse_prometheus(c.out).ok());
  }
  EXPECT_EQ(server.wait(5000), 0);  // --max-requests reached
}

TEST(StatusProblems, UnusableLedgerIsReportedNotTrusted) {
  TempDir dir;
  const std::string bad = dir.path() + "/cudevshr.cache.broken";
  {
    std::ofstream out(bad, std::ios::binary);
    out << std::string(4096, 'x');
  }
  chmod(bad.c_str(), 0600);
  const RunResult r = run({SOFTMIG_TOOL_PATH, "status", "--json", "--ledger", dir.path()});
  EXPECT_EQ(r.exit_code, 1);
  const Json doc = Json::parse(r.out);
  EXPECT_TRUE(doc.at("jobs").empty());
  ASSERT_EQ(doc.at("problems").size(), 1U);
  EXPECT_EQ(doc["problems"][0].at("error"), "not a softmig ledger (unknown magic)");
}

}  // namespace
}  // namespace softmig::tool::test
