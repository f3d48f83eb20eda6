#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End-to-end tests of softmig's SLURM integration against the single-node cluster that
# tests/slurm/start_cluster.sh started (CTest: slurm.cluster). Real sbatch/srun jobs run
# examples/slice_demo under the fake driver with libsoftmig preloaded (LD_PRELOAD in the job).
#
#   tests/slurm/run_tests.sh [BUILD_DIR]
#
# Exit: 0 all passed; 1 a test failed; 77 (CTest skip) no cluster is running and CI is not set.
# With CI=true a missing cluster is a failure: CI must never silently skip these tests.
# Every wait polls with a deadline; nothing relies on a fixed sleep.
set -uo pipefail

S="${SOFTMIG_SLURM_STATE:-/tmp/softmig-slurm}"
if [[ ! -s "$S/cluster.env" ]]; then
  if [[ ${CI:-} == true ]]; then
    echo "run_tests: FAIL: no SLURM cluster is running ($S/cluster.env missing); .ci/run's SLURM step must start it" >&2
    exit 1
  fi
  echo "run_tests: no SLURM cluster running (tests/slurm/start_cluster.sh starts one); skipped"
  exit 77
fi
# shellcheck source=/dev/null
. "$S/cluster.env"
B="$(cd "${1:-$SOFTMIG_SLURM_BUILD}" && pwd)"
J="$S/jobs"
CONF=/var/run/softmig
GiB=$((1 << 30))
H="$SOFTMIG_SLURM_NODE"
for f in "$B/bin/slice_demo" "$B/lib/libsoftmig.so" "$B/fake/libcuda.so.1" "$B/bin/softmig"; do
  [[ -e $f ]] || { echo "run_tests: FAIL: $f is not built" >&2; exit 1; }
done
cd /tmp || exit 1

passed=0
failed=0
ok() { echo "PASS: $1"; passed=$((passed + 1)); }
bad() { echo "FAIL: $1" >&2; failed=$((failed + 1)); }

# poll SECONDS COMMAND...: true once COMMAND succeeds, false at the deadline.
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
job_gone() { [[ -z "$(squeue -h -j "$1" 2>/dev/null)" ]]; }
# wait_job ID: waits for the job (all array tasks) to leave the queue; says why if it does not.
wait_job() {
  poll 120 job_gone "$1" && return 0
  echo "  job $1 still queued after 120 s:" >&2
  squeue -j "$1" >&2
  scontrol show job "$1" >&2
  tail -20 "$S/log/slurmd.log" >&2
  scancel "$1" 2>/dev/null
  return 1
}
# submit ARGS...: sbatch --parsable with our output file.
submit() {
  local id
  id=$(sbatch --parsable -D /tmp -o "$J/%j.out" -e "$J/%j.out" "$@") || return 1
  echo "${id%%;*}"
}
field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$1" | tail -1; }   # field FILE KEY (from "summary:")

# The job script: shows the job file as the job sees it, then runs the demo in the slice.
cat >"$J/demo.sh" <<DEMO_END
#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
f=\$(ls $CONF/\${SLURM_JOB_ID}.conf $CONF/\${SLURM_JOB_ID}_*.conf 2>/dev/null | head -1)
if [ -n "\$f" ]; then echo "jobfile: \$(basename "\$f") \$(stat -c '%U %a' "\$f")"; else echo "jobfile: none"; fi
if [ -n "\$f" ]; then sed -n 's/^SOFTMIG_LEDGER_DIR=//p' "\$f" | sed 's/^/ledgerdir: /'; fi
if [ -n "\$f" ]; then sed -n 's/^CUDA_DEVICE_SM_PHASE_\(.*\)=\(.*\)\$/phase: \1 \2/p' "\$f"; fi
echo "gpus: \${SLURM_JOB_GPUS:-\${CUDA_VISIBLE_DEVICES:-none}}"
echo "task: \${SLURM_JOB_ID}_\${SLURM_ARRAY_TASK_ID:-}"
if [ -n "\${WAIT_FOR:-}" ]; then
  touch "$J/ready.\$SLURM_JOB_ID"
  i=0; while [ ! -e "$J/ready.\$WAIT_FOR" ] && [ \$i -lt 1200 ]; do sleep 0.1; i=\$((i+1)); done
  [ -e "$J/ready.\$WAIT_FOR" ] && echo "together: yes"
fi
export LD_PRELOAD=$B/lib/libsoftmig.so LD_LIBRARY_PATH=$B/fake SOFTMIG_FAKE_DEVICES=48G,48G
$B/bin/slice_demo
d=\$(sed -n 's/^SOFTMIG_LEDGER_DIR=//p' "\$f" 2>/dev/null)
[ -n "\$d" ] && ls "\$d" | sed 's/^/ledger: /'
[ -n "\$d" ] && echo "ledgerstat: \$(stat -c '%U %a' "\$d")"
if [ -n "\${HOLD:-}" ]; then i=0; while [ ! -e "$J/release" ] && [ \$i -lt 1200 ]; do sleep 0.1; i=\$((i+1)); done; fi
exit 0
DEMO_END
chmod 0755 "$J/demo.sh"

# no_job_files ID: no job file, ledger, compute window (sm-slots line) or activity stamp of job ID.
no_job_files() {
  ! ls "$CONF/$1.conf" "$CONF/$1"_*.conf "$CONF"/board/*."$1" >/dev/null 2>&1 && [[ ! -e "$CONF/ledger/$1" ]] &&
    ! grep -qs "^$1 " "$CONF"/sm-slots/GPU-*
}

# ---- 1. a quarter slice: 12 GiB of a 48 GiB GPU, OOM past it, file present then gone -----------
t="quarter slice (--gres=gpu:l40s.4:1)"
if id=$(submit --gres=gpu:l40s.4:1 "$J/demo.sh") && wait_job "$id"; then
  out="$J/$id.out"
  total=$(field "$out" total_bytes)
  got=$(field "$out" obtained_mib)
  if [[ $total == $((12 * GiB)) && $(field "$out" last_result) == 2 && -n $got && $got -le 12288 && $got -gt 10000 ]] &&
    grep -q "^jobfile: $id.conf root 644$" "$out"; then
    ok "$t: total=$total obtained=${got}MiB then OOM; job file root 0644"
  else
    bad "$t"; cat "$out" >&2
  fi
  if poll 30 no_job_files "$id"; then ok "quarter slice: job file and ledger removed by the epilog"; else bad "job $id's files remain"; ls -l "$CONF" >&2; fi
else
  bad "$t: submission or run failed"
fi

# ---- 2. a whole GPU: the whole device, no job file --------------------------------------------
t="whole GPU (--gres=gpu:l40s:1)"
if id=$(submit --gres=gpu:l40s:1 "$J/demo.sh") && wait_job "$id"; then
  out="$J/$id.out"
  if [[ $(field "$out" total_bytes) == $((48 * GiB)) ]] && grep -q "^jobfile: none$" "$out"; then
    ok "$t: total=48 GiB, no job file"
  else
    bad "$t"; cat "$out" >&2
  fi
else
  bad "$t: submission or run failed"
fi

# ---- 3. invalid requests are rejected at submission with a message ----------------------------
reject() {  # reject DESCRIPTION EXPECTED_MESSAGE_REGEX SBATCH_ARGS...
  local what=$1 re=$2 msg rc
  shift 2
  msg=$(sbatch -D /tmp -o /dev/null "$@" --wrap true 2>&1)
  rc=$?
  if [[ $rc -ne 0 ]] && grep -Eq "$re" <<<"$msg"; then
    ok "rejected $what: $(grep -m1 'softmig:' <<<"$msg" | sed 's/^sbatch: error: //')"
  else
    bad "$what was not rejected as expected (exit $rc): $msg"
  fi
}
reject "unknown type" "softmig: unknown GPU type 'a100'" --gres=gpu:a100.2:1
reject "N=1" "softmig: 'gpu:l40s.1:1' is a whole GPU" --gres=gpu:l40s.1:1
reject "N not offered" "softmig: 'l40s.3' is not a slice of l40s" --gres=gpu:l40s.3:1
reject "N above the shard count" "softmig: 'l40s.16' is not a slice of l40s" --gres=gpu:l40s.16:1
reject "two slices" "softmig: one GPU slice per job" --gres=gpu:l40s.4:2
reject "slice through --gpus" "softmig: GPU slices are requested with --gres" --gpus=l40s.4:1
reject "raw shards of no slice size" "softmig: 'shard:3' matches no GPU slice" --gres=shard:3

# ---- 4. direct srun (cli_filter.lua rewrites the step too) ------------------------------------
t="direct srun --gres=gpu:l40s.2:1"
out=$(timeout 120 srun -D /tmp --gres=gpu:l40s.2:1 "$J/demo.sh" 2>&1)
echo "$out" >"$J/srun.out"
if grep -q "total_bytes=$((24 * GiB)) " <<<"$out"; then ok "$t: total=24 GiB"; else bad "$t"; echo "$out" >&2; fi

# ---- 5. two slice jobs at once on one GPU: separate ledgers ------------------------------------
# A whole-GPU job holds one GPU, so both quarters land on the other one.
t="two concurrent slice jobs"
rm -f "$J/release" "$J"/ready.*
if holder=$(submit --gres=gpu:l40s:1 --export=ALL,HOLD=1 "$J/demo.sh") && poll 60 grep -q '^summary:' "$J/$holder.out"; then
  a=$(submit --gres=gpu:l40s.4:1 --export=ALL,WAIT_FOR=next "$J/demo.sh")
  b=$(submit --gres=gpu:l40s.4:1 --export=ALL,WAIT_FOR="$a" "$J/demo.sh")
  ln -sf "ready.$b" "$J/ready.next" 2>/dev/null   # a waits for b
  wait_job "$a"; wait_job "$b"
  touch "$J/release"; wait_job "$holder"
  ga=$(sed -n 's/^gpus: //p' "$J/$a.out"); gb=$(sed -n 's/^gpus: //p' "$J/$b.out"); gh=$(sed -n 's/^gpus: //p' "$J/$holder.out")
  la=$(sed -n 's/^ledgerdir: //p' "$J/$a.out"); lb=$(sed -n 's/^ledgerdir: //p' "$J/$b.out")
  if grep -q '^together: yes' "$J/$a.out" && grep -q '^together: yes' "$J/$b.out" && [[ -n $ga && $ga == "$gb" && $ga != "$gh" ]] &&
    [[ $la == "$CONF/ledger/$a" && $lb == "$CONF/ledger/$b" ]] &&
    grep -q "^ledger: cudevshr.cache.$a$" "$J/$a.out" && grep -q "^ledger: cudevshr.cache.$b$" "$J/$b.out" &&
    grep -q '^ledgerstat: root 700$' "$J/$a.out" &&
    [[ $(field "$J/$a.out" total_bytes) == $((12 * GiB)) && $(field "$J/$b.out" total_bytes) == $((12 * GiB)) ]] &&
    [[ "$(cat "$J/$a.out" "$J/$b.out" | sed -n 's/^phase: [^ ]* //p' | sort -n | tr '\n' ' ')" == "0 25 " ]]; then
    ok "$t: both on GPU $ga at once, ledgers $la and $lb (0700, job owner), 12 GiB each, windows at 0 and 25 %"
  else
    bad "$t (a=$a gpu=$ga ledger=$la, b=$b gpu=$gb ledger=$lb, holder gpu=$gh)"
    cat "$J/$a.out" "$J/$b.out" >&2
  fi
else
  bad "$t: the whole-GPU holder did not start"
  touch "$J/release"
fi

# ---- 5b. two halves of one GPU at once, as an ordinary user: disjoint compute windows ------------
# The jobs run as nobody (the activity stamps must belong to the job's user) and write to $U.
# Each shows its window, its stamp and the GPU's table while both run.
t="two concurrent halves of one GPU (user nobody)"
U="$J/u"
install -d -m 1777 "$U"
cat >"$J/half.sh" <<HALF_END
#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
f=$CONF/\${SLURM_JOB_ID}.conf
echo "task: \${SLURM_JOB_ID}_"
echo "user: \$(id -un)"
sed -n 's/^CUDA_DEVICE_SM_PHASE_\\(.*\\)=\\(.*\\)\$/phase: \\1 \\2/p; s/^SOFTMIG_SM_POLICY=/policy: /p; s/^SOFTMIG_SM_BOARD=/board: /p' "\$f"
uuid=\$(sed -n 's/^CUDA_DEVICE_SM_PHASE_\\(.*\\)=.*/\\1/p' "\$f")
board=\$(sed -n 's/^SOFTMIG_SM_BOARD=//p' "\$f")
stamp="\$board/\$uuid.\$SLURM_JOB_ID"
echo "stamp: \$(stat -c '%U %a' "\$stamp")"
touch -c "\$stamp" && echo "stamped: yes"    # what libsoftmig does while the job submits work
# meet STEP: waits (at most 120 s) until the other job has reached STEP too.
meet() {
  touch "$U/\$1.\$SLURM_JOB_ID"
  i=0; while [ ! -e "$U/\$1.\$WAIT_FOR" ] && [ \$i -lt 1200 ]; do sleep 0.1; i=\$((i+1)); done
  [ -e "$U/\$1.\$WAIT_FOR" ]
}
meet ready && echo "together: yes"
sed 's/^/slots: /' "$CONF/sm-slots/\$uuid"
ls "\$board" | grep "^\$uuid\\." | sed 's/^/boardfile: /'
meet done   # neither ends (and has its epilog clear its window) before both have looked
exit 0
HALF_END
chmod 0755 "$J/half.sh"
# submit_as USER ARGS...: sbatch --parsable as USER, output in $U.
submit_as() {
  local user=$1 id
  shift
  id=$(runuser -u "$user" -- sbatch --parsable -D /tmp -o "$U/%j.out" -e "$U/%j.out" "$@") || return 1
  echo "${id%%;*}"
}
rm -f "$J/release" "$J"/ready.*
if holder=$(submit --gres=gpu:l40s:1 --export=ALL,HOLD=1 "$J/demo.sh") && poll 60 grep -q '^summary:' "$J/$holder.out"; then
  a=$(submit_as nobody --gres=gpu:l40s.2:1 --export=ALL,WAIT_FOR=next "$J/half.sh")
  b=$(submit_as nobody --gres=gpu:l40s.2:1 --export=ALL,WAIT_FOR="$a" "$J/half.sh")
  ln -sf "ready.$b" "$U/ready.next" 2>/dev/null   # a waits for b
  ln -sf "done.$b" "$U/done.next" 2>/dev/null
  wait_job "$a"; wait_job "$b"
  touch "$J/release"; wait_job "$holder"
  pa=$(sed -n 's/^phase: //p' "$U/$a.out"); pb=$(sed -n 's/^phase: //p' "$U/$b.out")
  ua=${pa% *}; ub=${pb% *}
  gh=$(sed -n 's/^gpus: //p' "$J/$holder.out")
  if grep -q '^together: yes' "$U/$a.out" && grep -q '^together: yes' "$U/$b.out" && [[ -n $ua && $ua == "$ub" ]] &&
    [[ "$(printf '%s\n' "${pa#* }" "${pb#* }" | sort -n | tr '\n' ' ')" == "0 50 " ]] &&
    grep -q "^user: nobody$" "$U/$a.out" && grep -q "^stamp: nobody 644$" "$U/$a.out" && grep -q "^stamp: nobody 644$" "$U/$b.out" &&
    grep -q "^stamped: yes$" "$U/$a.out" && grep -q "^stamped: yes$" "$U/$b.out" &&
    grep -q "^policy: burst$" "$U/$a.out" && grep -q "^board: $CONF/board$" "$U/$a.out" &&
    grep -qx "slots: $a ${pa#* } 50" "$U/$b.out" && grep -qx "slots: $b ${pb#* } 50" "$U/$a.out" &&
    grep -qx "boardfile: $ua.$a" "$U/$b.out" && grep -qx "boardfile: $ua.$b" "$U/$a.out"; then
    ok "$t: both on $ua at once, windows at ${pa#* } and ${pb#* } %, own stamps (nobody 0644), policy burst"
  else
    bad "$t (a=$a phase=$pa, b=$b phase=$pb, holder gpu=$gh)"
    cat "$U/$a.out" "$U/$b.out" >&2
  fi
  if poll 30 no_job_files "$a" && poll 30 no_job_files "$b"; then
    ok "$t: windows and stamps removed by the epilogs"
  else
    bad "$t: leftovers of $a or $b"; ls -lR "$CONF" >&2; cat "$CONF"/sm-slots/GPU-* >&2
  fi
else
  bad "$t: the whole-GPU holder did not start"
  touch "$J/release"
fi

# ---- 6. an array job: one file per task ---------------------------------------------------------
t="array job (-a 1-2, --gres=gpu:l40s.2:1)"
if arr=$(submit -a 1-2 --gres=gpu:l40s.2:1 "$J/demo.sh") && wait_job "$arr"; then
  good=0
  for out in "$J"/*.out; do
    task=$(sed -n 's/^task: //p' "$out" 2>/dev/null)
    grep -q "^jobfile: ${task}.conf root 644$" "$out" 2>/dev/null || continue
    [[ $(field "$out" total_bytes) == $((24 * GiB)) ]] && good=$((good + 1))
  done
  files=$(grep -h '^jobfile: [0-9]*_[12].conf' "$J"/*.out | awk '{print $2}' | sort -u | wc -l)
  if [[ $good -eq 2 && $files -eq 2 ]]; then ok "$t: two tasks, two files <job>_<task>.conf, 24 GiB each"; else bad "$t (good=$good files=$files)"; fi
else
  bad "$t: submission or run failed"
fi

# ---- 7. nothing is left behind -------------------------------------------------------------------
# Every job of these tests printed "task: <id>_..." (the srun job's output is in $J/srun.out).
all_gone() {
  local id
  for id in $(cat "$J"/*.out "$J"/u/*.out 2>/dev/null | sed -n 's/^task: \([0-9][0-9]*\)_.*/\1/p' | sort -u); do
    no_job_files "$id" || return 1
  done
}
njobs=$(cat "$J"/*.out "$J"/u/*.out 2>/dev/null | sed -n 's/^task: \([0-9][0-9]*\)_.*/\1/p' | sort -u | wc -l)
if poll 30 all_gone; then
  ok "no job file or ledger of the $njobs test jobs left in $CONF"
else
  bad "job files or ledgers left in $CONF:"; ls -lR "$CONF" >&2
fi
state=$(sinfo -h -n "$H" -o %t)
if [[ -n $state && ! $state =~ (drain|drng|down|fail) ]]; then ok "node $H was never drained ($state)"; else bad "node state: $(sinfo -h -n "$H" -o '%t %E')"; fi

echo "slurm tests: $passed passed, $failed failed"
if ((failed > 0)); then
  echo "---- prolog/epilog log" >&2; cat "$S/log/softmig-slurm.log" >&2 2>/dev/null
  exit 1
fi
exit 0
