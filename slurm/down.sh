#!/usr/bin/env bash
# Stop the private cluster that slurm/up.sh started from STATE_DIR.
#   slurm/down.sh [STATE_DIR]     (default: $HPCXLT_SLURM_DIR or /tmp/hpcxlt-slurm)
# Cancels the cluster's jobs, then stops every slurmd, slurmctld, slurmdbd, mariadbd and
# munged by the pids in their pid files, and removes the network namespaces, links and
# /etc/hosts lines that `up.sh --nodes N` created. A pid is signalled only if /proc/PID/comm
# names the expected daemon and the process belongs to STATE_DIR, so a stale pid
# file never kills a foreign process. State (job ids, accounting) is kept; remove
# STATE_DIR after `down` for a fresh cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$SLURM_SCRIPTS_DIR/netns.sh"

TERM_WAIT_S=${HPCXLT_SLURM_STOP_WAIT_S:-30}

require_root
if [[ ! -d $STATE_DIR ]]; then
    log "nothing to stop: $STATE_DIR does not exist"
    exit 0
fi
take_lock
export SLURM_CONF=$SLURM_CONF_PATH

# TERM the daemon, wait up to TERM_WAIT_S for it to exit, then KILL.
stop_daemon() {
    local pidfile=$1 comm=$2 pid deadline
    if ! pid=$(our_pid "$pidfile" "$comm"); then
        log "$comm: not running from $STATE_DIR"
        return 0
    fi
    log "stopping $comm (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TERM_WAIT_S))
    while [[ -e /proc/$pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm"* ]]; do
        if ((SECONDS >= deadline)); then
            log "$comm (pid $pid) ignored SIGTERM for ${TERM_WAIT_S}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
}

# Cancel jobs first, while slurmctld and slurmd can still clean up their processes.
if is_running "$SLURMCTLD_PID" slurmctld; then
    jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ' || true)
    if [[ -n ${jobs// /} ]]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086  # one argument per job id
        scancel $jobs 2>/dev/null || true
        deadline=$((SECONDS + TERM_WAIT_S))
        while [[ -n $(squeue -h -o '%A' 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.5; done
        [[ -z $(squeue -h -o '%A' 2>/dev/null) ]] || log "some jobs still listed after ${TERM_WAIT_S}s; stopping anyway"
    fi
fi

for pidfile in "$RUN_DIR"/slurmd-*.pid; do
    [[ -e $pidfile ]] && stop_daemon "$pidfile" slurmd
done
stop_daemon "$SLURMCTLD_PID" slurmctld
stop_daemon "$SLURMDBD_PID" slurmdbd
stop_daemon "$MARIADBD_PID" mariadbd
stop_daemon "$MUNGED_PID" munged
# namespaces, links and hosts lines of `up.sh --nodes N`; nothing else
netns_down
log "stopped the cluster in $STATE_DIR (state kept)"
