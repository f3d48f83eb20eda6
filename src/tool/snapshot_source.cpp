// SPDX-License-Identifier: Apache-2.0
#include "tool/snapshot_source.hpp"

#include <algorithm>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tool/ledger_reader.hpp"

namespace softmig::tool {

void SnapshotSource::add_flags(CLI::App& app) {
  app.add_option("--ledger", ledgers,
                 "Read this ledger file, or every cudevshr.cache.* in this directory, instead of discovering "
                 "them (repeatable)")
      ->type_name("PATH");
  app.add_option("--job", jobs, "Show only this job (a SLURM job id or session-<name>; repeatable)")
      ->type_name("JOB");
  app.add_option("--root", root, "Look for the node's directories under DIR instead of / (for tests)")
      ->type_name("DIR");
}

Snapshot SnapshotSource::take() const {
  const DiscoveryOptions o = current_discovery(root);
  const std::vector<std::string> files =
      ledgers.empty() ? discover_ledgers(o).ledgers : expand_ledger_arguments(ledgers);
  Snapshot s = read_snapshot(files, o.config_dir);
  if (!jobs.empty()) {
    std::erase_if(s.jobs, [&](const JobView& j) { return std::find(jobs.begin(), jobs.end(), j.job) == jobs.end(); });
  }
  return s;
}

std::string SnapshotSource::searched() const {
  if (!ledgers.empty()) return fmt::format("{}", fmt::join(ledgers, ", "));
  return fmt::format("{}", fmt::join(discover_ledgers(current_discovery(root)).searched, ", "));
}

}  // namespace softmig::tool
