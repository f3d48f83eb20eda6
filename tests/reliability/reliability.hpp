// SPDX-License-Identifier: Apache-2.0
/// @file reliability.hpp
/// @brief The subcommands of reliability_victim (tests/reliability): chaos (processes killed at
///        random instants), a stopped lock holder, load and scale, and tamper attempts inside a
///        simulated SLURM job. Built on tests/memory's helpers (memory_common.hpp).
///
/// Every subcommand returns 0 when all its properties held, prints one figure line, and fails
/// through MT_CHECK (exit 1) otherwise. Tamper subcommands return kSkip (77) when not root.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "memory_common.hpp"

namespace reltest {

using Args = std::vector<std::string>;
inline constexpr int kSkip = 77;

/// An integer from the environment (counts CI can lower or raise), else `fallback`.
long env_count(const char* name, long fallback);

/// The fake's context size in this test (SOFTMIG_FAKE_CONTEXT_BYTES, default 300 MiB).
std::uint64_t context_bytes();

/// A fresh process of the session fills GPU `ordinal` in `block` steps; it must obtain the whole
/// slice less its context, be the only member of the ledger, and be charged exactly what it holds.
/// Returns what it obtained.
std::uint64_t fresh_fill(int ordinal, std::uint64_t limit, std::uint64_t block, const char* when);

int chaos(const Args& a);           ///< chaos [kills]: SIGKILL/SIGSEGV/_exit at random instants
int stall(const Args& a);           ///< stall: a SIGSTOPped lock holder delays others boundedly
int procs(const Args& a);           ///< procs [n]: n processes in one job + start-up cost
int startup_child(const Args& a);   ///< (internal) one process of `procs`
int threads(const Args& a);         ///< threads [n]: n threads allocating and freeing
int gpus(const Args& a);            ///< gpus: 8 GPUs with per-GPU limits
int tamper(const Args& a);          ///< tamper <attempt>: see tamper.cpp
int tamper_child(const Args& a);    ///< (internal) a process of the simulated job

}  // namespace reltest
