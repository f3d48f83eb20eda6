// SPDX-License-Identifier: Apache-2.0
/// @file snapshot_source.hpp
/// @brief The ledger-selection flags `softmig status` and `softmig metrics` share (--ledger,
///        --job, --root) and the snapshot they select.
#pragma once

#include <string>
#include <vector>

#include "tool/status_model.hpp"

namespace CLI {
class App;
}

namespace softmig::tool {

struct SnapshotSource {
  std::vector<std::string> ledgers;  ///< --ledger: explicit files or directories (no discovery)
  std::vector<std::string> jobs;     ///< --job: keep only these job keys
  std::string root = "/";            ///< --root: prefix of the system paths searched

  /// Declares the flags on `app`.
  void add_flags(CLI::App& app);
  /// Discovers (or expands) the ledgers, reads them and applies --job.
  [[nodiscard]] Snapshot take() const;
  /// Where discovery looked, for the "nothing found" message.
  [[nodiscard]] std::string searched() const;
};

}  // namespace softmig::tool
