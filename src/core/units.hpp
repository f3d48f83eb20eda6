// SPDX-License-Identifier: Apache-2.0
/// @file units.hpp
/// @brief Parsing of the memory sizes and percentages that limits are written in.
///
/// Sizes: a non-negative decimal number with an optional binary unit, case-insensitive:
///   "4294967296", "4G", "4g", "4GiB", "4GB", "11517.0M", "512 MiB", "1.5T".
/// K, M, G, T (with or without "B" / "iB") are powers of 1024, as nvidia-smi and every earlier
/// system that read CUDA_DEVICE_MEMORY_LIMIT count them. Fractions are rounded down to a byte.
/// Rejected: empty text, signs, hex/octal prefixes, exponents, unknown units, junk after the
/// unit, several decimal points, values that do not fit in 64 bits.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace softmig::core {

/// Returns the size in bytes, or nullopt if `text` is not a well-formed size.
[[nodiscard]] std::optional<std::uint64_t> parse_bytes(std::string_view text) noexcept;

/// Returns the value of `text` if it is 1 to `max_digits` (<= 18) decimal digits and nothing else.
[[nodiscard]] std::optional<std::uint64_t> parse_count(std::string_view text, std::size_t max_digits) noexcept;

/// Returns a whole percentage 0..100, or nullopt if `text` is not one (e.g. "150", "-1", "x").
[[nodiscard]] std::optional<unsigned> parse_percent(std::string_view text) noexcept;

/// Writes `bytes` as a short human-readable size ("24 GiB", "1.50 GiB", "512 MiB", "17 B")
/// into `out`, always NUL-terminated. Returns the number of characters written.
std::size_t format_bytes(std::uint64_t bytes, char* out, std::size_t out_size) noexcept;

}  // namespace softmig::core
