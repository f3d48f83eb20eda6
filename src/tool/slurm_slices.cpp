// SPDX-License-Identifier: Apache-2.0
#include "tool/slurm_slices.hpp"
#include "tool/slurm_slots.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "core/units.hpp"

namespace softmig::tool::slurm {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool valid_type_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool valid_partition_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

SmPolicy parse_policy(std::string_view value, const std::string& where) {
  const std::string v = lower(value);
  if (v == "strict") return SmPolicy::kStrict;
  if (v == "burst") return SmPolicy::kBurst;
  throw SliceTableError(fmt::format("{}: sm_policy must be strict or burst, not '{}'", where, value));
}

std::optional<unsigned> small_number(std::string_view s) {
  unsigned v = 0;
  if (s.empty() || s.size() > 6) return std::nullopt;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> percent_value(std::string_view s) {
  s = trim(s);
  if (s.empty() || s.back() != '%') return std::nullopt;
  s = trim(s.substr(0, s.size() - 1));
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !(v > 0.0) || v > 100.0) return std::nullopt;
  return v;
}

SliceRule parse_rule(unsigned denominator, std::string_view value, const std::string& where) {
  SliceRule rule;
  rule.denominator = denominator;
  bool have_memory = false;
  bool have_sm = false;
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t end = value.find_first_of(", \t", start);
    if (end == std::string_view::npos) end = value.size();
    const std::string_view item = trim(value.substr(start, end - start));
    start = end + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) throw SliceTableError(fmt::format("{}: '{}' is not key=value", where, item));
    const std::string_view key = trim(item.substr(0, eq));
    const std::string_view v = trim(item.substr(eq + 1));
    if (key == "memory") {
      if (const auto pct = percent_value(v)) {
        rule.memory_percent = *pct;
      } else if (const auto bytes = core::parse_bytes(v); bytes && *bytes > 0) {
        rule.memory_bytes = *bytes;
      } else {
        throw SliceTableError(fmt::format("{}: memory={} is neither a percentage (25%) nor a size (12G)", where, v));
      }
      have_memory = true;
    } else if (key == "sm") {
      std::string_view number = v;
      if (!number.empty() && number.back() == '%') number.remove_suffix(1);
      const auto pct = small_number(trim(number));
      if (!pct || *pct < 1 || *pct > 100) throw SliceTableError(fmt::format("{}: sm={} is not a percentage 1-100", where, v));
      rule.sm_percent = *pct;
      have_sm = true;
    } else {
      throw SliceTableError(fmt::format("{}: unknown setting '{}' (memory=, sm=)", where, key));
    }
  }
  if (!have_memory || !have_sm) throw SliceTableError(fmt::format("{}: a slice needs both memory= and sm=", where));
  return rule;
}

std::string human(std::uint64_t bytes) {
  char buf[32];
  core::format_bytes(bytes, buf, sizeof buf);
  return buf;
}

}  // namespace

const char* to_string(SmPolicy p) { return p == SmPolicy::kBurst ? "burst" : "strict"; }

const SliceRule* GpuType::slice(unsigned denominator) const {
  for (const auto& r : slices) {
    if (r.denominator == denominator) return &r;
  }
  return nullptr;
}

const GpuType* SliceTable::find(std::string_view name) const {
  const std::string key = lower(name);
  for (const auto& t : types) {
    if (t.name == key) return &t;
  }
  return nullptr;
}

const PartitionRule* SliceTable::partition(std::string_view name) const {
  for (const auto& p : partitions) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

SmPolicy SliceTable::policy_for(std::string_view gpu_type, std::string_view partition_name) const {
  if (const PartitionRule* p = partition(partition_name); p != nullptr && p->sm_policy) return *p->sm_policy;
  if (const GpuType* t = find(gpu_type); t != nullptr && t->sm_policy) return *t->sm_policy;
  return sm_policy.value_or(SmPolicy::kStrict);
}

const GpuType* SliceTable::for_device(std::string_view nvml_name) const {
  const std::string hay = lower(nvml_name);
  for (const auto& t : types) {
    if (!t.match.empty() && hay.find(lower(t.match)) != std::string::npos) return &t;
  }
  return types.size() == 1 ? &types.front() : nullptr;
}

SliceTable parse_slice_table(std::string_view text) {
  SliceTable table;
  enum class Section { kNone, kSettings, kGpu, kPartition } section = Section::kNone;
  unsigned line_no = 0;
  while (!text.empty()) {
    std::string_view line = take_config_line(text);
    ++line_no;
    line = trim(line);
    if (line.empty()) continue;
    const std::string where = fmt::format("line {}", line_no);
    if (line.front() == '[') {
      if (line.back() != ']') throw SliceTableError(fmt::format("{}: unterminated section header", where));
      const std::string_view head = trim(line.substr(1, line.size() - 2));
      if (head == "settings") {
        section = Section::kSettings;
      } else if (head.substr(0, 4) == "gpu " || head.substr(0, 4) == "gpu\t") {
        const std::string_view name = trim(head.substr(4));
        if (!valid_type_name(name)) throw SliceTableError(fmt::format("{}: '{}' is not a GPU type name", where, name));
        if (table.find(name) != nullptr) throw SliceTableError(fmt::format("{}: [gpu {}] appears twice", where, name));
        table.types.push_back(GpuType{lower(name), 0, {}, {}, std::nullopt});
        section = Section::kGpu;
      } else if (head.substr(0, 10) == "partition " || head.substr(0, 10) == "partition\t") {
        const std::string_view name = trim(head.substr(10));
        if (!valid_partition_name(name)) throw SliceTableError(fmt::format("{}: '{}' is not a partition name", where, name));
        if (table.partition(name) != nullptr) throw SliceTableError(fmt::format("{}: [partition {}] appears twice", where, name));
        table.partitions.push_back(PartitionRule{std::string(name), std::nullopt});
        section = Section::kPartition;
      } else {
        throw SliceTableError(fmt::format(
            "{}: unknown section [{}] (expected [settings], [gpu <type>] or [partition <name>])", where, head));
      }
      continue;
    }
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) throw SliceTableError(fmt::format("{}: expected key = value", where));
    const std::string_view key = trim(line.substr(0, eq));
    const std::string_view value = trim(line.substr(eq + 1));
    if (section == Section::kSettings && key == "allow_multiple_slices") {
      const std::string v = lower(value);
      if (v == "yes" || v == "true" || v == "1") {
        table.allow_multiple = true;
      } else if (v == "no" || v == "false" || v == "0") {
        table.allow_multiple = false;
      } else {
        throw SliceTableError(fmt::format("{}: allow_multiple_slices must be yes or no", where));
      }
    } else if (section == Section::kSettings && key == "sm_period_ms") {
      const auto n = small_number(value);
      if (!n || *n < 10 || *n > 1000) throw SliceTableError(fmt::format("{}: sm_period_ms must be a number of milliseconds 10-1000", where));
      table.sm_period_ms = *n;
    } else if (section == Section::kSettings && key == "sm_policy") {
      table.sm_policy = parse_policy(value, where);
    } else if (section == Section::kGpu && key == "sm_policy") {
      table.types.back().sm_policy = parse_policy(value, where);
    } else if (section == Section::kPartition && key == "sm_policy") {
      table.partitions.back().sm_policy = parse_policy(value, where);
    } else if (section == Section::kGpu && key == "shards") {
      const auto n = small_number(value);
      if (!n || *n < 1 || *n > 1024) throw SliceTableError(fmt::format("{}: shards must be a number 1-1024", where));
      table.types.back().shards = *n;
    } else if (section == Section::kGpu && key == "match") {
      table.types.back().match = std::string(value);
    } else if (section == Section::kGpu && key.substr(0, 6) == "slice.") {
      const auto n = small_number(key.substr(6));
      if (!n || *n < 2) throw SliceTableError(fmt::format("{}: '{}': N of slice.N must be 2 or more", where, key));
      if (table.types.back().slice(*n) != nullptr) throw SliceTableError(fmt::format("{}: {} appears twice", where, key));
      table.types.back().slices.push_back(parse_rule(*n, value, where));
    } else {
      throw SliceTableError(fmt::format("{}: unknown key '{}' here", where, key));
    }
  }
  for (const auto& t : table.types) {
    if (t.shards == 0) throw SliceTableError(fmt::format("[gpu {}] has no 'shards ='", t.name));
    for (const auto& r : t.slices) {
      if (r.denominator > t.shards || t.shards % r.denominator != 0) {
        throw SliceTableError(fmt::format("[gpu {}] slice.{}: {} shards per GPU cannot be divided into {} slices",
                                          t.name, r.denominator, t.shards, r.denominator));
      }
    }
  }
  return table;
}

SliceLimit limit_for(const GpuType& type, std::uint64_t shards, std::uint64_t memory_bytes) {
  SliceLimit out;
  const SliceRule* rule = nullptr;
  if (shards > 0 && shards < type.shards && type.shards % shards == 0) {
    rule = type.slice(static_cast<unsigned>(type.shards / shards));
  }
  if (rule != nullptr) {
    out.sm_percent = rule->sm_percent;
    if (rule->memory_bytes) {
      out.memory_bytes = memory_bytes != 0 ? std::min(*rule->memory_bytes, memory_bytes) : *rule->memory_bytes;
    } else {
      out.memory_bytes = static_cast<std::uint64_t>(std::floor(static_cast<long double>(memory_bytes) *
                                                               *rule->memory_percent / 100.0L));
    }
    out.description = fmt::format("{}.{}", type.name, rule->denominator);
  } else {
    const std::uint64_t s = std::min<std::uint64_t>(shards, type.shards);
    out.memory_bytes = static_cast<std::uint64_t>(static_cast<long double>(memory_bytes) * s / type.shards);
    out.sm_percent = static_cast<unsigned>(std::max<long double>(1.0L, std::floor(100.0L * s / type.shards + 0.5L)));
    out.description = fmt::format("{}/{} of {} (proportional: no slice.N matches)", s, type.shards, type.name);
  }
  out.memory_bytes = std::max<std::uint64_t>(out.memory_bytes, 1);
  return out;
}

std::string fail_closed_text(std::string_view job_label, std::string_view reason) {
  return fmt::format(
      "# softmig: limits of {} could not be computed: {}\n"
      "# FAIL-CLOSED: this GPU-slice job may allocate no GPU memory (1 byte; 0 would mean\n"
      "# 'no limit') and gets 1 % of the compute. See the prolog's log; requeue the job once fixed.\n"
      "CUDA_DEVICE_MEMORY_LIMIT=1\n"
      "CUDA_DEVICE_SM_LIMIT=1\n",
      job_label, reason);
}

std::string job_file_name(std::string_view job_id, std::string_view array_task_id) {
  if (array_task_id.empty()) return fmt::format("{}.conf", job_id);
  return fmt::format("{}_{}.conf", job_id, array_task_id);
}

Plan plan_job(const JobAllocation& job, const SliceTable* table, std::string_view table_error,
              const std::vector<GpuInfo>& gpus, std::string_view nvml_error, std::string_view ledger_dir) {
  Plan plan;
  const std::string label = job.array_task_id.empty() ? fmt::format("job {}", job.job_id)
                                                       : fmt::format("job {} (array task {})", job.job_id, job.array_task_id);
  const std::uint64_t shards = job.count_of("shard");
  if (shards == 0) {
    plan.summary = fmt::format("{}: no shards ({} GPU(s)): no limits", label, job.count_of("gpu"));
    return plan;
  }
  auto fail = [&](const std::string& reason) {
    plan.kind = Plan::Kind::kFailClosed;
    plan.text = fail_closed_text(label, reason);
    plan.summary = fmt::format("{}: {} shard(s), FAIL-CLOSED: {}", label, shards, reason);
    return plan;
  };
  if (table == nullptr) return fail(fmt::format("slice table: {}", table_error));
  const GresEntry* entry = job.find("shard");
  const GpuType* type = nullptr;
  if (entry != nullptr && !entry->type.empty()) {
    type = table->find(entry->type);
    if (type == nullptr) return fail(fmt::format("GPU type '{}' is not in the slice table", entry->type));
  } else {
    type = table->for_device(gpus.empty() ? std::string_view{} : std::string_view(gpus.front().name));
    if (type == nullptr) {
      return fail(gpus.empty() ? fmt::format("untyped shards and no NVML to tell the GPU model ({})", nvml_error)
                               : fmt::format("no [gpu ...] of the slice table matches '{}'", gpus.front().name));
    }
  }

  std::string body;
  std::string described;
  if (gpus.empty()) {
    // Without NVML neither the UUID nor the size is known: only a fixed-size slice can be
    // written, as a global key (a shard job holds one GPU).
    const SliceLimit l = limit_for(*type, shards, 0);
    const SliceRule* rule = (type->shards % shards == 0) ? type->slice(static_cast<unsigned>(type->shards / shards)) : nullptr;
    if (rule == nullptr || !rule->memory_bytes) {
      return fail(fmt::format("the {} slice is sized from the GPU's memory and NVML is unavailable ({})",
                              type->name, nvml_error));
    }
    body += fmt::format("# {}: {}, {} % compute (NVML unavailable: {}; global keys)\n", l.description,
                        human(l.memory_bytes), l.sm_percent, nvml_error);
    body += fmt::format("CUDA_DEVICE_MEMORY_LIMIT={}\n", l.memory_bytes);
    if (l.sm_percent < 100) body += fmt::format("CUDA_DEVICE_SM_LIMIT={}\n", l.sm_percent);
    plan.sm_limited = l.sm_percent < 100;
    described = fmt::format("{} {} {} %", l.description, human(l.memory_bytes), l.sm_percent);
  } else {
    // Shards of one job come from one GPU in SLURM 22.05; if a future SLURM spreads them, each
    // GPU gets an even share (never more than the job holds in total).
    const std::uint64_t per_gpu = std::max<std::uint64_t>(1, shards / gpus.size());
    body += "# GPUs outside the job's allocation: no memory (a job cannot take another job's GPU)\n";
    body += "CUDA_DEVICE_MEMORY_LIMIT=1\n";
    for (const auto& g : gpus) {
      const SliceLimit l = limit_for(*type, per_gpu, g.memory_bytes);
      body += fmt::format("# GPU {} ({}, {}): {}: {} of {}, {} % compute\n", g.index, g.name, g.uuid, l.description,
                          human(l.memory_bytes), human(g.memory_bytes), l.sm_percent);
      body += fmt::format("CUDA_DEVICE_MEMORY_LIMIT_{}={}\n", g.uuid, l.memory_bytes);
      if (l.sm_percent < 100) body += fmt::format("CUDA_DEVICE_SM_LIMIT_{}={}\n", g.uuid, l.sm_percent);
      plan.shares.push_back(GpuShare{g.uuid, l.sm_percent});
      plan.sm_limited = plan.sm_limited || l.sm_percent < 100;
      if (!described.empty()) described += "; ";
      described += fmt::format("GPU {} {} {} {} %", g.index, l.description, human(l.memory_bytes), l.sm_percent);
    }
  }
  plan.kind = Plan::Kind::kLimits;
  plan.gpu_type = type->name;
  plan.text = fmt::format("# softmig limits of {}, written by `softmig slurm prolog`.\n{}", label, body);
  if (!ledger_dir.empty()) plan.text += fmt::format("SOFTMIG_LEDGER_DIR={}\n", ledger_dir);
  plan.summary = fmt::format("{}: {} shard(s): {}", label, shards, described);
  return plan;
}

void add_sm_schedule(Plan& plan, const SmSchedule& schedule) {
  if (plan.kind != Plan::Kind::kLimits || !plan.sm_limited) return;
  std::string text = fmt::format("# compute: each job's own window of every {} period, policy {}\n",
                                 schedule.period_ms ? fmt::format("{} ms", *schedule.period_ms)
                                                    : std::string("pacing"),
                                 to_string(schedule.policy));
  std::string phases;
  for (const auto& p : schedule.phases) {
    text += fmt::format("CUDA_DEVICE_SM_PHASE_{}={}\n", p.uuid, p.start);
    if (!phases.empty()) phases += ",";
    phases += std::to_string(p.start);
  }
  text += fmt::format("SOFTMIG_SM_POLICY={}\n", to_string(schedule.policy));
  if (schedule.period_ms) text += fmt::format("SOFTMIG_SM_PERIOD_MS={}\n", *schedule.period_ms);
  if (!schedule.board_dir.empty()) text += fmt::format("SOFTMIG_SM_BOARD={}\n", schedule.board_dir);
  plan.text += text;
  plan.summary += fmt::format(", {}{}", to_string(schedule.policy),
                              phases.empty() ? std::string() : fmt::format(" from {} %", phases));
}

}  // namespace softmig::tool::slurm
