// SPDX-License-Identifier: Apache-2.0
#include "core/units.hpp"

#include <cstdio>

namespace softmig::core {
namespace {

constexpr bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

/// Maps a unit suffix to its power of 1024; nullopt for an unknown unit.
std::optional<unsigned> unit_shift(std::string_view unit) noexcept {
  if (unit.empty()) return 0U;
  char buf[4] = {};
  if (unit.size() > 3) return std::nullopt;
  for (std::size_t i = 0; i < unit.size(); ++i) buf[i] = lower(unit[i]);
  const std::string_view u(buf, unit.size());
  if (u == "b") return 0U;
  static constexpr char kPrefixes[] = {'k', 'm', 'g', 't'};
  for (unsigned i = 0; i < 4; ++i) {
    const char p = kPrefixes[i];
    const char one[2] = {p, '\0'};
    const char two[3] = {p, 'b', '\0'};
    const char three[4] = {p, 'i', 'b', '\0'};
    if (u == std::string_view(one) || u == std::string_view(two) || u == std::string_view(three)) {
      return 10U * (i + 1U);
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::uint64_t> parse_bytes(std::string_view text) noexcept {
  text = trim(text);
  std::size_t i = 0;
  std::uint64_t whole = 0;
  std::size_t whole_digits = 0;
  while (i < text.size() && is_digit(text[i])) {
    const auto d = static_cast<std::uint64_t>(text[i] - '0');
    if (whole > (UINT64_MAX - d) / 10U) return std::nullopt;
    whole = whole * 10U + d;
    ++whole_digits;
    ++i;
  }
  // Fraction: up to kFracDigits digits are kept exactly (any binary fraction of a byte at 2^40
  // needs at most 40), later ones only have to be digits.
  constexpr std::size_t kFracDigits = 64;
  unsigned char frac[kFracDigits] = {};
  std::size_t frac_kept = 0;
  std::size_t frac_digits = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && is_digit(text[i])) {
      if (frac_kept < kFracDigits) frac[frac_kept++] = static_cast<unsigned char>(text[i] - '0');
      ++frac_digits;
      ++i;
    }
    if (frac_digits == 0) return std::nullopt;  // "5." is not a number
  }
  if (whole_digits == 0) return std::nullopt;  // ".5", "", "G", "-1", "+1"
  // Hex and octal prefixes are refused rather than silently misread: "0x10" stops at 'x'.
  const std::string_view unit = trim(text.substr(i));
  const auto shift = unit_shift(unit);
  if (!shift) return std::nullopt;
  if (*shift > 0 && whole > (UINT64_MAX >> *shift)) return std::nullopt;
  const std::uint64_t scaled_whole = whole << *shift;
  // floor(0.<frac digits> * 2^shift), exactly: double the decimal fraction `shift` times and
  // collect the bits that carry out of it.
  std::uint64_t scaled_frac = 0;
  for (unsigned b = 0; b < *shift; ++b) {
    unsigned carry = 0;
    for (std::size_t d = frac_kept; d-- > 0;) {
      const unsigned v = frac[d] * 2U + carry;
      frac[d] = static_cast<unsigned char>(v % 10U);
      carry = v / 10U;
    }
    scaled_frac = (scaled_frac << 1U) | carry;
  }
  if (scaled_whole > UINT64_MAX - scaled_frac) return std::nullopt;
  return scaled_whole + scaled_frac;
}

std::optional<std::uint64_t> parse_count(std::string_view text, std::size_t max_digits) noexcept {
  if (text.empty() || text.size() > max_digits || text.size() > 18) return std::nullopt;
  std::uint64_t v = 0;
  for (const char c : text) {
    if (!is_digit(c)) return std::nullopt;
    v = v * 10U + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

std::optional<unsigned> parse_percent(std::string_view text) noexcept {
  const auto v = parse_count(trim(text), 3);
  if (!v || *v > 100) return std::nullopt;
  return static_cast<unsigned>(*v);
}

std::size_t format_bytes(std::uint64_t bytes, char* out, std::size_t out_size) noexcept {
  if (out == nullptr || out_size == 0) return 0;
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  unsigned u = 0;
  std::uint64_t scale = 1;
  while (u + 1 < 6 && bytes >= scale * 1024U) {
    scale *= 1024U;
    ++u;
  }
  int n = 0;
  if (bytes % scale == 0) {
    n = std::snprintf(out, out_size, "%llu %s", static_cast<unsigned long long>(bytes / scale), kUnits[u]);
  } else {
    n = std::snprintf(out, out_size, "%.2f %s", static_cast<double>(bytes) / static_cast<double>(scale), kUnits[u]);
  }
  if (n < 0) {
    out[0] = '\0';
    return 0;
  }
  return static_cast<std::size_t>(n) < out_size ? static_cast<std::size_t>(n) : out_size - 1;
}

}  // namespace softmig::core
