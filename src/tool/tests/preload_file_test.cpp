// SPDX-License-Identifier: Apache-2.0
// The /etc/ld.so.preload edits of install-preload / remove-preload.
#include "tool/preload_file.hpp"

#include <gtest/gtest.h>

namespace softmig::tool {
namespace {

constexpr const char* kLib = "/usr/lib/x86_64-linux-gnu/softmig/libsoftmig.so";

TEST(PreloadEntries, WhiteSpaceColonsAndComments) {
  const auto e = preload_entries("/a/liba.so  /b/libb.so:/c/libc.so\n# /d/libd.so\n\t/e/libe.so # note\n");
  EXPECT_EQ(e, (std::vector<std::string>{"/a/liba.so", "/b/libb.so", "/c/libc.so", "/e/libe.so"}));
}

TEST(IsSoftmigEntry, FileNameOnly) {
  EXPECT_TRUE(is_softmig_entry(kLib));
  EXPECT_TRUE(is_softmig_entry("libsoftmig.so"));
  EXPECT_FALSE(is_softmig_entry("/x/libsoftmig.so.1"));
  EXPECT_FALSE(is_softmig_entry("/x/mylibsoftmig.so"));
}

TEST(AddPreload, ToAnEmptyOrMissingFile) {
  const auto e = add_preload_entry("", kLib);
  EXPECT_TRUE(e.changed);
  EXPECT_EQ(e.text, std::string(kLib) + "\n");
}

TEST(AddPreload, IsIdempotent) {
  const auto once = add_preload_entry("/a/liba.so\n", kLib);
  const auto twice = add_preload_entry(once.text, kLib);
  EXPECT_FALSE(twice.changed);
  EXPECT_EQ(twice.text, once.text);
}

TEST(AddPreload, GoesFirstAndKeepsEverythingElse) {
  const auto e = add_preload_entry("# site preloads\n/a/liba.so /b/libb.so\n", kLib);
  EXPECT_EQ(e.text, std::string(kLib) + "\n# site preloads\n/a/liba.so /b/libb.so\n");
}

TEST(AddPreload, ReplacesAnotherCopy) {
  const auto e = add_preload_entry("/opt/old/libsoftmig.so:/a/liba.so # keep\n/usr/local/lib/libsoftmig.so\n", kLib);
  EXPECT_TRUE(e.changed);
  EXPECT_EQ(e.text, std::string(kLib) + "\n/a/liba.so # keep\n");
}

TEST(AddPreload, DuplicateOfTheSameLibraryIsCollapsed) {
  const auto e = add_preload_entry(std::string(kLib) + "\n" + kLib + "\n", kLib);
  EXPECT_TRUE(e.changed);
  EXPECT_EQ(preload_entries(e.text).size(), 1U);
}

TEST(RemovePreload, KeepsOthers) {
  const auto e = remove_preload_entries(std::string(kLib) + "\n/a/liba.so\n");
  EXPECT_TRUE(e.changed);
  EXPECT_EQ(e.text, "/a/liba.so\n");
}

TEST(RemovePreload, NothingToDo) {
  const auto e = remove_preload_entries("/a/liba.so\n");
  EXPECT_FALSE(e.changed);
  EXPECT_EQ(e.text, "/a/liba.so\n");
}

TEST(RemovePreload, OnlySoftmigLeavesBlank) {
  const auto e = remove_preload_entries(std::string(kLib) + "\n");
  EXPECT_TRUE(e.changed);
  EXPECT_TRUE(blank(e.text));
}

TEST(RemovePreload, UndoesAdd) {
  const std::string before = "# site\n/a/liba.so\n";
  EXPECT_EQ(remove_preload_entries(add_preload_entry(before, kLib).text).text, before);
}

}  // namespace
}  // namespace softmig::tool
