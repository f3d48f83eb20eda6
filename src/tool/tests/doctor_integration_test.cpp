// SPDX-License-Identifier: Apache-2.0
// `softmig doctor` on a good install tree and on broken ones (each broken in one way), and
// `softmig install-preload` / `remove-preload` on a temporary root. The trees are built under a
// temporary directory and checked with --root; the driver and NVML are the fakes.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "process_helpers.hpp"

namespace softmig::tool::test {
namespace {

namespace fs = std::filesystem;

const std::string kArch = SOFTMIG_LIBRARY_ARCH;
const std::string kLib = kArch.empty() ? "/usr/lib/softmig/libsoftmig.so" : "/usr/lib/" + kArch + "/softmig/libsoftmig.so";

void write(const std::string& path, const std::string& text, mode_t mode = 0644) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
  chmod(path.c_str(), mode);
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void make_dir(const std::string& path, mode_t mode) {
  fs::create_directories(path);
  chmod(path.c_str(), mode);
}

/// A complete, correct install under a temporary root.
class InstallTree : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the install checks want root-owned files: run as root";
    root_ = dir_.path();
    fs::create_directories(fs::path(p(kLib)).parent_path());
    fs::copy_file(SOFTMIG_LIBRARY_PATH, p(kLib));
    chmod(p(kLib).c_str(), 0644);
    write(p("/etc/ld.so.preload"), kLib + "\n");
    make_dir(p("/var/run/softmig"), 0755);
    write(p("/var/run/softmig/4242.conf"), "CUDA_DEVICE_MEMORY_LIMIT=4G\nCUDA_DEVICE_SM_LIMIT=25\n");
    make_dir(p("/var/log/softmig"), 01733);
    write(p("/etc/softmig/slices.conf"),
          "[settings]\nallow_multiple_slices = no\n\n[gpu fake]\nshards = 8\nmatch = softmig fake GPU\n"
          "slice.2 = memory=50%, sm=50\n");
  }

  [[nodiscard]] std::string p(const std::string& path) const { return root_ + path; }

  RunResult tool(std::vector<std::string> args, EnvChanges env = {}) const {
    args.insert(args.begin(), SOFTMIG_TOOL_PATH);
    env.insert(env.begin(), {"LD_LIBRARY_PATH=" SOFTMIG_FAKE_DIR, "-LD_PRELOAD", "-SOFTMIG_FAKE_STATE",
                             "SOFTMIG_FAKE_DEVICES=16G"});
    return run(args, env, 30000);
  }

  RunResult doctor(std::vector<std::string> extra = {}, EnvChanges env = {}) const {
    std::vector<std::string> args = {"doctor", "--root", root_};
    args.insert(args.end(), extra.begin(), extra.end());
    return tool(args, env);
  }

  /// Runs doctor and expects exit 1 with every regex-free `needle` in its output.
  void expect_problem(const std::vector<std::string>& needles) const {
    const RunResult r = doctor();
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    for (const auto& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "missing '" << n << "' in:\n" << r.out;
  }

  TempDir dir_;
  std::string root_;
};

TEST_F(InstallTree, GoodInstallPasses) {
  const RunResult r = doctor();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("0 problems, 0 warnings: the install looks right"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("loads"), std::string::npos);
  EXPECT_NE(r.out.find("/etc/ld.so.preload preloads " + kLib), std::string::npos);
  EXPECT_NE(r.out.find("1 job file parse"), std::string::npos);
  EXPECT_NE(r.out.find("softmig fake GPU 16 GiB"), std::string::npos);
  EXPECT_NE(r.out.find("knows every GPU model"), std::string::npos);
}

TEST_F(InstallTree, MissingLibrary) {
  fs::remove(p(kLib));
  expect_problem({"PROBLEM", "does not exist", "fix: softmig install-preload"});
}

TEST_F(InstallTree, LibraryIsNotAnElfFile) {
  write(p(kLib), "#!/bin/sh\n");
  expect_problem({"is not an ELF file", "reinstall the softmig package"});
}

TEST_F(InstallTree, LibraryWritableByOthers) {
  chmod(p(kLib).c_str(), 0666);
  expect_problem({"mode 0666", "chmod 0644 " + kLib});
}

TEST_F(InstallTree, NotPreloaded) {
  fs::remove(p("/etc/ld.so.preload"));
  expect_problem({"/etc/ld.so.preload does not exist and LD_PRELOAD does not name libsoftmig.so",
                  "fix: softmig install-preload"});
}

TEST_F(InstallTree, PreloadedOnlyThroughTheEnvironmentIsAWarning) {
  fs::remove(p("/etc/ld.so.preload"));
  const RunResult r = doctor({}, {"LD_PRELOAD=" + p(kLib)});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("WARNING  preload"), std::string::npos) << r.out;
}

TEST_F(InstallTree, PreloadNamesTwoCopies) {
  write(p("/etc/ld.so.preload"), kLib + "\n/opt/x/libsoftmig.so\n");
  expect_problem({"names libsoftmig.so 2 times"});
}

TEST_F(InstallTree, ConfigDirWritableByOthers) {
  chmod(p("/var/run/softmig").c_str(), 0777);
  expect_problem({"mode 0777", "chmod 0755 /var/run/softmig"});
}

TEST_F(InstallTree, ConfigDirMissing) {
  fs::remove_all(p("/var/run/softmig"));
  expect_problem({"/var/run/softmig (under", "does not exist", "install -d -m 0755 -o root -g root /var/run/softmig"});
}

TEST_F(InstallTree, JobFileDoesNotParse) {
  write(p("/var/run/softmig/4243_1.conf"), "CUDA_DEVICE_MEMORY_LIMIT=lots\nCUDA_DEVICE_SM_LIMIT=250\n");
  expect_problem({"/var/run/softmig/4243_1.conf has problems", "CUDA_DEVICE_MEMORY_LIMIT", "1 job file parse"});
}

TEST_F(InstallTree, JobFileWritableByOthers) {
  chmod(p("/var/run/softmig/4242.conf").c_str(), 0666);
  expect_problem({"4242.conf is not a root-owned regular file", "fail closed"});
}

TEST_F(InstallTree, LogDirWithoutStickyBit) {
  chmod(p("/var/log/softmig").c_str(), 0777);
  expect_problem({"without the sticky bit", "chmod 1733 /var/log/softmig"});
}

TEST_F(InstallTree, LogDirMissing) {
  fs::remove_all(p("/var/log/softmig"));
  expect_problem({"install -d -m 1733 -o root -g root /var/log/softmig"});
}

TEST_F(InstallTree, NoDriver) {
  // No fake driver on the path; only meaningful where the system has no libcuda.so.1 either.
  const RunResult probe = run({"/bin/sh", "-c", "ldconfig -p | grep -q 'libcuda.so.1 '"});
  if (probe.exit_code == 0) GTEST_SKIP() << "this machine has a real driver";
  const RunResult r = doctor({}, {"LD_LIBRARY_PATH=" + dir_.path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("cannot load libcuda.so.1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cannot load libnvidia-ml.so.1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped  slice-table"), std::string::npos) << r.out;
}

TEST_F(InstallTree, SliceTableWithoutThisGpu) {
  write(p("/etc/softmig/slices.conf"), "[gpu l40s]\nshards = 8\nmatch = L40S\nslice.2 = memory=50%, sm=50\n");
  expect_problem({"knows none of the GPU types of: softmig fake GPU 16 GiB", "match = "});
}

TEST_F(InstallTree, NoSliceTableIsOnlyANote) {
  fs::remove(p("/etc/softmig/slices.conf"));
  const RunResult r = doctor();
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("skipped  slice-table  no slice table"), std::string::npos) << r.out;
}

TEST_F(InstallTree, SkipAndUsageErrors) {
  fs::remove(p("/etc/ld.so.preload"));
  EXPECT_EQ(doctor({"--skip", "preload"}).exit_code, 0);
  EXPECT_EQ(doctor({"--skip", "no-such-check"}).exit_code, 2);
}

TEST_F(InstallTree, InstallAndRemovePreload) {
  write(p("/etc/ld.so.preload"), "# site\n/opt/other/libother.so\n");
  const RunResult in = tool({"install-preload", "--root", root_});
  ASSERT_EQ(in.exit_code, 0) << in.out << in.err;
  EXPECT_EQ(read(p("/etc/ld.so.preload")), kLib + "\n# site\n/opt/other/libother.so\n");
  EXPECT_EQ(read(p("/etc/ld.so.preload.softmig-backup")), "# site\n/opt/other/libother.so\n");
  const RunResult again = tool({"install-preload", "--root", root_});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("nothing changed"), std::string::npos);
  EXPECT_EQ(doctor({"--skip", "driver", "--skip", "nvml"}).exit_code, 0);

  const RunResult out = tool({"remove-preload", "--root", root_});
  ASSERT_EQ(out.exit_code, 0) << out.out << out.err;
  EXPECT_EQ(read(p("/etc/ld.so.preload")), "# site\n/opt/other/libother.so\n");
  EXPECT_NE(tool({"remove-preload", "--root", root_}).out.find("nothing changed"), std::string::npos);
}

TEST_F(InstallTree, RemovePreloadDeletesAFileThatHeldOnlySoftmig) {
  ASSERT_EQ(tool({"remove-preload", "--root", root_}).exit_code, 0);
  EXPECT_FALSE(fs::exists(p("/etc/ld.so.preload")));
  EXPECT_EQ(read(p("/etc/ld.so.preload.softmig-backup")), kLib + "\n");
  fs::remove(p("/etc/ld.so.preload.softmig-backup"));
  ASSERT_EQ(tool({"install-preload", "--root", root_}).exit_code, 0);
  EXPECT_EQ(read(p("/etc/ld.so.preload")), kLib + "\n");
  EXPECT_FALSE(fs::exists(p("/etc/ld.so.preload.softmig-backup")));  // nothing to back up
}

TEST_F(InstallTree, InstallPreloadRefusesABrokenLibrary) {
  fs::remove(p("/etc/ld.so.preload"));
  write(p(kLib), "not a library");
  const RunResult r = tool({"install-preload", "--root", root_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not an ELF file; /etc/ld.so.preload not changed"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(p("/etc/ld.so.preload")));
}

}  // namespace
}  // namespace softmig::tool::test
