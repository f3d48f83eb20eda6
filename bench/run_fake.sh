#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs hook_cost_bench bare and with libsoftmig.so preloaded (no limit, a 12 GiB limit, and a
# 99 % compute share: the paced launch path, held back 1 ms of every 100 ms), interleaved over
# ROUNDS rounds, and prints the median cost per call and softmig's addition.
# Usage: bench/run_fake.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
BUILD="${1:-build}"
ROUNDS="${2:-5}"
BIN="$BUILD/bin/hook_cost_bench"
LIB="$(cd "$BUILD/lib" && pwd)/libsoftmig.so"
FAKE="$(cd "$BUILD/fake" && pwd)"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for r in $(seq "$ROUNDS"); do
  for mode in bare nolimit limit share; do
    envs=(-u SLURM_JOB_ID LD_LIBRARY_PATH="$FAKE" SOFTMIG_FAKE_DEVICES=16G SOFTMIG_SESSION="bench-$$-$r")
    case $mode in
      nolimit) envs+=(LD_PRELOAD="$LIB") ;;
      limit) envs+=(LD_PRELOAD="$LIB" CUDA_DEVICE_MEMORY_LIMIT=12G) ;;
      share) envs+=(LD_PRELOAD="$LIB" CUDA_DEVICE_SM_LIMIT=99 SOFTMIG_FAKE_KERNEL_NS=0) ;;
    esac
    env "${envs[@]}" "$BIN" --benchmark_format=json --benchmark_min_time=0.2 > "$OUT/$mode.$r.json" 2>/dev/null
  done
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
data = {}
for mode in ("bare", "nolimit", "limit", "share"):
    for r in range(1, rounds + 1):
        for b in json.load(open(f"{out}/{mode}.{r}.json"))["benchmarks"]:
            data.setdefault(b["name"], {}).setdefault(mode, []).append(b["real_time"])
print("| benchmark (fake driver) | bare ns | preloaded, no limit ns | 12 GiB limit ns | 99 % share ns "
      "| added, no limit | added, limit | added, share |")
print("|---|---|---|---|---|---|---|---|")
for name, modes in data.items():
    m = {k: statistics.median(v) for k, v in modes.items()}
    print(f"| {name} | {m['bare']:.0f} | {m['nolimit']:.0f} | {m['limit']:.0f} | {m['share']:.0f} "
          f"| {m['nolimit']-m['bare']:+.0f} | {m['limit']-m['bare']:+.0f} | {m['share']-m['bare']:+.0f} |")
PY
