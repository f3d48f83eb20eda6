// SPDX-License-Identifier: Apache-2.0
#include "core/array_size.hpp"

namespace softmig::core {
namespace {

/// Bits per texel for the whole texel (all channels), or 0 if per-channel (plain formats).
unsigned packed_bits(int format) noexcept {
  switch (format) {
    case 0xc0: case 0xc6: return 8;                       // 8-bit x1
    case 0xc1: case 0xc7: case 0xc3: case 0xc9: return 16; // 8-bit x2, 16-bit x1
    case 0xc2: case 0xc8: case 0xc4: case 0xca: case 0x50: return 32;
    case 0xc5: case 0xcb: return 64;                       // 16-bit x4
    case 0x91: case 0x92: case 0x97: case 0x98: return 4;  // BC1, BC4: 8 bytes per 4x4 block
    case 0x93: case 0x94: case 0x95: case 0x96: case 0x99: case 0x9a: case 0x9b: case 0x9c:
    case 0x9d: case 0x9e: return 8;                        // BC2/3/5/6H/7: 16 bytes per block
    case 0xb0: return 12;                                  // NV12: 4:2:0, 8-bit
    case 0x9f: case 0xa1: return 24;                       // P010, P016: 4:2:0, 16-bit storage
    case 0xa2: case 0xa5: return 16;                       // NV16, YUY2: 4:2:2, 8-bit
    case 0xa3: case 0xa4: case 0xa6: case 0xa7: return 32; // P210/P216/Y210/Y216
    case 0xa8: case 0xa9: return 32;                       // AYUV, Y410
    case 0xb1: return 64;                                  // Y416
    case 0xb2: case 0xb4: return 24;                       // 4:4:4 8-bit planar/semi-planar
    case 0xb3: case 0xb5: return 48;                       // 4:4:4 10/16-bit
    default: return 0;
  }
}

/// Bytes per channel element for plain formats; 0 if not a plain format.
unsigned channel_bytes(int format) noexcept {
  switch (format) {
    case 0x01: case 0x08: return 1;
    case 0x02: case 0x09: case 0x10: return 2;
    case 0x03: case 0x0a: case 0x20: return 4;
    default: return 0;
  }
}

std::uint64_t mul_sat(std::uint64_t a, std::uint64_t b) noexcept {
  if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
  return a * b;
}

}  // namespace

std::uint64_t array_bytes(const ArrayShape& s) noexcept {
  const std::uint64_t texels =
      mul_sat(mul_sat(s.width, s.height == 0 ? 1 : s.height), s.depth == 0 ? 1 : s.depth);
  if (const unsigned cb = channel_bytes(s.format); cb != 0) {
    return mul_sat(texels, static_cast<std::uint64_t>(cb) * (s.channels == 0 ? 1 : s.channels));
  }
  if (const unsigned bits = packed_bits(s.format); bits != 0) {
    const std::uint64_t b = mul_sat(texels, bits);
    return b == UINT64_MAX ? b : b / 8 + (b % 8 != 0 ? 1 : 0);
  }
  return mul_sat(texels, 16);
}

std::uint64_t mipmapped_array_bytes(const ArrayShape& s, unsigned levels) noexcept {
  std::uint64_t total = 0;
  ArrayShape l = s;
  for (unsigned i = 0; i < (levels == 0 ? 1 : levels); ++i) {
    const std::uint64_t b = array_bytes(l);
    total = total > UINT64_MAX - b ? UINT64_MAX : total + b;
    l.width = l.width > 1 ? l.width / 2 : 1;
    if (l.height > 1) l.height /= 2;
    if (l.depth > 1) l.depth /= 2;
  }
  return total;
}

}  // namespace softmig::core
