// SPDX-License-Identifier: Apache-2.0
#include "tool/library_lookup.hpp"

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "tool/tool_error.hpp"

#ifndef SOFTMIG_LIBRARY_ARCH
#define SOFTMIG_LIBRARY_ARCH ""
#endif
#ifndef SOFTMIG_INSTALL_LIBDIR
#define SOFTMIG_INSTALL_LIBDIR "lib"
#endif

namespace softmig::tool {
namespace fs = std::filesystem;
namespace {

constexpr const char* kLibraryFile = "libsoftmig.so";

std::string absolute_from(const std::string& path, const std::string& cwd) {
  fs::path p(path);
  if (p.is_relative() && !cwd.empty()) p = fs::path(cwd) / p;
  return p.lexically_normal().string();
}

}  // namespace

std::vector<std::string> default_library_candidates(const LibrarySearch& search) {
  std::vector<std::string> out;
  if (search.exe_dir.empty()) return out;
  const fs::path prefix = fs::path(search.exe_dir) / "..";
  auto add = [&out](const fs::path& p) {
    std::string s = p.lexically_normal().string();
    for (const auto& existing : out) {
      if (existing == s) return;
    }
    out.push_back(std::move(s));
  };
  add(prefix / "lib" / kLibraryFile);
  add(prefix / "lib" / "softmig" / kLibraryFile);
  if (!search.install_libdir.empty()) {
    const fs::path libdir(search.install_libdir);
    add((libdir.is_absolute() ? libdir : prefix / libdir) / "softmig" / kLibraryFile);
  }
  if (!search.library_arch.empty()) add(prefix / "lib" / search.library_arch / "softmig" / kLibraryFile);
  return out;
}

std::string resolve_library(const LibrarySearch& search,
                            const std::function<bool(const std::string&)>& is_file) {
  if (!search.flag.empty()) {
    std::string path = absolute_from(search.flag, search.cwd);
    if (!is_file(path)) throw ToolError(kExitFailure, fmt::format("--library '{}': no such file", search.flag));
    return path;
  }
  if (!search.env.empty()) {
    std::string path = absolute_from(search.env, search.cwd);
    if (!is_file(path)) throw ToolError(kExitFailure, fmt::format("SOFTMIG_LIBRARY='{}': no such file", search.env));
    return path;
  }
  const auto candidates = default_library_candidates(search);
  for (const auto& c : candidates) {
    if (is_file(c)) return c;
  }
  std::string tried;
  for (const auto& c : candidates) tried += fmt::format("\n  {}", c);
  if (tried.empty()) tried = "\n  (the tool's own location is unknown)";
  throw ToolError(kExitFailure,
                  fmt::format("cannot find {} (give --library PATH or set SOFTMIG_LIBRARY); tried:{}",
                              kLibraryFile, tried));
}

LibrarySearch current_library_search(const std::string& flag) {
  LibrarySearch s;
  s.flag = flag;
  if (const char* env = std::getenv("SOFTMIG_LIBRARY")) s.env = env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) s.exe_dir = exe.parent_path().string();
  const fs::path cwd = fs::current_path(ec);
  if (!ec) s.cwd = cwd.string();
  s.install_libdir = SOFTMIG_INSTALL_LIBDIR;
  s.library_arch = SOFTMIG_LIBRARY_ARCH;
  return s;
}

std::string find_library(const std::string& flag) {
  return resolve_library(current_library_search(flag), [](const std::string& path) {
    std::error_code ec;
    return fs::is_regular_file(path, ec);
  });
}

}  // namespace softmig::tool
