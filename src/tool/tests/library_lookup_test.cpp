// SPDX-License-Identifier: Apache-2.0
#include "tool/library_lookup.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

/// A file system that holds exactly the given files.
auto files(std::set<std::string> paths) {
  return [paths = std::move(paths)](const std::string& p) { return paths.count(p) != 0; };
}

LibrarySearch build_tree() {
  LibrarySearch s;
  s.exe_dir = "/src/softmig/build/bin";
  s.install_libdir = "lib/x86_64-linux-gnu";
  s.cwd = "/home/u";
  return s;
}

std::string error_of(const LibrarySearch& s, const std::function<bool(const std::string&)>& is_file) {
  try {
    (void)resolve_library(s, is_file);
  } catch (const ToolError& e) {
    EXPECT_EQ(e.exit_code(), kExitFailure);
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

TEST(DefaultLibraryCandidates, OrderAndNormalization) {
  const auto c = default_library_candidates(build_tree());
  const std::vector<std::string> expected = {
      "/src/softmig/build/lib/libsoftmig.so",
      "/src/softmig/build/lib/softmig/libsoftmig.so",
      "/src/softmig/build/lib/x86_64-linux-gnu/softmig/libsoftmig.so",
  };
  EXPECT_EQ(c, expected);
}

TEST(DefaultLibraryCandidates, PlainLibInstallDirIsNotListedTwice) {
  LibrarySearch s = build_tree();
  s.install_libdir = "lib";
  EXPECT_EQ(default_library_candidates(s).size(), 2U);
}

TEST(DefaultLibraryCandidates, AbsoluteInstallDir) {
  LibrarySearch s = build_tree();
  s.install_libdir = "/usr/lib64";
  EXPECT_EQ(default_library_candidates(s).back(), "/usr/lib64/softmig/libsoftmig.so");
}

TEST(DefaultLibraryCandidates, PackageMultiarchLayoutLast) {
  LibrarySearch s = build_tree();
  s.install_libdir = "lib";
  s.library_arch = "x86_64-linux-gnu";
  const auto c = default_library_candidates(s);
  ASSERT_EQ(c.size(), 3U);
  EXPECT_EQ(c.back(), "/src/softmig/build/lib/x86_64-linux-gnu/softmig/libsoftmig.so");
}

TEST(DefaultLibraryCandidates, UnknownExeDirGivesNothing) {
  LibrarySearch s = build_tree();
  s.exe_dir.clear();
  EXPECT_TRUE(default_library_candidates(s).empty());
}

TEST(ResolveLibrary, BuildTreeFirst) {
  EXPECT_EQ(resolve_library(build_tree(), files({"/src/softmig/build/lib/libsoftmig.so",
                                                 "/src/softmig/build/lib/softmig/libsoftmig.so"})),
            "/src/softmig/build/lib/libsoftmig.so");
}

TEST(ResolveLibrary, InstalledLayouts) {
  LibrarySearch s = build_tree();
  s.exe_dir = "/usr/bin";
  EXPECT_EQ(resolve_library(s, files({"/usr/lib/softmig/libsoftmig.so"})), "/usr/lib/softmig/libsoftmig.so");
  EXPECT_EQ(resolve_library(s, files({"/usr/lib/x86_64-linux-gnu/softmig/libsoftmig.so"})),
            "/usr/lib/x86_64-linux-gnu/softmig/libsoftmig.so");
}

TEST(ResolveLibrary, FlagBeatsEnvironmentBeatsDefaults) {
  LibrarySearch s = build_tree();
  s.flag = "/f/libsoftmig.so";
  s.env = "/e/libsoftmig.so";
  const auto all = files({"/f/libsoftmig.so", "/e/libsoftmig.so", "/src/softmig/build/lib/libsoftmig.so"});
  EXPECT_EQ(resolve_library(s, all), "/f/libsoftmig.so");
  s.flag.clear();
  EXPECT_EQ(resolve_library(s, all), "/e/libsoftmig.so");
}

TEST(ResolveLibrary, RelativeExplicitPathIsMadeAbsolute) {
  LibrarySearch s = build_tree();
  s.flag = "../x/./libsoftmig.so";
  EXPECT_EQ(resolve_library(s, files({"/home/x/libsoftmig.so"})), "/home/x/libsoftmig.so");
}

TEST(ResolveLibrary, MissingExplicitChoiceIsAnErrorNotAFallback) {
  LibrarySearch s = build_tree();
  s.flag = "/nope/libsoftmig.so";
  const auto defaults = files({"/src/softmig/build/lib/libsoftmig.so"});
  EXPECT_NE(error_of(s, defaults).find("--library '/nope/libsoftmig.so'"), std::string::npos);
  s.flag.clear();
  s.env = "/nope/libsoftmig.so";
  EXPECT_NE(error_of(s, defaults).find("SOFTMIG_LIBRARY='/nope/libsoftmig.so'"), std::string::npos);
}

TEST(ResolveLibrary, NothingFoundListsEveryPlaceTried) {
  const std::string msg = error_of(build_tree(), files({}));
  EXPECT_NE(msg.find("cannot find libsoftmig.so"), std::string::npos);
  EXPECT_NE(msg.find("/src/softmig/build/lib/libsoftmig.so"), std::string::npos);
  EXPECT_NE(msg.find("/src/softmig/build/lib/x86_64-linux-gnu/softmig/libsoftmig.so"), std::string::npos);
}

}  // namespace
}  // namespace softmig::tool
