#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Error paths of `softmig slurm prolog|epilog` and the thin wrappers, without a cluster
# (CTest: slurm.prolog_errors). scontrol is a stub script, NVML the fake one; everything lives in
# a temporary directory removed on exit. Needs root (the job file is chowned to root, the ledger
# directory to the job's user); exits 77 (CTest skip) otherwise.
#
#   tests/slurm/prolog_errors.sh [BUILD_DIR]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
B="$(cd "${1:-$repo/build}" && pwd)"
[[ $(id -u) -eq 0 ]] || { echo "prolog_errors: needs root; skipped"; exit 77; }
TOOL="$B/bin/softmig"
NVML="$B/fake/libnvidia-ml.so.1"
[[ -x $TOOL && -e $NVML ]] || { echo "prolog_errors: FAIL: $TOOL or $NVML is not built" >&2; exit 1; }

T="$(mktemp -d /tmp/softmig-prolog-tests.XXXXXX)"
trap 'rm -rf --one-file-system "$T"' EXIT
chmod 0755 "$T"
passed=0
failed=0
ok() { echo "PASS: $1"; passed=$((passed + 1)); }
bad() { echo "FAIL: $1" >&2; failed=$((failed + 1)); }

# A stub scontrol printing what slurmd's scontrol would for the job asked about (`scontrol -d
# show job <id>`: $4) holding GRES on GPU 1.
# shellcheck disable=SC2016  # $4 is for the stub script to expand
stub() {  # stub NAME GRES
  printf '#!/bin/sh\ncat <<STUB_END\nJobId=$4 JobName=x\n   JOB_GRES=%s\n     Nodes=node1 CPU_IDs=0 Mem=100 GRES=%s(IDX:1)\nSTUB_END\n' "$2" "$2" >"$T/$1"
  chmod 0755 "$T/$1"
}
stub scontrol-quarter shard:l40s:2
stub scontrol-half shard:l40s:4
stub scontrol-eighth shard:l40s:1
stub scontrol-whole gpu:l40s:1
printf '#!/bin/sh\necho "slurm_load_jobs error: Unable to contact slurm controller" >&2\nexit 1\n' >"$T/scontrol-down"
chmod 0755 "$T/scontrol-down"
cp "$repo/slurm/examples/slices.conf" "$T/slices.conf"

# prolog DIR SCONTROL [extra args...]: runs the prolog for job $JOB (default 42) of uid 65534 on
# GPU 1, in partition $PART (default debug).
prolog() {
  local dir=$1 sc=$2
  shift 2
  env -i SLURM_JOB_ID="${JOB:-42}" SLURM_JOB_UID=65534 SLURM_JOB_GID=65534 SLURM_JOB_GPUS=1 SLURMD_NODENAME=node1 \
    SLURM_JOB_PARTITION="${PART:-debug}" \
    SOFTMIG_FAKE_DEVICES=48G,48G "$TOOL" slurm prolog --config-dir "$dir" --scontrol "$sc" --scontrol-tries 1 \
    --slices "$T/slices.conf" --nvml-library "$NVML" "$@" >"$T/out" 2>&1
}
fresh() { rm -rf "$T/conf"; install -d -m 0755 "$T/conf"; }
has() { grep -qx -- "$2" "$1" 2>/dev/null; }
epilog() { env -i SLURM_JOB_ID="$1" "$TOOL" slurm epilog --config-dir "$2" >"$T/out" 2>&1; }
U1=GPU-fa4e0000-0000-0000-0000-000000000001   # the fake NVML's GPU 1

# 1. the normal case: file, owner, mode, keys, ledger
fresh
prolog "$T/conf" "$T/scontrol-quarter"; rc=$?
f="$T/conf/42.conf"
if [[ $rc -eq 0 ]] && [[ "$(stat -c '%u:%g %a' "$f")" == "0:0 644" ]] &&
  has "$f" "CUDA_DEVICE_MEMORY_LIMIT_GPU-fa4e0000-0000-0000-0000-000000000001=12884901888" &&
  has "$f" "CUDA_DEVICE_SM_LIMIT_GPU-fa4e0000-0000-0000-0000-000000000001=25" && has "$f" "CUDA_DEVICE_MEMORY_LIMIT=1" &&
  has "$f" "SOFTMIG_LEDGER_DIR=$T/conf/ledger/42" && [[ "$(stat -c '%u %a' "$T/conf/ledger/42")" == "65534 700" ]]; then
  ok "quarter slice: root:root 0644 file with per-UUID keys, ledger dir 0700 owned by the job's user"
else
  bad "quarter slice (exit $rc)"; cat "$T/out" "$f" >&2
fi
# ... its compute window (the first of the GPU), policy (l40s: burst in the example) and
# activity stamp (the job's user, mtime 0: not active yet)
if has "$f" "CUDA_DEVICE_SM_PHASE_$U1=0" && has "$f" "SOFTMIG_SM_POLICY=burst" && has "$f" "SOFTMIG_SM_BOARD=$T/conf/board" &&
  ! grep -q SOFTMIG_SM_PERIOD_MS "$f" &&
  [[ "$(cat "$T/conf/sm-slots/$U1")" == "42 0 25" && "$(stat -c '%u:%g %a' "$T/conf/sm-slots/$U1")" == "0:0 644" ]] &&
  [[ "$(stat -c '%u:%g %a' "$T/conf/sm-slots" "$T/conf/board")" == "0:0 755"$'\n'"0:0 755" ]] &&
  [[ "$(stat -c '%u:%g %a %Y' "$T/conf/board/$U1.42")" == "65534:65534 644 0" ]]; then
  ok "quarter slice: window 0..25 in sm-slots/<UUID>, phase 0, policy burst, stamp owned by the job's user"
else
  bad "quarter slice: compute schedule"; cat "$T/out" "$f" >&2; ls -lR "$T/conf" >&2
fi
# ... and the epilog removes all of it
epilog 42 "$T/conf"; rc=$?
if [[ $rc -eq 0 && ! -e $f && ! -e "$T/conf/ledger/42" && ! -e "$T/conf/sm-slots/$U1" && ! -e "$T/conf/board/$U1.42" ]]; then
  ok "epilog removes the file, the ledger, the window and the stamp"
else
  bad "epilog (exit $rc)"; cat "$T/out" >&2; ls -lR "$T/conf" >&2
fi

# 1b. compute windows of jobs sharing one GPU: 50 % + 50 %, then a third (over-subscribed)
fresh
JOB=42 prolog "$T/conf" "$T/scontrol-half"; r1=$?
JOB=43 prolog "$T/conf" "$T/scontrol-half"; r2=$?
if [[ $r1$r2 == 00 ]] && has "$T/conf/42.conf" "CUDA_DEVICE_SM_PHASE_$U1=0" && has "$T/conf/43.conf" "CUDA_DEVICE_SM_PHASE_$U1=50" &&
  [[ "$(cat "$T/conf/sm-slots/$U1")" == $'42 0 50\n43 50 50' && -e "$T/conf/board/$U1.42" && -e "$T/conf/board/$U1.43" ]]; then
  ok "two halves of one GPU: phases 0 and 50, one stamp each"
else
  bad "two halves (exit $r1 $r2)"; cat "$T/out" "$T/conf/sm-slots/$U1" >&2
fi
JOB=44 prolog "$T/conf" "$T/scontrol-quarter"; rc=$?
if [[ $rc -eq 0 ]] && has "$T/conf/44.conf" "CUDA_DEVICE_SM_PHASE_$U1=0" && grep -q "warning: .*no free window of 25 %.*overlapping job(s) 42" "$T/out" &&
  grep -qx "44 0 25" "$T/conf/sm-slots/$U1"; then
  ok "a full GPU: exit 0, least-overlap window, warning in the log"
else
  bad "full GPU (exit $rc)"; cat "$T/out" "$T/conf/sm-slots/$U1" >&2
fi
JOB=43 prolog "$T/conf" "$T/scontrol-half"; rc=$?   # a re-run replaces the job's own line
if [[ $rc -eq 0 ]] && has "$T/conf/43.conf" "CUDA_DEVICE_SM_PHASE_$U1=50" && [[ $(grep -c '^43 ' "$T/conf/sm-slots/$U1") -eq 1 ]]; then
  ok "prolog re-run: the job keeps one line"
else
  bad "prolog re-run (exit $rc)"; cat "$T/out" "$T/conf/sm-slots/$U1" >&2
fi
epilog 43 "$T/conf"; rc=$?
if [[ $rc -eq 0 && "$(cat "$T/conf/sm-slots/$U1")" == $'42 0 50\n44 0 25' && ! -e "$T/conf/board/$U1.43" && -e "$T/conf/board/$U1.42" ]]; then
  ok "epilog of one job removes only its own line and stamp"
else
  bad "epilog of job 43 (exit $rc)"; cat "$T/out" "$T/conf/sm-slots/$U1" >&2; ls -l "$T/conf/board" >&2
fi
JOB=44 prolog "$T/conf" "$T/scontrol-whole"; rc=$?  # the same id, now a whole GPU (requeued)
if [[ $rc -eq 0 && "$(cat "$T/conf/sm-slots/$U1")" == "42 0 50" && ! -e "$T/conf/board/$U1.44" ]]; then
  ok "whole-GPU prolog of an id with a stale window removes it"
else
  bad "stale window of a whole-GPU job (exit $rc)"; cat "$T/out" "$T/conf/sm-slots/$U1" >&2
fi
epilog 42 "$T/conf"
if [[ ! -e "$T/conf/sm-slots/$U1" && -z "$(ls "$T/conf/board")" ]]; then ok "all windows and stamps gone after the epilogs"; else bad "leftovers"; ls -lR "$T/conf" >&2; fi

# 1c. sm_policy of the GPU type, [partition] override, sm_period_ms
fresh
PART=benchmark prolog "$T/conf" "$T/scontrol-quarter"; rc=$?
if [[ $rc -eq 0 ]] && has "$T/conf/42.conf" "SOFTMIG_SM_POLICY=strict"; then ok "[partition benchmark] sm_policy=strict overrides l40s' burst"; else bad "partition override (exit $rc)"; cat "$T/conf/42.conf" >&2; fi
sed 's/^# sm_period_ms = 200$/sm_period_ms = 20/' "$repo/slurm/examples/slices.conf" >"$T/period.conf"
prolog "$T/conf" "$T/scontrol-quarter" --slices "$T/period.conf"; rc=$?
if [[ $rc -eq 0 ]] && has "$T/conf/42.conf" "SOFTMIG_SM_PERIOD_MS=20" && has "$T/conf/42.conf" "SOFTMIG_SM_POLICY=burst"; then
  ok "sm_period_ms = 20: SOFTMIG_SM_PERIOD_MS=20 in the job file"
else
  bad "sm_period_ms (exit $rc)"; cat "$T/conf/42.conf" >&2
fi
for bad_line in "sm_period_ms = 5" "sm_policy = greedy"; do
  sed "s/^# sm_period_ms = 200\$/$bad_line/" "$repo/slurm/examples/slices.conf" >"$T/badsm.conf"
  prolog "$T/conf" "$T/scontrol-quarter" --slices "$T/badsm.conf"; rc=$?
  n=$(grep -n "^$bad_line\$" "$T/badsm.conf" | cut -d: -f1)
  if [[ $rc -eq 0 ]] && has "$T/conf/42.conf" "CUDA_DEVICE_SM_LIMIT=1" && grep -q "line $n:" "$T/out" &&
    ! grep -q "^42 " "$T/conf/sm-slots/$U1" 2>/dev/null; then
    ok "'$bad_line': malformed table, fail-closed file naming line $n, no window kept"
  else
    bad "'$bad_line' (exit $rc)"; cat "$T/out" >&2
  fi
done

# 1d. the schedule cannot be put in place: the job still runs with its limits (exit 0)
fresh
install -d -m 0755 "$T/conf/board" "$T/conf/board/$U1.42"   # not a regular file: left alone
: >"$T/conf/sm-slots"                                         # not a directory
prolog "$T/conf" "$T/scontrol-quarter"; rc=$?
f="$T/conf/42.conf"
if [[ $rc -eq 0 ]] && has "$f" "CUDA_DEVICE_SM_LIMIT_$U1=25" && has "$f" "SOFTMIG_SM_POLICY=burst" &&
  ! grep -q "CUDA_DEVICE_SM_PHASE\|SOFTMIG_SM_BOARD" "$f" && [[ -d "$T/conf/board/$U1.42" ]] &&
  grep -q "cannot place its compute windows" "$T/out" && grep -q "not a regular file" "$T/out"; then
  ok "sm-slots unusable, board name taken by a directory: exit 0, limits written without phase and board"
else
  bad "unusable sm-slots / board (exit $rc)"; cat "$T/out" "$f" >&2
fi
fresh
install -d -m 0755 "$T/conf/board"
echo stale >"$T/conf/board/$U1.42"
prolog "$T/conf" "$T/scontrol-quarter"; rc=$?
if [[ $rc -eq 0 && "$(stat -c '%u %s' "$T/conf/board/$U1.42")" == "65534 0" ]] && has "$T/conf/42.conf" "SOFTMIG_SM_BOARD=$T/conf/board"; then
  ok "a stale stamp (regular file) is replaced"
else
  bad "stale stamp (exit $rc)"; cat "$T/out" >&2
fi

# 2. scontrol unavailable, the job has a GPU: fail closed, exit 0 (never drain)
for sc in "$T/scontrol-down" /nonexistent/scontrol; do
  fresh
  prolog "$T/conf" "$sc"; rc=$?
  if [[ $rc -eq 0 ]] && has "$T/conf/42.conf" "CUDA_DEVICE_MEMORY_LIMIT=1" && has "$T/conf/42.conf" "CUDA_DEVICE_SM_LIMIT=1" &&
    grep -q FAIL-CLOSED "$T/out"; then
    ok "scontrol unavailable ($(basename "$sc")): exit 0, fail-closed file"
  else
    bad "scontrol unavailable ($sc) (exit $rc)"; cat "$T/out" >&2
  fi
done
# ... and without a GPU: nothing to limit
fresh
env -i SLURM_JOB_ID=42 "$TOOL" slurm prolog --config-dir "$T/conf" --scontrol /nonexistent/scontrol --scontrol-tries 1 >"$T/out" 2>&1; rc=$?
if [[ $rc -eq 0 && ! -e "$T/conf/42.conf" ]]; then ok "scontrol unavailable, no GPU: exit 0, no file"; else bad "scontrol unavailable, no GPU (exit $rc)"; cat "$T/out" >&2; fi

# 3. NVML unavailable: a percentage slice fails closed; a fixed-size slice still gets its limit
fresh
prolog "$T/conf" "$T/scontrol-quarter" --nvml-library /nonexistent/libnvidia-ml.so.1; rc=$?
if [[ $rc -eq 0 ]] && has "$T/conf/42.conf" "CUDA_DEVICE_MEMORY_LIMIT=1" && grep -q "cannot load NVML" "$T/out"; then
  ok "NVML missing, l40s.4 (25 %): exit 0, fail-closed file"
else
  bad "NVML missing, percentage slice (exit $rc)"; cat "$T/out" >&2
fi
fresh
sed 's/^slice.8 = memory=12.5%/slice.8 = memory=6G/' "$repo/slurm/examples/slices.conf" >"$T/slices.conf"
prolog "$T/conf" "$T/scontrol-eighth" --nvml-library /nonexistent/libnvidia-ml.so.1; rc=$?
if [[ $rc -eq 0 ]] && has "$T/conf/42.conf" "CUDA_DEVICE_MEMORY_LIMIT=6442450944" && has "$T/conf/42.conf" "CUDA_DEVICE_SM_LIMIT=12"; then
  ok "NVML missing, fixed 6G slice: exit 0, global 6 GiB / 12 % keys"
else
  bad "NVML missing, fixed slice (exit $rc)"; cat "$T/out" "$T/conf/42.conf" >&2
fi
cp "$repo/slurm/examples/slices.conf" "$T/slices.conf"

# 4. a broken or missing slice table: fail closed, exit 0
fresh
printf '[gpu l40s]\nslice.4 = memory=lots, sm=25\n' >"$T/bad.conf"
prolog "$T/conf" "$T/scontrol-quarter" --slices "$T/bad.conf"; rc=$?
if [[ $rc -eq 0 ]] && has "$T/conf/42.conf" "CUDA_DEVICE_MEMORY_LIMIT=1" && grep -q "line 2" "$T/out"; then
  ok "malformed slice table: exit 0, fail-closed file, the line named in the log"
else
  bad "malformed slice table (exit $rc)"; cat "$T/out" >&2
fi

# 5. the directory cannot be written: a slice job fails the prolog (drain + requeue, never unlimited)
: >"$T/not-a-dir"
prolog "$T/not-a-dir/conf" "$T/scontrol-quarter"; rc=$?
if [[ $rc -eq 1 ]] && grep -q "Failing the prolog" "$T/out"; then ok "unwritable directory, slice job: exit 1"; else bad "unwritable directory (exit $rc)"; cat "$T/out" >&2; fi
prolog "$T/not-a-dir/conf" "$T/scontrol-whole"; rc=$?
if [[ $rc -eq 0 ]]; then ok "unwritable directory, whole-GPU job: exit 0 (no file needed)"; else bad "unwritable directory, whole GPU (exit $rc)"; cat "$T/out" >&2; fi
fresh
chown 65534 "$T/conf"
prolog "$T/conf" "$T/scontrol-quarter"; rc=$?
if [[ $rc -eq 1 ]] && grep -q "not root" "$T/out" && [[ ! -e "$T/conf/42.conf" ]]; then
  ok "directory owned by another user: exit 1, nothing written"
else
  bad "directory not root-owned (exit $rc)"; cat "$T/out" >&2
fi
fresh
chmod 0777 "$T/conf"
prolog "$T/conf" "$T/scontrol-quarter"; rc=$?
if [[ $rc -eq 0 && "$(stat -c %a "$T/conf")" == 755 && -e "$T/conf/42.conf" ]]; then
  ok "world-writable root-owned directory: mode repaired to 0755"
else
  bad "world-writable directory (exit $rc)"; cat "$T/out" >&2
fi

# 6. a whole-GPU job removes a stale file of the same id (a requeued job, a reused id)
fresh
echo "CUDA_DEVICE_MEMORY_LIMIT=1G" >"$T/conf/42.conf"
echo "CUDA_DEVICE_MEMORY_LIMIT=1G" >"$T/conf/42_3.conf"
prolog "$T/conf" "$T/scontrol-whole"; rc=$?
if [[ $rc -eq 0 && ! -e "$T/conf/42.conf" && ! -e "$T/conf/42_3.conf" ]]; then ok "whole GPU: stale files removed"; else bad "stale files (exit $rc)"; ls "$T/conf" >&2; fi

# 7. the epilog with nothing to do, or a missing directory: exit 0
env -i SLURM_JOB_ID=42 "$TOOL" slurm epilog --config-dir "$T/nonexistent" >"$T/out" 2>&1; rc=$?
if [[ $rc -eq 0 ]]; then ok "epilog, missing directory: exit 0"; else bad "epilog missing dir (exit $rc)"; cat "$T/out" >&2; fi
# ... and a ledger planted as a symlink is unlinked, not followed
fresh
install -d -m 0755 "$T/conf/ledger" "$T/victim"
: >"$T/victim/keep"
ln -s "$T/victim" "$T/conf/ledger/42"
env -i SLURM_JOB_ID=42 "$TOOL" slurm epilog --config-dir "$T/conf" >"$T/out" 2>&1; rc=$?
if [[ $rc -eq 0 && -e "$T/victim/keep" && ! -L "$T/conf/ledger/42" ]]; then ok "epilog does not follow a symlinked ledger"; else bad "epilog symlink (exit $rc)"; fi

# 8. usage errors
env -i "$TOOL" slurm prolog --config-dir "$T/conf" >"$T/out" 2>&1; rc=$?
if [[ $rc -eq 2 ]] && grep -q SLURM_JOB_ID "$T/out"; then ok "no SLURM_JOB_ID: exit 2 with a message"; else bad "no SLURM_JOB_ID (exit $rc)"; fi

# 9. the thin wrappers: a missing tool fails the prolog (drain) but never the epilog
env -i SLURM_JOB_ID=42 SOFTMIG_TOOL=/nonexistent/softmig sh "$repo/slurm/prolog.sh" >/dev/null 2>&1; rc=$?
if [[ $rc -ne 0 ]]; then ok "prolog.sh without the tool: non-zero (node drained)"; else bad "prolog.sh without the tool exited 0"; fi
env -i SLURM_JOB_ID=42 SOFTMIG_TOOL=/nonexistent/softmig sh "$repo/slurm/epilog.sh" >/dev/null 2>&1; rc=$?
if [[ $rc -eq 0 ]]; then ok "epilog.sh without the tool: exit 0"; else bad "epilog.sh without the tool (exit $rc)"; fi

echo "prolog error paths: $passed passed, $failed failed"
((failed == 0))
