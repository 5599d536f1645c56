#!/bin/sh
# gpusched prolog: apply the GPU power cap job_submit.lua recorded for this job.
#
# As Prolog (run by slurmd on each node of the job) it runs GPUSCHED_CAP_COMMAND once on
# this node; as PrologSlurmctld (run by slurmctld once per job) it runs it once per node
# of the job, so the command must reach the node itself (ssh, a BMC, a DCGM endpoint).
# In the command {cap_w} becomes the cap in watts and {node} the node's name; the
# default is `nvidia-smi -pl {cap_w}` (every GPU of the node).
#
# The cap comes from "gpusched:job=<id>,cap_w=<W>" in SLURM_JOB_COMMENT, or, where the
# environment lacks it, from the job's AdminComment through `scontrol show job`.
# A job gpusched did not place is left alone.  A cap that cannot be applied fails the
# prolog, so Slurm requeues the job rather than run it over the site's power budget.
# Settings: gpusched-slurm.conf beside this script (see docs/slurm.md).
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
here=$(dirname "$0")
GPUSCHED_CAP_COMMAND='nvidia-smi -pl {cap_w}'
GPUSCHED_SCONTROL=scontrol
[ -r "$here/gpusched-slurm.conf" ] && . "$here/gpusched-slurm.conf"
# slurmctld and slurmd run this with a bare environment: scontrol finds the controller
# through the slurm.conf this script sits beside
if [ -z "${SLURM_CONF:-}" ] && [ -r "$here/slurm.conf" ]; then
    export SLURM_CONF="$here/slurm.conf"
fi

tag=$(printf '%s' "${SLURM_JOB_COMMENT:-}" | sed -n 's/.*gpusched:job=[^, ]*,cap_w=\([0-9][0-9]*\).*/\1/p')
if [ -z "$tag" ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    tag=$("$GPUSCHED_SCONTROL" show job -o "$SLURM_JOB_ID" 2>/dev/null |
          sed -n 's/.*AdminComment=gpusched:job=[^, ]*,cap_w=\([0-9][0-9]*\).*/\1/p')
fi
[ -z "$tag" ] && exit 0
cap_w=$tag

apply() {  # $1: node name
    cmd=$(printf '%s' "$GPUSCHED_CAP_COMMAND" | sed "s/{cap_w}/$cap_w/g; s/{node}/$1/g")
    if ! sh -c "$cmd"; then
        echo "gpusched prolog: job ${SLURM_JOB_ID:-?}: '$cmd' failed" >&2
        return 1
    fi
}

if [ "${SLURM_SCRIPT_CONTEXT:-}" = prolog_slurmctld ]; then
    if ! nodes=$("$GPUSCHED_SCONTROL" show hostnames "$SLURM_JOB_NODELIST"); then
        echo "gpusched prolog: job ${SLURM_JOB_ID:-?}: cannot expand $SLURM_JOB_NODELIST" >&2
        exit 1
    fi
    for node in $nodes; do
        apply "$node" || exit 1
    done
else
    apply "$(hostname -s)" || exit 1
fi
exit 0
