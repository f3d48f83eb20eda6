// SPDX-License-Identifier: Apache-2.0
#include "tool/slurm_slots.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include <fmt/format.h>

#include "core/job.hpp"

namespace softmig::tool::slurm {
namespace {

constexpr unsigned kPeriod = 100;  // percent

bool number(std::string_view s, unsigned& out) {
  if (s.empty() || s.size() > 3) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t' || line[pos] == '\r')) ++pos;
    std::size_t end = pos;
    while (end < line.size() && line[end] != ' ' && line[end] != '\t' && line[end] != '\r') ++end;
    if (end > pos) out.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

}  // namespace

std::vector<SlotEntry> parse_slot_table(std::string_view text, std::vector<std::string>* problems) {
  std::vector<SlotEntry> out;
  unsigned line_no = 0;
  while (!text.empty()) {
    const std::string_view line = take_config_line(text);
    ++line_no;
    const auto w = words(line);
    if (w.empty()) continue;
    SlotEntry e;
    if (w.size() == 3 && core::is_decimal_id(w[0]) && number(w[1], e.start) && number(w[2], e.length) &&
        e.start < kPeriod && e.length >= 1 && e.length <= kPeriod) {
      e.job_id = std::string(w[0]);
      out.push_back(std::move(e));
    } else if (problems != nullptr) {
      problems->push_back(fmt::format("line {}: '{}' is not '<jobid> <start> <length>'; dropped", line_no, line));
    }
  }
  return out;
}

std::string render_slot_table(const std::vector<SlotEntry>& entries) {
  std::vector<SlotEntry> sorted = entries;
  std::stable_sort(sorted.begin(), sorted.end(), [](const SlotEntry& a, const SlotEntry& b) { return a.start < b.start; });
  std::string text;
  for (const auto& e : sorted) text += fmt::format("{} {} {}\n", e.job_id, e.start, e.length);
  return text;
}

bool remove_slot(std::vector<SlotEntry>& entries, std::string_view job_id) {
  const auto before = entries.size();
  entries.erase(std::remove_if(entries.begin(), entries.end(), [&](const SlotEntry& e) { return e.job_id == job_id; }),
                entries.end());
  return entries.size() != before;
}

SlotChoice place_slot(std::vector<SlotEntry>& entries, std::string_view job_id, unsigned length) {
  length = std::clamp(length, 1U, kPeriod);
  remove_slot(entries, job_id);
  // How many windows cover each percent of the period (a hand-edited line that runs past the
  // end of the period wraps around).
  std::array<unsigned, kPeriod> used{};
  for (const auto& e : entries) {
    for (unsigned i = 0; i < e.length; ++i) ++used[(e.start + i) % kPeriod];
  }
  unsigned best_start = 0;
  unsigned best_overlap = ~0U;
  for (unsigned s = 0; s + length <= kPeriod; ++s) {
    unsigned overlap = 0;
    for (unsigned i = s; i < s + length; ++i) overlap += used[i];
    if (overlap < best_overlap) {
      best_overlap = overlap;
      best_start = s;
      if (overlap == 0) break;  // first fit
    }
  }
  SlotChoice choice;
  choice.start = best_start;
  choice.overlap = best_overlap;
  for (const auto& e : entries) {
    bool shared = false;
    for (unsigned i = 0; i < e.length && !shared; ++i) {
      const unsigned p = (e.start + i) % kPeriod;
      shared = p >= best_start && p < best_start + length;
    }
    if (shared) choice.overlapping_jobs.push_back(e.job_id);
  }
  entries.push_back(SlotEntry{std::string(job_id), best_start, length});
  return choice;
}

}  // namespace softmig::tool::slurm
