// SPDX-License-Identifier: Apache-2.0
/// @file metrics_format.hpp
/// @brief `softmig metrics`: the node's slices in the Prometheus text exposition format (0.0.4),
///        for node_exporter's textfile collector and for the built-in HTTP endpoint. Pure.
///
/// Families (labels job, gpu, user; the process family adds pid):
///   softmig_memory_limit_bytes   gauge    only for GPUs with a memory limit
///   softmig_memory_used_bytes    gauge
///   softmig_memory_peak_bytes    gauge
///   softmig_oom_refusals_total   counter
///   softmig_sm_limit_percent     gauge    only where the compute share is known
///   softmig_compute_throttled_seconds_total counter  thread-time launches were held back by
///                                          the share; where the share is below 100 % or it held
///   softmig_process_memory_bytes gauge    one sample per live process and GPU
///   softmig_ledgers              gauge    ledgers read (no labels)
///   softmig_ledger_errors        gauge    ledgers found but not readable (no labels)
/// The delivered compute share is not exported: the library does not measure it yet.
#pragma once

#include <string>
#include <string_view>

#include "tool/status_model.hpp"

namespace softmig::tool {

/// The Content-Type of the text format.
inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and line feed.
std::string escape_label_value(std::string_view v);

/// The whole exposition, ending in a line feed.
std::string format_prometheus(const Snapshot& s);

}  // namespace softmig::tool
