#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the fuzz targets with clang and libFuzzer (+ASan, +UBSan) in build-fuzz/ and runs each
# for DURATION seconds, starting from the committed corpus (tests/fuzz/corpus/<target>). Prints
# one figure line per target and fails if any target finds an input that breaks a property.
#
#   tests/fuzz/run.sh 30          # CI: 30 s per target
#   tests/fuzz/run.sh 600         # the long run (docs/reliability.md): 10 minutes per target
#   FUZZ_TARGETS="limits" tests/fuzz/run.sh 60
#
# New interesting inputs are kept in build-fuzz/corpus/<target>, not in the repository; merge
# the useful ones by hand (docs/reliability.md says how). A crash leaves its reproducer in
# build-fuzz/crash-<target>-*; add it to the corpus once the bug is fixed.
set -euo pipefail
duration="${1:-30}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
targets=(${FUZZ_TARGETS:-units limits ledger cgroup})
cxx="${FUZZ_CXX:-clang++}"
command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }

cmake -S "$root/tests/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$build" -j"${FUZZ_JOBS:-2}" >/dev/null

status=0
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  mkdir -p "$work"
  log="$build/fuzz_$t.log"
  dict=()
  [[ -f "$root/tests/fuzz/$t.dict" ]] && dict=(-dict="$root/tests/fuzz/$t.dict")
  rc=0
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a blow-up is a failure.
  (cd "$build" && "./fuzz_$t" -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$build/crash-$t-" "${dict[@]}" \
      "$work" "$root/tests/fuzz/corpus/$t") >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
  cov=$({ grep -o 'cov: [0-9]*' "$log" || true; } | tail -1 | cut -d' ' -f2)
  files=$(find "$work" -type f | wc -l)
  if [[ $rc -ne 0 ]]; then
    echo "fuzz $t: FAILED after ${execs:-?} execs (exit $rc); log $log; reproducer:"
    ls "$build"/crash-"$t"-* 2>/dev/null || true
    grep -m5 -E 'property violated|ERROR: |SUMMARY' "$log" || true
    status=1
  else
    echo "fuzz $t: execs fuzzed: ${execs:-0} in ${duration} s, coverage ${cov:-?} edges, corpus $files inputs, crashes 0"
  fi
done
exit $status
