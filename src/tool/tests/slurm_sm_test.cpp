// SPDX-License-Identifier: Apache-2.0
// Unit tests of the prolog's compute schedule: the per-GPU window allocator (first fit, re-run,
// over-subscription, removal), the slice table's sm_policy / [partition] / sm_period_ms, the keys
// written into the job file, and (as root) the locked tables and activity stamps on disk.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tool/slurm_slices.hpp"
#include "tool/slurm_slots.hpp"
#include "tool/slurm_system.hpp"

namespace softmig::tool::slurm {
namespace {

constexpr const char* kUuid = "GPU-fa4e0000-0000-0000-0000-000000000001";
constexpr std::uint64_t kGiB = 1ULL << 30U;

// ---- the allocator ----------------------------------------------------------------------------

TEST(SmSlots, FirstFitPacksWindows) {
  std::vector<SlotEntry> t;
  EXPECT_EQ(place_slot(t, "1", 50).start, 0U);
  EXPECT_EQ(place_slot(t, "2", 25).start, 50U);
  EXPECT_EQ(place_slot(t, "3", 12).start, 75U);
  const SlotChoice last = place_slot(t, "4", 13);
  EXPECT_EQ(last.start, 87U);
  EXPECT_EQ(last.overlap, 0U);
  EXPECT_TRUE(last.overlapping_jobs.empty());
  EXPECT_EQ(render_slot_table(t), "1 0 50\n2 50 25\n3 75 12\n4 87 13\n");
}

TEST(SmSlots, FirstFitTakesTheFirstGapThatIsLongEnough) {
  std::vector<SlotEntry> t = {{"1", 0, 25}, {"3", 50, 20}};  // free: 25..50 and 70..100
  EXPECT_EQ(place_slot(t, "4", 30).start, 70U);               // 25..50 is too short
  EXPECT_EQ(place_slot(t, "5", 25).start, 25U);               // the first gap fits exactly
  EXPECT_EQ(render_slot_table(t), "1 0 25\n5 25 25\n3 50 20\n4 70 30\n");
  // No gap of 30 among {0..25, 50..75}: the least overlap (5 points), at the smallest start.
  t = {{"1", 0, 25}, {"3", 50, 25}};
  const SlotChoice c = place_slot(t, "6", 30);
  EXPECT_EQ(c.start, 20U);
  EXPECT_EQ(c.overlap, 5U);
  EXPECT_EQ(c.overlapping_jobs, std::vector<std::string>{"1"});
}

TEST(SmSlots, WindowsNeverCrossTheEndOfThePeriod) {
  std::vector<SlotEntry> t = {{"1", 10, 80}};  // free: 0..10 and 90..100 (20 % in all, not contiguous)
  const SlotChoice c = place_slot(t, "2", 20);
  EXPECT_GT(c.overlap, 0U);
  EXPECT_LE(c.start + 20, 100U);
  EXPECT_EQ(c.overlap, 10U);  // 0..20 or 80..100 overlap by 10; the smallest start wins
  EXPECT_EQ(c.start, 0U);
}

TEST(SmSlots, RerunOfTheSameJobReplacesItsLine) {
  std::vector<SlotEntry> t;
  place_slot(t, "7", 50);
  place_slot(t, "8", 50);
  const SlotChoice again = place_slot(t, "7", 50);  // the prolog of job 7 runs a second time
  EXPECT_EQ(again.start, 0U);
  EXPECT_EQ(again.overlap, 0U);
  ASSERT_EQ(t.size(), 2U);
  EXPECT_EQ(std::count_if(t.begin(), t.end(), [](const SlotEntry& e) { return e.job_id == "7"; }), 1);
  // A different size on the re-run: the old window does not block the new one.
  EXPECT_EQ(place_slot(t, "8", 25).start, 50U);
  const SlotChoice bigger = place_slot(t, "7", 75);  // only its own old window is free of 8's
  EXPECT_EQ(bigger.start, 0U);
  EXPECT_EQ(bigger.overlap, 25U);
  EXPECT_EQ(render_slot_table(t), "7 0 75\n8 50 25\n");
}

TEST(SmSlots, FullGpuGetsTheLeastOverlap) {
  std::vector<SlotEntry> t = {{"1", 0, 50}, {"2", 50, 25}, {"3", 75, 25}};
  const SlotChoice c = place_slot(t, "4", 25);
  EXPECT_EQ(c.overlap, 25U);
  EXPECT_EQ(c.start, 0U);  // every 25 % window overlaps 25 points: the first
  EXPECT_EQ(c.overlapping_jobs, std::vector<std::string>{"1"});
  // Stale or doubled lines: the least crowded stretch wins.
  t = {{"1", 0, 50}, {"2", 0, 50}, {"3", 50, 50}};
  const SlotChoice d = place_slot(t, "4", 50);
  EXPECT_EQ(d.start, 50U);
  EXPECT_EQ(d.overlap, 50U);
  EXPECT_EQ(d.overlapping_jobs, std::vector<std::string>{"3"});
  EXPECT_EQ(t.size(), 4U);
}

TEST(SmSlots, Removal) {
  std::vector<SlotEntry> t = {{"1", 0, 50}, {"2", 50, 50}};
  EXPECT_TRUE(remove_slot(t, "1"));
  EXPECT_FALSE(remove_slot(t, "1"));
  EXPECT_FALSE(remove_slot(t, "12"));  // ids are compared whole
  EXPECT_EQ(render_slot_table(t), "2 50 50\n");
  EXPECT_EQ(place_slot(t, "3", 50).start, 0U);  // the freed window is reused
}

TEST(SmSlots, ParsesAndDropsBadLines) {
  std::vector<std::string> problems;
  const auto t = parse_slot_table("# comment\n12 0 50\n\n13 50 50 \nx 1 2\n14 100 1\n15 0 0\n16 0 101\n17 5\n", &problems);
  ASSERT_EQ(t.size(), 2U);
  EXPECT_EQ(t[0], (SlotEntry{"12", 0, 50}));
  EXPECT_EQ(t[1], (SlotEntry{"13", 50, 50}));
  EXPECT_EQ(problems.size(), 5U);
  EXPECT_NE(problems[0].find("line 5"), std::string::npos) << problems[0];
  EXPECT_EQ(render_slot_table(parse_slot_table(render_slot_table(t))), render_slot_table(t));
}

// ---- the slice table --------------------------------------------------------------------------

constexpr const char* kTable =
    "[settings]\n"
    "sm_period_ms = 40\n"
    "[gpu l40s]\n"
    "shards = 8\n"
    "sm_policy = burst\n"
    "slice.2 = memory=50%, sm=50\n"
    "[gpu h100]\n"
    "shards = 8\n"
    "slice.2 = memory=40G, sm=50\n"
    "[partition interactive]\n"
    "sm_policy = strict\n"
    "[partition Batch.long]\n"
    "sm_policy = BURST\n";

TEST(SmTable, PolicyPeriodAndPartitions) {
  const SliceTable t = parse_slice_table(kTable);
  EXPECT_EQ(t.sm_period_ms, 40U);
  EXPECT_FALSE(t.sm_policy.has_value());
  ASSERT_EQ(t.partitions.size(), 2U);
  EXPECT_EQ(t.policy_for("l40s", ""), SmPolicy::kBurst);
  EXPECT_EQ(t.policy_for("l40s", "gpu"), SmPolicy::kBurst);              // no such section
  EXPECT_EQ(t.policy_for("l40s", "interactive"), SmPolicy::kStrict);     // the partition wins
  EXPECT_EQ(t.policy_for("h100", ""), SmPolicy::kStrict);                // the default
  EXPECT_EQ(t.policy_for("h100", "Batch.long"), SmPolicy::kBurst);
  EXPECT_EQ(t.policy_for("h100", "batch.long"), SmPolicy::kStrict);      // partition names are exact
  const SliceTable d = parse_slice_table("[settings]\nsm_policy = burst\n[gpu a]\nshards=2\n[partition p]\n");
  EXPECT_EQ(d.policy_for("a", "p"), SmPolicy::kBurst);  // a section without sm_policy changes nothing
  EXPECT_FALSE(d.sm_period_ms.has_value());
}

TEST(SmTable, RejectsMalformedValues) {
  auto line_of = [](const char* text) {
    try {
      parse_slice_table(text);
    } catch (const SliceTableError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(line_of("[gpu l40s]\nshards=8\nsm_policy = greedy\n").find("line 3"), std::string::npos);
  EXPECT_NE(line_of("[settings]\nsm_period_ms = 5\n").find("line 2"), std::string::npos);
  EXPECT_NE(line_of("[settings]\nsm_period_ms = 1001\n").find("line 2"), std::string::npos);
  EXPECT_NE(line_of("[settings]\nsm_period_ms = 50ms\n").find("line 2"), std::string::npos);
  EXPECT_NE(line_of("[partition a]\nshards = 8\n").find("unknown key"), std::string::npos);
  EXPECT_NE(line_of("[partition a]\n[partition a]\n").find("twice"), std::string::npos);
  EXPECT_NE(line_of("[partition a/b]\n").find("not a partition name"), std::string::npos);
  EXPECT_NE(line_of("[partition]\n").find("unknown section"), std::string::npos);
  EXPECT_NE(line_of("sm_policy = burst\n").find("unknown key"), std::string::npos);  // outside any section
  EXPECT_EQ(line_of("[settings]\nsm_period_ms = 10\n[partition a]\nsm_policy = strict\n"), "accepted");
  EXPECT_EQ(line_of("[settings]\nsm_period_ms = 1000\n"), "accepted");
}

TEST(SmTable, ShippedExampleHasThePolicyKeys) {
  std::ifstream in(SOFTMIG_SOURCE_DIR "/slurm/examples/slices.conf");
  ASSERT_TRUE(in.good());
  std::stringstream s;
  s << in.rdbuf();
  const SliceTable t = parse_slice_table(s.str());
  EXPECT_FALSE(t.partitions.empty());
}

// ---- the job file -----------------------------------------------------------------------------

JobAllocation half_job() {
  JobAllocation job;
  job.job_id = "42";
  job.gres.push_back(GresEntry{"shard", "l40s", 4, {1}});
  return job;
}

TEST(SmPlan, SharesAndScheduleKeys) {
  const SliceTable t = parse_slice_table(kTable);
  const std::vector<GpuInfo> gpus = {{1, kUuid, "NVIDIA L40S", 48 * kGiB}};
  Plan p = plan_job(half_job(), &t, "", gpus, "", "");
  ASSERT_EQ(p.kind, Plan::Kind::kLimits);
  EXPECT_TRUE(p.sm_limited);
  EXPECT_EQ(p.gpu_type, "l40s");
  ASSERT_EQ(p.shares.size(), 1U);
  EXPECT_EQ(p.shares[0].uuid, kUuid);
  EXPECT_EQ(p.shares[0].sm_percent, 50U);
  SmSchedule s;
  s.phases.push_back({kUuid, 50});
  s.policy = t.policy_for(p.gpu_type, "");
  s.period_ms = t.sm_period_ms;
  s.board_dir = "/var/run/softmig/board";
  add_sm_schedule(p, s);
  EXPECT_NE(p.text.find(std::string("\nCUDA_DEVICE_SM_PHASE_") + kUuid + "=50\n"), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("\nSOFTMIG_SM_POLICY=burst\n"), std::string::npos);
  EXPECT_NE(p.text.find("\nSOFTMIG_SM_PERIOD_MS=40\n"), std::string::npos);
  EXPECT_NE(p.text.find("\nSOFTMIG_SM_BOARD=/var/run/softmig/board\n"), std::string::npos);
  // Without a period in the table and without a board: neither key.
  Plan q = plan_job(half_job(), &t, "", gpus, "", "");
  add_sm_schedule(q, SmSchedule{});
  EXPECT_NE(q.text.find("\nSOFTMIG_SM_POLICY=strict\n"), std::string::npos) << q.text;
  EXPECT_EQ(q.text.find("SOFTMIG_SM_PERIOD_MS"), std::string::npos);
  EXPECT_EQ(q.text.find("SOFTMIG_SM_BOARD"), std::string::npos);
  EXPECT_EQ(q.text.find("CUDA_DEVICE_SM_PHASE"), std::string::npos);
}

TEST(SmPlan, WholeComputeAndFailClosedGetNoSchedule) {
  const SliceTable full = parse_slice_table("[gpu l40s]\nshards=8\nslice.2 = memory=50%, sm=100\n");
  const std::vector<GpuInfo> gpus = {{1, kUuid, "NVIDIA L40S", 48 * kGiB}};
  Plan p = plan_job(half_job(), &full, "", gpus, "", "");
  ASSERT_EQ(p.kind, Plan::Kind::kLimits);
  EXPECT_FALSE(p.sm_limited);
  const std::string before = p.text;
  add_sm_schedule(p, SmSchedule{{{kUuid, 0}}, SmPolicy::kBurst, 50, "/b"});
  EXPECT_EQ(p.text, before);
  Plan f = plan_job(half_job(), nullptr, "no table", gpus, "", "");
  const std::string closed = f.text;
  add_sm_schedule(f, SmSchedule{{{kUuid, 0}}, SmPolicy::kBurst, 50, "/b"});
  EXPECT_EQ(f.text, closed);
}

// ---- on disk (root: the tables and stamps are root-owned) -------------------------------------

class SmFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (root-owned tables, chown of the stamps)";
    char tmpl[] = "/tmp/softmig-sm-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir_;
};

TEST_F(SmFiles, ConcurrentPrologsGetDisjointWindows) {
  const std::string slots = dir_ + "/sm-slots";
  std::vector<std::thread> threads;
  std::vector<unsigned> starts(4, 999);
  for (unsigned i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      std::vector<std::string> notes;
      const auto placed = place_sm_slots(slots, std::to_string(100 + i), {{kUuid, 25}}, notes);
      if (placed.size() == 1 && placed[0].choice.overlap == 0) starts[i] = placed[0].choice.start;
    });
  }
  for (auto& t : threads) t.join();
  std::sort(starts.begin(), starts.end());
  EXPECT_EQ(starts, (std::vector<unsigned>{0, 25, 50, 75}));
  struct stat st {};
  ASSERT_EQ(::stat((slots + "/" + kUuid).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0U);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
  EXPECT_EQ(parse_slot_table(read(slots + "/" + kUuid)).size(), 4U);
  // The epilogs: each removes its own line; the emptied table goes.
  for (unsigned i = 0; i < 4; ++i) {
    EXPECT_EQ(release_sm_slots(slots, std::to_string(100 + i)), std::vector<std::string>{kUuid});
  }
  EXPECT_NE(::access((slots + "/" + kUuid).c_str(), F_OK), 0);
  EXPECT_TRUE(release_sm_slots(slots, "100").empty());
  EXPECT_TRUE(release_sm_slots(dir_ + "/missing", "100").empty());
  EXPECT_NE(::access((dir_ + "/missing").c_str(), F_OK), 0);  // release never creates the directory
}

TEST_F(SmFiles, RerunMovesTheJobToItsNewGpu) {
  const std::string slots = dir_ + "/sm-slots";
  const std::string other = "GPU-fa4e0000-0000-0000-0000-000000000002";
  std::vector<std::string> notes;
  place_sm_slots(slots, "7", {{kUuid, 50}}, notes);
  place_sm_slots(slots, "8", {{kUuid, 50}}, notes);
  const auto placed = place_sm_slots(slots, "7", {{other, 50}}, notes);  // requeued onto the other GPU
  ASSERT_EQ(placed.size(), 1U);
  EXPECT_EQ(placed[0].choice.start, 0U);
  EXPECT_EQ(read(slots + "/" + kUuid), "8 50 50\n");
  EXPECT_EQ(read(slots + "/" + other), "7 0 50\n");
  EXPECT_TRUE(notes.empty());
  // A whole-compute share takes no window.
  EXPECT_TRUE(place_sm_slots(slots, "9", {{kUuid, 100}}, notes).empty());
  // A lock held elsewhere: the prolog gives up after its wait instead of hanging.
  std::vector<std::string> none;
  const int fd = ::open((slots + "/.lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  EXPECT_THROW(place_sm_slots(slots, "10", {{kUuid, 10}}, none, 100), SystemError);
  ::close(fd);
}

TEST_F(SmFiles, BoardFiles) {
  const std::string board = dir_ + "/board";
  create_board_file(board, kUuid, "42", 65534, 65534);
  const std::string f = board + "/" + kUuid + ".42";
  struct stat st {};
  ASSERT_EQ(::lstat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534U);
  EXPECT_EQ(st.st_gid, 65534U);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
  EXPECT_EQ(st.st_mtime, 0);
  ASSERT_EQ(::stat(board.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0U);
  EXPECT_EQ(st.st_mode & 07777, 0755U);
  // A stale regular file is replaced; anything else is refused.
  { std::ofstream(f) << "stale"; }
  ::chown(f.c_str(), 0, 0);
  create_board_file(board, kUuid, "42", 65534, 65534);
  ASSERT_EQ(::lstat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534U);
  EXPECT_EQ(st.st_size, 0);
  const std::string link = board + "/" + kUuid + ".43";
  ASSERT_EQ(::symlink("/etc/passwd", link.c_str()), 0);
  EXPECT_THROW(create_board_file(board, kUuid, "43", 65534, 65534), SystemError);
  EXPECT_THROW(create_board_file(board, "MIG-GPU-x/1/0", "44", 0, 0), SystemError);
  create_board_file(board, "GPU-other", "142", 0, 0);
  // The epilog of 42 removes its stamps only.
  EXPECT_EQ(remove_board_files(board, "42"), std::vector<std::string>{std::string(kUuid) + ".42"});
  EXPECT_EQ(::access((board + "/GPU-other.142").c_str(), F_OK), 0);
  EXPECT_EQ(remove_board_files(board, "43"), std::vector<std::string>{std::string(kUuid) + ".43"});  // the link itself
  EXPECT_EQ(::access("/etc/passwd", F_OK), 0);
  EXPECT_TRUE(remove_board_files(dir_ + "/missing", "42").empty());
}

}  // namespace
}  // namespace softmig::tool::slurm
