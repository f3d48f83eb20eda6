#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# check_share.sh NAME EXPECT TOLERANCE [VAR=value...] -- VICTIM ARGS...
#   Runs the victim (victim_pace, against the fake driver with libsoftmig.so preloaded as the
#   environment says) and checks the GPU share it reports:  |share - EXPECT| <= TOLERANCE.
#   EXPECT "bare:<ratio>" compares launches with a run of the same victim without softmig:
#   launches(preloaded) / launches(bare) must be within TOLERANCE of <ratio> (host-bound loads,
#   where the fake GPU is never busy). "records:0" asserts that no completion event was
#   recorded. "outside:0" checks the part of the GPU time that ran outside the job's windows
#   (the time it took from the job whose windows follow; the largest of the processes').
#   "stamp_age:<ms>" checks the longest time (ms) the job's activity stamp on its board
#   (SOFTMIG_SM_BOARD) went unrenewed while it launched: what a bursting job sees of it.
#   CHECK_PROCS=N runs N copies at once (one job) and checks the mean of their shares
#   (the fake GPU is per process, so each must get the job's windows; a real GPU divides them).
#   CHECK_PEER=<file> keeps <file> stamped (another job's activity) while the victim runs.
#   CHECK_SPILL=<us> with CHECK_SPILL_WRITER=<spill_writer> and CHECK_SPILL_UUID=<the fake GPU's>:
#   stands in for another process of the job whose work runs <us> past the end of every window,
#   through the job's ledger, at the victim's SOFTMIG_SM_PERIOD_MS (or the library's default);
#   CHECK_SPILL_EDITED=1: the record is first set an hour ahead, as a hand edit could.
#   Every check prints one line: "compute NAME: <value> (expected E +- T) ok|FAIL".
set -uo pipefail
name=$1 expect=$2 tol=$3
shift 3
envs=()
CHECK_PROCS=1 CHECK_PEER="" CHECK_SPILL="" CHECK_SPILL_WRITER="" CHECK_SPILL_UUID="" CHECK_SPILL_EDITED=""
session=default pct=100 period=""
while [[ $# -gt 0 && $1 != "--" ]]; do
  case $1 in
    CHECK_PROCS=*|CHECK_PEER=*|CHECK_SPILL*=*) declare "$1" ;;  # for this script, not the victim
    *) envs+=("$1")
       case $1 in
         SOFTMIG_SESSION=*) session=${1#*=} ;;
         CUDA_DEVICE_SM_LIMIT=*) pct=${1#*=} ;;
         SOFTMIG_SM_PERIOD_MS=*) period=${1#*=} ;;
       esac ;;
  esac
  shift
done
shift
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
peer=""
if [[ -n $CHECK_PEER ]]; then
  (while :; do touch "$CHECK_PEER"; sleep 0.005; done) &
  peer=$!
  trap 'kill $peer 2>/dev/null' EXIT
fi
procs=$CHECK_PROCS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [[ -n $peer ]] && kill $peer 2>/dev/null' EXIT
for ((i = 0; i < procs; i++)); do env "${envs[@]}" "$@" > "$tmp/$i" & done
writer=""
if [[ -n $CHECK_SPILL ]]; then
  # The ledger of this session outside SLURM (no XDG_RUNTIME_DIR in these tests).
  ledger="/tmp/softmig-$(id -u)/cudevshr.cache.session-${session//[^A-Za-z0-9._-]/_}"
  SOFTMIG_SM_PERIOD_MS=$period "$CHECK_SPILL_WRITER" "$ledger" "$CHECK_SPILL_UUID" "$pct" "$CHECK_SPILL" 30 \
    ${CHECK_SPILL_EDITED:+--edited-first} > "$tmp/writer.out" 2>&1 &
  writer=$!
fi
wait_ok=1
for job in $(jobs -p); do [[ $job == "$peer" || $job == "$writer" ]] && continue; wait "$job" || wait_ok=0; done
if [[ -n $writer ]]; then
  kill "$writer" 2>/dev/null
  wait "$writer" 2>/dev/null
  grep FAIL "$tmp/writer.out" && wait_ok=0
  rm -f "$tmp/writer.out"
fi
out=$(cat "$tmp"/*)
[[ $wait_ok == 1 ]] || { echo "compute $name: victim failed"; echo "$out"; exit 1; }
line=$(grep '^PACE' <<<"$out" | head -1)
share=$(grep '^PACE' <<<"$out" | sed -n 's/.* share=\([^ ]*\).*/\1/p' | awk '{ s += $1; n++ } END { printf "%.4f", s / n }')
case $expect in
  bare:*)
    ratio=${expect#bare:}
    bare_out=$(env "${envs[@]}" LD_PRELOAD= "$@") || { echo "compute $name: bare victim failed"; exit 1; }
    got=$(awk -v a="$(field launches "$line")" -v b="$(field launches "$(grep '^PACE' <<<"$bare_out")")" \
          'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')
    want=$ratio ;;
  records:*)
    got=$(field records "$line") want=${expect#records:} ;;
  outside:*)
    got=$(grep '^PACE' <<<"$out" | sed -n 's/.* outside=\([^ ]*\).*/\1/p' | sort -g | tail -1)
    want=${expect#outside:} ;;
  stamp_age:*)
    got=$(field stamp_age_ms "$line") want=${expect#stamp_age:} ;;
  *)
    got=$share want=$expect ;;
esac
if [[ $got =~ ^-?[0-9.]+$ ]] && awk -v g="$got" -v w="$want" -v t="$tol" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= t) }'; then
  echo "compute $name: $got (expected $want +- $tol) ok"
else
  echo "compute $name: $got (expected $want +- $tol) FAIL"
  echo "$out" | tail -5
  exit 1
fi
