// SPDX-License-Identifier: Apache-2.0
#include "tool/preload_file.hpp"

namespace softmig::tool {
namespace {

bool separator(char c) { return c == ' ' || c == '\t' || c == ':' || c == '\r' || c == '\v' || c == '\f'; }

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::vector<std::string_view> entries_of_line(std::string_view line) {
  std::vector<std::string_view> out;
  if (const auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && separator(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !separator(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

/// The text without softmig entries; `removed` counts them.
std::string without_softmig(std::string_view text, unsigned& removed) {
  std::string out;
  for (const std::string_view line : split_lines(text)) {
    const auto entries = entries_of_line(line);
    unsigned here = 0;
    for (const auto e : entries) here += is_softmig_entry(e) ? 1U : 0U;
    if (here == 0) {
      out.append(line).push_back('\n');
      continue;
    }
    removed += here;
    std::string kept;
    for (const auto e : entries) {
      if (is_softmig_entry(e)) continue;
      if (!kept.empty()) kept.push_back(' ');
      kept.append(e);
    }
    const auto hash = line.find('#');
    if (hash != std::string_view::npos) {
      if (!kept.empty()) kept.push_back(' ');
      kept.append(line.substr(hash));
    }
    if (!kept.empty()) out.append(kept).push_back('\n');
  }
  return out;
}

}  // namespace

std::vector<std::string> preload_entries(std::string_view text) {
  std::vector<std::string> out;
  for (const std::string_view line : split_lines(text)) {
    for (const auto e : entries_of_line(line)) out.emplace_back(e);
  }
  return out;
}

bool is_softmig_entry(std::string_view entry) {
  constexpr std::string_view kName = "libsoftmig.so";
  const auto slash = entry.rfind('/');
  return (slash == std::string_view::npos ? entry : entry.substr(slash + 1)) == kName;
}

bool blank(std::string_view text) {
  for (const char c : text) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return true;
}

PreloadEdit add_preload_entry(std::string_view text, std::string_view library) {
  unsigned softmig = 0;
  bool present = false;
  for (const auto& e : preload_entries(text)) {
    if (is_softmig_entry(e)) {
      ++softmig;
      present = present || e == library;
    }
  }
  if (softmig == 1 && present) return {std::string(text), false};
  unsigned removed = 0;
  std::string rest = without_softmig(text, removed);
  return {std::string(library) + "\n" + rest, true};
}

PreloadEdit remove_preload_entries(std::string_view text) {
  unsigned removed = 0;
  std::string rest = without_softmig(text, removed);
  if (removed == 0) return {std::string(text), false};
  return {rest, true};
}

}  // namespace softmig::tool
