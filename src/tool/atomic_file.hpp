// SPDX-License-Identifier: Apache-2.0
/// @file atomic_file.hpp
/// @brief Replacing a file so that readers see the old or the new content, never a mix: write a
///        temporary file in the same directory, fsync it, rename it over the target.
#pragma once

#include <string>
#include <string_view>
#include <sys/types.h>

namespace softmig::tool {

/// Writes `content` to `path` atomically with permissions `mode`. Throws ToolError (exit 1).
void write_file_atomically(const std::string& path, std::string_view content, mode_t mode);

}  // namespace softmig::tool
