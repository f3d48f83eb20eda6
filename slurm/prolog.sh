#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# softmig SLURM prolog (slurm.conf: Prolog=/etc/slurm/softmig-prolog.sh, PrologFlags=Alloc).
# Runs as root in slurmd before each job on the node, with SLURM's variables and no PATH.
# All logic is in `softmig slurm prolog` (docs/slurm.md): it writes the job's root-owned limits
# file for a GPU-slice job, and nothing for others.
#
# Exit status: 0, unless the node cannot enforce a slice job's limits (the tool is missing, or
# /var/run/softmig is not writable): then non-zero, which makes SLURM drain the node and requeue
# the job instead of running it unlimited. Transient errors (scontrol, NVML) never fail here:
# the tool writes a fail-closed file instead (docs/slurm.md, "Failure modes").
#
# Site settings (optional, set them here or in the environment of slurmd):
#   SOFTMIG_TOOL          the softmig executable      (default /usr/local/bin/softmig)
#   SOFTMIG_SLICES_CONF   the slice table             (default /etc/softmig/slices.conf)
#   SOFTMIG_SLURM_LOG     also append messages here   (default: syslog only)
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
tool="${SOFTMIG_TOOL:-/usr/local/bin/softmig}"
if [ ! -x "$tool" ]; then
  logger -t softmig-prolog -p daemon.err "job ${SLURM_JOB_ID:-?}: $tool is missing; refusing to start jobs here" 2>/dev/null
  exit 1
fi
exec "$tool" slurm prolog
