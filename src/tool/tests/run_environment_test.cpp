// SPDX-License-Identifier: Apache-2.0
#include "tool/run_environment.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

RunOptions base_options() {
  RunOptions o;
  o.library = "/opt/softmig/lib/libsoftmig.so";
  o.session = "run-4242";
  return o;
}

std::size_t count_prefix(const std::vector<std::string>& env, const std::string& prefix) {
  return static_cast<std::size_t>(std::count_if(env.begin(), env.end(), [&](const std::string& e) {
    return e.rfind(prefix, 0) == 0;
  }));
}

TEST(ParseMemoryFlag, AcceptsWhatTheLibraryAccepts) {
  EXPECT_EQ(parse_memory_flag("4G"), 4ULL << 30U);
  EXPECT_EQ(parse_memory_flag("512MiB"), 512ULL << 20U);
  EXPECT_EQ(parse_memory_flag("11517.0M"), 11517ULL << 20U);
  EXPECT_EQ(parse_memory_flag("1073741824"), 1073741824ULL);
  EXPECT_EQ(parse_memory_flag("0"), 0ULL);
}

TEST(ParseMemoryFlag, RejectsMalformedWithUsageError) {
  for (const char* bad : {"abc", "", "-1G", "4X", "0x10", "4G4"}) {
    try {
      (void)parse_memory_flag(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ToolError& e) {
      EXPECT_EQ(e.exit_code(), kExitUsage);
      EXPECT_NE(std::string(e.what()).find("is not a size (examples: 4G, 512MiB, 11517.0M)"), std::string::npos);
    }
  }
}

TEST(ParseMemoryFlag, MessageQuotesTheValue) {
  try {
    (void)parse_memory_flag("abc");
    FAIL();
  } catch (const ToolError& e) {
    EXPECT_STREQ(e.what(), "--memory 'abc' is not a size (examples: 4G, 512MiB, 11517.0M)");
  }
}

TEST(ParseSmFlag, AcceptsOneToHundred) {
  EXPECT_EQ(parse_sm_flag("1"), 1U);
  EXPECT_EQ(parse_sm_flag("50"), 50U);
  EXPECT_EQ(parse_sm_flag("50%"), 50U);
  EXPECT_EQ(parse_sm_flag("100"), 100U);
}

TEST(ParseSmFlag, RejectsOutOfRangeAndJunk) {
  for (const char* bad : {"0", "101", "150", "-1", "x", "", "%", "5.5"}) {
    try {
      (void)parse_sm_flag(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ToolError& e) {
      EXPECT_EQ(e.exit_code(), kExitUsage);
    }
  }
}

TEST(LimitKey, GlobalOrPerDevice) {
  EXPECT_EQ(limit_key(kMemoryKey, std::nullopt), "CUDA_DEVICE_MEMORY_LIMIT");
  EXPECT_EQ(limit_key(kMemoryKey, 0U), "CUDA_DEVICE_MEMORY_LIMIT_0");
  EXPECT_EQ(limit_key(kSmKey, 3U), "CUDA_DEVICE_SM_LIMIT_3");
}

TEST(PrependPreload, EmptyCurrent) {
  EXPECT_EQ(prepend_preload("", "/l/libsoftmig.so"), "/l/libsoftmig.so");
}

TEST(PrependPreload, KeepsOthersInOrderAfterTheLibrary) {
  EXPECT_EQ(prepend_preload("/a/liba.so:/b/libb.so", "/l/libsoftmig.so"), "/l/libsoftmig.so:/a/liba.so:/b/libb.so");
}

TEST(PrependPreload, NoDuplicateOfTheSameLibrary) {
  EXPECT_EQ(prepend_preload("/a/liba.so:/l/libsoftmig.so", "/l/libsoftmig.so"), "/l/libsoftmig.so:/a/liba.so");
}

TEST(PrependPreload, ReplacesAnotherCopyOfSoftmig) {
  EXPECT_EQ(prepend_preload("/usr/lib/softmig/libsoftmig.so:/a/liba.so", "/l/libsoftmig.so"),
            "/l/libsoftmig.so:/a/liba.so");
  EXPECT_EQ(prepend_preload("libsoftmig.so", "/l/libsoftmig.so"), "/l/libsoftmig.so");
}

TEST(PrependPreload, AcceptsSpacesAndDropsEmptyEntries) {
  EXPECT_EQ(prepend_preload(" /a/liba.so  /b/libb.so::", "/l/libsoftmig.so"), "/l/libsoftmig.so:/a/liba.so:/b/libb.so");
}

TEST(PrependPreload, KeepsLibrariesWhoseNameOnlyResemblesSoftmig) {
  EXPECT_EQ(prepend_preload("/x/libsoftmig.so.bak:/x/mylibsoftmig.so", "/l/libsoftmig.so"),
            "/l/libsoftmig.so:/x/libsoftmig.so.bak:/x/mylibsoftmig.so");
}

TEST(BuildRunEnvironment, SetsGlobalMemoryLimitInBytes) {
  RunOptions o = base_options();
  o.memory_bytes = 1ULL << 30U;
  const auto env = build_run_environment(o, {"PATH=/usr/bin", "HOME=/home/u"});
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_MEMORY_LIMIT"), "1073741824");
  EXPECT_EQ(find_variable(env, "LD_PRELOAD"), "/opt/softmig/lib/libsoftmig.so");
  EXPECT_EQ(find_variable(env, "SOFTMIG_SESSION"), "run-4242");
  EXPECT_EQ(find_variable(env, "PATH"), "/usr/bin");
  EXPECT_EQ(find_variable(env, "HOME"), "/home/u");
  EXPECT_FALSE(find_variable(env, "CUDA_DEVICE_SM_LIMIT"));
  EXPECT_FALSE(find_variable(env, "LIBCUDA_LOG_LEVEL"));
  EXPECT_FALSE(find_variable(env, "SOFTMIG_LOG_FILE"));
}

TEST(BuildRunEnvironment, PerDeviceKeysWithDevice) {
  RunOptions o = base_options();
  o.memory_bytes = 4ULL << 30U;
  o.sm_percent = 25;
  o.device = 2;
  const auto env = build_run_environment(o, {"CUDA_DEVICE_MEMORY_LIMIT=8G"});
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_MEMORY_LIMIT_2"), "4294967296");
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_SM_LIMIT_2"), "25");
  // The inherited global key is not this command's business: it still covers other devices.
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_MEMORY_LIMIT"), "8G");
  EXPECT_FALSE(find_variable(env, "CUDA_DEVICE_SM_LIMIT"));
}

TEST(BuildRunEnvironment, ReplacesInheritedValuesInPlaceAndDropsDuplicates) {
  RunOptions o = base_options();
  o.memory_bytes = 2ULL << 30U;
  o.sm_percent = 50;
  const std::vector<std::string> current = {"A=1", "CUDA_DEVICE_MEMORY_LIMIT=24G", "B=2",
                                            "CUDA_DEVICE_MEMORY_LIMIT=1G", "SOFTMIG_SESSION=old"};
  const auto env = build_run_environment(o, current);
  EXPECT_EQ(count_prefix(env, "CUDA_DEVICE_MEMORY_LIMIT="), 1U);
  EXPECT_EQ(env[1], "CUDA_DEVICE_MEMORY_LIMIT=2147483648");
  EXPECT_EQ(find_variable(env, "SOFTMIG_SESSION"), "run-4242");
  EXPECT_EQ(count_prefix(env, "SOFTMIG_SESSION="), 1U);
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_SM_LIMIT"), "50");
}

TEST(BuildRunEnvironment, SimilarNamesAreNotTouched) {
  RunOptions o = base_options();
  o.memory_bytes = 1024;
  const auto env = build_run_environment(o, {"CUDA_DEVICE_MEMORY_LIMIT_0=5G", "LD_PRELOAD_X=y"});
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_MEMORY_LIMIT_0"), "5G");
  EXPECT_EQ(find_variable(env, "LD_PRELOAD_X"), "y");
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_MEMORY_LIMIT"), "1024");
}

TEST(BuildRunEnvironment, PrependsToInheritedPreload) {
  RunOptions o = base_options();
  const auto env = build_run_environment(o, {"LD_PRELOAD=/a/liba.so"});
  EXPECT_EQ(find_variable(env, "LD_PRELOAD"), "/opt/softmig/lib/libsoftmig.so:/a/liba.so");
  EXPECT_EQ(count_prefix(env, "LD_PRELOAD="), 1U);
}

TEST(BuildRunEnvironment, NoLimitFlagsStillPreloadsAndSetsSession) {
  const auto env = build_run_environment(base_options(), {});
  EXPECT_EQ(env.size(), 2U);
  EXPECT_EQ(find_variable(env, "LD_PRELOAD"), "/opt/softmig/lib/libsoftmig.so");
  EXPECT_EQ(find_variable(env, "SOFTMIG_SESSION"), "run-4242");
}

TEST(BuildRunEnvironment, VerboseSetsLogLevelAndFile) {
  RunOptions o = base_options();
  o.log_file = "/tmp/softmig-run-4242.log";
  const auto env = build_run_environment(o, {"LIBCUDA_LOG_LEVEL=0"});
  EXPECT_EQ(find_variable(env, "LIBCUDA_LOG_LEVEL"), "3");
  EXPECT_EQ(find_variable(env, "SOFTMIG_LOG_FILE"), "/tmp/softmig-run-4242.log");
}

TEST(BuildRunEnvironment, ZeroMemoryIsWrittenAsZero) {
  RunOptions o = base_options();
  o.memory_bytes = 0;
  const auto env = build_run_environment(o, {});
  EXPECT_EQ(find_variable(env, "CUDA_DEVICE_MEMORY_LIMIT"), "0");
}

TEST(FindVariable, ExactNameOnly) {
  const std::vector<std::string> env = {"AB=1", "A=2", "A", "A=3"};
  EXPECT_EQ(find_variable(env, "A"), "2");
  EXPECT_EQ(find_variable(env, "AB"), "1");
  EXPECT_FALSE(find_variable(env, "B"));
}

}  // namespace
}  // namespace softmig::tool
