// SPDX-License-Identifier: Apache-2.0
/// @file array_size.hpp
/// @brief Device memory a CUDA array or mipmapped array needs, computed from its descriptor.
///        Block-compressed and YUV formats are charged by their bits per texel; formats this
///        table does not know are charged 16 bytes per texel (the largest plain texel), so an
///        unknown format can only make a slice smaller, never larger.
#pragma once

#include <cstdint>

namespace softmig::core {

struct ArrayShape {
  std::uint64_t width = 0, height = 0, depth = 0;
  int format = 0;
  unsigned channels = 0;
};

/// Bytes of one level. Zero height/depth count as 1 (1D / 2D arrays). Saturates on overflow.
std::uint64_t array_bytes(const ArrayShape& s) noexcept;

/// Bytes of `levels` mipmap levels (each halves every dimension, down to 1).
std::uint64_t mipmapped_array_bytes(const ArrayShape& s, unsigned levels) noexcept;

}  // namespace softmig::core
