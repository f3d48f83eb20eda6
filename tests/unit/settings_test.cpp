// SPDX-License-Identifier: Apache-2.0
// The settings a process decides once (and its job identity, which they start from): where its limits come from (environment outside SLURM,
// never inside) and where the job's ledger lives. settings() and job_identity() are computed
// once per process, so every case runs in a forked child that prepares its environment first;
// this executable's own process never calls them.
#include "platform/settings.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

#include "core/job.hpp"
#include "platform/process.hpp"
#include "test_support.hpp"

#ifndef SOFTMIG_CONFIG_DIR
#error "SOFTMIG_CONFIG_DIR must be defined as for the platform library"
#endif

namespace softmig::platform {
namespace {

using test::TempDir;

constexpr std::uint64_t GiB = 1ULL << 30U;
constexpr const char* kJob = "987654321";

static_assert(std::is_trivially_copyable_v<Settings>);

bool own_cgroup_names_a_job() {
  char job[24];
  return core::job_id_from_cgroup(test::slurp("/proc/self/cgroup"), job, sizeof(job));
}

bool config_dir_has_our_job() {
  const std::string dir = SOFTMIG_CONFIG_DIR;
  return test::exists(dir + "/" + kJob + ".conf") || test::exists(dir + "/" + kJob + "_0.conf");
}

/// Clears everything settings() reads, so that the parent's environment cannot leak in.
void clean_environment(const std::string& runtime_dir) {
  for (const char* v : {"SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_TMPDIR", "SOFTMIG_SESSION",
                        "CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_LIMIT", "LIBCUDA_LOG_LEVEL", "SOFTMIG_LOG_FILE"}) {
    unsetenv(v);
  }
  for (int i = 0; i < 16; ++i) {
    unsetenv(("CUDA_DEVICE_MEMORY_LIMIT_" + std::to_string(i)).c_str());
    unsetenv(("CUDA_DEVICE_SM_LIMIT_" + std::to_string(i)).c_str());
  }
  setenv("XDG_RUNTIME_DIR", runtime_dir.c_str(), 1);
}

class SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (own_cgroup_names_a_job()) GTEST_SKIP() << "the tests run inside a SLURM job";
  }

  /// Runs settings() in a child whose environment `prepare` sets up (after cleaning it).
  Settings decide(const std::function<void()>& prepare) {
    test::SharedBox<Settings> out;
    test::SharedBox<int> done;
    const std::string runtime = runtime_.path();
    const int rc = test::run_in_child([&] {
      clean_environment(runtime);
      prepare();
      *out = settings();
      *done = 1;
      return 0;
    });
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(*done, 1);
    return *out;
  }

  TempDir runtime_;  // stands in for XDG_RUNTIME_DIR
};

TEST(LimitSource, DescriptionsAreDistinct) {
  EXPECT_STRNE(describe(LimitSource::kNone), describe(LimitSource::kJobFile));
  EXPECT_NE(std::string(describe(LimitSource::kJobFileRejected)).find("fail closed"), std::string::npos);
  EXPECT_NE(std::string(describe(LimitSource::kJobUnknown)).find("fail closed"), std::string::npos);
  EXPECT_STREQ(describe(LimitSource::kEnvironment), "environment");
}

TEST_F(SettingsTest, OutsideSlurmWithoutVariablesThereAreNoLimits) {
  const Settings s = decide([] {});
  EXPECT_EQ(s.source, LimitSource::kNone);
  EXPECT_FALSE(s.limits.any());
  EXPECT_STREQ(s.config_path, "");
  EXPECT_STREQ(s.ledger_key, "session-default");
  EXPECT_EQ(std::string(s.ledger_path), runtime_.path() + "/softmig/cudevshr.cache.session-default");
  EXPECT_EQ(std::string(s.lock_path), runtime_.path() + "/softmig/vgpulock/lock.session-default");
  struct stat st {};
  ASSERT_EQ(lstat((runtime_.path() + "/softmig/vgpulock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700U);
  ASSERT_EQ(lstat((runtime_.path() + "/softmig").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700U);
}

TEST_F(SettingsTest, OutsideSlurmTheEnvironmentSetsLimits) {
  const Settings s = decide([] {
    setenv("CUDA_DEVICE_MEMORY_LIMIT", "4G", 1);
    setenv("CUDA_DEVICE_SM_LIMIT_1", "50", 1);
  });
  EXPECT_EQ(s.source, LimitSource::kEnvironment);
  EXPECT_TRUE(s.limits.any());
  EXPECT_EQ(s.limits.resolve(0, "").memory_bytes, 4 * GiB);
  EXPECT_EQ(s.limits.resolve(0, "").sm_percent, 100U);
  EXPECT_EQ(s.limits.resolve(1, "").sm_percent, 50U);
}

TEST_F(SettingsTest, OutsideSlurmAMalformedVariableFailsClosed) {
  const Settings s = decide([] { setenv("CUDA_DEVICE_MEMORY_LIMIT", "lots", 1); });
  EXPECT_EQ(s.source, LimitSource::kEnvironment);
  EXPECT_EQ(s.limits.resolve(0, "").memory_bytes, 0U);
}

TEST_F(SettingsTest, OutsideSlurmZeroIsNoLimit) {
  const Settings s = decide([] { setenv("CUDA_DEVICE_MEMORY_LIMIT", "0", 1); });
  EXPECT_EQ(s.source, LimitSource::kNone);
  EXPECT_FALSE(s.limits.any());
}

TEST_F(SettingsTest, SessionNameIsSanitisedForThePath) {
  const Settings s = decide([] { setenv("SOFTMIG_SESSION", "my job/../x;rm", 1); });
  EXPECT_STREQ(s.ledger_key, "session-my_job_.._x_rm");
  EXPECT_EQ(std::string(s.ledger_path), runtime_.path() + "/softmig/cudevshr.cache.session-my_job_.._x_rm");
  const std::string file = std::string(s.ledger_path).substr(runtime_.path().size() + 9);
  EXPECT_EQ(file.find('/'), std::string::npos);
}

TEST_F(SettingsTest, LongSessionNameIsTruncated) {
  const Settings s = decide([] { setenv("SOFTMIG_SESSION", std::string(200, 'a').c_str(), 1); });
  EXPECT_EQ(std::string(s.ledger_key), "session-" + std::string(47, 'a'));
}

TEST_F(SettingsTest, InsideSlurmTheEnvironmentCannotSetLimits) {
  if (config_dir_has_our_job()) GTEST_SKIP() << SOFTMIG_CONFIG_DIR << " has a file for job " << kJob;
  const Settings s = decide([] {
    setenv("SLURM_JOB_ID", kJob, 1);
    setenv("CUDA_DEVICE_MEMORY_LIMIT", "1G", 1);  // a user lifting or setting their own slice
  });
  EXPECT_EQ(s.source, LimitSource::kNone);
  EXPECT_FALSE(s.limits.any());
  EXPECT_STREQ(s.ledger_key, kJob);
}

TEST_F(SettingsTest, InsideSlurmAnUnreadableJobIdFailsClosed) {
  for (const char* bad : {"abc", "", "12;34"}) {
    const Settings s = decide([bad] { setenv("SLURM_JOB_ID", bad, 1); });
    EXPECT_EQ(s.source, LimitSource::kJobUnknown) << "'" << bad << "'";
    EXPECT_TRUE(s.limits.any());
    EXPECT_EQ(s.limits.resolve(0, "").memory_bytes, 0U);
    EXPECT_EQ(s.limits.resolve(0, "").sm_percent, 1U);
    EXPECT_STREQ(s.ledger_key, "unknown");
  }
}

TEST_F(SettingsTest, InsideSlurmTheLedgerLivesInSlurmTmpdir) {
  TempDir job_tmp;
  const std::string tmp = job_tmp.path();
  const Settings s = decide([&tmp] {
    setenv("SLURM_JOB_ID", kJob, 1);
    setenv("SLURM_TMPDIR", tmp.c_str(), 1);
  });
  EXPECT_EQ(std::string(s.ledger_path), tmp + "/cudevshr.cache." + kJob);
  EXPECT_EQ(std::string(s.lock_path), tmp + "/vgpulock/lock." + kJob);
}

TEST_F(SettingsTest, UnusableSlurmTmpdirFallsBackToThePrivateDirectory) {
  TempDir job_tmp;
  ASSERT_EQ(chmod(job_tmp.path().c_str(), 0777), 0);  // writable by anyone, no sticky bit
  const std::string tmp = job_tmp.path();
  for (const std::string& value : {tmp, std::string("relative/dir"), std::string("")}) {
    const Settings s = decide([&value] {
      setenv("SLURM_JOB_ID", kJob, 1);
      setenv("SLURM_TMPDIR", value.c_str(), 1);
    });
    EXPECT_EQ(std::string(s.ledger_path), runtime_.path() + "/softmig/cudevshr.cache." + kJob) << "'" << value << "'";
  }
}

TEST_F(SettingsTest, DecidedOnce) {
  struct Twice {
    Settings first;
    Settings second;
  };
  test::SharedBox<Twice> out;
  const std::string runtime = runtime_.path();
  ASSERT_EQ(test::run_in_child([&] {
              clean_environment(runtime);
              setenv("CUDA_DEVICE_MEMORY_LIMIT", "4G", 1);
              out->first = settings();
              setenv("CUDA_DEVICE_MEMORY_LIMIT", "0", 1);  // a later change has no effect
              out->second = settings();
              return 0;
            }),
            0);
  EXPECT_EQ(out->second.limits.resolve(0, "").memory_bytes, 4 * GiB);
  EXPECT_EQ(out->second.source, LimitSource::kEnvironment);
}

// job_identity() is decided once per process too.

TEST(JobIdentity, FromTheEnvironmentWhenTheCgroupNamesNoJob) {
  if (own_cgroup_names_a_job()) GTEST_SKIP() << "the tests run inside a SLURM job";
  struct Seen {
    core::JobIdentity id;
  };
  test::SharedBox<Seen> seen;
  const int rc = test::run_in_child([&] {
    setenv("SLURM_JOB_ID", "4242", 1);
    setenv("SLURM_ARRAY_TASK_ID", "3", 1);
    seen->id = job_identity();
    return 0;
  });
  ASSERT_EQ(rc, 0);
  EXPECT_TRUE(seen->id.in_slurm);
  EXPECT_FALSE(seen->id.from_cgroup);
  EXPECT_STREQ(seen->id.job_id, "4242");
  EXPECT_STREQ(seen->id.array_task, "3");
}

TEST(JobIdentity, IsDecidedOnce) {
  if (own_cgroup_names_a_job()) GTEST_SKIP() << "the tests run inside a SLURM job";
  struct Seen {
    bool in_slurm_after_change = true;
    char first[24] = {};
  };
  test::SharedBox<Seen> seen;
  const int rc = test::run_in_child([&] {
    unsetenv("SLURM_JOB_ID");
    const core::JobIdentity& a = job_identity();
    std::memcpy(seen->first, a.job_id, sizeof(seen->first));
    setenv("SLURM_JOB_ID", "99", 1);  // too late: a process cannot change its job
    seen->in_slurm_after_change = job_identity().in_slurm;
    return 0;
  });
  ASSERT_EQ(rc, 0);
  EXPECT_STREQ(seen->first, "");
  EXPECT_FALSE(seen->in_slurm_after_change);
}

}  // namespace
}  // namespace softmig::platform
