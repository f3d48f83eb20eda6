// SPDX-License-Identifier: Apache-2.0
/// @file scenarios.hpp
/// @brief The subcommands of memory_victim. Each returns 0 when every assertion held; a failed
///        assertion prints "<role>: FAIL: <file>:<line>: <reason>" and exits 1.
#pragma once

#include <string>
#include <vector>

namespace memtest {

using Args = std::vector<std::string>;

// One process (scenarios_single.cpp).
int oom(const Args& a);           ///< oom <path>: fill the slice through one allocation path
int report(const Args& a);        ///< report limit|crowded|nolimit|underflow
int refuse(const Args& a);        ///< over-limit requests: OOM, nothing charged
int bad_free(const Args& a);      ///< bad-free [--bare]: unknown pointers go to the driver
int driver_failure(const Args& a);///< injected driver failures release their reservations
int multi_gpu(const Args& a);     ///< multi-gpu plain|swapped|uuid
int corrupt(const Args& a);       ///< corrupt random|short|truncated|version|mode0644|symlink

// Several processes (scenarios_multi.cpp).
int pid_reuse(const Args& a);     ///< stale slots with live pids but wrong start times
int share(const Args& a);         ///< share <N>: N processes fill one slice
int race(const Args& a);          ///< race <rounds>: 8 processes, room for one block
int kill_loop(const Args& a);     ///< kill-loop <kills>: SIGKILL churn, then no bytes lost
int nvml_processes(const Args& a);///< NVML process lists show only the job
int zombie(const Args& a);        ///< a killed, unreaped process holds nothing
int stopped_holder(const Args& a);///< a process stopped holding the ledger lock hangs no one

}  // namespace memtest
