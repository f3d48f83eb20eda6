// SPDX-License-Identifier: Apache-2.0
// Sizes and percentages as an administrator writes them in a job file or a user in the
// environment: what is accepted, what it means in bytes, and what is refused.
#include "core/units.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

namespace softmig::core {
namespace {

constexpr std::uint64_t KiB = 1ULL << 10U;
constexpr std::uint64_t MiB = 1ULL << 20U;
constexpr std::uint64_t GiB = 1ULL << 30U;
constexpr std::uint64_t TiB = 1ULL << 40U;

__extension__ typedef unsigned __int128 u128;

struct SizeCase {
  const char* text;
  std::uint64_t bytes;
};

TEST(ParseBytes, AcceptsEveryDocumentedSpelling) {
  const SizeCase cases[] = {
      {"4294967296", 4294967296ULL},
      {"4G", 4 * GiB},
      {"4g", 4 * GiB},
      {"4GiB", 4 * GiB},
      {"4gib", 4 * GiB},
      {"4GB", 4 * GiB},
      {"4gb", 4 * GiB},
      {"4Gib", 4 * GiB},
      {"11517.0M", 11517 * MiB},
      {"1.5G", 1610612736ULL},
      {"512 MiB", 512 * MiB},
      {" 24G ", 24 * GiB},
      {"\t24G\n", 24 * GiB},
      {"24\tG", 24 * GiB},
      {"0", 0},
      {"0G", 0},
      {"1K", 1024},
      {"1k", 1024},
      {"1KB", 1024},
      {"1KiB", 1024},
      {"1M", MiB},
      {"1T", TiB},
      {"1.5T", TiB + TiB / 2},
      {"7B", 7},
      {"7b", 7},
      {"00012G", 12 * GiB},
      {"18446744073709551615", UINT64_MAX},
      {"16777215T", (16777215ULL) << 40U},
      {"17179869183G", 17179869183ULL << 30U},
  };
  for (const auto& c : cases) {
    const auto got = parse_bytes(c.text);
    ASSERT_TRUE(got.has_value()) << "'" << c.text << "' was refused";
    EXPECT_EQ(*got, c.bytes) << "'" << c.text << "'";
  }
}

TEST(ParseBytes, RejectsEveryMalformedForm) {
  const char* bad[] = {
      "",       " ",        "G",          "GiB",       "-1",      "+1",       "-1G",
      "0x10",   "0X10",     "0b1",        "1e9",       "1E9",     "1..5G",    "1.5.2G",
      "5.",     "5.G",      ".5G",        ".5",        "4X",      "4XB",      "4P",
      "4E",     "4GiBs",    "4 G B",      "4G B",      "4GiB B",  "4 iB",     "4iB",
      "4G4",    "G4",       "4 4G",       "1,5G",      "1_000",   "1 000",    "nan",
      "NaN",    "inf",      "infinity",   "-inf",      "4G#x",    "\"4G\"",
      "18446744073709551616",  // 2^64
      "99999999999999999999999",
      "17179869184G",          // 2^34 GiB = 2^64 bytes
      "16777216T",             // 2^24 TiB = 2^64 bytes
      "18446744073709551615K",
  };
  for (const char* b : bad) {
    EXPECT_FALSE(parse_bytes(b).has_value()) << "'" << b << "' was accepted as " << parse_bytes(b).value_or(0);
  }
}

TEST(ParseBytes, RejectsEmbeddedNul) {
  EXPECT_FALSE(parse_bytes(std::string_view("4G\0", 3)).has_value());
  EXPECT_FALSE(parse_bytes(std::string_view("4\0G", 3)).has_value());
}

TEST(ParseBytes, JustBelowOverflowIsAcceptedAndJustAboveIsNot) {
  // 2^64 - 2^30 plus a fraction of a GiB that still fits.
  EXPECT_EQ(parse_bytes("17179869183.5G"), (17179869183ULL << 30U) + GiB / 2);
  EXPECT_EQ(parse_bytes("17179869183.999999999999999999G"), UINT64_MAX);
  EXPECT_FALSE(parse_bytes("17179869184.0G").has_value());
  EXPECT_FALSE(parse_bytes("18446744073709551615.5K").has_value());
  EXPECT_EQ(parse_bytes("18446744073709551615.99"), UINT64_MAX);  // a byte fraction is dropped
}

TEST(ParseBytes, FractionsRoundDownToAByte) {
  const SizeCase cases[] = {
      {"1.1K", 1126},                   // 1126.4
      {"0.5K", 512},
      {"0.3M", 314572},                 // 314572.8
      {"1.9", 1},                       // fractions of a byte are dropped
      {"0.9B", 0},
      {"0.0009765625K", 1},             // exactly 1/1024 KiB
      {"0.0009765624K", 0},             // a hair less
      {"2.999999999G", 3221225470ULL},  // 2 GiB + floor(0.999999999 * 2^30)
      {"1.999999999999999999G", 2 * GiB - 1},
      {"0.000000000931322574615478G", 0},  // just under one byte
      {"11517.5M", 11517 * MiB + MiB / 2},
      {"0.25T", TiB / 4},
  };
  for (const auto& c : cases) {
    const auto got = parse_bytes(c.text);
    ASSERT_TRUE(got.has_value()) << "'" << c.text << "' was refused";
    EXPECT_EQ(*got, c.bytes) << "'" << c.text << "'";
  }
}

TEST(ParseBytes, FractionMatchesExactArithmeticUpToEighteenDigits) {
  std::mt19937_64 rng(20240611);
  const char* units[] = {"", "K", "M", "G", "T"};
  for (int i = 0; i < 5000; ++i) {
    const unsigned u = static_cast<unsigned>(rng() % 5);
    const std::uint64_t whole = rng() % 100000;
    const unsigned digits = 1 + static_cast<unsigned>(rng() % 18);
    u128 scale = 1;
    std::string frac;
    for (unsigned d = 0; d < digits; ++d) {
      frac.push_back(static_cast<char>('0' + rng() % 10));
      scale *= 10;
    }
    u128 f = 0;
    for (const char c : frac) f = f * 10 + static_cast<unsigned>(c - '0');
    const unsigned shift = 10U * u;
    const u128 expected = (static_cast<u128>(whole) << shift) + ((f << shift) / scale);
    const std::string text = std::to_string(whole) + "." + frac + units[u];
    const auto got = parse_bytes(text);
    ASSERT_TRUE(got.has_value()) << text;
    ASSERT_EQ(static_cast<u128>(*got), expected) << text;
  }
}

// Regression: only 18 fraction digits were once kept, so a fraction that is exact only with more
// digits came out one byte low: 1 byte = 0.000000000931322574615478515625 GiB exactly, and
// parse_bytes returned 0. "Fractions are rounded down to a byte" promises floor() of the value.
TEST(ParseBytes, LongExactFractionIsNotRoundedBelowItsValue) {
  EXPECT_EQ(parse_bytes("0.000000000931322574615478515625G"), 1U);
  EXPECT_EQ(parse_bytes("0.0000000000009094947017729282379150390625T"), 1U);
  EXPECT_EQ(parse_bytes("3.000000000931322574615478515625G"), 3 * GiB + 1);
}

TEST(ParseBytes, ManyFractionDigitsAreAcceptedAndTruncated) {
  // Digits past the 18th still have to be digits, and never overflow anything.
  EXPECT_EQ(parse_bytes("1.50000000000000000000000000000000000000000000G"), GiB + GiB / 2);
  EXPECT_EQ(parse_bytes("0.99999999999999999999999999999999T"), TiB - 1);
  EXPECT_FALSE(parse_bytes("1.5000000000000000000000000x0G").has_value());
}

TEST(ParseCount, DigitsOnlyUpToTheirCount) {
  EXPECT_EQ(parse_count("0", 1), 0U);
  EXPECT_EQ(parse_count("050", 3), 50U);
  EXPECT_EQ(parse_count("999999", 6), 999999U);
  EXPECT_EQ(parse_count("1000000", 6), std::nullopt);  // too many digits
  EXPECT_EQ(parse_count("", 3), std::nullopt);
  for (const char* bad : {" 5", "5 ", "+5", "-5", "5ms", "0x5", "1.0"}) {
    EXPECT_EQ(parse_count(bad, 9), std::nullopt) << bad;
  }
  EXPECT_EQ(parse_count("999999999999999999", 20), 999999999999999999U);
  EXPECT_EQ(parse_count("1000000000000000000", 20), std::nullopt);  // 19 digits could overflow
}

TEST(ParsePercent, AcceptsZeroToHundred) {
  for (unsigned v = 0; v <= 100; ++v) {
    EXPECT_EQ(parse_percent(std::to_string(v)), v);
  }
  EXPECT_EQ(parse_percent(" 50 "), 50U);
  EXPECT_EQ(parse_percent("050"), 50U);
}

TEST(ParsePercent, RejectsMalformed) {
  for (const char* bad : {"101", "150", "999", "1000", "0100", "-1", "+5", "50%", "5.5", "", " ", "abc", "0x5",
                          "1e2", "5 0", "½"}) {
    EXPECT_FALSE(parse_percent(bad).has_value()) << "'" << bad << "'";
  }
}

std::string fmt(std::uint64_t bytes) {
  char buf[64];
  const std::size_t n = format_bytes(bytes, buf, sizeof(buf));
  EXPECT_EQ(n, std::strlen(buf));
  return buf;
}

TEST(FormatBytes, Examples) {
  EXPECT_EQ(fmt(0), "0 B");
  EXPECT_EQ(fmt(17), "17 B");
  EXPECT_EQ(fmt(1023), "1023 B");
  EXPECT_EQ(fmt(1024), "1 KiB");
  EXPECT_EQ(fmt(1536), "1.50 KiB");
  EXPECT_EQ(fmt(512 * MiB), "512 MiB");
  EXPECT_EQ(fmt(24 * GiB), "24 GiB");
  EXPECT_EQ(fmt(GiB + GiB / 2), "1.50 GiB");
  EXPECT_EQ(fmt(11517 * MiB), "11.25 GiB");
  EXPECT_EQ(fmt(TiB), "1 TiB");
  EXPECT_EQ(fmt(1ULL << 50U), "1 PiB");
  EXPECT_EQ(fmt(1ULL << 60U), "1024 PiB");  // PiB is the largest unit
}

TEST(FormatBytes, WholeUnitsRoundTripThroughParseBytes) {
  for (const std::uint64_t v : {std::uint64_t{0}, std::uint64_t{17}, KiB, 3 * KiB, 512 * MiB, 24 * GiB, 80 * GiB, 2 * TiB}) {
    EXPECT_EQ(parse_bytes(fmt(v)), v) << fmt(v);
  }
}

TEST(FormatBytes, TruncatesAndAlwaysTerminates) {
  char buf[4];
  std::memset(buf, 'x', sizeof(buf));
  EXPECT_EQ(format_bytes(24 * GiB, buf, sizeof(buf)), 3U);
  EXPECT_STREQ(buf, "24 ");
  char one[1] = {'x'};
  EXPECT_EQ(format_bytes(24 * GiB, one, 1), 0U);
  EXPECT_EQ(one[0], '\0');
  EXPECT_EQ(format_bytes(24 * GiB, nullptr, 10), 0U);
  char untouched[2] = {'a', 'b'};
  EXPECT_EQ(format_bytes(1, untouched, 0), 0U);
  EXPECT_EQ(untouched[0], 'a');
}

}  // namespace
}  // namespace softmig::core
