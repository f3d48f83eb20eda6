// SPDX-License-Identifier: Apache-2.0
// Device memory charged for CUDA arrays and mipmapped arrays, from their descriptors.
#include "core/array_size.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace softmig::core {
namespace {

// CUarray_format values, as the CUDA driver API defines them.
constexpr int kU8 = 0x01, kU16 = 0x02, kU32 = 0x03, kS8 = 0x08, kS16 = 0x09, kS32 = 0x0a, kHalf = 0x10,
              kFloat = 0x20;
constexpr int kUnorm8x1 = 0xc0, kUnorm8x4 = 0xc2, kUnorm16x4 = 0xc5, kUnorm101010_2 = 0x50;
constexpr int kBc1 = 0x91, kBc3 = 0x95, kBc4 = 0x97, kBc5 = 0x99, kBc7 = 0x9d;
constexpr int kNv12 = 0xb0, kP010 = 0x9f, kYuy2 = 0xa5;

constexpr std::uint64_t KiB = 1ULL << 10U;
constexpr std::uint64_t MiB = 1ULL << 20U;

ArrayShape shape(std::uint64_t w, std::uint64_t h, std::uint64_t d, int format, unsigned channels) {
  ArrayShape s;
  s.width = w;
  s.height = h;
  s.depth = d;
  s.format = format;
  s.channels = channels;
  return s;
}

TEST(ArrayBytes, PlainFormats2D) {
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kFloat, 4)), 16 * MiB);
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kFloat, 1)), 4 * MiB);
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kHalf, 2)), 4 * MiB);
  EXPECT_EQ(array_bytes(shape(640, 480, 0, kU8, 4)), 640U * 480U * 4U);
  EXPECT_EQ(array_bytes(shape(640, 480, 0, kS8, 1)), 640U * 480U);
  EXPECT_EQ(array_bytes(shape(100, 100, 0, kU16, 2)), 40000U);
  EXPECT_EQ(array_bytes(shape(100, 100, 0, kS16, 1)), 20000U);
  EXPECT_EQ(array_bytes(shape(100, 100, 0, kU32, 4)), 160000U);
  EXPECT_EQ(array_bytes(shape(100, 100, 0, kS32, 2)), 80000U);
}

TEST(ArrayBytes, PlainFormats1DAnd3D) {
  EXPECT_EQ(array_bytes(shape(1000, 0, 0, kU8, 1)), 1000U);
  EXPECT_EQ(array_bytes(shape(100, 0, 0, kHalf, 2)), 400U);
  EXPECT_EQ(array_bytes(shape(64, 64, 64, kFloat, 1)), MiB);
  EXPECT_EQ(array_bytes(shape(10, 10, 10, kS16, 4)), 8000U);
  EXPECT_EQ(array_bytes(shape(256, 256, 256, kFloat, 4)), 256 * MiB);
}

TEST(ArrayBytes, ZeroHeightAndDepthCountAsOne) {
  EXPECT_EQ(array_bytes(shape(10, 0, 0, kFloat, 1)), array_bytes(shape(10, 1, 1, kFloat, 1)));
  EXPECT_EQ(array_bytes(shape(10, 5, 0, kFloat, 1)), array_bytes(shape(10, 5, 1, kFloat, 1)));
  EXPECT_EQ(array_bytes(shape(10, 0, 5, kFloat, 1)), array_bytes(shape(10, 1, 5, kFloat, 1)));
  EXPECT_EQ(array_bytes(shape(10, 0, 0, kFloat, 1)), 40U);
  EXPECT_EQ(array_bytes(shape(0, 10, 10, kFloat, 1)), 0U);  // no texels
}

TEST(ArrayBytes, ZeroChannelsOfAPlainFormatCountAsOne) {
  EXPECT_EQ(array_bytes(shape(10, 0, 0, kU32, 0)), 40U);
}

TEST(ArrayBytes, PackedFormatsIgnoreChannels) {
  EXPECT_EQ(array_bytes(shape(256, 256, 0, kUnorm8x4, 4)), 256 * KiB);
  EXPECT_EQ(array_bytes(shape(256, 256, 0, kUnorm8x4, 1)), 256 * KiB);
  EXPECT_EQ(array_bytes(shape(16, 16, 0, kUnorm16x4, 4)), 2048U);
  EXPECT_EQ(array_bytes(shape(16, 16, 0, kUnorm8x1, 1)), 256U);
  EXPECT_EQ(array_bytes(shape(16, 16, 0, kUnorm101010_2, 1)), 1024U);
}

TEST(ArrayBytes, BlockCompressedFormats) {
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kBc1, 4)), 512 * KiB);  // 8 bytes per 4x4 block
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kBc4, 1)), 512 * KiB);
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kBc3, 4)), MiB);        // 16 bytes per 4x4 block
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kBc5, 2)), MiB);
  EXPECT_EQ(array_bytes(shape(1024, 1024, 0, kBc7, 4)), MiB);
  EXPECT_EQ(array_bytes(shape(4, 4, 0, kBc1, 4)), 8U);
  EXPECT_EQ(array_bytes(shape(4, 4, 0, kBc3, 4)), 16U);
  EXPECT_GE(array_bytes(shape(1, 1, 0, kBc1, 4)), 1U);  // a partial byte is still charged
}

TEST(ArrayBytes, VideoFormats) {
  EXPECT_EQ(array_bytes(shape(1920, 1080, 0, kNv12, 1)), 1920U * 1080U * 3U / 2U);
  EXPECT_EQ(array_bytes(shape(1920, 1080, 0, kP010, 1)), 1920U * 1080U * 3U);
  EXPECT_EQ(array_bytes(shape(1920, 1080, 0, kYuy2, 1)), 1920U * 1080U * 2U);
}

TEST(ArrayBytes, UnknownFormatIsSixteenBytesPerTexel) {
  for (const int f : {0, 0x7f, 0x04, 0xff, -1, 0x1000}) {
    EXPECT_EQ(array_bytes(shape(100, 100, 0, f, 1)), 160000U) << f;
    EXPECT_EQ(array_bytes(shape(100, 100, 0, f, 4)), 160000U) << f;
  }
}

TEST(ArrayBytes, UnknownFormatNeverChargesLessThanAKnownOne) {
  const std::uint64_t unknown = array_bytes(shape(64, 64, 2, 0x7f, 4));
  for (int f = 0; f < 0x100; ++f) {
    for (unsigned ch : {1U, 2U, 4U}) {
      EXPECT_LE(array_bytes(shape(64, 64, 2, f, ch)), unknown) << "format " << f << " x" << ch;
    }
  }
}

TEST(ArrayBytes, SaturatesOnHugeDimensions) {
  EXPECT_EQ(array_bytes(shape(1ULL << 40U, 1ULL << 40U, 0, kFloat, 4)), UINT64_MAX);
  EXPECT_EQ(array_bytes(shape(UINT64_MAX, 2, 0, kU8, 1)), UINT64_MAX);
  EXPECT_EQ(array_bytes(shape(1ULL << 32U, 1ULL << 32U, 1ULL << 32U, kU8, 1)), UINT64_MAX);
  EXPECT_EQ(array_bytes(shape(1ULL << 62U, 4, 0, kUnorm8x4, 1)), UINT64_MAX);
  EXPECT_EQ(array_bytes(shape(1ULL << 62U, 1ULL << 62U, 0, kBc1, 1)), UINT64_MAX);
  EXPECT_EQ(array_bytes(shape(1ULL << 61U, 1, 0, 0x7f, 1)), UINT64_MAX);
  // Just below saturation the exact value is returned.
  EXPECT_EQ(array_bytes(shape((1ULL << 60U) - 1, 1, 0, kU32, 4)), ((1ULL << 60U) - 1) * 16U);
}

// Regression: packed formats once rounded bits up to bytes with (b + 7) / 8, which wraps when b
// is within 7 of UINT64_MAX: a BC1 array of 2^62 - 1 texels (2^64 - 4 bits) was charged 0 bytes.
// An oversized array must never look free.
TEST(ArrayBytes, PackedRoundingDoesNotWrapToZero) {
  const std::uint64_t texels = (1ULL << 62U) - 1;  // = 2147483649 * 2147483647
  EXPECT_GE(array_bytes(shape(texels, 1, 0, kBc1, 1)), texels / 2);
  EXPECT_GE(array_bytes(shape(2147483649ULL, 2147483647ULL, 0, kBc1, 1)), texels / 2);
  EXPECT_GE(array_bytes(shape(texels / 3, 1, 0, kNv12, 1)), texels / 2);  // 12 bits: 2^64 - 4 bits too
}

TEST(MipmappedArrayBytes, LevelsSum) {
  // 256x256 FLOAT x1, 9 levels: 4 * (256^2 + 128^2 + ... + 1^2) = 4 * (4^9 - 1) / 3
  EXPECT_EQ(mipmapped_array_bytes(shape(256, 256, 0, kFloat, 1), 9), 349524U);
  // A tenth level stays at 1x1.
  EXPECT_EQ(mipmapped_array_bytes(shape(256, 256, 0, kFloat, 1), 10), 349528U);
  // 3D: 64^3 U8, 7 levels: (8^7 - 1) / 7
  EXPECT_EQ(mipmapped_array_bytes(shape(64, 64, 64, kU8, 1), 7), 299593U);
  // Non-square: each dimension stops at 1 on its own.
  EXPECT_EQ(mipmapped_array_bytes(shape(256, 16, 0, kFloat, 1), 9), 21884U);
  // 1D
  EXPECT_EQ(mipmapped_array_bytes(shape(256, 0, 0, kU8, 1), 9), 511U);
}

TEST(MipmappedArrayBytes, OneLevelEqualsArrayBytes) {
  const ArrayShape s = shape(300, 200, 0, kHalf, 4);
  EXPECT_EQ(mipmapped_array_bytes(s, 1), array_bytes(s));
}

TEST(MipmappedArrayBytes, ZeroLevelsCountAsOne) {
  EXPECT_EQ(mipmapped_array_bytes(shape(256, 256, 0, kFloat, 1), 0), 256U * 256U * 4U);
}

TEST(MipmappedArrayBytes, SaturatesInsteadOfWrapping) {
  EXPECT_EQ(mipmapped_array_bytes(shape(1ULL << 40U, 1ULL << 40U, 0, kFloat, 4), 3), UINT64_MAX);
  EXPECT_EQ(mipmapped_array_bytes(shape(1ULL << 60U, 1, 0, kFloat, 4), 4), UINT64_MAX);
}

}  // namespace
}  // namespace softmig::core
