// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_units.cpp
/// @brief Fuzz target for core::parse_bytes and core::parse_percent, the parsers every memory and
///        compute limit goes through. Beyond "no crash", each accepted value must round-trip:
///        the decimal form parses back to the same number, units scale by exact powers of 1024
///        (or are refused on overflow), case and surrounding blanks change nothing, text with a
///        sign, a hex prefix or an exponent is refused, and format_bytes always terminates.
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/units.hpp"
#include "fuzz_check.hpp"

namespace {

using softmig::core::format_bytes;
using softmig::core::parse_bytes;
using softmig::core::parse_percent;

std::string swap_case(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    } else if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

void check_bytes(std::string_view text) {
  const auto v = parse_bytes(text);
  // Case and surrounding blanks never change the answer.
  FUZZ_CHECK(parse_bytes(swap_case(text)) == v, "case changed the value of '%.*s'", static_cast<int>(text.size()), text.data());
  const std::string padded = " \t" + std::string(text) + "\r\n ";
  FUZZ_CHECK(parse_bytes(padded) == v, "blanks changed the value of '%.*s'", static_cast<int>(text.size()), text.data());
  if (!v) return;
  // Accepted text never holds a sign, a hex prefix, an exponent or a second decimal point.
  bool dot = false;
  for (const char c : text) {
    FUZZ_CHECK(c != '-' && c != '+' && c != 'x' && c != 'X' && c != 'e' && c != 'E',
               "'%.*s' was accepted", static_cast<int>(text.size()), text.data());
    if (c == '.') {
      FUZZ_CHECK(!dot, "two decimal points accepted in '%.*s'", static_cast<int>(text.size()), text.data());
      dot = true;
    }
  }
  // The decimal form of the value parses back to the value, with or without "B".
  const std::string dec = std::to_string(*v);
  FUZZ_CHECK(parse_bytes(dec) == v, "%s does not round-trip", dec.c_str());
  FUZZ_CHECK(parse_bytes(dec + " B") == v, "%s B does not round-trip", dec.c_str());
  // Units scale by exact powers of 1024, or are refused when the result does not fit.
  static constexpr const char* kUnits[] = {"K", "MiB", "g", "tB"};
  for (unsigned i = 0; i < 4; ++i) {
    const unsigned shift = 10U * (i + 1U);
    const auto scaled = parse_bytes(dec + kUnits[i]);
    if (*v > (UINT64_MAX >> shift)) {
      FUZZ_CHECK(!scaled, "%s%s overflows but was accepted", dec.c_str(), kUnits[i]);
    } else {
      FUZZ_CHECK(scaled && *scaled == (*v << shift), "%s%s != %s << %u", dec.c_str(), kUnits[i], dec.c_str(), shift);
    }
  }
  // A fraction rounds down and stays below the next whole unit:
  // "<W><unit>" <= "<W>.<F><unit>" < "<W+1><unit>".
  std::size_t b = 0;
  std::size_t e = text.size();
  while (b < e && (text[b] == ' ' || text[b] == '\t' || text[b] == '\r' || text[b] == '\n')) ++b;
  std::size_t w = b;
  while (w < e && text[w] >= '0' && text[w] <= '9') ++w;
  if (w < e && text[w] == '.') {
    std::size_t f = w + 1;
    while (f < e && text[f] >= '0' && text[f] <= '9') ++f;
    const std::string whole(text.substr(b, w - b));
    const std::string unit(text.substr(f));
    const auto lo = parse_bytes(whole + unit);
    FUZZ_CHECK(lo && *lo <= *v, "'%.*s' is below its whole part", static_cast<int>(text.size()), text.data());
    const auto whole_value = parse_bytes(whole);
    if (whole_value && *whole_value < UINT64_MAX) {
      const auto hi = parse_bytes(std::to_string(*whole_value + 1) + unit);
      FUZZ_CHECK(!hi || *v < *hi, "'%.*s' reaches the next whole unit", static_cast<int>(text.size()), text.data());
    }
  }
  char buf[64];
  const std::size_t n = format_bytes(*v, buf, sizeof buf);
  FUZZ_CHECK(n < sizeof buf && buf[n] == '\0', "format_bytes did not terminate");
  char tiny[3];
  const std::size_t m = format_bytes(*v, tiny, sizeof tiny);
  FUZZ_CHECK(m < sizeof tiny && tiny[m] == '\0', "format_bytes overran a 3-byte buffer");
}

void check_percent(std::string_view text) {
  const auto p = parse_percent(text);
  if (!p) return;
  FUZZ_CHECK(*p <= 100, "percentage %u accepted", *p);
  FUZZ_CHECK(parse_percent(std::to_string(*p)) == p, "%u does not round-trip", *p);
  // Every accepted percentage is also a well-formed size of the same number of bytes.
  const auto b = parse_bytes(text);
  FUZZ_CHECK(b && *b == *p, "'%.*s' is a percentage but not the same size", static_cast<int>(text.size()), text.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_bytes(text);
  check_percent(text);
  return 0;
}
