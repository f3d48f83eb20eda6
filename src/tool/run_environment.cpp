// SPDX-License-Identifier: Apache-2.0
#include "tool/run_environment.hpp"

#include <fmt/format.h>

#include "core/units.hpp"
#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

constexpr std::string_view kLibraryFileName = "libsoftmig.so";

std::string_view file_name(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

/// Sets NAME=value in `env`, replacing the first definition of NAME and dropping any later
/// duplicate (execve passes duplicates through and programs disagree on which one wins).
void set_variable(std::vector<std::string>& env, std::string_view name, std::string_view value) {
  std::string entry = fmt::format("{}={}", name, value);
  bool placed = false;
  for (auto it = env.begin(); it != env.end();) {
    const std::string_view e(*it);
    const bool same = e.size() > name.size() && e.substr(0, name.size()) == name && e[name.size()] == '=';
    if (!same) {
      ++it;
    } else if (!placed) {
      *it = entry;
      placed = true;
      ++it;
    } else {
      it = env.erase(it);
    }
  }
  if (!placed) env.push_back(std::move(entry));
}

}  // namespace

std::uint64_t parse_memory_flag(std::string_view text) {
  const auto bytes = core::parse_bytes(text);
  if (!bytes) {
    throw ToolError(kExitUsage,
                    fmt::format("--memory '{}' is not a size (examples: 4G, 512MiB, 11517.0M)", text));
  }
  return *bytes;
}

unsigned parse_sm_flag(std::string_view text) {
  std::string_view digits = text;
  if (!digits.empty() && digits.back() == '%') digits.remove_suffix(1);
  const auto percent = core::parse_percent(digits);
  if (!percent || *percent == 0) {
    throw ToolError(kExitUsage,
                    fmt::format("--sm '{}' is not a percentage from 1 to 100 (100 means no limit)", text));
  }
  return *percent;
}

std::string limit_key(std::string_view base, std::optional<unsigned> device) {
  return device ? fmt::format("{}_{}", base, *device) : std::string(base);
}

std::string prepend_preload(std::string_view current, std::string_view library) {
  std::string out(library);
  std::size_t start = 0;
  while (start <= current.size()) {
    std::size_t end = current.find_first_of(": ", start);
    if (end == std::string_view::npos) end = current.size();
    const std::string_view entry = current.substr(start, end - start);
    if (!entry.empty() && entry != library && file_name(entry) != kLibraryFileName) {
      out += ':';
      out += entry;
    }
    start = end + 1;
  }
  return out;
}

std::vector<std::string> build_run_environment(const RunOptions& options,
                                               const std::vector<std::string>& current_env) {
  std::vector<std::string> env = current_env;
  if (options.memory_bytes) {
    set_variable(env, limit_key(kMemoryKey, options.device), fmt::format("{}", *options.memory_bytes));
  }
  if (options.sm_percent) {
    set_variable(env, limit_key(kSmKey, options.device), fmt::format("{}", *options.sm_percent));
  }
  const auto preload = find_variable(env, kPreloadKey);
  set_variable(env, kPreloadKey, prepend_preload(preload.value_or(""), options.library));
  set_variable(env, kSessionKey, options.session);
  if (options.log_file) {
    set_variable(env, kLogLevelKey, kVerboseLogLevel);
    set_variable(env, kLogFileKey, *options.log_file);
  }
  return env;
}

std::optional<std::string> find_variable(const std::vector<std::string>& env, std::string_view name) {
  for (const auto& e : env) {
    if (e.size() > name.size() && std::string_view(e).substr(0, name.size()) == name && e[name.size()] == '=') {
      return e.substr(name.size() + 1);
    }
  }
  return std::nullopt;
}

}  // namespace softmig::tool
