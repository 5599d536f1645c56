#!/bin/sh
# gpusched epilog: release the job in gpusched when Slurm is done with it.
#
# Install as EpilogSlurmctld (run by slurmctld once per job, after the job ends, is
# cancelled or fails to start), so the release happens exactly once per job.  The
# gpusched job id comes from "gpusched:job=<id>,..." in SLURM_JOB_COMMENT, which
# job_submit.lua wrote.  A job gpusched never placed, or one already released (404), is
# fine; any other failure is logged, and the exit status stays 0 so that a service
# outage never drains nodes.
# Settings: gpusched-slurm.conf beside this script (see docs/slurm.md).
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
here=$(dirname "$0")
GPUSCHED_URL=http://127.0.0.1:8787
GPUSCHED_TIMEOUT_S=5
GPUSCHED_CURL=curl
GPUSCHED_HEADER_FILE=
[ -r "$here/gpusched-slurm.conf" ] && . "$here/gpusched-slurm.conf"

job=$(printf '%s' "${SLURM_JOB_COMMENT:-}" | sed -n 's/.*gpusched:job=\([^, ]*\),.*/\1/p')
[ -z "$job" ] && exit 0
case $job in *[!A-Za-z0-9:._-]*) echo "gpusched epilog: odd job id '$job'" >&2; exit 0;; esac

header=
[ -n "$GPUSCHED_HEADER_FILE" ] && header="-H @$GPUSCHED_HEADER_FILE"
status=$("$GPUSCHED_CURL" -sS -o /dev/null -w '%{http_code}' --max-time "$GPUSCHED_TIMEOUT_S" \
         -X POST -H 'Content-Type: application/json' $header \
         -d "{\"job_id\": \"$job\"}" "$GPUSCHED_URL/v1/release")
case $status in
    200|404) exit 0 ;;
    *) echo "gpusched epilog: release of $job (Slurm job ${SLURM_JOB_ID:-?}) answered '$status'" >&2
       exit 0 ;;
esac
