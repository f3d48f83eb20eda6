// SPDX-License-Identifier: Apache-2.0
// What /proc says about processes: start times (pid-reuse proof), liveness of ledger slots,
// job membership, and the environment seam.
#include "platform/process.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "platform/env.hpp"
#include "test_support.hpp"

namespace softmig::platform {
namespace {

bool own_cgroup_names_a_job() {
  char job[24];
  return core::job_id_from_cgroup(test::slurp("/proc/self/cgroup"), job, sizeof(job));
}

TEST(ProcessStartTime, OwnStartTimeIsKnownAndStable) {
  const std::uint64_t t = process_start_time(getpid());
  EXPECT_GT(t, 0U);
  EXPECT_EQ(process_start_time(getpid()), t);
}

TEST(ProcessStartTime, UnknownPidIsZero) {
  EXPECT_EQ(process_start_time(0x7ffffff0), 0U);
  EXPECT_EQ(process_start_time(-1), 0U);
}

TEST(ProcessStartTime, CommandNamesWithSpacesAndParenthesesAreParsed) {
  struct Report {
    std::uint64_t own_view = 0;
    int ready = 0;
  };
  test::SharedBox<Report> report;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = test::spawn([&] {
    close(go[1]);
    prctl(PR_SET_NAME, "a) b (c) 9 9", 0, 0, 0);
    report->own_view = process_start_time(getpid());
    __atomic_store_n(&report->ready, 1, __ATOMIC_RELEASE);
    char c;
    (void)!read(go[0], &c, 1);  // stay alive until the parent has looked
    return 0;
  });
  ASSERT_GT(child, 0);
  close(go[0]);
  while (__atomic_load_n(&report->ready, __ATOMIC_ACQUIRE) == 0) usleep(1000);
  const std::uint64_t seen = process_start_time(child);
  const std::string stat = test::slurp("/proc/" + std::to_string(child) + "/stat");
  const ProcLiveness live;
  const bool alive = live.alive(static_cast<std::uint64_t>(child), seen);
  close(go[1]);
  EXPECT_EQ(test::wait_exit(child), 0);
  EXPECT_NE(stat.find("(a) b (c) 9 9)"), std::string::npos) << stat;
  EXPECT_GT(seen, 0U);
  EXPECT_EQ(seen, report->own_view);
  EXPECT_GE(seen, process_start_time(getpid()));
  EXPECT_TRUE(alive);
}

TEST(ProcLiveness, SelfIsAliveOnlyWithItsOwnStartTime) {
  const ProcLiveness live;
  const std::uint64_t t = process_start_time(getpid());
  const auto self = static_cast<std::uint64_t>(getpid());
  EXPECT_TRUE(live.alive(self, t));
  EXPECT_FALSE(live.alive(self, t + 1)) << "a reused pid is another process";
  EXPECT_FALSE(live.alive(self, 0));
}

TEST(ProcLiveness, ImpossiblePidsAreDead) {
  const ProcLiveness live;
  EXPECT_FALSE(live.alive(0, 0));
  EXPECT_FALSE(live.alive(0x80000000ULL, 0));
  EXPECT_FALSE(live.alive(~0ULL, 0));
  EXPECT_FALSE(live.alive(0x7ffffff0ULL, 1));
}

TEST(ProcLiveness, ZombieAndReapedChildrenAreDead) {
  const ProcLiveness live;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = test::spawn([&] {
    close(go[1]);
    char c;
    (void)!read(go[0], &c, 1);
    return 0;
  });
  ASSERT_GT(child, 0);
  close(go[0]);
  const auto pid = static_cast<std::uint64_t>(child);
  std::uint64_t start = 0;
  for (int i = 0; i < 1000 && start == 0; ++i) start = process_start_time(child);
  ASSERT_GT(start, 0U);
  EXPECT_TRUE(live.alive(pid, start));
  close(go[1]);  // the child exits ...
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);  // ... and is a zombie
  EXPECT_FALSE(live.alive(pid, start)) << "a zombie has released its GPU memory";
  EXPECT_EQ(test::wait_exit(child), 0);
  EXPECT_FALSE(live.alive(pid, start));
}

TEST(PidInJob, ProcessesOutsideTheJobAreNotMembers) {
  if (own_cgroup_names_a_job()) GTEST_SKIP() << "the tests run inside a SLURM job";
  EXPECT_FALSE(pid_in_job(getpid(), "4242"));
  EXPECT_FALSE(pid_in_job(0x7ffffff0, "4242"));
}

TEST(UserName, IsTheEffectiveUsersName) {
  char name[64];
  user_name(name, sizeof(name));
  const passwd* pw = getpwuid(geteuid());
  if (pw != nullptr) {
    EXPECT_STREQ(name, pw->pw_name);
  } else {
    EXPECT_EQ(std::string(name), std::to_string(geteuid()));
  }
  char tiny[3];
  user_name(tiny, sizeof(tiny));
  EXPECT_LT(std::strlen(tiny), sizeof(tiny));
}

TEST(Env, ReadsTheEnvironment) {
  EXPECT_FALSE(secure_exec());
  const int rc = test::run_in_child([] {
    setenv("SOFTMIG_TEST_VALUE", "/some/path", 1);
    unsetenv("SOFTMIG_TEST_UNSET");
    if (env("SOFTMIG_TEST_VALUE") == nullptr || std::strcmp(env("SOFTMIG_TEST_VALUE"), "/some/path") != 0) return 1;
    if (path_env("SOFTMIG_TEST_VALUE") == nullptr) return 2;  // not a secure-exec process
    if (env("SOFTMIG_TEST_UNSET") != nullptr || path_env("SOFTMIG_TEST_UNSET") != nullptr) return 3;
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace softmig::platform
