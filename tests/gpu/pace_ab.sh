#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A host-bound load in interleaved rounds: bare, preloaded without a limit, at
# CUDA_DEVICE_SM_LIMIT=50, and pausing itself outside the same windows without softmig
# (SHARE_DUTY=50), one process pinned to two cores. A quicker, focused look at what pacing costs
# such a load than compute_share.sh.
# Usage: tests/gpu/pace_ab.sh LIB BUILD_DIR [ROUNDS] [LOAD]
#   LOAD: launch (tests/gpu/share_bench.cu, built in BUILD_DIR if missing; default) or train
#   (tests/gpu/share_train.py)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
LIB="$(realpath "$1")"
BUILD="$2"
ROUNDS="${3:-3}"
LOAD="${4:-launch}"
if [[ $LOAD == train ]]; then
  PROG=(python3 "$ROOT/tests/gpu/share_train.py")
else
  BENCH="$BUILD/share_bench"
  if [[ ! -x "$BENCH" || "$ROOT/tests/gpu/share_bench.cu" -nt "$BENCH" ]]; then
    nvcc -O2 -std=c++17 -arch=sm_90 -o "$BENCH" "$ROOT/tests/gpu/share_bench.cu" -lcublas -lcuda || exit 1
  fi
  PROG=("$BENCH" launch)
fi
rate() { "$@" 2 < /dev/null | sed -n 's/^SHARE .* rate=\([0-9.]*\).*/\1/p'; }
declare -A sum
modes=(bare nolimit limit50 paused50)
for ((r = 1; r <= ROUNDS; r++)); do
  line="round $r:"
  for m in "${modes[@]}"; do
    case $m in
      bare) v=$(rate taskset -c 2,3 "${PROG[@]}") ;;
      nolimit) v=$(rate env LD_PRELOAD="$LIB" SOFTMIG_SESSION=ab$$n$r taskset -c 2,3 "${PROG[@]}") ;;
      limit50) v=$(rate env LD_PRELOAD="$LIB" CUDA_DEVICE_SM_LIMIT=50 SOFTMIG_SESSION=ab$$l$r taskset -c 2,3 "${PROG[@]}") ;;
      paused50) v=$(rate env SHARE_DUTY=50 taskset -c 2,3 "${PROG[@]}") ;;
    esac
    line+=" $m ${v:-?}"
    sum[$m]=$(awk -v a="${sum[$m]:-0}" -v b="${v:-0}" 'BEGIN { print a + b }')
  done
  echo "$line"
done
awk -v load="$LOAD" -v b="${sum[bare]}" -v n="${sum[nolimit]}" -v l="${sum[limit50]}" -v p="${sum[paused50]}" 'BEGIN {
  printf "PACE_AB " load " no-limit/bare %.3f  limit50/bare %.3f  paused50/bare %.3f  limit50/paused50 %.3f\n", n / b, l / b, p / b, l / p }'
