// SPDX-License-Identifier: Apache-2.0
/// @file fuzz_limits.cpp
/// @brief Fuzz target for the job-file parser: core::parse_limits_file, core::find_setting,
///        Limits::resolve and core::limits_from_env.
///
/// The input is the text of a job file. Beside the parser, the target keeps its own, simple
/// model of the documented rules (limits.hpp): for each key the smallest value given wins, a
/// malformed size counts as 0 bytes, "0" means "no limit from this line", and a UUID key beats
/// an ordinal key, which beats the global one. It then asserts, for every device the file can
/// name (ordinals -1..16, every UUID in the file, in either case):
///   - resolve() never returns a larger memory limit than the smallest value given for the
///     winning key, and never "no limit" when a matching key set one (a limit is never lifted);
///   - the compute share is 1..100;
///   - any() is true whenever a device is limited;
///   - find_setting() returns a slice of the text without a line break, whose line names the key;
///   - the same KEY=VALUE pairs read as an environment give the same global and ordinal limits.
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/limits.hpp"
#include "core/units.hpp"
#include "fuzz_check.hpp"

namespace {

namespace core = softmig::core;

constexpr std::string_view kMemKey = "CUDA_DEVICE_MEMORY_LIMIT";
constexpr std::string_view kSmKey = "CUDA_DEVICE_SM_LIMIT";
constexpr std::string_view kPhaseKey = "CUDA_DEVICE_SM_PHASE";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string_view unquote(std::string_view s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) return s.substr(1, s.size() - 2);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

/// The model: the smallest limit each memory key asked for (nullopt: no line limited it).
struct Model {
  bool global_set = false;
  std::optional<std::uint64_t> global;
  std::array<std::optional<std::uint64_t>, core::kMaxDevices> ordinal{};
  std::map<std::string, std::optional<std::uint64_t>> uuid;  // lower-cased UUID
  std::vector<std::string> uuid_spelling;                    // as written, in order
  std::vector<std::pair<std::string, std::string>> pairs;    // every KEY=VALUE, for the env check
  std::map<std::string, bool> uuid_keys;  // every UUID a memory, share or phase key named (one table)
  bool overflow = false;  // more distinct UUIDs than the table holds: the file fails closed
};

bool is_uuid_selector(std::string_view suffix) {
  // A NUL byte cannot be part of a GPU's UUID (they are C strings everywhere else).
  return suffix.size() > 4 && suffix.size() < core::kUuidChars && suffix.find('\0') == std::string_view::npos &&
         (suffix.substr(0, 4) == "GPU-" || suffix.substr(0, 4) == "MIG-");
}

/// Records the UUID a key names in the model's shared UUID table, as the parser does: memory,
/// share and phase keys (the prolog's CUDA_DEVICE_SM_PHASE_<UUID>) all take an entry.
void note_uuid_key(Model& m, std::string_view key) {
  std::string_view suffix;
  if (key.substr(0, kMemKey.size()) == kMemKey) {
    suffix = key.substr(kMemKey.size());
  } else if (key.substr(0, kSmKey.size()) == kSmKey) {
    suffix = key.substr(kSmKey.size());
  } else if (key.substr(0, kPhaseKey.size()) == kPhaseKey) {
    suffix = key.substr(kPhaseKey.size());
  } else {
    return;
  }
  if (suffix.empty() || suffix.front() != '_') return;
  suffix.remove_prefix(1);
  if (!is_uuid_selector(suffix)) return;
  const std::string k = lower(suffix);
  if (m.uuid_keys.count(k) != 0) return;
  if (m.uuid_keys.size() >= core::kMaxDevices) {
    m.overflow = true;
    return;
  }
  m.uuid_keys[k] = true;
}

void keep_smaller(std::optional<std::uint64_t>& slot, std::uint64_t v) {
  if (!slot || v < *slot) slot = v;
}

void model_value(std::optional<std::uint64_t>& slot, std::string_view raw) {
  const auto bytes = core::parse_bytes(unquote(trim(raw)));
  if (!bytes) {
    keep_smaller(slot, 0);
  } else if (*bytes != 0) {
    keep_smaller(slot, *bytes);
  }
}

Model build_model(std::string_view text) {
  Model m;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view key = trim(line.substr(0, eq));
    const std::string_view value = line.substr(eq + 1);
    m.pairs.emplace_back(std::string(key), std::string(value));
    note_uuid_key(m, key);
    if (key.substr(0, kMemKey.size()) != kMemKey) continue;
    std::string_view suffix = key.substr(kMemKey.size());
    if (suffix.empty()) {
      model_value(m.global, value);
      continue;
    }
    if (suffix.front() != '_') continue;
    suffix.remove_prefix(1);
    bool digits = !suffix.empty() && suffix.size() <= 3;
    unsigned n = 0;
    for (const char c : suffix) {
      digits = digits && c >= '0' && c <= '9';
      if (digits) n = n * 10U + static_cast<unsigned>(c - '0');
    }
    if (digits) {
      if (n < core::kMaxDevices) model_value(m.ordinal[n], value);
      continue;
    }
    if (!is_uuid_selector(suffix)) continue;
    const std::string k = lower(suffix);
    if (m.uuid.count(k) == 0) {
      if (m.uuid.size() >= core::kMaxDevices) continue;  // beyond the table: global applies
      m.uuid[k] = std::nullopt;
      m.uuid_spelling.emplace_back(suffix);
    }
    model_value(m.uuid[k], value);
  }
  return m;
}

void check_device(const core::Limits& limits, const Model& m, int ordinal, const std::string& uuid) {
  const core::DeviceLimit got = limits.resolve(ordinal, uuid);
  FUZZ_CHECK(got.sm_percent >= 1 && got.sm_percent <= 100, "compute share %u", got.sm_percent);
  if (m.overflow) {  // a GPU's limit could not be recorded: every GPU fails closed
    FUZZ_CHECK(got.memory_bytes == std::optional<std::uint64_t>(0) && got.sm_percent == 1,
               "device %d '%s': more UUID keys than the table holds, yet not failed closed", ordinal, uuid.c_str());
    return;
  }
  if (got.limited()) FUZZ_CHECK(limits.any(), "device %d limited but any() is false", ordinal);
  // The winning layer, most specific first.
  std::optional<std::uint64_t> want = m.global;
  if (ordinal >= 0 && ordinal < static_cast<int>(core::kMaxDevices) && m.ordinal[static_cast<unsigned>(ordinal)]) {
    want = m.ordinal[static_cast<unsigned>(ordinal)];
  }
  if (!uuid.empty()) {
    const auto it = m.uuid.find(lower(uuid));
    if (it != m.uuid.end() && it->second) want = it->second;
  }
  if (want) {
    FUZZ_CHECK(got.memory_bytes.has_value(), "device %d '%s': a key set %llu bytes but resolve() lifted the limit",
               ordinal, uuid.c_str(), static_cast<unsigned long long>(*want));
    FUZZ_CHECK(*got.memory_bytes <= *want, "device %d '%s': resolve() gives %llu bytes, more than the %llu asked for",
               ordinal, uuid.c_str(), static_cast<unsigned long long>(*got.memory_bytes),
               static_cast<unsigned long long>(*want));
  } else {
    FUZZ_CHECK(!got.memory_bytes.has_value(), "device %d '%s': limited to %llu bytes though no key asked for it",
               ordinal, uuid.c_str(), static_cast<unsigned long long>(*got.memory_bytes));
  }
}

void check_setting(std::string_view text, std::string_view key) {
  std::string_view value;
  if (!core::find_setting(text, key, value)) return;
  FUZZ_CHECK(value.data() >= text.data() && value.data() + value.size() <= text.data() + text.size(),
             "find_setting returned memory outside the text");
  FUZZ_CHECK(value.find('\n') == std::string_view::npos, "find_setting returned a line break");
  // The value's line names the key before its first '='.
  const std::size_t off = static_cast<std::size_t>(value.data() - text.data());
  const std::size_t begin = text.rfind('\n', off == 0 ? 0 : off - 1);
  const std::string_view line = text.substr(begin == std::string_view::npos ? 0 : begin + 1);
  const std::size_t eq = line.find('=');
  FUZZ_CHECK(eq != std::string_view::npos && trim(line.substr(0, eq)) == key, "find_setting's value is not on a line of its key");
}

const char* env_lookup(const char* name, void* ctx) {
  const auto* env = static_cast<const std::map<std::string, std::string>*>(ctx);
  const auto it = env->find(name);
  return it == env->end() ? nullptr : it->second.c_str();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16384) return 0;  // the library reads at most 16 KiB of a job file
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  core::LimitIssues issues;
  const core::Limits limits = core::parse_limits_file(text, issues);
  FUZZ_CHECK(issues.count <= core::LimitIssues::kMax, "issue count %u", issues.count);
  for (unsigned i = 0; i < issues.count; ++i) {
    FUZZ_CHECK(std::memchr(issues.items[i].text, '\0', sizeof issues.items[i].text) != nullptr, "unterminated issue");
  }
  const Model m = build_model(text);
  for (int ordinal = -1; ordinal <= static_cast<int>(core::kMaxDevices); ++ordinal) {
    check_device(limits, m, ordinal, "");
    for (const std::string& u : m.uuid_spelling) {
      check_device(limits, m, ordinal, u);
      std::string upper(u);
      for (char& c : upper) {
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      }
      check_device(limits, m, ordinal, upper);
    }
  }
  check_setting(text, "SOFTMIG_LEDGER_DIR");
  check_setting(text, "CUDA_DEVICE_MEMORY_LIMIT");
  if (!m.pairs.empty()) check_setting(text, trim(m.pairs.front().first));
  // The same pairs as an environment (one value per name: the smallest-wins rule then applies
  // per name only, so compare with a model of the last value of each global/ordinal name).
  std::map<std::string, std::string> env;
  for (const auto& [k, v] : m.pairs) {
    if (k.find('\0') == std::string::npos && v.find('\0') == std::string::npos) env[k] = v;
  }
  core::LimitIssues env_issues;
  const core::Limits from_env = core::limits_from_env(env_lookup, &env, env_issues);
  // Only the names limits_from_env looks up: the global key and _0.._15 written plainly.
  std::string env_text;
  for (const auto& [k, v] : env) {
    bool looked_up = k == kMemKey;
    for (unsigned i = 0; i < core::kMaxDevices && !looked_up; ++i) looked_up = k == std::string(kMemKey) + "_" + std::to_string(i);
    if (looked_up) env_text += k + "=" + v + "\n";
  }
  const Model env_model = build_model(env_text);
  for (int ordinal = -1; ordinal < static_cast<int>(core::kMaxDevices); ++ordinal) {
    const core::DeviceLimit got = from_env.resolve(ordinal, "");
    std::optional<std::uint64_t> want = env_model.global;
    if (ordinal >= 0 && env_model.ordinal[static_cast<unsigned>(ordinal)]) want = env_model.ordinal[static_cast<unsigned>(ordinal)];
    if (want) {
      FUZZ_CHECK(got.memory_bytes && *got.memory_bytes <= *want, "environment: device %d not limited to %llu", ordinal,
                 static_cast<unsigned long long>(*want));
    }
  }
  return 0;
}
