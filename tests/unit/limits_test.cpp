// SPDX-License-Identifier: Apache-2.0
// Limits as an administrator writes them in a job file (or a user in the environment outside
// SLURM), how they resolve to one GPU, and the fail-closed rules for anything malformed.
#include "core/limits.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace softmig::core {
namespace {

constexpr std::uint64_t MiB = 1ULL << 20U;
constexpr std::uint64_t GiB = 1ULL << 30U;
constexpr const char* kUuidA = "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
constexpr const char* kUuidB = "GPU-11111111-2222-3333-4444-555555555555";

std::string all_issues(const LimitIssues& issues) {
  std::string s;
  for (unsigned i = 0; i < issues.count; ++i) {
    s += issues.items[i].text;
    s += "\n";
  }
  return s;
}

bool has_issue(const LimitIssues& issues, std::string_view needle) {
  for (unsigned i = 0; i < issues.count; ++i) {
    if (std::string_view(issues.items[i].text).find(needle) != std::string_view::npos) return true;
  }
  return false;
}

Limits parse(std::string_view text, LimitIssues& issues) { return parse_limits_file(text, issues); }

Limits parse_clean(std::string_view text) {
  LimitIssues issues;
  Limits l = parse_limits_file(text, issues);
  EXPECT_EQ(issues.count, 0U) << all_issues(issues);
  return l;
}

// ---------------------------------------------------------------------------------------------
// Keys and precedence

TEST(Limits, DefaultIsUnlimited) {
  const Limits l;
  EXPECT_FALSE(l.any());
  const DeviceLimit d = l.resolve(0, kUuidA);
  EXPECT_FALSE(d.memory_bytes.has_value());
  EXPECT_EQ(d.sm_percent, 100U);
  EXPECT_FALSE(d.limited());
}

TEST(Limits, GlobalKeyAppliesToEveryDevice) {
  const Limits l = parse_clean("CUDA_DEVICE_MEMORY_LIMIT=4G\nCUDA_DEVICE_SM_LIMIT=50\n");
  EXPECT_TRUE(l.any());
  for (int ord : {-1, 0, 3, 15, 16, 100}) {
    const DeviceLimit d = l.resolve(ord, ord == 3 ? kUuidA : "");
    EXPECT_EQ(d.memory_bytes, 4 * GiB) << ord;
    EXPECT_EQ(d.sm_percent, 50U) << ord;
    EXPECT_TRUE(d.limited());
  }
}

TEST(Limits, OrdinalKeyAppliesToThatDeviceOnly) {
  const Limits l = parse_clean("CUDA_DEVICE_MEMORY_LIMIT_1=2G\nCUDA_DEVICE_SM_LIMIT_15=25\n");
  EXPECT_EQ(l.resolve(1, "").memory_bytes, 2 * GiB);
  EXPECT_FALSE(l.resolve(0, "").memory_bytes.has_value());
  EXPECT_FALSE(l.resolve(2, "").memory_bytes.has_value());
  EXPECT_FALSE(l.resolve(-1, "").memory_bytes.has_value());  // unknown ordinal: no ordinal key
  EXPECT_EQ(l.resolve(15, "").sm_percent, 25U);
  EXPECT_EQ(l.resolve(14, "").sm_percent, 100U);
  EXPECT_TRUE(l.any());
}

TEST(Limits, OrdinalWithLeadingZerosIsTheSameDevice) {
  const Limits l = parse_clean("CUDA_DEVICE_MEMORY_LIMIT_007=1G\n");
  EXPECT_EQ(l.resolve(7, "").memory_bytes, GiB);
}

TEST(Limits, UuidKeyAppliesToThatGpuWhateverItsOrdinal) {
  const std::string text = std::string("CUDA_DEVICE_MEMORY_LIMIT_") + kUuidA + "=3G\n";
  const Limits l = parse_clean(text);
  EXPECT_EQ(l.resolve(0, kUuidA).memory_bytes, 3 * GiB);
  EXPECT_EQ(l.resolve(5, kUuidA).memory_bytes, 3 * GiB);
  EXPECT_EQ(l.resolve(-1, kUuidA).memory_bytes, 3 * GiB);
  EXPECT_FALSE(l.resolve(0, kUuidB).memory_bytes.has_value());
  EXPECT_FALSE(l.resolve(0, "").memory_bytes.has_value());
}

TEST(Limits, UuidMatchIsCaseInsensitive) {
  const Limits l = parse_clean("CUDA_DEVICE_MEMORY_LIMIT_GPU-ABCDEF01-0000-0000-0000-000000000000=1G\n");
  EXPECT_EQ(l.resolve(0, "GPU-abcdef01-0000-0000-0000-000000000000").memory_bytes, GiB);
  EXPECT_EQ(l.resolve(0, "gpu-ABCDEF01-0000-0000-0000-000000000000").memory_bytes, GiB);
}

TEST(Limits, MigUuidKeyIsAccepted) {
  const Limits l = parse_clean("CUDA_DEVICE_MEMORY_LIMIT_MIG-4e2d0a62-8f3a-5a0b-9d2a-111111111111=5G\n");
  EXPECT_EQ(l.resolve(0, "MIG-4e2d0a62-8f3a-5a0b-9d2a-111111111111").memory_bytes, 5 * GiB);
}

TEST(Limits, PrecedenceUuidOverOrdinalOverGlobal) {
  const std::string text = std::string("CUDA_DEVICE_MEMORY_LIMIT_") + kUuidA + "=2G\n" +
                           "CUDA_DEVICE_MEMORY_LIMIT=8G\n"
                           "CUDA_DEVICE_MEMORY_LIMIT_0=4G\n" +
                           "CUDA_DEVICE_SM_LIMIT=80\n" + "CUDA_DEVICE_SM_LIMIT_0=60\n" +
                           "CUDA_DEVICE_SM_LIMIT_" + kUuidA + "=40\n";
  const Limits l = parse_clean(text);
  EXPECT_EQ(l.resolve(0, kUuidA).memory_bytes, 2 * GiB);
  EXPECT_EQ(l.resolve(0, kUuidA).sm_percent, 40U);
  EXPECT_EQ(l.resolve(0, kUuidB).memory_bytes, 4 * GiB);
  EXPECT_EQ(l.resolve(0, kUuidB).sm_percent, 60U);
  EXPECT_EQ(l.resolve(1, kUuidB).memory_bytes, 8 * GiB);
  EXPECT_EQ(l.resolve(1, kUuidB).sm_percent, 80U);
  EXPECT_EQ(l.resolve(1, kUuidA).memory_bytes, 2 * GiB);
  // The more specific key wins even when it is larger than the general one.
  const Limits big = parse_clean("CUDA_DEVICE_MEMORY_LIMIT=1G\nCUDA_DEVICE_MEMORY_LIMIT_0=6G\n");
  EXPECT_EQ(big.resolve(0, "").memory_bytes, 6 * GiB);
  EXPECT_EQ(big.resolve(1, "").memory_bytes, GiB);
}

TEST(Limits, PrecedenceIsPerKindOfLimit) {
  // The UUID key sets only compute; memory still comes from the ordinal key.
  const std::string text = std::string("CUDA_DEVICE_MEMORY_LIMIT_0=4G\nCUDA_DEVICE_SM_LIMIT_") + kUuidA + "=30\n";
  const Limits l = parse_clean(text);
  const DeviceLimit d = l.resolve(0, kUuidA);
  EXPECT_EQ(d.memory_bytes, 4 * GiB);
  EXPECT_EQ(d.sm_percent, 30U);
}

TEST(Limits, DuplicateKeysKeepTheSmallerValue) {
  EXPECT_EQ(parse_clean("CUDA_DEVICE_MEMORY_LIMIT=8G\nCUDA_DEVICE_MEMORY_LIMIT=4G\n").resolve(0, "").memory_bytes,
            4 * GiB);
  EXPECT_EQ(parse_clean("CUDA_DEVICE_MEMORY_LIMIT=4G\nCUDA_DEVICE_MEMORY_LIMIT=8G\n").resolve(0, "").memory_bytes,
            4 * GiB);
  EXPECT_EQ(parse_clean("CUDA_DEVICE_SM_LIMIT_2=50\nCUDA_DEVICE_SM_LIMIT_2=30\n").resolve(2, "").sm_percent, 30U);
  EXPECT_EQ(parse_clean("CUDA_DEVICE_SM_LIMIT_2=30\nCUDA_DEVICE_SM_LIMIT_2=50\n").resolve(2, "").sm_percent, 30U);
  // The same UUID written in two cases is the same key.
  const Limits l = parse_clean(
      "CUDA_DEVICE_MEMORY_LIMIT_GPU-AAAA0000-0000-0000-0000-000000000000=6G\n"
      "CUDA_DEVICE_MEMORY_LIMIT_GPU-aaaa0000-0000-0000-0000-000000000000=3G\n");
  EXPECT_EQ(l.resolve(0, "GPU-AAAA0000-0000-0000-0000-000000000000").memory_bytes, 3 * GiB);
}

TEST(Limits, ZeroMeansUnlimited) {
  const Limits mem = parse_clean("CUDA_DEVICE_MEMORY_LIMIT=0\n");
  EXPECT_FALSE(mem.resolve(0, "").memory_bytes.has_value());
  EXPECT_FALSE(mem.any());
  const Limits sm = parse_clean("CUDA_DEVICE_SM_LIMIT=0\n");
  EXPECT_EQ(sm.resolve(0, "").sm_percent, 100U);
  EXPECT_FALSE(sm.any());
  const Limits hundred = parse_clean("CUDA_DEVICE_SM_LIMIT=100\n");
  EXPECT_EQ(hundred.resolve(0, "").sm_percent, 100U);
  EXPECT_FALSE(hundred.any());
  // "0" never lifts a limit written by another occurrence of the same key.
  EXPECT_EQ(parse_clean("CUDA_DEVICE_MEMORY_LIMIT=4G\nCUDA_DEVICE_MEMORY_LIMIT=0\n").resolve(0, "").memory_bytes,
            4 * GiB);
  EXPECT_EQ(parse_clean("CUDA_DEVICE_SM_LIMIT=0\nCUDA_DEVICE_SM_LIMIT=50\n").resolve(0, "").sm_percent, 50U);
}

// ---------------------------------------------------------------------------------------------
// Malformed values fail closed

TEST(Limits, MalformedMemoryIsZeroBytesWithAnIssue) {
  for (const char* bad : {"abc", "4X", "-1", "1e9", "0x10", "", "4G # comment", "'4G\"", "17179869184G"}) {
    LimitIssues issues;
    const Limits l = parse(std::string("CUDA_DEVICE_MEMORY_LIMIT=") + bad + "\n", issues);
    EXPECT_EQ(l.resolve(0, "").memory_bytes, 0U) << "'" << bad << "'";
    EXPECT_TRUE(l.any()) << bad;
    ASSERT_EQ(issues.count, 1U) << bad;
    EXPECT_TRUE(has_issue(issues, "CUDA_DEVICE_MEMORY_LIMIT=")) << all_issues(issues);
    EXPECT_TRUE(has_issue(issues, "is not a size")) << all_issues(issues);
    EXPECT_TRUE(has_issue(issues, "allowing 0 bytes")) << all_issues(issues);
  }
}

TEST(Limits, MalformedMemoryIssueQuotesTheValue) {
  LimitIssues issues;
  (void)parse("CUDA_DEVICE_MEMORY_LIMIT_2=lots\n", issues);
  ASSERT_EQ(issues.count, 1U);
  EXPECT_TRUE(has_issue(issues, "CUDA_DEVICE_MEMORY_LIMIT_2=lots is not a size")) << all_issues(issues);
}

TEST(Limits, MalformedMemoryIsNotOverriddenByALaterGoodValue) {
  LimitIssues issues;
  const Limits l = parse("CUDA_DEVICE_MEMORY_LIMIT=oops\nCUDA_DEVICE_MEMORY_LIMIT=8G\n", issues);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 0U);
  EXPECT_EQ(issues.count, 1U);
}

TEST(Limits, MalformedMemoryOnOneDeviceLeavesOthersAlone) {
  LimitIssues issues;
  const Limits l = parse("CUDA_DEVICE_MEMORY_LIMIT=8G\nCUDA_DEVICE_MEMORY_LIMIT_1=huge\n", issues);
  EXPECT_EQ(l.resolve(1, "").memory_bytes, 0U);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 8 * GiB);
  EXPECT_EQ(issues.count, 1U);
}

TEST(Limits, MalformedSmIsOnePercentWithAnIssue) {
  for (const char* bad : {"x", "50%", "5.5", "-1", "", "1e2", "half"}) {
    LimitIssues issues;
    const Limits l = parse(std::string("CUDA_DEVICE_SM_LIMIT=") + bad + "\n", issues);
    EXPECT_EQ(l.resolve(0, "").sm_percent, 1U) << "'" << bad << "'";
    EXPECT_TRUE(l.any());
    ASSERT_EQ(issues.count, 1U) << bad;
    EXPECT_TRUE(has_issue(issues, "is not a percentage 0-100")) << all_issues(issues);
    EXPECT_TRUE(has_issue(issues, "applying 1 %")) << all_issues(issues);
  }
}

TEST(Limits, SmAboveHundredIsTheWholeGpuWithAnIssue) {
  LimitIssues issues;
  const Limits l = parse("CUDA_DEVICE_SM_LIMIT=150\n", issues);
  EXPECT_EQ(l.resolve(0, "").sm_percent, 100U);
  ASSERT_EQ(issues.count, 1U);
  EXPECT_TRUE(has_issue(issues, "CUDA_DEVICE_SM_LIMIT=150 is above 100; read as 100")) << all_issues(issues);
  // and it does not lift a smaller value written elsewhere
  LimitIssues issues2;
  const Limits l2 = parse("CUDA_DEVICE_SM_LIMIT=40\nCUDA_DEVICE_SM_LIMIT=101\n", issues2);
  EXPECT_EQ(l2.resolve(0, "").sm_percent, 40U);
  EXPECT_EQ(issues2.count, 1U);
}

TEST(Limits, OrdinalBeyondMaxDevicesIsReportedAndIgnored) {
  for (const char* key : {"CUDA_DEVICE_MEMORY_LIMIT_16", "CUDA_DEVICE_MEMORY_LIMIT_99", "CUDA_DEVICE_SM_LIMIT_16"}) {
    LimitIssues issues;
    const Limits l = parse(std::string(key) + "=1G\n", issues);
    ASSERT_EQ(issues.count, 1U) << key;
    EXPECT_TRUE(has_issue(issues, key)) << all_issues(issues);
    EXPECT_TRUE(has_issue(issues, "beyond the 16 devices")) << all_issues(issues);
    EXPECT_FALSE(l.any()) << key;
    EXPECT_FALSE(l.resolve(16, "").memory_bytes.has_value());
  }
  // The global key still covers such devices.
  LimitIssues issues;
  const Limits l = parse("CUDA_DEVICE_MEMORY_LIMIT=2G\nCUDA_DEVICE_MEMORY_LIMIT_16=1G\n", issues);
  EXPECT_EQ(l.resolve(16, "").memory_bytes, 2 * GiB);
}

TEST(Limits, UnknownSelectorIsReported) {
  for (const char* sel : {"abc", "1000", "GPU-", "-1", "", "1a", "GPU"}) {
    LimitIssues issues;
    const Limits l = parse(std::string("CUDA_DEVICE_MEMORY_LIMIT_") + sel + "=1G\n", issues);
    ASSERT_EQ(issues.count, 1U) << "'" << sel << "'";
    EXPECT_TRUE(has_issue(issues, std::string("unknown device selector '") + sel + "'")) << all_issues(issues);
    EXPECT_FALSE(l.any()) << sel;
  }
}

TEST(Limits, TooManyUuidKeysFailClosed) {
  std::string text;
  for (int i = 0; i < 17; ++i) {
    char key[96];
    std::snprintf(key, sizeof(key), "CUDA_DEVICE_MEMORY_LIMIT_GPU-%08d-0000-0000-0000-000000000000=%dG\n", i, i + 1);
    text += key;
  }
  LimitIssues issues;
  const Limits l = parse(text, issues);
  ASSERT_EQ(issues.count, 1U) << all_issues(issues);
  EXPECT_TRUE(has_issue(issues, "more than 16 per-UUID limits")) << all_issues(issues);
  // The 17th GPU's limit cannot be recorded, so no GPU keeps a usable limit: 0 bytes, 1 %.
  for (const char* uuid : {"GPU-00000015-0000-0000-0000-000000000000", "GPU-00000016-0000-0000-0000-000000000000"}) {
    EXPECT_EQ(l.resolve(0, uuid).memory_bytes, 0U) << uuid;
    EXPECT_EQ(l.resolve(0, uuid).sm_percent, 1U) << uuid;
  }
}

TEST(Limits, FailClosedRefusesEverything) {
  const Limits l = Limits::fail_closed();
  EXPECT_TRUE(l.any());
  for (int ord : {-1, 0, 7, 15, 200}) {
    const DeviceLimit d = l.resolve(ord, kUuidA);
    EXPECT_EQ(d.memory_bytes, 0U);
    EXPECT_EQ(d.sm_percent, 1U);
    EXPECT_TRUE(d.limited());
  }
}

TEST(Limits, IssueListIsBounded) {
  std::string text;
  for (int i = 0; i < 11; ++i) text += "CUDA_DEVICE_MEMORY_LIMIT=bad" + std::to_string(i) + "\n";
  LimitIssues issues;
  const Limits l = parse(text, issues);
  EXPECT_EQ(issues.count, LimitIssues::kMax);
  EXPECT_EQ(issues.dropped, 11U - LimitIssues::kMax);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 0U);
  for (unsigned i = 0; i < issues.count; ++i) EXPECT_LT(std::strlen(issues.items[i].text), sizeof(issues.items[i].text));
}

TEST(Limits, LongValueIssueIsTruncatedNotOverflowed) {
  LimitIssues issues;
  (void)parse("CUDA_DEVICE_MEMORY_LIMIT=" + std::string(1000, 'z') + "\n", issues);
  ASSERT_EQ(issues.count, 1U);
  EXPECT_EQ(std::strlen(issues.items[0].text), sizeof(issues.items[0].text) - 1);
}

// ---------------------------------------------------------------------------------------------
// File syntax

TEST(LimitsFile, CommentsBlankLinesCrlfQuotesAndSpaces) {
  const Limits l = parse_clean(
      "# job 4242, written by the prolog\r\n"
      "\r\n"
      "   \t\n"
      "  # indented comment\n"
      "CUDA_DEVICE_MEMORY_LIMIT = \"4G\"\r\n"
      "\tCUDA_DEVICE_SM_LIMIT\t=\t'50'  \r\n"
      "CUDA_DEVICE_MEMORY_LIMIT_1=\" 512 MiB \"\n"
      "CUDA_DEVICE_MEMORY_LIMIT_2=11517.0M");  // no final newline
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 4 * GiB);
  EXPECT_EQ(l.resolve(0, "").sm_percent, 50U);
  EXPECT_EQ(l.resolve(1, "").memory_bytes, 512 * MiB);
  EXPECT_EQ(l.resolve(2, "").memory_bytes, 11517 * MiB);
}

TEST(LimitsFile, CommentedOutKeyIsIgnored) {
  const Limits l = parse_clean("#CUDA_DEVICE_MEMORY_LIMIT=1G\n");
  EXPECT_FALSE(l.any());
}

TEST(LimitsFile, LinesWithoutEqualsAreReportedWithLineNumber) {
  LimitIssues issues;
  const Limits l = parse("CUDA_DEVICE_MEMORY_LIMIT=4G\n\nCUDA_DEVICE_SM_LIMIT 50\n", issues);
  ASSERT_EQ(issues.count, 1U);
  EXPECT_TRUE(has_issue(issues, "line 3: no '=' in 'CUDA_DEVICE_SM_LIMIT 50'; line skipped")) << all_issues(issues);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 4 * GiB);
  EXPECT_EQ(l.resolve(0, "").sm_percent, 100U);
}

TEST(LimitsFile, UnknownKeysAreReported) {
  LimitIssues issues;
  const Limits l = parse(
      "CUDA_DEVICE_MEMORY_LIMIT=4G\n"
      "CUDA_DEVICE_MEMORY_LIMITED=1G\n"
      "cuda_device_memory_limit=1G\n"
      "export CUDA_DEVICE_SM_LIMIT=10\n"
      "=5\n",
      issues);
  EXPECT_EQ(issues.count, 4U) << all_issues(issues);
  EXPECT_TRUE(has_issue(issues, "line 2: unknown key 'CUDA_DEVICE_MEMORY_LIMITED'")) << all_issues(issues);
  EXPECT_TRUE(has_issue(issues, "line 3: unknown key 'cuda_device_memory_limit'")) << all_issues(issues);
  EXPECT_TRUE(has_issue(issues, "line 4: unknown key 'export CUDA_DEVICE_SM_LIMIT'")) << all_issues(issues);
  EXPECT_TRUE(has_issue(issues, "line 5: unknown key ''")) << all_issues(issues);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 4 * GiB);
  EXPECT_EQ(l.resolve(0, "").sm_percent, 100U);
}

TEST(LimitsFile, SoftmigSettingsAreSkippedSilently) {
  LimitIssues issues;
  const Limits l = parse("SOFTMIG_LEDGER_DIR=/var/tmp/job\nSOFTMIG_ANYTHING=1\nCUDA_DEVICE_MEMORY_LIMIT=1G\n", issues);
  EXPECT_EQ(issues.count, 0U) << all_issues(issues);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, GiB);
}

TEST(LimitsFile, EmptyFileSetsNothing) {
  const Limits l = parse_clean("");
  EXPECT_FALSE(l.any());
  const Limits c = parse_clean("# nothing\n\n");
  EXPECT_FALSE(c.any());
}

TEST(LimitsFile, ApplyReturnsFalseOnlyForForeignKeys) {
  Limits l;
  LimitIssues issues;
  EXPECT_FALSE(l.apply("PATH", "/bin", issues));
  EXPECT_FALSE(l.apply("CUDA_DEVICE_MEMORY_LIMITX", "1G", issues));
  EXPECT_TRUE(l.apply("CUDA_DEVICE_MEMORY_LIMIT_abc", "1G", issues));  // ours, but reported
  EXPECT_TRUE(l.apply(" CUDA_DEVICE_MEMORY_LIMIT ", " 2G ", issues));
  EXPECT_EQ(issues.count, 1U);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 2 * GiB);
}

// ---------------------------------------------------------------------------------------------
// find_setting

TEST(FindSetting, FindsTrimmedUnquotedValue) {
  std::string_view v;
  ASSERT_TRUE(find_setting("A=1\n  SOFTMIG_LEDGER_DIR = \"/scratch/job 1\" \r\nB=2\n", "SOFTMIG_LEDGER_DIR", v));
  EXPECT_EQ(v, "/scratch/job 1");
}

TEST(FindSetting, LastOccurrenceWins) {
  std::string_view v;
  ASSERT_TRUE(find_setting("K=first\nK=second\n# K=commented\nK=third", "K", v));
  EXPECT_EQ(v, "third");
}

TEST(FindSetting, MissingKeyLeavesValueUntouched) {
  std::string_view v = "unchanged";
  EXPECT_FALSE(find_setting("KEY=1\n#WANTED=2\nWANTEDX=3\nWANTED\n", "WANTED", v));
  EXPECT_EQ(v, "unchanged");
  EXPECT_FALSE(find_setting("", "WANTED", v));
  EXPECT_FALSE(find_setting("wanted=1\n", "WANTED", v));  // keys are case-sensitive
}

TEST(FindSetting, EmptyValueIsFound) {
  std::string_view v = "x";
  ASSERT_TRUE(find_setting("K=\n", "K", v));
  EXPECT_EQ(v, "");
}

// ---------------------------------------------------------------------------------------------
// Environment

struct FakeEnv {
  std::map<std::string, std::string> vars;
  std::vector<std::string> asked;
};

const char* fake_lookup(const char* name, void* ctx) {
  auto* env = static_cast<FakeEnv*>(ctx);
  env->asked.emplace_back(name);
  const auto it = env->vars.find(name);
  return it == env->vars.end() ? nullptr : it->second.c_str();
}

TEST(LimitsFromEnv, ReadsGlobalAndOrdinalKeys) {
  FakeEnv env;
  env.vars = {{"CUDA_DEVICE_MEMORY_LIMIT", "8G"},
              {"CUDA_DEVICE_MEMORY_LIMIT_3", "2G"},
              {"CUDA_DEVICE_SM_LIMIT", "75"},
              {"CUDA_DEVICE_SM_LIMIT_15", "10"},
              {"PATH", "/usr/bin"}};
  LimitIssues issues;
  const Limits l = limits_from_env(fake_lookup, &env, issues);
  EXPECT_EQ(issues.count, 0U) << all_issues(issues);
  EXPECT_TRUE(l.any());
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 8 * GiB);
  EXPECT_EQ(l.resolve(3, "").memory_bytes, 2 * GiB);
  EXPECT_EQ(l.resolve(0, "").sm_percent, 75U);
  EXPECT_EQ(l.resolve(15, "").sm_percent, 10U);
}

TEST(LimitsFromEnv, AsksOnlyForTheDocumentedNames) {
  FakeEnv env;
  LimitIssues issues;
  const Limits l = limits_from_env(fake_lookup, &env, issues);
  EXPECT_FALSE(l.any());
  std::vector<std::string> expected;
  for (const char* base : {"CUDA_DEVICE_MEMORY_LIMIT", "CUDA_DEVICE_SM_LIMIT", "CUDA_DEVICE_SM_PHASE"}) {
    expected.emplace_back(base);
    for (unsigned i = 0; i < kMaxDevices; ++i) expected.push_back(std::string(base) + "_" + std::to_string(i));
  }
  EXPECT_EQ(env.asked, expected);
}

TEST(Limits, PhasePlacesTheWindowAndNeverLimits) {
  LimitIssues issues;
  const Limits l = parse_limits_file(std::string("CUDA_DEVICE_SM_LIMIT=50\nCUDA_DEVICE_SM_PHASE_") + kUuidA +
                                         "=50\nCUDA_DEVICE_SM_PHASE_1=abc\n",
                                     issues);
  EXPECT_EQ(l.resolve(0, kUuidA).sm_phase, 50U);
  EXPECT_EQ(l.resolve(0, "").sm_phase, 0U);
  EXPECT_EQ(l.resolve(1, "").sm_phase, 0U);  // malformed: the window opens at 0
  EXPECT_TRUE(has_issue(issues, "CUDA_DEVICE_SM_PHASE_1=abc is not a percentage 0-99")) << all_issues(issues);
  LimitIssues none;
  EXPECT_FALSE(parse_limits_file("CUDA_DEVICE_SM_PHASE=25\n", none).any());
  EXPECT_TRUE(l.any_share());
}

TEST(LimitsFromEnv, UuidAndOutOfRangeKeysAreNotRead) {
  FakeEnv env;
  env.vars = {{std::string("CUDA_DEVICE_MEMORY_LIMIT_") + kUuidA, "1G"}, {"CUDA_DEVICE_MEMORY_LIMIT_16", "1G"}};
  LimitIssues issues;
  const Limits l = limits_from_env(fake_lookup, &env, issues);
  EXPECT_FALSE(l.any());
  EXPECT_EQ(issues.count, 0U);
}

TEST(LimitsFromEnv, MalformedValuesFailClosedWithIssues) {
  FakeEnv env;
  env.vars = {{"CUDA_DEVICE_MEMORY_LIMIT", "four gigs"}, {"CUDA_DEVICE_SM_LIMIT_2", "50%"}};
  LimitIssues issues;
  const Limits l = limits_from_env(fake_lookup, &env, issues);
  EXPECT_EQ(issues.count, 2U) << all_issues(issues);
  EXPECT_TRUE(has_issue(issues, "CUDA_DEVICE_MEMORY_LIMIT=four gigs is not a size")) << all_issues(issues);
  EXPECT_TRUE(has_issue(issues, "CUDA_DEVICE_SM_LIMIT_2=50% is not a percentage")) << all_issues(issues);
  EXPECT_EQ(l.resolve(0, "").memory_bytes, 0U);
  EXPECT_EQ(l.resolve(2, "").sm_percent, 1U);
  EXPECT_EQ(l.resolve(1, "").sm_percent, 100U);
}

TEST(LimitsFromEnv, ZeroAndQuotedValues) {
  FakeEnv env;
  env.vars = {{"CUDA_DEVICE_MEMORY_LIMIT", "0"}, {"CUDA_DEVICE_MEMORY_LIMIT_1", "\"3G\""}};
  LimitIssues issues;
  const Limits l = limits_from_env(fake_lookup, &env, issues);
  EXPECT_EQ(issues.count, 0U) << all_issues(issues);
  EXPECT_FALSE(l.resolve(0, "").memory_bytes.has_value());
  EXPECT_EQ(l.resolve(1, "").memory_bytes, 3 * GiB);
}

}  // namespace
}  // namespace softmig::core
