// SPDX-License-Identifier: Apache-2.0
/// @file slurm_slots.hpp
/// @brief The compute windows of the jobs sharing one GPU: a job with a compute share of P %
///        submits work only during its window of P % of every pacing period, and jobs on one GPU
///        must not overlap. The prolog keeps one table per GPU (<config dir>/sm-slots/<UUID>,
///        lines "<jobid> <start> <length>", in percent of the period) and places each new job
///        first-fit. Pure: parsing, placing and rendering; the locked file update is in
///        slurm_system.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace softmig::tool::slurm {

/// Takes the next line off `text` (which then starts after it), without its '#' comment.
inline std::string_view take_config_line(std::string_view& text) {
  const std::size_t nl = text.find('\n');
  std::string_view line = text.substr(0, nl);
  text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  if (const std::size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
  return line;
}

/// One job's window on a GPU: [start, start + length) percent of the period.
struct SlotEntry {
  std::string job_id;
  unsigned start = 0;   ///< 0..99
  unsigned length = 0;  ///< 1..100
  bool operator==(const SlotEntry&) const = default;
};

/// Parses a table. Lines that are not "<jobid> <start> <length>" (decimal job id, start 0..99,
/// length 1..100) are dropped and described in `problems` (when not null); blank lines and
/// '#' comments are ignored.
std::vector<SlotEntry> parse_slot_table(std::string_view text, std::vector<std::string>* problems = nullptr);

/// The table's text: one "<jobid> <start> <length>\n" line per entry, ordered by start.
std::string render_slot_table(const std::vector<SlotEntry>& entries);

/// Where a job's window was placed.
struct SlotChoice {
  unsigned start = 0;
  unsigned overlap = 0;                       ///< percent-points shared with other windows (0: a free gap)
  std::vector<std::string> overlapping_jobs;  ///< the jobs whose windows it overlaps
};

/// Places a window of `length` percent (1..100) for `job_id` in `entries`: a line of the same
/// job is replaced; the first free gap of that length in [0, 100) is taken (windows never cross
/// the end of the period); if there is none (an over-subscribed GPU, stale lines), the start
/// with the least overlap (the smallest such start on a tie). The new entry is added.
SlotChoice place_slot(std::vector<SlotEntry>& entries, std::string_view job_id, unsigned length);

/// Removes every line of `job_id`. True if there was one.
bool remove_slot(std::vector<SlotEntry>& entries, std::string_view job_id);

}  // namespace softmig::tool::slurm
