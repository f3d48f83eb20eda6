// SPDX-License-Identifier: Apache-2.0
/// @file doctor.hpp
/// @brief `softmig doctor`: checks an install and says what is wrong and how to fix it.
///
/// Every path is looked up under a root prefix (`--root DIR`, "/" normally), so tests and image
/// builders can check a tree that is not the running system. The driver and NVML checks always
/// ask the running system (the libraries are loaded in a child process).
#pragma once

#include <set>
#include <string>
#include <vector>

namespace softmig::tool {

enum class Verdict { kOk, kWarning, kProblem, kSkipped };

struct Finding {
  Verdict verdict = Verdict::kOk;
  std::string check;  ///< short name: library, preload, config-dir, job-files, log-dir, driver, nvml, slice-table
  std::string what;   ///< what was found
  std::string fix;    ///< how to fix it (empty when nothing is to be done)
};

struct DoctorOptions {
  std::string root = "/";
  std::string library;           ///< --library: the path as the node sees it; empty: find it
  std::string ld_preload_env;    ///< $LD_PRELOAD of the caller
  std::set<std::string> skip;    ///< checks not to run
  int timeout_ms = 10000;        ///< for each child-process probe
};

/// The names of the checks, in the order they run.
const std::vector<std::string>& doctor_checks();

std::vector<Finding> run_doctor(const DoctorOptions& o);

/// The report: one block per finding, then the verdict line.
std::string format_findings(const std::vector<Finding>& findings);

/// 0 if no finding is a problem, else 1.
int doctor_exit_code(const std::vector<Finding>& findings);

}  // namespace softmig::tool
