// SPDX-License-Identifier: Apache-2.0
/// @file ledger_reader.hpp
/// @brief Finding the ledgers of the jobs on a node and copying them into a Snapshot, read-only.
///
/// Where ledgers live (platform/settings.cpp decides it for the library):
///   - the SOFTMIG_LEDGER_DIR named in a job's root-owned configuration file (CONFIG_DIR/*.conf);
///   - $SLURM_TMPDIR of a job (only the caller's own is known to the tool);
///   - /tmp/softmig-<uid>/ and $XDG_RUNTIME_DIR/softmig/ (and, for root, /run/user/<uid>/softmig/).
/// File names are cudevshr.cache.<jobid> inside SLURM and cudevshr.cache.session-<name> outside.
/// Root sees every ledger; any other user only the ledgers they own.
///
/// Ledgers are mapped with platform::SharedRegion (read-only attach, which validates the file).
/// Because that attach accepts only files owned by the effective uid, root switches its
/// effective uid to the file's owner for the duration of the attach.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tool/status_model.hpp"

namespace softmig::tool {

/// Where to look, and for whom.
struct DiscoveryOptions {
  std::string root = "/";            ///< prefix of every system path (tests use a temporary root)
  std::string config_dir;            ///< directory of the job configuration files (under root)
  std::string slurm_tmpdir;          ///< the caller's $SLURM_TMPDIR, or empty
  std::string xdg_runtime_dir;       ///< the caller's $XDG_RUNTIME_DIR, or empty
  unsigned uid = 0;                  ///< the caller's uid
};

/// The options for this process: SOFTMIG_CONFIG_DIR under `root`, its environment and uid.
DiscoveryOptions current_discovery(const std::string& root);

/// Joins a root prefix and an absolute path: ("/", "/tmp") -> "/tmp"; ("/r", "/tmp") -> "/r/tmp".
std::string under_root(const std::string& root, const std::string& path);

/// Whether a ledger owned by `owner` is shown to `viewer`: root sees all, others their own.
bool visible_to(unsigned owner, unsigned viewer) noexcept;

/// The ledger files in `dir` (regular files named cudevshr.cache.*, symbolic links skipped).
std::vector<std::string> ledgers_in(const std::string& dir);

struct Discovered {
  std::vector<std::string> ledgers;   ///< unique, sorted, visible to the caller
  std::vector<std::string> searched;  ///< the directories looked at, for messages
};

/// Every ledger of the node the caller may see.
Discovered discover_ledgers(const DiscoveryOptions& o);

/// The explicit --ledger arguments: files as given, directories expanded with ledgers_in().
std::vector<std::string> expand_ledger_arguments(const std::vector<std::string>& args);

/// Reads the ledgers into a snapshot. `config_dir` is where SLURM jobs' configuration files
/// (and so their compute shares) are found. Ledgers that cannot be used become problems.
Snapshot read_snapshot(const std::vector<std::string>& ledgers, const std::string& config_dir);

}  // namespace softmig::tool
