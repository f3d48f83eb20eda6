// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_check.hpp
/// @brief What the fuzz targets share: a property check that aborts with a message (so that
///        libFuzzer records the input as a crash), and a small reader of the fuzz input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "fuzz property violated: %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                        \
      std::fprintf(stderr, "\n");                                               \
      std::abort();                                                             \
    }                                                                           \
  } while (0)

namespace fuzz {

/// Consumes the fuzz input front to back; past the end every read returns zeros.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  [[nodiscard]] bool empty() const { return n_ == 0; }
  [[nodiscard]] std::size_t left() const { return n_; }
  std::uint8_t byte() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(byte()) << (8 * i);
    return v;
  }
  std::uint32_t u32() { return static_cast<std::uint32_t>(u64() & 0xffffffffU); }
  /// Up to `max` bytes as text.
  std::string_view text(std::size_t max) {
    const std::size_t k = max < n_ ? max : n_;
    const std::string_view s(reinterpret_cast<const char*>(p_), k);
    p_ += k;
    n_ -= k;
    return s;
  }
  std::string_view rest() { return text(n_); }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

}  // namespace fuzz
