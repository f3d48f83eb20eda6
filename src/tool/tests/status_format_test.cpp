// SPDX-License-Identifier: Apache-2.0
// The pure formatters of `softmig status` and `softmig metrics` against golden files.
// Regenerate the golden files after an intended change with
//   SOFTMIG_UPDATE_GOLDEN=1 build/src/tool/tests/softmig_tool_tests --gtest_filter='Golden*'
// and review the diff.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tool/http_server.hpp"
#include "tool/ledger_reader.hpp"
#include "tool/metrics_format.hpp"
#include "tool/status_format.hpp"
#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

constexpr std::uint64_t kMiB = 1ULL << 20U;
constexpr std::uint64_t kGiB = 1ULL << 30U;

/// Two SLURM jobs and a session: a quarter slice with two processes and a refusal, a job on two
/// GPUs with an exited process not yet reaped, a session without limits, and an unreadable ledger.
Snapshot sample() {
  Snapshot s;
  JobView a;
  a.job = "4242";
  a.owner = "alice";
  a.owner_uid = 1001;
  a.ledger = "/var/tmp/softmig/4242/cudevshr.cache.4242";
  a.config = "/var/run/softmig/4242.conf";
  a.created_unix = 1700000000;
  GpuView g;
  g.uuid = "GPU-fa4e0000-0000-0000-0000-000000000000";
  g.memory_limit = 12 * kGiB;
  g.used = 3 * kGiB + 600 * kMiB;
  g.peak = 11 * kGiB;
  g.oom_refusals = 3;
  g.sm_percent = 25;
  g.held_ns = 12'345'678'901;  // 12.3 s held back by the compute share
  g.processes = {ProcessView{31337, 1001, "alice", 2 * kGiB, 300 * kMiB},
                 ProcessView{31338, 1001, "alice", 1 * kGiB, 300 * kMiB}};
  a.gpus.push_back(g);
  s.jobs.push_back(a);

  JobView b;
  b.job = "4243";
  b.owner = "bob";
  b.owner_uid = 1002;
  b.ledger = "/tmp/softmig-1002/cudevshr.cache.4243";
  b.created_unix = 1700000100;
  GpuView b0;
  b0.uuid = "GPU-fa4e0000-0000-0000-0000-000000000000";
  b0.memory_limit = 6 * kGiB;
  b0.used = 1536 * kMiB;
  b0.peak = 1536 * kMiB;
  b0.sm_percent = 12;
  b0.processes = {ProcessView{40000, 1002, "bob", 1 * kGiB, 0}};
  b0.stale_processes = 1;
  b0.stale_bytes = 512 * kMiB;
  GpuView b1;
  b1.uuid = "GPU-fa4e0000-0000-0000-0000-000000000001";
  b1.memory_limit = 6 * kGiB;
  b1.used = 0;
  b1.peak = 2 * kGiB;
  b1.sm_percent = 12;
  b.gpus = {b0, b1};
  s.jobs.push_back(b);

  JobView c;
  c.job = "session-run-77";
  c.owner = "carol \"c\"";
  c.owner_uid = 1003;
  c.ledger = "/run/user/1003/softmig/cudevshr.cache.session-run-77";
  c.created_unix = 1700000200;
  GpuView c0;
  c0.uuid = "GPU-fa4e0000-0000-0000-0000-000000000000";
  c0.used = 1234567;
  c0.peak = 1234567;
  c.gpus = {c0};
  s.jobs.push_back(c);

  s.problems.push_back({"/tmp/softmig-1004/cudevshr.cache.9", "written by an incompatible softmig version"});
  return s;
}

void check_golden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(SOFTMIG_GOLDEN_DIR) + "/" + name;
  if (std::getenv("SOFTMIG_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << actual;
    GTEST_SKIP() << "updated " << path;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "missing golden file " << path << " (run with SOFTMIG_UPDATE_GOLDEN=1)";
  std::ostringstream expected;
  expected << in.rdbuf();
  EXPECT_EQ(actual, expected.str()) << "differs from " << path;
}

TEST(GoldenStatus, Table) { check_golden("status_table.txt", format_table(sample())); }
TEST(GoldenStatus, Json) { check_golden("status.json", format_json(sample())); }
TEST(GoldenStatus, Prometheus) { check_golden("metrics.prom", format_prometheus(sample())); }

TEST(StatusTable, EmptySnapshotSaysSo) {
  EXPECT_NE(format_table(Snapshot{}).find("(no jobs with a softmig ledger)"), std::string::npos);
}

TEST(StatusJson, EmptySnapshotIsAValidDocument) {
  EXPECT_EQ(format_json(Snapshot{}), "{\n  \"version\": 1,\n  \"jobs\": [],\n  \"problems\": []\n}\n");
}

TEST(HumanBytes, BinaryUnits) {
  EXPECT_EQ(human_bytes(0), "0 B");
  EXPECT_EQ(human_bytes(4 * kGiB), "4 GiB");
  EXPECT_EQ(human_bytes(1536 * kMiB), "1.50 GiB");
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

TEST(Discovery, UnderRoot) {
  EXPECT_EQ(under_root("/", "/tmp"), "/tmp");
  EXPECT_EQ(under_root("/r/", "/tmp"), "/r/tmp");
  EXPECT_EQ(under_root("/r", "/var/run/softmig"), "/r/var/run/softmig");
}

TEST(Discovery, RootSeesAllUsersTheirOwn) {
  EXPECT_TRUE(visible_to(1001, 0));
  EXPECT_TRUE(visible_to(0, 0));
  EXPECT_TRUE(visible_to(1001, 1001));
  EXPECT_FALSE(visible_to(1002, 1001));
  EXPECT_FALSE(visible_to(0, 1001));
}

TEST(ListenAddress, ParsesAndRejects) {
  const ListenAddress a = parse_listen_address("127.0.0.1:9842");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 9842);
  EXPECT_TRUE(is_loopback(a));
  EXPECT_EQ(parse_listen_address("localhost:0").host, "127.0.0.1");
  EXPECT_FALSE(is_loopback(parse_listen_address("10.1.2.3:80")));
  for (const char* bad : {"9842", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:x", "example.org:80", "::1:80"}) {
    try {
      (void)parse_listen_address(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ToolError& e) {
      EXPECT_EQ(e.exit_code(), kExitUsage) << bad;
    }
  }
}

}  // namespace
}  // namespace softmig::tool
