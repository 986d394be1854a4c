# Shared by slurm/up.sh and slurm/down.sh (sourced, not run): paths under one
# private state folder and pid-file helpers that only ever touch our own daemons.

if [[ ${1:-} == -* ]]; then
    # Usage = the script's header comment.
    sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
    [[ $1 == -h || $1 == --help ]] && exit 0
    exit 2
fi
STATE_DIR=${1:-${HPCXLT_SLURM_DIR:-/tmp/hpcxlt-slurm}}
# Absolute path: the daemons are started from other working directories.
case $STATE_DIR in /*) ;; *) STATE_DIR=$PWD/$STATE_DIR ;; esac
STATE_DIR=${STATE_DIR%/}

SLURM_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ETC_DIR=$STATE_DIR/etc
RUN_DIR=$STATE_DIR/run
LOG_DIR=$STATE_DIR/log
MUNGE_DIR=$STATE_DIR/munge
DB_DIR=$STATE_DIR/mysql
SLURM_CONF_PATH=$ETC_DIR/slurm.conf
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
DB_SOCKET=$DB_DIR/mariadbd.sock

MUNGED_PID=$MUNGE_DIR/munged.pid
MARIADBD_PID=$DB_DIR/mariadbd.pid
SLURMDBD_PID=$RUN_DIR/slurmdbd.pid
SLURMCTLD_PID=$RUN_DIR/slurmctld.pid
# one slurmd per node: SlurmdPidFile=.../run/slurmd-%n.pid
slurmd_pid() { echo "$RUN_DIR/slurmd-$1.pid"; }

log() { echo "slurm/$(basename "$0"): $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (the daemons run as root and munged/mariadbd drop to their users)"
}

# Pid from PIDFILE if that process is alive, is the daemon we expect (comm), and
# belongs to this state folder (STATE_DIR in its command line or environment).
# Guards against stale pid files whose pid was reused by a foreign process.
our_pid() {
    local pidfile=$1 want=$2 pid comm
    [[ -r $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    # slurm binaries are reached through Debian alternatives (slurmctld -> slurmctld-wlm).
    [[ $comm == "$want" || $comm == "$want-wlm" ]] || return 1
    if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR" \
        || tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qF -- "SLURM_CONF=$SLURM_CONF_PATH"; then
        echo "$pid"
        return 0
    fi
    return 1
}

is_running() { our_pid "$1" "$2" >/dev/null; }

any_slurmd_running() {
    local pidfile
    for pidfile in "$RUN_DIR"/slurmd-*.pid; do
        is_running "$pidfile" slurmd && return 0
    done
    return 1
}

# Serialise up/down on one state folder (two `make slurm-up` at once).
take_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock -w 120 9 || die "another slurm/up.sh or down.sh holds $STATE_DIR/.lock"
}
