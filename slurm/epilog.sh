#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# softmig SLURM epilog (slurm.conf: Epilog=/etc/slurm/softmig-epilog.sh).
# Runs as root in slurmd after each job on the node. `softmig slurm epilog` removes the job's
# limits file(s) and its ledger directory. Always exits 0: a node is never drained because
# cleaning up failed (the problem is logged; stale files of finished jobs are harmless, as job
# ids are not reused, and the next prolog of the same id replaces them).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
tool="${SOFTMIG_TOOL:-/usr/local/bin/softmig}"
if [ ! -x "$tool" ]; then
  logger -t softmig-epilog -p daemon.err "job ${SLURM_JOB_ID:-?}: $tool is missing; nothing cleaned" 2>/dev/null
  exit 0
fi
"$tool" slurm epilog
exit 0
