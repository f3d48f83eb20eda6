// SPDX-License-Identifier: Apache-2.0
/// @file library_lookup.hpp
/// @brief Where the softmig tool finds libsoftmig.so. The order is:
///          1. --library PATH
///          2. $SOFTMIG_LIBRARY
///          3. <dir of the tool>/../lib/libsoftmig.so           (build tree: build/bin, build/lib)
///          4. <dir of the tool>/../lib/softmig/libsoftmig.so   (installed, plain lib/)
///          5. <dir of the tool>/../<install libdir>/softmig/libsoftmig.so  (e.g. lib/x86_64-linux-gnu)
///          6. <dir of the tool>/../lib/<multiarch>/softmig/libsoftmig.so   (the Debian package's layout)
///        An explicit choice (1 or 2) that does not exist is an error, never a silent fallback
///        to another copy. resolve_library() is pure: the file test is passed in.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace softmig::tool {

struct LibrarySearch {
  std::string flag;            ///< --library value, or empty
  std::string env;             ///< $SOFTMIG_LIBRARY, or empty
  std::string exe_dir;         ///< directory holding the tool, or empty if unknown
  std::string install_libdir;  ///< CMAKE_INSTALL_LIBDIR baked in at build time (may be absolute)
  std::string library_arch;    ///< Debian multiarch triplet (x86_64-linux-gnu) of the package layout, or empty
  std::string cwd;             ///< for making a relative explicit path absolute
};

/// The places searched after the explicit choices, in order, normalized.
std::vector<std::string> default_library_candidates(const LibrarySearch& search);

/// Returns the absolute path of the library to preload. Throws ToolError (exit 1) with a
/// message naming every place tried when none qualifies.
std::string resolve_library(const LibrarySearch& search,
                            const std::function<bool(const std::string&)>& is_file);

/// The search for this process: reads $SOFTMIG_LIBRARY, /proc/self/exe and the current
/// directory. Not pure.
LibrarySearch current_library_search(const std::string& flag);

/// resolve_library() against the real file system.
std::string find_library(const std::string& flag);

}  // namespace softmig::tool
