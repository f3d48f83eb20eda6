// SPDX-License-Identifier: Apache-2.0
/// @file status_format.hpp
/// @brief Pure formatters of `softmig status`: the text table and the JSON document. Golden
///        files in src/tool/tests/golden pin both.
///
/// THROTTLED is the thread-time the compute share held the job's launches back, summed over its
/// processes (seconds; n/a / null for a job without a share that was never held back). SHARE (the
/// share of the GPU's time the job actually got) is "n/a" / null: the library does not measure
/// it yet.
#pragma once

#include <cstdint>
#include <string>

#include "tool/status_model.hpp"

namespace softmig::tool {

/// Version of the JSON document's layout; bumped on incompatible changes.
inline constexpr int kStatusJsonVersion = 1;

/// A byte count for people: "4 GiB", "1.50 GiB", "0 B".
std::string human_bytes(std::uint64_t bytes);

/// The table: one line per job and GPU, then one line per live process holding memory on it.
std::string format_table(const Snapshot& s);

/// The JSON document (pretty-printed, 2 spaces, keys in a fixed order, trailing newline).
std::string format_json(const Snapshot& s);

}  // namespace softmig::tool
