// SPDX-License-Identifier: Apache-2.0
// Unit tests of the SLURM prolog's pure logic: scontrol parsing, the slice table, the plan.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tool/slurm_job.hpp"
#include "tool/slurm_slices.hpp"

namespace softmig::tool::slurm {
namespace {

constexpr const char* kShardJob =
    "JobId=9 ArrayJobId=8 ArrayTaskId=1 JobName=wrap\n"
    "   UserId=root(0) GroupId=root(0) MCS_label=N/A\n"
    "   NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:*\n"
    "   JOB_GRES=shard:l40s:2\n"
    "     Nodes=vm CPU_IDs=2 Mem=100 GRES=shard:l40s:2(IDX:1)\n"
    "   TresPerNode=gres:shard:l40s:2\n";

constexpr const char* kTable =
    "# comment\n"
    "[settings]\n"
    "allow_multiple_slices = no\n"
    "[gpu l40s]\n"
    "shards = 8\n"
    "match = L40S\n"
    "slice.2 = memory=50%, sm=50\n"
    "slice.4 = memory=25%, sm=25   # a quarter\n"
    "slice.8 = memory=6G sm=12\n";

constexpr std::uint64_t kGiB = 1ULL << 30U;

TEST(SlurmJob, ParsesShardJobOfArrayTask) {
  const JobAllocation job = parse_scontrol_job(kShardJob, "9", "vm");
  EXPECT_EQ(job.job_id, "9");
  EXPECT_EQ(job.array_task_id, "1");
  ASSERT_EQ(job.gres.size(), 1U);
  EXPECT_EQ(job.gres[0].name, "shard");
  EXPECT_EQ(job.gres[0].type, "l40s");
  EXPECT_EQ(job.gres[0].count, 2U);
  EXPECT_EQ(job.gres[0].indices, std::vector<unsigned>{1});
  EXPECT_TRUE(job.node_line_found);
}

TEST(SlurmJob, PendingArrayRangeIsNotATask) {
  const JobAllocation job = parse_scontrol_job("JobId=3 ArrayJobId=3 ArrayTaskId=1-2 JobName=x\n", "", "");
  EXPECT_EQ(job.array_task_id, "");
  EXPECT_TRUE(job.gres.empty());
}

TEST(SlurmJob, PicksThisNodesLineAndFallsBackToJobGres) {
  const char* text =
      "JobId=5 JobName=x\n   JOB_GRES=gpu:4\n"
      "     Nodes=n[01-02] CPU_IDs=0 Mem=1 GRES=gpu:2(IDX:0-1)\n"
      "     Nodes=n03 CPU_IDs=0 Mem=1 GRES=gpu:a100:1(IDX:3)\n";
  EXPECT_EQ(parse_scontrol_job(text, "5", "n02").count_of("gpu"), 2U);
  const JobAllocation third = parse_scontrol_job(text, "5", "n03");
  ASSERT_EQ(third.gres.size(), 1U);
  EXPECT_EQ(third.gres[0].type, "a100");
  EXPECT_EQ(third.gres[0].indices, std::vector<unsigned>{3});
  const JobAllocation other = parse_scontrol_job(text, "", "elsewhere");
  EXPECT_FALSE(other.node_line_found);
  EXPECT_EQ(other.count_of("gpu"), 4U);
}

TEST(SlurmJob, ArrayMasterIdListsEveryTask) {
  const char* text =
      "JobId=11 ArrayJobId=11 ArrayTaskId=3 JobName=wrap\n"
      "     Nodes=vm CPU_IDs=0 Mem=100 GRES=shard:l40s:4(IDX:1)\n"
      "\n"
      "JobId=13 ArrayJobId=11 ArrayTaskId=2 JobName=wrap\n"
      "     Nodes=vm CPU_IDs=1 Mem=100 GRES=shard:l40s:2(IDX:0)\n";
  const JobAllocation last = parse_scontrol_job(text, "11", "vm");
  EXPECT_EQ(last.array_task_id, "3");
  EXPECT_EQ(last.count_of("shard"), 4U);
  const JobAllocation second = parse_scontrol_job(text, "13", "vm");
  EXPECT_EQ(second.array_task_id, "2");
  EXPECT_EQ(second.gres[0].indices, std::vector<unsigned>{0});
  EXPECT_THROW(parse_scontrol_job(text, "12", "vm"), std::runtime_error);
}

TEST(SlurmJob, RejectsOutputWithoutJob) {
  EXPECT_THROW(parse_scontrol_job("slurm_load_jobs error: Invalid job id specified\n", "1", "vm"), std::runtime_error);
}

TEST(SlurmJob, GresListForms) {
  const auto g = parse_gres_list("gpu:l40s:2(IDX:0-1,3),shard:4,gres:mps:a100:50,(null)");
  ASSERT_EQ(g.size(), 3U);
  EXPECT_EQ(g[0].indices, (std::vector<unsigned>{0, 1, 3}));
  EXPECT_EQ(g[1].name, "shard");
  EXPECT_EQ(g[1].count, 4U);
  EXPECT_EQ(g[1].type, "");
  EXPECT_EQ(g[2].type, "a100");
  EXPECT_TRUE(parse_gres_list("(null)").empty());
}

TEST(SlurmJob, Hostlists) {
  EXPECT_EQ(expand_hostlist("gpu[08-10],vm"), (std::vector<std::string>{"gpu08", "gpu09", "gpu10", "vm"}));
  EXPECT_TRUE(expand_hostlist("bad[1-").empty());
  EXPECT_EQ(*parse_index_list("0,2"), (std::vector<unsigned>{0, 2}));
  EXPECT_FALSE(parse_index_list("x").has_value());
}

TEST(SliceTable, ParsesExample) {
  const SliceTable t = parse_slice_table(kTable);
  ASSERT_EQ(t.types.size(), 1U);
  const GpuType* l40s = t.find("L40S");
  ASSERT_NE(l40s, nullptr);
  EXPECT_EQ(l40s->shards, 8U);
  ASSERT_NE(l40s->slice(4), nullptr);
  EXPECT_DOUBLE_EQ(*l40s->slice(4)->memory_percent, 25.0);
  EXPECT_EQ(*l40s->slice(8)->memory_bytes, 6 * kGiB);
  EXPECT_EQ(l40s->slice(8)->sm_percent, 12U);
  EXPECT_EQ(t.for_device("NVIDIA L40S"), l40s);
}

TEST(SliceTable, ShippedExampleParses) {
  std::ifstream in(SOFTMIG_SOURCE_DIR "/slurm/examples/slices.conf");
  ASSERT_TRUE(in.good());
  std::stringstream s;
  s << in.rdbuf();
  const SliceTable t = parse_slice_table(s.str());
  EXPECT_NE(t.find("l40s"), nullptr);
  EXPECT_NE(t.find("h100"), nullptr);
}

TEST(SliceTable, RejectsMistakes) {
  EXPECT_THROW(parse_slice_table("[gpu l40s]\nslice.2 = memory=50%, sm=50\n"), SliceTableError);  // no shards
  EXPECT_THROW(parse_slice_table("[gpu l40s]\nshards=8\nslice.3 = memory=50%, sm=50\n"), SliceTableError);
  EXPECT_THROW(parse_slice_table("[gpu l40s]\nshards=8\nslice.2 = memory=150%, sm=50\n"), SliceTableError);
  EXPECT_THROW(parse_slice_table("[gpu l40s]\nshards=8\nslice.2 = memory=abc, sm=50\n"), SliceTableError);
  EXPECT_THROW(parse_slice_table("[gpu l40s]\nshards=8\nslice.2 = memory=1G\n"), SliceTableError);
  EXPECT_THROW(parse_slice_table("[gpu l40s]\nshards=8\nslice.1 = memory=1G, sm=100\n"), SliceTableError);
  EXPECT_THROW(parse_slice_table("[gpus l40s]\n"), SliceTableError);
  EXPECT_THROW(parse_slice_table("shards = 8\n"), SliceTableError);
  try {
    parse_slice_table("[gpu l40s]\nshards=8\n\nslice.2 = memory=1G, sm=500\n");
    FAIL();
  } catch (const SliceTableError& e) {
    EXPECT_NE(std::string(e.what()).find("line 4"), std::string::npos) << e.what();
  }
}

TEST(SliceLimits, TableAndProportional) {
  const SliceTable t = parse_slice_table(kTable);
  const GpuType& l40s = *t.find("l40s");
  const SliceLimit quarter = limit_for(l40s, 2, 48 * kGiB);
  EXPECT_EQ(quarter.memory_bytes, 12 * kGiB);
  EXPECT_EQ(quarter.sm_percent, 25U);
  EXPECT_EQ(quarter.description, "l40s.4");
  EXPECT_EQ(limit_for(l40s, 1, 4 * kGiB).memory_bytes, 4 * kGiB);  // fixed 6G capped at the GPU
  const SliceLimit three = limit_for(l40s, 3, 48 * kGiB);           // no slice.N matches 3 shards
  EXPECT_EQ(three.memory_bytes, 18 * kGiB);
  EXPECT_EQ(three.sm_percent, 38U);
}

JobAllocation shard_job(unsigned shards, const char* type = "l40s") {
  JobAllocation job;
  job.job_id = "42";
  job.gres.push_back(GresEntry{"shard", type, shards, {1}});
  return job;
}

TEST(SlurmPlan, WholeGpuJobGetsNothing) {
  JobAllocation job;
  job.job_id = "7";
  job.gres.push_back(GresEntry{"gpu", "l40s", 1, {0}});
  const SliceTable t = parse_slice_table(kTable);
  const Plan p = plan_job(job, &t, "", {}, "", "");
  EXPECT_EQ(p.kind, Plan::Kind::kNoLimits);
  EXPECT_TRUE(p.text.empty());
}

TEST(SlurmPlan, QuarterSliceWritesPerUuidKeys) {
  const SliceTable t = parse_slice_table(kTable);
  const std::vector<GpuInfo> gpus = {{1, "GPU-fa4e0000-0000-0000-0000-000000000001", "NVIDIA L40S", 48 * kGiB}};
  const Plan p = plan_job(shard_job(2), &t, "", gpus, "", "/var/run/softmig/ledger/42");
  ASSERT_EQ(p.kind, Plan::Kind::kLimits);
  EXPECT_NE(p.text.find("\nCUDA_DEVICE_MEMORY_LIMIT=1\n"), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("\nCUDA_DEVICE_MEMORY_LIMIT_GPU-fa4e0000-0000-0000-0000-000000000001=12884901888\n"),
            std::string::npos)
      << p.text;
  EXPECT_NE(p.text.find("\nCUDA_DEVICE_SM_LIMIT_GPU-fa4e0000-0000-0000-0000-000000000001=25\n"), std::string::npos);
  EXPECT_NE(p.text.find("\nSOFTMIG_LEDGER_DIR=/var/run/softmig/ledger/42\n"), std::string::npos);
}

TEST(SlurmPlan, FailsClosedWhenLimitsCannotBeComputed) {
  const SliceTable t = parse_slice_table(kTable);
  // No table.
  Plan p = plan_job(shard_job(2), nullptr, "cannot read /etc/softmig/slices.conf", {}, "", "");
  EXPECT_EQ(p.kind, Plan::Kind::kFailClosed);
  EXPECT_NE(p.text.find("\nCUDA_DEVICE_MEMORY_LIMIT=1\nCUDA_DEVICE_SM_LIMIT=1\n"), std::string::npos) << p.text;
  // Unknown type.
  EXPECT_EQ(plan_job(shard_job(2, "a100"), &t, "", {}, "", "").kind, Plan::Kind::kFailClosed);
  // No NVML and a percentage-sized slice.
  EXPECT_EQ(plan_job(shard_job(2), &t, "", {}, "no NVML", "").kind, Plan::Kind::kFailClosed);
}

TEST(SlurmPlan, FixedSliceWithoutNvmlUsesGlobalKeys) {
  const SliceTable t = parse_slice_table(kTable);
  const Plan p = plan_job(shard_job(1), &t, "", {}, "no NVML", "");
  ASSERT_EQ(p.kind, Plan::Kind::kLimits);
  EXPECT_NE(p.text.find("\nCUDA_DEVICE_MEMORY_LIMIT=6442450944\n"), std::string::npos) << p.text;
  EXPECT_NE(p.text.find("\nCUDA_DEVICE_SM_LIMIT=12\n"), std::string::npos);
}

TEST(SlurmPlan, FileNames) {
  EXPECT_EQ(job_file_name("42", ""), "42.conf");
  EXPECT_EQ(job_file_name("43", "1"), "43_1.conf");
}

}  // namespace
}  // namespace softmig::tool::slurm
