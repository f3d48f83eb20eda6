// SPDX-License-Identifier: Apache-2.0
// The strict Prometheus text-format parser: it accepts softmig's exposition and rejects what the
// format forbids (so that a passing metrics test means something).
#include "prom_parser.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "tool/metrics_format.hpp"

namespace softmig::tool::test {
namespace {

constexpr const char* kHead = "# HELP m_total a counter\n# TYPE m_total counter\n";

TEST(PromParser, AcceptsAValidExposition) {
  const auto e = parse_prometheus(std::string(kHead) +
                                  "m_total{a=\"x\",b=\"q\\\"\\\\\\n\"} 3\nm_total{a=\"y\",} 4 1700000000000\n"
                                  "# a free comment\n\n# HELP g a gauge\n# TYPE g gauge\ng -1.5e3\ng{k=\"v\"} NaN\n");
  ASSERT_TRUE(e.ok()) << e.error;
  EXPECT_EQ(e.samples.size(), 4U);
  EXPECT_EQ(e.value("m_total", {{"a", "x"}, {"b", "q\"\\\n"}}), 3);
  EXPECT_EQ(e.value("g", {}), -1500);
  EXPECT_TRUE(std::isnan(e.value("g", {{"k", "v"}})));
}

TEST(PromParser, RejectsMalformedText) {
  const std::string h = kHead;
  const std::pair<const char*, std::string> bad[] = {
      {"no final line feed", h + "m_total 1"},
      {"bad metric name", h + "1m_total 1\n"},
      {"unquoted label value", h + "m_total{a=x} 1\n"},
      {"bad escape", h + "m_total{a=\"\\t\"} 1\n"},
      {"duplicate label", h + "m_total{a=\"1\",a=\"2\"} 1\n"},
      {"reserved label", h + "m_total{__a=\"1\"} 1\n"},
      {"bad value", h + "m_total 1x\n"},
      {"missing value", h + "m_total\n"},
      {"two spaces", h + "m_total  1\n"},
      {"bad timestamp", h + "m_total 1 12.5\n"},
      {"negative counter", h + "m_total -1\n"},
      {"duplicate series", h + "m_total{a=\"1\"} 1\nm_total{a=\"1\"} 2\n"},
      {"second TYPE", h + "# TYPE m_total counter\nm_total 1\n"},
      {"unknown type", "# HELP m x\n# TYPE m thing\nm 1\n"},
      {"no TYPE", "# HELP m x\nm 1\n"},
      {"no HELP", "# TYPE m gauge\nm 1\n"},
      {"TYPE after samples", "# HELP m x\nm 1\n# TYPE m gauge\n"},
      {"split family", h + "# HELP g x\n# TYPE g gauge\nm_total{a=\"1\"} 1\ng 1\nm_total{a=\"2\"} 1\n"},
      {"carriage return", h + "m_total 1\r\n"},
      {"leading space", h + " m_total 1\n"},
  };
  for (const auto& [why, text] : bad) EXPECT_FALSE(parse_prometheus(text).ok()) << why;
}

TEST(PromParser, SoftmigExpositionOfNothingIsValid) {
  const auto e = parse_prometheus(format_prometheus(Snapshot{}));
  ASSERT_TRUE(e.ok()) << e.error;
  EXPECT_EQ(e.value("softmig_ledgers", {}), 0);
  for (const char* f : {"softmig_memory_limit_bytes", "softmig_memory_used_bytes", "softmig_memory_peak_bytes",
                        "softmig_oom_refusals_total", "softmig_sm_limit_percent", "softmig_process_memory_bytes"}) {
    EXPECT_EQ(e.families.count(f), 1U) << f;
  }
  EXPECT_EQ(e.families.at("softmig_oom_refusals_total").type, "counter");
}

TEST(PromParser, SoftmigExpositionWithTrickyLabelsIsValid) {
  Snapshot s;
  JobView j;
  j.job = "session-\"x\"\\y\nz";
  j.owner = "u";
  GpuView g;
  g.uuid = "GPU-1";
  g.memory_limit = 10;
  g.used = 5;
  g.peak = 7;
  g.oom_refusals = 2;
  g.sm_percent = 50;
  g.processes = {ProcessView{12, 0, "root", 3, 2}};
  j.gpus = {g};
  s.jobs = {j};
  const auto e = parse_prometheus(format_prometheus(s));
  ASSERT_TRUE(e.ok()) << e.error;
  const std::map<std::string, std::string> labels = {{"job", j.job}, {"gpu", "GPU-1"}, {"user", "u"}};
  EXPECT_EQ(e.value("softmig_memory_used_bytes", labels), 5);
  EXPECT_EQ(e.value("softmig_oom_refusals_total", labels), 2);
  auto p = labels;
  p["pid"] = "12";
  p["process_user"] = "root";
  EXPECT_EQ(e.value("softmig_process_memory_bytes", p), 5);
}

}  // namespace
}  // namespace softmig::tool::test
