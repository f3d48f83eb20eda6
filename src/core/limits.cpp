// SPDX-License-Identifier: Apache-2.0
#include "core/limits.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "core/units.hpp"

namespace softmig::core {
namespace {

constexpr std::string_view kMemKey = "CUDA_DEVICE_MEMORY_LIMIT";
constexpr std::string_view kSmKey = "CUDA_DEVICE_SM_LIMIT";
constexpr std::string_view kPhaseKey = "CUDA_DEVICE_SM_PHASE";

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

/// Strips one pair of matching quotes, as shell-style files often carry them.
std::string_view unquote(std::string_view s) noexcept {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) {
    return s.substr(1, s.size() - 2);
  }
  return s;
}

bool equals_ci(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

template <typename T>
void keep_smaller(std::optional<T>& slot, T value) noexcept {
  if (!slot || value < *slot) slot = value;
}

/// Applies a memory value to `spec`. Returns false if it was malformed.
bool apply_memory(LimitSpec& spec, std::string_view raw, bool& explicit_unlimited) noexcept {
  const auto bytes = parse_bytes(raw);
  if (!bytes) {
    keep_smaller<std::uint64_t>(spec.memory_bytes, 0);  // fail closed
    return false;
  }
  if (*bytes == 0) {
    explicit_unlimited = true;
    return true;
  }
  keep_smaller(spec.memory_bytes, *bytes);
  return true;
}

enum class SmParse { kOk, kClamped, kMalformed };

SmParse apply_sm(LimitSpec& spec, std::string_view raw) noexcept {
  raw = trim(raw);
  if (const auto pct = parse_percent(raw)) {
    if (*pct > 0 && *pct < 100) keep_smaller(spec.sm_percent, *pct);
    return SmParse::kOk;  // 0 and 100 both mean "whole GPU"
  }
  // A plain number above 100 asks for more than the GPU: the whole GPU is the most it can get.
  if (parse_count(raw, 9)) return SmParse::kClamped;
  keep_smaller(spec.sm_percent, 1U);
  return SmParse::kMalformed;
}

bool parse_ordinal(std::string_view s, unsigned& out) noexcept {
  const auto v = parse_count(s, 3);
  if (v) out = static_cast<unsigned>(*v);
  return v.has_value();
}

bool looks_like_uuid(std::string_view s) noexcept {
  // A NUL byte would truncate the stored UUID: a second entry for the same GPU would then
  // override the smaller limit of the first (found by tests/fuzz/fuzz_limits).
  return (s.size() > 4 && s.size() < kUuidChars && s.find('\0') == std::string_view::npos &&
          (s.substr(0, 4) == "GPU-" || s.substr(0, 4) == "MIG-"));
}

}  // namespace

void LimitIssues::add(const char* fmt, ...) noexcept {
  if (count >= kMax) {
    ++dropped;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(items[count].text, sizeof(items[count].text), fmt, ap);
  va_end(ap);
  ++count;
}

bool Limits::apply(std::string_view key, std::string_view value, LimitIssues& issues) noexcept {
  key = trim(key);
  value = unquote(trim(value));
  enum class Kind { kMemory, kShare, kPhase } kind = Kind::kShare;
  std::string_view suffix;
  if (key.substr(0, kMemKey.size()) == kMemKey) {
    kind = Kind::kMemory;
    suffix = key.substr(kMemKey.size());
  } else if (key.substr(0, kSmKey.size()) == kSmKey) {
    suffix = key.substr(kSmKey.size());
  } else if (key.substr(0, kPhaseKey.size()) == kPhaseKey) {
    kind = Kind::kPhase;
    suffix = key.substr(kPhaseKey.size());
  } else {
    return false;
  }
  LimitSpec* spec = nullptr;
  if (suffix.empty()) {
    spec = &global_;
  } else if (suffix.front() != '_') {
    return false;  // e.g. CUDA_DEVICE_MEMORY_LIMITED: not ours
  } else {
    suffix.remove_prefix(1);
    unsigned ordinal = 0;
    if (parse_ordinal(suffix, ordinal)) {
      if (ordinal >= kMaxDevices) {
        issues.add("%.*s: device %u is beyond the %u devices softmig tracks; the global limit "
                   "applies to it",
                   static_cast<int>(key.size()), key.data(), ordinal, kMaxDevices);
        return true;
      }
      spec = &by_ordinal_[ordinal];
    } else if (looks_like_uuid(suffix)) {
      for (unsigned i = 0; i < uuid_count_; ++i) {
        if (equals_ci(by_uuid_[i].uuid, suffix)) spec = &by_uuid_[i].spec;
      }
      if (spec == nullptr) {
        if (uuid_count_ >= kMaxDevices) {
          // The limit of a GPU that cannot be recorded cannot be enforced: dropping it could
          // lift that GPU's limit (found by tests/fuzz/fuzz_limits), so the whole file fails
          // closed.
          issues.add("%.*s: more than %u per-UUID limits; allowing 0 bytes and 1 %% on every GPU "
                     "until the file is fixed",
                     static_cast<int>(key.size()), key.data(), kMaxDevices);
          fail_closed_ = true;
          return true;
        }
        UuidEntry& e = by_uuid_[uuid_count_++];
        std::memcpy(e.uuid, suffix.data(), suffix.size());
        e.uuid[suffix.size()] = '\0';
        spec = &e.spec;
      }
    } else {
      issues.add("%.*s: unknown device selector '%.*s' (expected a number or a GPU UUID)",
                 static_cast<int>(key.size()), key.data(), static_cast<int>(suffix.size()),
                 suffix.data());
      return true;
    }
  }
  if (kind == Kind::kPhase) {
    // A phase only places the job's window in the period; a bad one cannot lift a limit.
    const auto pct = parse_percent(trim(value));
    if (pct && *pct < 100) {
      spec->sm_phase = *pct;
    } else {
      spec->sm_phase = 0;
      issues.add("%.*s=%.*s is not a percentage 0-99; the window opens at 0",
                 static_cast<int>(key.size()), key.data(), static_cast<int>(value.size()),
                 value.data());
    }
  } else if (kind == Kind::kMemory) {
    bool unlimited = false;
    if (!apply_memory(*spec, value, unlimited)) {
      issues.add("%.*s=%.*s is not a size (examples: 24G, 11517.0M, 4GiB, 4294967296); "
                 "allowing 0 bytes on the affected GPUs until it is fixed",
                 static_cast<int>(key.size()), key.data(), static_cast<int>(value.size()),
                 value.data());
    }
  } else {
    switch (apply_sm(*spec, value)) {
      case SmParse::kOk:
        break;
      case SmParse::kClamped:
        issues.add("%.*s=%.*s is above 100; read as 100 (the whole GPU)",
                   static_cast<int>(key.size()), key.data(), static_cast<int>(value.size()),
                   value.data());
        break;
      case SmParse::kMalformed:
        issues.add("%.*s=%.*s is not a percentage 0-100; applying 1 %% until it is fixed",
                   static_cast<int>(key.size()), key.data(), static_cast<int>(value.size()),
                   value.data());
        break;
    }
  }
  return true;
}

DeviceLimit Limits::resolve(int ordinal, std::string_view uuid) const noexcept {
  DeviceLimit out;
  if (fail_closed_) {
    out.memory_bytes = 0;
    out.sm_percent = 1;
    return out;
  }
  const LimitSpec* layers[3] = {&global_, nullptr, nullptr};
  if (ordinal >= 0 && static_cast<unsigned>(ordinal) < kMaxDevices) layers[1] = &by_ordinal_[static_cast<unsigned>(ordinal)];
  if (!uuid.empty()) {
    for (unsigned i = 0; i < uuid_count_; ++i) {
      if (equals_ci(by_uuid_[i].uuid, uuid)) layers[2] = &by_uuid_[i].spec;
    }
  }
  for (const LimitSpec* l : layers) {  // later, more specific layers override
    if (l == nullptr) continue;
    if (l->memory_bytes) out.memory_bytes = l->memory_bytes;
    if (l->sm_percent) out.sm_percent = *l->sm_percent;
    if (l->sm_phase) out.sm_phase = *l->sm_phase;
  }
  return out;
}

bool Limits::any_spec(bool (*set)(const LimitSpec&)) const noexcept {
  if (fail_closed_ || set(global_)) return true;
  for (const auto& s : by_ordinal_) {
    if (set(s)) return true;
  }
  for (unsigned i = 0; i < uuid_count_; ++i) {
    if (set(by_uuid_[i].spec)) return true;
  }
  return false;
}

bool Limits::any() const noexcept {
  return any_spec([](const LimitSpec& s) { return s.memory_bytes.has_value() || s.sm_percent.has_value(); });
}

bool Limits::any_share() const noexcept {
  return any_spec([](const LimitSpec& s) { return s.sm_percent.has_value(); });
}

Limits Limits::fail_closed() noexcept {
  Limits l;
  l.fail_closed_ = true;
  return l;
}

Limits parse_limits_file(std::string_view text, LimitIssues& issues) noexcept {
  Limits limits;
  unsigned line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = (nl == std::string_view::npos) ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      issues.add("line %u: no '=' in '%.*s'; line skipped", line_no,
                 static_cast<int>(line.size() > 60 ? 60 : line.size()), line.data());
      continue;
    }
    const std::string_view key = trim(line.substr(0, eq));
    if (key.substr(0, 8) == "SOFTMIG_") continue;  // non-limit settings, read by their users
    if (!limits.apply(key, line.substr(eq + 1), issues)) {
      issues.add("line %u: unknown key '%.*s'; line skipped", line_no,
                 static_cast<int>(key.size() > 60 ? 60 : key.size()), key.data());
    }
  }
  return limits;
}

bool find_setting(std::string_view text, std::string_view key, std::string_view& value) noexcept {
  bool found = false;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = (nl == std::string_view::npos) ? std::string_view{} : text.substr(nl + 1);
    const std::size_t eq = line.find('=');
    if (line.empty() || line.front() == '#' || eq == std::string_view::npos) continue;
    if (trim(line.substr(0, eq)) == key) {
      value = unquote(trim(line.substr(eq + 1)));
      found = true;  // the last occurrence wins, as in a shell
    }
  }
  return found;
}

Limits limits_from_env(EnvLookup lookup, void* ctx, LimitIssues& issues) noexcept {
  Limits limits;
  char name[64];
  for (const std::string_view base : {kMemKey, kSmKey, kPhaseKey}) {
    std::snprintf(name, sizeof(name), "%.*s", static_cast<int>(base.size()), base.data());
    if (const char* v = lookup(name, ctx)) limits.apply(name, v, issues);
    for (unsigned i = 0; i < kMaxDevices; ++i) {
      std::snprintf(name, sizeof(name), "%.*s_%u", static_cast<int>(base.size()), base.data(), i);
      if (const char* v = lookup(name, ctx)) limits.apply(name, v, issues);
    }
  }
  return limits;
}

}  // namespace softmig::core
