#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Undoes tests/slurm/start_cluster.sh: cancels the test jobs, stops the daemons it started (by
# pid, in the order slurmd, slurmctld, munged), removes the job files and ledgers of its jobs and
# what it created, then its state directory. Safe after a failed start, twice, or with nothing
# running. Exits 0.
set -uo pipefail
S="${SOFTMIG_SLURM_STATE:-/tmp/softmig-slurm}"
[[ $S == /* && $S != / ]] || exit 0
[[ -d "$S" ]] || exit 0

if [[ -s "$S/etc/slurm.conf" && -e "$S/cluster.env" ]]; then
  for user in root nobody; do   # run_tests.sh submits as both
    SLURM_CONF="$S/etc/slurm.conf" timeout 10 scancel --quiet --user=$user >/dev/null 2>&1 || true
  done
fi

stop_pid() {  # stop_pid PID NAME: TERM, wait up to 15 s, then KILL; never a reused pid
  local pid=$1 name=$2 i
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 0
  kill "$pid" 2>/dev/null
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null
}

created="$S/created"
if [[ -f "$created" ]]; then
  for name in slurmd slurmctld munged; do
    while read -r kind pid what; do
      if [[ $kind == pid && $what == "$name" ]]; then stop_pid "$pid" "$name"; fi
    done <"$created"
  done
  # Job steps that outlived our slurmd (only ours can have this state directory in their command).
  for pid in $(ps -C slurmstepd -o pid= 2>/dev/null); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$S"; then kill -9 "$pid" 2>/dev/null; fi
  done
  # Job files and ledgers of our jobs that an epilog did not get to remove: every job of this
  # cluster printed its id ("task: <id>_...") into $S/jobs.
  # Their compute windows and activity stamps too (the daemons are stopped: nobody else
  # updates the tables now).
  for id in $(cat "$S"/jobs/*.out "$S"/jobs/u/*.out 2>/dev/null | sed -n 's/^task: \([0-9][0-9]*\)_.*/\1/p' | sort -u); do
    rm -f "/var/run/softmig/$id.conf" /var/run/softmig/"${id}"_*.conf /var/run/softmig/board/*."$id"
    rm -rf --one-file-system "/var/run/softmig/ledger/$id"
    for table in /var/run/softmig/sm-slots/GPU-*; do
      [[ -f $table ]] && grep -q "^$id " "$table" && sed -i "/^$id /d" "$table"
      [[ -f $table && ! -s $table ]] && rm -f "$table"
    done
  done
  # What start_cluster.sh created, newest first. /var/run/softmig is removed only if empty:
  # other tests' files are not ours to delete.
  while read -r kind what; do
    case $kind in
      node | file) rm -f "$what" ;;
      dir)
        if [[ $what == /var/run/softmig* ]]; then
          # the compute-window tables' lock file is ours when nothing else is left there
          [[ $what == */sm-slots && "$(ls -A "$what" 2>/dev/null)" == .lock ]] && rm -f "$what/.lock"
          rmdir "$what" 2>/dev/null || echo "stop_cluster: $what kept: it holds files that are not ours: $(ls -A "$what" | tr '\n' ' ')"
        else
          rm -rf --one-file-system "$what"
        fi
        ;;
    esac
  done < <(tac "$created" | grep -v '^pid ')
fi
rm -rf --one-file-system "$S"
echo "stop_cluster: stopped and cleaned"
exit 0
