// SPDX-License-Identifier: Apache-2.0
/// @file cmd_preload.cpp
/// @brief `softmig install-preload` / `softmig remove-preload`: the one documented, reversible
///        step that puts libsoftmig.so into (or takes it out of) /etc/ld.so.preload. Installing
///        the package never does this by itself.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tool/atomic_file.hpp"
#include "tool/command.hpp"
#include "tool/install_check.hpp"
#include "tool/ledger_reader.hpp"
#include "tool/library_lookup.hpp"
#include "tool/preload_file.hpp"
#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

constexpr const char* kPreloadFile = "/etc/ld.so.preload";
constexpr const char* kBackupSuffix = ".softmig-backup";

struct PreloadArgs {
  std::string root = "/";
  std::string library;
  bool dry_run = false;
};

struct Current {
  bool exists = false;
  std::string text;
  mode_t mode = 0644;
};

Current read_current(const std::string& path) {
  Current c;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return c;
    throw ToolError(kExitFailure, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) throw ToolError(kExitFailure, fmt::format("{} is not a regular file; not touched", path));
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in && !in.eof()) throw ToolError(kExitFailure, fmt::format("cannot read {}", path));
  c.exists = true;
  c.text = ss.str();
  c.mode = st.st_mode & 07777;
  return c;
}

void backup(const std::string& path, const Current& c) {
  if (c.exists) write_file_atomically(path + kBackupSuffix, c.text, c.mode);
}

std::string choose_library(const PreloadArgs& a) {
  if (!a.library.empty()) {
    if (a.library.front() != '/') throw ToolError(kExitUsage, "--library must be an absolute path (as the node sees it)");
    return a.library;
  }
  if (std::string found = find_installed_library(a.root); !found.empty()) return found;
  if (a.root == "/") return find_library("");  // next to the tool (an unpacked or build tree)
  std::string tried;
  for (const auto& l : library_locations()) tried += "\n  " + under_root(a.root, l);
  throw ToolError(kExitFailure, fmt::format("cannot find libsoftmig.so; give --library PATH; tried:{}", tried));
}

int install(const PreloadArgs& a) {
  const std::string library = choose_library(a);
  const std::string on_disk = under_root(a.root, library);
  if (const std::string why = elf_problem(on_disk); !why.empty()) {
    throw ToolError(kExitFailure, fmt::format("{}: {}; /etc/ld.so.preload not changed", on_disk, why));
  }
  if (a.root == "/") {
    // A library that cannot load would make the loader complain in every program on the node.
    const ChildReport r = try_dlopen(on_disk, 10000);
    if (!r.ok) throw ToolError(kExitFailure, fmt::format("{} does not load: {}; /etc/ld.so.preload not changed", on_disk, r.text));
  }
  const std::string file = under_root(a.root, kPreloadFile);
  const Current c = read_current(file);
  const PreloadEdit e = add_preload_entry(c.text, library);
  if (!e.changed) {
    fmt::print("{} already preloads {}; nothing changed\n", file, library);
    return kExitOk;
  }
  if (a.dry_run) {
    fmt::print("would write {}:\n{}", file, e.text);
    return kExitOk;
  }
  backup(file, c);
  write_file_atomically(file, e.text, c.exists ? c.mode : 0644);
  fmt::print("{} now preloads {}{}\n", file, library,
             c.exists ? fmt::format(" (previous content saved in {}{})", file, kBackupSuffix) : "");
  fmt::print("Every program started from now on loads it; running programs are not affected.\n"
             "Check with `softmig doctor`; undo with `softmig remove-preload`.\n");
  return kExitOk;
}

int remove(const PreloadArgs& a) {
  const std::string file = under_root(a.root, kPreloadFile);
  const Current c = read_current(file);
  const PreloadEdit e = remove_preload_entries(c.text);
  if (!e.changed) {
    fmt::print("{} does not preload libsoftmig.so; nothing changed\n", c.exists ? file : file + " (absent)");
    return kExitOk;
  }
  if (a.dry_run) {
    fmt::print("would write {}:\n{}", file, e.text);
    return kExitOk;
  }
  backup(file, c);
  if (blank(e.text)) {
    if (::unlink(file.c_str()) != 0) throw ToolError(kExitFailure, fmt::format("cannot remove {}: {}", file, std::strerror(errno)));
    fmt::print("removed {} (it preloaded only libsoftmig.so; saved in {}{})\n", file, file, kBackupSuffix);
  } else {
    write_file_atomically(file, e.text, c.mode);
    fmt::print("removed libsoftmig.so from {} (previous content saved in {}{})\n", file, file, kBackupSuffix);
  }
  fmt::print("Programs started from now on run without softmig; running programs keep it until they exit.\n");
  return kExitOk;
}

void common_flags(CLI::App& app, PreloadArgs& a) {
  app.add_option("--root", a.root, "Edit DIR/etc/ld.so.preload instead of /etc/ld.so.preload (images, tests)")
      ->type_name("DIR");
  app.add_flag("-n,--dry-run", a.dry_run, "Print the new file instead of writing it");
}

}  // namespace

Command add_install_preload_command(CLI::App& parent) {
  auto args = std::make_shared<PreloadArgs>();
  CLI::App* app = parent.add_subcommand("install-preload", "Add libsoftmig.so to /etc/ld.so.preload (reversible)");
  common_flags(*app, *args);
  app->add_option("--library", args->library,
                  "The library's path as the node sees it (default: the installed one, e.g. "
                  "/usr/lib/<multiarch>/softmig/libsoftmig.so)")
      ->type_name("PATH");
  app->footer(
      "Puts the library first in /etc/ld.so.preload so that every program on the node loads it;\n"
      "this is how SLURM jobs get their limits. The library must be a loadable shared object for\n"
      "this machine (checked before anything is written). Other entries and comments are kept;\n"
      "another copy of libsoftmig.so is replaced. The file is replaced atomically and its previous\n"
      "content is kept in /etc/ld.so.preload.softmig-backup. Running it twice changes nothing.\n"
      "Installing the package never edits the file: this command is the one step that does.\n"
      "Undo: softmig remove-preload. Exit status: 0 done or nothing to do, 1 error, 2 bad flags.");
  return {app, [args] { return install(*args); }};
}

Command add_remove_preload_command(CLI::App& parent) {
  auto args = std::make_shared<PreloadArgs>();
  CLI::App* app = parent.add_subcommand("remove-preload", "Remove libsoftmig.so from /etc/ld.so.preload");
  common_flags(*app, *args);
  app->footer(
      "Removes every libsoftmig.so entry from /etc/ld.so.preload, keeping everything else. If\n"
      "nothing else is left the file is removed. The previous content is kept in\n"
      "/etc/ld.so.preload.softmig-backup. Running it twice changes nothing. Run it before\n"
      "uninstalling the package, so that no program looks for a library that is gone.\n"
      "Exit status: 0 done or nothing to do, 1 error, 2 bad flags.");
  return {app, [args] { return remove(*args); }};
}

}  // namespace softmig::tool
