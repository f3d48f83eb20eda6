// SPDX-License-Identifier: Apache-2.0
#include "tool/slurm_job.hpp"

#include <charconv>
#include <stdexcept>

namespace softmig::tool::slurm {
namespace {

std::optional<std::uint64_t> to_number(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

/// Splits on `sep` outside parentheses and brackets.
std::vector<std::string_view> split_top(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '(' || c == '[') ++depth;
    if ((c == ')' || c == ']') && depth > 0) --depth;
    if (c == sep && depth == 0) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(s.substr(start));
  return out;
}

/// "0-1,3" -> {0,1,3}; nullopt if malformed.
std::optional<std::vector<unsigned>> parse_ranges(std::string_view s) {
  std::vector<unsigned> out;
  for (const std::string_view part : split_top(s, ',')) {
    const std::size_t dash = part.find('-');
    const auto lo = to_number(part.substr(0, dash));
    const auto hi = dash == std::string_view::npos ? lo : to_number(part.substr(dash + 1));
    if (!lo || !hi || *hi < *lo || *hi - *lo > 1024) return std::nullopt;
    for (std::uint64_t i = *lo; i <= *hi; ++i) out.push_back(static_cast<unsigned>(i));
  }
  return out;
}

/// The value of "Key=" among whitespace-separated tokens of `line`, or nullopt.
std::optional<std::string_view> field(std::string_view line, std::string_view key) {
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
    std::size_t end = pos;
    while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
    const std::string_view token = line.substr(pos, end - pos);
    if (token.size() > key.size() && token.substr(0, key.size()) == key && token[key.size()] == '=') {
      return token.substr(key.size() + 1);
    }
    pos = end;
  }
  return std::nullopt;
}

}  // namespace

std::uint64_t JobAllocation::count_of(std::string_view name) const {
  std::uint64_t n = 0;
  for (const auto& g : gres) {
    if (g.name == name) n += g.count;
  }
  return n;
}

const GresEntry* JobAllocation::find(std::string_view name) const {
  for (const auto& g : gres) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

std::vector<GresEntry> parse_gres_list(std::string_view text) {
  std::vector<GresEntry> out;
  if (text.empty() || text == "(null)") return out;
  for (std::string_view item : split_top(text, ',')) {
    if (item.substr(0, 5) == "gres:" || item.substr(0, 5) == "gres/") item.remove_prefix(5);
    GresEntry e;
    std::string_view detail;
    if (const std::size_t paren = item.find('('); paren != std::string_view::npos) {
      detail = item.substr(paren + 1);
      if (!detail.empty() && detail.back() == ')') detail.remove_suffix(1);
      item = item.substr(0, paren);
    }
    const auto parts = split_top(item, ':');
    if (parts.empty() || parts[0].empty()) continue;
    e.name = std::string(parts[0]);
    if (parts.size() == 1) {
      e.count = 1;
    } else if (parts.size() == 2) {
      if (const auto n = to_number(parts[1])) {
        e.count = *n;
      } else {
        e.type = std::string(parts[1]);
        e.count = 1;
      }
    } else if (parts.size() == 3) {
      const auto n = to_number(parts[2]);
      if (!n) continue;
      e.type = std::string(parts[1]);
      e.count = *n;
    } else {
      continue;
    }
    if (detail.substr(0, 4) == "IDX:") {
      if (auto idx = parse_ranges(detail.substr(4))) e.indices = std::move(*idx);
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> expand_hostlist(std::string_view text) {
  std::vector<std::string> out;
  for (const std::string_view item : split_top(text, ',')) {
    const std::size_t open = item.find('[');
    if (open == std::string_view::npos) {
      if (!item.empty()) out.emplace_back(item);
      continue;
    }
    const std::size_t close = item.find(']', open);
    if (close == std::string_view::npos) return {};
    const std::string_view prefix = item.substr(0, open);
    const std::string_view suffix = item.substr(close + 1);
    for (const std::string_view range : split_top(item.substr(open + 1, close - open - 1), ',')) {
      const std::size_t dash = range.find('-');
      const std::string_view lo_text = range.substr(0, dash);
      const auto lo = to_number(lo_text);
      const auto hi = dash == std::string_view::npos ? lo : to_number(range.substr(dash + 1));
      if (!lo || !hi || *hi < *lo || *hi - *lo > 100000) return {};
      for (std::uint64_t i = *lo; i <= *hi; ++i) {
        std::string number = std::to_string(i);
        if (number.size() < lo_text.size()) number.insert(0, lo_text.size() - number.size(), '0');
        out.push_back(std::string(prefix) + number + std::string(suffix));
      }
    }
  }
  return out;
}

JobAllocation parse_scontrol_job(std::string_view text, std::string_view job_id, std::string_view node) {
  // `scontrol show job <array job id>` lists every task of the array, one record each (a record
  // starts with a "JobId=" line): only the record of `job_id` counts.
  JobAllocation job;
  std::optional<std::string_view> job_gres;
  bool in_record = false;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.substr(0, 6) == "JobId=") {
      if (in_record) break;  // the next record
      const auto id = field(line, "JobId");
      in_record = id && (job_id.empty() || *id == job_id);
      if (in_record) job.job_id = std::string(*id);
    }
    if (!in_record) continue;
    if (const auto v = field(line, "ArrayTaskId"); v && to_number(*v)) job.array_task_id = std::string(*v);
    if (const auto v = field(line, "JOB_GRES")) job_gres = v;
    if (const auto nodes = field(line, "Nodes"); nodes && !job.node_line_found) {
      const auto gres = field(line, "GRES");
      bool ours = node.empty();
      for (const auto& name : expand_hostlist(*nodes)) ours = ours || name == node;
      if (ours) {
        job.node_line_found = true;
        job.gres = parse_gres_list(gres.value_or(""));
      }
    }
  }
  if (job.job_id.empty() || !to_number(job.job_id)) {
    throw std::runtime_error(job_id.empty() ? std::string("scontrol's output names no numeric JobId")
                                            : "scontrol's output has no record of job " + std::string(job_id));
  }
  if (!job.node_line_found && job_gres) job.gres = parse_gres_list(*job_gres);
  return job;
}

std::optional<std::vector<unsigned>> parse_index_list(std::string_view text) {
  if (text.empty()) return std::vector<unsigned>{};
  return parse_ranges(text);
}

}  // namespace softmig::tool::slurm
