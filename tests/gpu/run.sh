#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds softmig on a machine with an NVIDIA GPU and runs every GPU check and benchmark in one
# go, then prints a short table. Usage (from anywhere):  tests/gpu/run.sh [OUTPUT_DIR]
# Every check prints a "RESULT {json}" or "BENCH name value" line; summarize.py turns them into
# the table and decides pass/fail. Full output is kept in OUTPUT_DIR/gpu.log.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-${OUT:-/tmp/softmig-gpu}}"
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
RES="$OUT/results.txt"
: > "$LOG"
: > "$RES"
# Never use NVLink multicast on shared machines.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
ulimit -c 0  # the chaos run sends SIGSEGV: no core files
export PYTHONPATH="$ROOT/tests/gpu${PYTHONPATH:+:$PYTHONPATH}"
unset CUDA_DEVICE_MEMORY_LIMIT CUDA_DEVICE_SM_LIMIT SLURM_JOB_ID

echo "GPU $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)" | tee -a "$RES"

BUILD="$ROOT/build-gpu"
# The softmig tool needs CLI11, fmt and nlohmann-json headers; a GPU node without the Debian
# packages can get copies in .devdeps/include (carried with the checkout).
TOOL_FLAGS=(-DSOFTMIG_BUILD_TOOLS=OFF)
TOOL_TARGET=()
if [[ -d "$ROOT/.devdeps/include/CLI" ]]; then
  TOOL_FLAGS=(-DSOFTMIG_BUILD_TOOLS=ON "-DSOFTMIG_TOOL_HEADERS=$ROOT/.devdeps/include")
  TOOL_TARGET=(softmig_tool)
fi
{
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSOFTMIG_BUILD_TESTS=OFF \
        -DSOFTMIG_BUILD_BENCH=OFF "${TOOL_FLAGS[@]}" &&
  cmake --build "$BUILD" --target softmig &&
  nvcc -O2 -std=c++17 -arch=sm_90 -o "$BUILD/gpu_programs" "$ROOT/tests/gpu/gpu_programs.cu" -lcuda -ldl
} >> "$LOG" 2>&1 || { echo "BUILD FAILED"; tail -40 "$LOG"; exit 1; }
if [[ ${#TOOL_TARGET[@]} -gt 0 ]]; then
  cmake --build "$BUILD" --target softmig_tool >> "$LOG" 2>&1 || echo "softmig tool did not build: status check skipped" | tee -a "$LOG"
fi
LIB="$BUILD/lib/libsoftmig.so"
PROG="$BUILD/gpu_programs"
PY=python3

# run LABEL [ENV=VALUE...] -- COMMAND...: runs one check, keeps its result lines.
run() {
  local label=$1; shift
  local envs=()
  while [[ $# -gt 0 && $1 != "--" ]]; do envs+=("$1"); shift; done
  shift
  echo "== $label: ${envs[*]} $*" >> "$LOG"
  env "${envs[@]}" timeout 300 "$@" < /dev/null 2>> "$LOG" | tee -a "$LOG" |
    grep -E '^(RESULT|BENCH)' | sed "s/^/$label /" >> "$RES"
}
PRE="LD_PRELOAD=$LIB"

# ---- 1. every route reaches the library; results unchanged (no limit) -------------------
run bare       -- "$PROG" runtime
run preloaded  "$PRE" -- "$PROG" runtime
run preloaded  "$PRE" -- "$PROG" driver
for fw in torch jax cupy; do
  run bare      -- $PY "$ROOT/tests/gpu/${fw}_check.py" routes
  run preloaded "$PRE" -- $PY "$ROOT/tests/gpu/${fw}_check.py" routes
done

# ---- 2. memory slices -------------------------------------------------------------------
run bare -- "$PROG" slice
for size in 1G 4G 16G; do
  run "slice-$size" "$PRE" CUDA_DEVICE_MEMORY_LIMIT=$size SOFTMIG_SESSION=s$size -- "$PROG" slice
done
S4=("$PRE" CUDA_DEVICE_MEMORY_LIMIT=4G)
run slice-4G "${S4[@]}" SOFTMIG_SESSION=torch -- $PY "$ROOT/tests/gpu/torch_check.py" slice
run slice-4G "${S4[@]}" SOFTMIG_SESSION=vmm PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True -- \
    $PY "$ROOT/tests/gpu/torch_check.py" slice
run slice-4G "${S4[@]}" SOFTMIG_SESSION=jax1 -- $PY "$ROOT/tests/gpu/jax_check.py" slice
run slice-4G "${S4[@]}" SOFTMIG_SESSION=jax2 XLA_PYTHON_CLIENT_PREALLOCATE=false -- \
    $PY "$ROOT/tests/gpu/jax_check.py" slice
run slice-4G "${S4[@]}" SOFTMIG_SESSION=cupy -- $PY "$ROOT/tests/gpu/cupy_check.py" slice

# Two processes of one job share one 4 GiB slice; nvidia-smi inside the job shows the slice;
# NVML's own per-process numbers (read without the library) agree with the ledger.
SOFTMIG_TOOL="$BUILD/bin/softmig" SOFTMIG_CAPTURE="$OUT/status-capture.txt" \
  $PY "$ROOT/tests/gpu/share_check.py" "$LIB" >> "$LOG" 2>&1
grep -E '^RESULT' "$LOG" | grep -E '"check": "(share|nvidia_smi|nvml_agreement|status_vs_nvidia_smi|context)' | sed 's/^/slice-4G /' >> "$RES"

# A shortened chaos run: real PyTorch processes killed at random while they allocate.
$PY "$ROOT/tests/gpu/chaos_check.py" "$LIB" 100 >> "$LOG" 2>&1
grep -E '^RESULT' "$LOG" | grep '"check": "chaos"' | sed 's/^/slice-8G /' >> "$RES"

# ---- 3. benchmarks: bare and preloaded interleaved, same card, same run ------------------
# The hook cost measured against the fake driver (no GPU noise) is bench/run_fake.sh.
for round in 1 2 3 4 5 6 7; do
  for mode in bench-launch bench-alloc bench-async; do
    run "bench-bare"     -- "$PROG" $mode
    run "bench-nolimit"  "$PRE" -- "$PROG" $mode
    run "bench-limit70G" "$PRE" CUDA_DEVICE_MEMORY_LIMIT=70G SOFTMIG_SESSION=bench -- "$PROG" $mode
  done
done

# In-process A/B of the launch path: the wrapper against the driver's own function.
run bench-ab-nolimit "$PRE" -- "$PROG" bench-launch-ab
run bench-ab-limit70G "$PRE" CUDA_DEVICE_MEMORY_LIMIT=70G SOFTMIG_SESSION=benchab -- "$PROG" bench-launch-ab
# A limit of 100 is no limit: the same 2 % target as without one.
run bench-ab-share100 "$PRE" CUDA_DEVICE_SM_LIMIT=100 SOFTMIG_SESSION=benchab100 -- "$PROG" bench-launch-ab
# The paced path of a process with a compute share (99 %: seldom held back), reported.
run bench-ab-share99 "$PRE" CUDA_DEVICE_SM_LIMIT=99 SOFTMIG_SESSION=benchab99 -- "$PROG" bench-launch-ab

# ---- 4. compute share (CUDA_DEVICE_SM_LIMIT): about 16 minutes; table in OUT/compute_share.md.
# SOFTMIG_GPU_SHARE=0 leaves it out (a whole run then takes about 4 minutes); compute_share.sh
# says how to run it in parts.
if [[ "${SOFTMIG_GPU_SHARE:-1}" != 0 ]]; then
  echo "== compute share" >> "$LOG"
  timeout 1200 "$ROOT/tests/gpu/compute_share.sh" "$LIB" "$BUILD" "$OUT" < /dev/null 2>> "$LOG" | tee -a "$LOG" |
    grep -E '^RESULT' | sed 's/^/compute-share /' >> "$RES" ||
    echo "compute share benchmark failed or timed out (see $LOG)" | tee -a "$LOG"
  [[ -f "$OUT/compute_share.md" ]] && cat "$OUT/compute_share.md"
fi

$PY "$ROOT/tests/gpu/summarize.py" "$RES" | tee "$OUT/summary.txt"
