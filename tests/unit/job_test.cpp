// SPDX-License-Identifier: Apache-2.0
// Which SLURM job a process belongs to, from /proc/<pid>/cgroup first and SLURM_JOB_ID second.
#include "core/job.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace softmig::core {
namespace {

std::string job_of(const std::string& cgroup) {
  char out[24];
  std::memset(out, '#', sizeof(out));
  if (!job_id_from_cgroup(cgroup, out, sizeof(out))) return "<none>";
  return out;
}

constexpr const char* kCgroupV1 =
    "12:memory:/slurm/uid_1000/job_4242/step_0/task_0\n"
    "11:devices:/slurm/uid_1000/job_4242/step_0\n"
    "10:freezer:/slurm/uid_1000/job_4242/step_0\n"
    "4:cpuset:/slurm/uid_1000/job_4242/step_0\n"
    "1:name=systemd:/system.slice/slurmd.service\n";

constexpr const char* kCgroupV2 = "0::/system.slice/slurmstepd.scope/job_4242/step_batch/user/task_0\n";

TEST(JobFromCgroup, CgroupV1) { EXPECT_EQ(job_of(kCgroupV1), "4242"); }

TEST(JobFromCgroup, CgroupV2) { EXPECT_EQ(job_of(kCgroupV2), "4242"); }

TEST(JobFromCgroup, JobComponentLastWithoutNewline) {
  EXPECT_EQ(job_of("0::/system.slice/slurmstepd.scope/job_7"), "7");
  EXPECT_EQ(job_of("0::/slurm/job_77\n"), "77");
}

TEST(JobFromCgroup, MatchOnALaterLine) {
  EXPECT_EQ(job_of("2:cpu:/\n1:name=systemd:/user.slice/user-1000.slice\n0::/slurm/job_99/step_0\n"), "99");
}

TEST(JobFromCgroup, NoJobNamed) {
  EXPECT_EQ(job_of(""), "<none>");
  EXPECT_EQ(job_of("0::/\n"), "<none>");
  EXPECT_EQ(job_of("0::/user.slice/user-1000.slice/session-3.scope\n"), "<none>");
  EXPECT_EQ(job_of("4:memory:/process_api/68067078c07fa5061f27ec67b38df1d2\n0::/\n"), "<none>");
}

TEST(JobFromCgroup, LookalikesDoNotMatch) {
  EXPECT_EQ(job_of("0::/slurm/job_12x/step_0\n"), "<none>");
  EXPECT_EQ(job_of("0::/slurm/job_12x"), "<none>");
  EXPECT_EQ(job_of("0::/home/myjob_12/\n"), "<none>");
  EXPECT_EQ(job_of("0::/myjob_12\n"), "<none>");
  EXPECT_EQ(job_of("0::/slurm/job_/step_0\n"), "<none>");
  EXPECT_EQ(job_of("0::/slurm/job_\n"), "<none>");
  EXPECT_EQ(job_of("job_12"), "<none>");           // not a path component
  EXPECT_EQ(job_of("0::job_12\n"), "<none>");
  EXPECT_EQ(job_of("0::/slurm/job_-1/\n"), "<none>");
  EXPECT_EQ(job_of("0::/slurm/job_1.2/\n"), "<none>");
  EXPECT_EQ(job_of("0::/slurm/job_12 /\n"), "<none>");
  EXPECT_EQ(job_of("0::/slurm/JOB_12/\n"), "<none>");
}

TEST(JobFromCgroup, SkipsALookalikeAndFindsTheRealComponent) {
  EXPECT_EQ(job_of("0::/x/myjob_1/job_55/step_0\n"), "55");
  EXPECT_EQ(job_of("0::/x/job_1x/job_56\n"), "56");
  EXPECT_EQ(job_of("0::/x/job_job_57/job_58\n"), "58");
}

TEST(JobFromCgroup, TooLongOrTooSmallBuffer) {
  const std::string twenty(20, '9');
  const std::string twentyone(21, '9');
  EXPECT_EQ(job_of("0::/slurm/job_" + twenty + "/\n"), twenty);
  EXPECT_EQ(job_of("0::/slurm/job_" + twentyone + "/\n"), "<none>");
  char small[4] = {'#', '#', '#', '#'};
  EXPECT_FALSE(job_id_from_cgroup("0::/slurm/job_4242\n", small, sizeof(small)));
  EXPECT_EQ(small[0], '#');  // untouched
  char exact[5];
  ASSERT_TRUE(job_id_from_cgroup("0::/slurm/job_4242\n", exact, sizeof(exact)));
  EXPECT_STREQ(exact, "4242");
}

TEST(IsDecimalId, Forms) {
  EXPECT_TRUE(is_decimal_id("0"));
  EXPECT_TRUE(is_decimal_id("4242"));
  EXPECT_TRUE(is_decimal_id(std::string(20, '1')));
  EXPECT_FALSE(is_decimal_id(std::string(21, '1')));
  EXPECT_FALSE(is_decimal_id(""));
  EXPECT_FALSE(is_decimal_id("12a"));
  EXPECT_FALSE(is_decimal_id(" 12"));
  EXPECT_FALSE(is_decimal_id("-1"));
  EXPECT_FALSE(is_decimal_id("+1"));
  EXPECT_FALSE(is_decimal_id("0x1"));
}

TEST(IdentifyJob, CgroupBeatsEnvironment) {
  const JobIdentity id = identify_job(kCgroupV1, "999", nullptr);
  EXPECT_TRUE(id.in_slurm);
  EXPECT_TRUE(id.from_cgroup);
  EXPECT_TRUE(id.has_job_id());
  EXPECT_STREQ(id.job_id, "4242");
}

TEST(IdentifyJob, CgroupAloneIsEnough) {
  // A process adopted into the job over ssh, or with a scrubbed environment.
  const JobIdentity id = identify_job(kCgroupV2, nullptr, nullptr);
  EXPECT_TRUE(id.in_slurm);
  EXPECT_TRUE(id.from_cgroup);
  EXPECT_STREQ(id.job_id, "4242");
}

TEST(IdentifyJob, EnvironmentWhenCgroupNamesNoJob) {
  const JobIdentity id = identify_job("0::/user.slice\n", "123", nullptr);
  EXPECT_TRUE(id.in_slurm);
  EXPECT_FALSE(id.from_cgroup);
  EXPECT_STREQ(id.job_id, "123");
  const JobIdentity unreadable = identify_job("", "124", nullptr);
  EXPECT_TRUE(unreadable.in_slurm);
  EXPECT_STREQ(unreadable.job_id, "124");
}

TEST(IdentifyJob, OutsideSlurm) {
  const JobIdentity id = identify_job("0::/user.slice\n", nullptr, "5");
  EXPECT_FALSE(id.in_slurm);
  EXPECT_FALSE(id.from_cgroup);
  EXPECT_FALSE(id.has_job_id());
  EXPECT_STREQ(id.array_task, "");  // an array task id outside SLURM means nothing
}

TEST(IdentifyJob, UnusableEnvironmentStillMeansInsideSlurm) {
  for (const char* bad : {"abc", "", "12 ", " 12", "-5", "4242x", "123456789012345678901"}) {
    const JobIdentity id = identify_job("", bad, nullptr);
    EXPECT_TRUE(id.in_slurm) << "'" << bad << "'";
    EXPECT_FALSE(id.has_job_id()) << "'" << bad << "'";
    EXPECT_FALSE(id.from_cgroup);
  }
  const JobIdentity twenty = identify_job("", "12345678901234567890", nullptr);
  EXPECT_STREQ(twenty.job_id, "12345678901234567890");
}

TEST(IdentifyJob, ArrayTask) {
  EXPECT_STREQ(identify_job("", "10", "7").array_task, "7");
  EXPECT_STREQ(identify_job(kCgroupV2, nullptr, "31").array_task, "31");
  EXPECT_STREQ(identify_job("", "10", "7a").array_task, "");
  EXPECT_STREQ(identify_job("", "10", "").array_task, "");
  EXPECT_STREQ(identify_job("", "10", "-1").array_task, "");
  EXPECT_STREQ(identify_job("", "10", nullptr).array_task, "");
  EXPECT_STREQ(identify_job("", "10", "123456789012345").array_task, "123456789012345");
  EXPECT_STREQ(identify_job("", "10", "1234567890123456").array_task, "");  // does not fit
  // A non-numeric job id does not stop a numeric array task from being read.
  const JobIdentity id = identify_job("", "abc", "3");
  EXPECT_TRUE(id.in_slurm);
  EXPECT_STREQ(id.array_task, "3");
}

}  // namespace
}  // namespace softmig::core
