// SPDX-License-Identifier: Apache-2.0
/// @file prom_parser.hpp
/// @brief A strict parser of the Prometheus text exposition format (version 0.0.4), for tests:
///        it rejects everything the format does not allow and a few things Prometheus tolerates
///        but a well-behaved exporter never does (samples without HELP/TYPE, a family split in
///        two, a duplicate series, a negative counter).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace softmig::tool::test {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromFamily {
  std::string help;
  std::string type;
};

struct PromExposition {
  std::string error;  ///< empty when the text is valid; else "line N: why"
  std::map<std::string, PromFamily> families;
  std::vector<PromSample> samples;

  [[nodiscard]] bool ok() const { return error.empty(); }
  /// The value of the one sample with this name and these labels (all of them); NaN if none.
  [[nodiscard]] double value(const std::string& name, const std::map<std::string, std::string>& labels) const;
  /// The number of samples with this name.
  [[nodiscard]] std::size_t count(const std::string& name) const;
};

PromExposition parse_prometheus(std::string_view text);

}  // namespace softmig::tool::test
