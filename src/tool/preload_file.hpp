// SPDX-License-Identifier: Apache-2.0
/// @file preload_file.hpp
/// @brief Editing /etc/ld.so.preload: the pure text edits (unit-tested) behind
///        `softmig install-preload` and `softmig remove-preload`.
///
/// The dynamic loader reads the file as names separated by white space or ':', with '#'
/// starting a comment that runs to the end of the line. The edits touch only entries whose file
/// name is libsoftmig.so; every other entry, comment and line is kept as it was.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace softmig::tool {

/// The entries of an ld.so.preload text, in order, comments removed.
std::vector<std::string> preload_entries(std::string_view text);

/// True if the entry's file name is libsoftmig.so.
bool is_softmig_entry(std::string_view entry);

struct PreloadEdit {
  std::string text;      ///< the new file content
  bool changed = false;  ///< false: the file already says what was asked
};

/// Makes `library` the one softmig entry, first in the file. Other softmig entries (another
/// copy, another version) are removed: two copies in one process would count every allocation
/// twice. Unchanged if `library` already is the only softmig entry.
PreloadEdit add_preload_entry(std::string_view text, std::string_view library);

/// Removes every softmig entry. Lines left without entries or comments are dropped.
PreloadEdit remove_preload_entries(std::string_view text);

/// True if the text holds nothing but white space.
bool blank(std::string_view text);

}  // namespace softmig::tool
