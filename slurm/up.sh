#!/usr/bin/env bash
# Bring up a private Slurm cluster with accounting on this machine.
#   slurm/up.sh [--nodes N] [STATE_DIR]     (default: $HPCXLT_SLURM_DIR or /tmp/hpcxlt-slurm)
# Starts munged, mariadbd, slurmdbd, slurmctld and slurmd (as root, no systemd),
# waits until the nodes are idle and sacct answers, writes STATE_DIR/env.sh and
# prints `export SLURM_CONF=...`. Idempotent: daemons already running from this
# STATE_DIR are kept, so running it twice leaves one cluster.
# The host's own node serves partitions `low` (default) and `high`. --nodes N (or
# HPCXLT_SLURM_NODES) adds compute nodes n1..nN, each a slurmd in its own network
# namespace with its own address and host name, in partitions `multi` and
# `multi-high`: a real multi-node cluster on one machine (slurm/netns.sh).
# Ports (override with env): HPCXLT_SLURM_DB_PORT (3307), HPCXLT_SLURM_PORT_BASE
# (6817 -> slurmctld 6817, slurmd 6818, slurmdbd 6819); node subnet
# HPCXLT_SLURM_SUBNET (10.77.0, a /24: bridge .1, node k at .10+k).
set -euo pipefail
EXTRA_NODES=${HPCXLT_SLURM_NODES:-}
args=()
while (($#)); do
    case $1 in
        --nodes) EXTRA_NODES=${2:?--nodes needs a number}; shift 2 ;;
        --nodes=*) EXTRA_NODES=${1#--nodes=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]}"
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$SLURM_SCRIPTS_DIR/netns.sh"
[[ -z $EXTRA_NODES || $EXTRA_NODES =~ ^[0-9]$ ]] || die "--nodes must be a number from 0 to 9, got '$EXTRA_NODES'"

CLUSTER=hpcxlt
ACCOUNT=hpcxlt
DB_PORT=${HPCXLT_SLURM_DB_PORT:-3307}
PORT_BASE=${HPCXLT_SLURM_PORT_BASE:-6817}
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
WAIT_S=${HPCXLT_SLURM_WAIT_S:-90}

require_root
for bin in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct sacctmgr scontrol; do
    command -v "$bin" >/dev/null || die "$bin not found; run slurm/install.sh first (make slurm-up does)"
done
take_lock  # fd 9; every daemon below is started with 9>&- so it never inherits the lock

HOST=$(hostname -s)
# Daemons of this STATE_DIR running before this call keep the configuration they were
# started with: rewriting it under them (other ports, say) would point clients elsewhere.
# Decided now, before this call starts anything itself.
was_running=0
if is_running "$MARIADBD_PID" mariadbd || is_running "$SLURMDBD_PID" slurmdbd \
    || is_running "$SLURMCTLD_PID" slurmctld || any_slurmd_running; then
    was_running=1
fi
if [[ -z $EXTRA_NODES ]]; then
    # not given: a running cluster keeps the nodes it has, a stopped one starts with the host's node only
    EXTRA_NODES=0
    if ((was_running)) && [[ -f $SLURM_CONF_PATH ]]; then
        EXTRA_NODES=$(grep -c -E '^NodeName=n[0-9]+ ' "$SLURM_CONF_PATH" || true)
    fi
fi
mkdir -p "$ETC_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/spool/ctld" "$STATE_DIR/spool/d" "$MUNGE_DIR" "$DB_DIR"
# Nodes in namespaces reach the daemons on the host through the bridge address, so the controller
# (and slurmdbd, which jobs reach through sacct) is addressed there; one node alone keeps loopback.
CTLD_ADDR=127.0.0.1
if ((EXTRA_NODES > 0)); then
    netns_up "$EXTRA_NODES"
    CTLD_ADDR=$BRIDGE_ADDR
fi
# munge and mysql users must traverse the folder to reach their own sub-folders.
chmod 0755 "$STATE_DIR"
export SLURM_CONF=$SLURM_CONF_PATH

# Poll CMD until it succeeds or WAIT_S passes; on timeout show LOGFILE's tail.
wait_for() {
    local what=$1 logfile=$2; shift 2
    local deadline=$((SECONDS + WAIT_S))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${WAIT_S}s waiting for $what; last lines of $logfile:"
            tail -n 25 "$logfile" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.5
    done
}

# A port held by anything but our own daemon means another cluster/DB is there.
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
require_port() {
    port_free "$1" || die "TCP port $1 (needed for $2) is in use by another process; stop it or set $3"
}

# ---------------------------------------------------------------- munge
if ! is_running "$MUNGED_PID" munged; then
    chown munge:munge "$MUNGE_DIR"
    # munged refuses a socket/key folder writable by others; clients only traverse it.
    chmod 0711 "$MUNGE_DIR"
    if [[ ! -s $MUNGE_DIR/munge.key ]]; then
        # 1024 random bytes, readable only by munge (munged refuses a looser key).
        head -c 1024 /dev/urandom >"$MUNGE_DIR/munge.key.tmp"
        mv "$MUNGE_DIR/munge.key.tmp" "$MUNGE_DIR/munge.key"
    fi
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 0400 "$MUNGE_DIR/munge.key"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGED_PID"
    log "starting munged"
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --pid-file="$MUNGED_PID" --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" 9>&- \
        || { tail -n 20 "$MUNGE_DIR/munged.log" >&2 2>/dev/null; die "munged failed to start"; }
    wait_for munged "$MUNGE_DIR/munged.log" is_running "$MUNGED_PID" munged
fi
# ---------------------------------------------------------------- MariaDB
if [[ ! -s $ETC_DIR/db.pass ]]; then
    (umask 077; head -c 1024 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 24 >"$ETC_DIR/db.pass.tmp")
    mv "$ETC_DIR/db.pass.tmp" "$ETC_DIR/db.pass"
fi
chmod 0600 "$ETC_DIR/db.pass"
DB_PASS=$(cat "$ETC_DIR/db.pass")

if ! is_running "$MARIADBD_PID" mariadbd; then
    require_port "$DB_PORT" "the private MariaDB" HPCXLT_SLURM_DB_PORT
    chown mysql:mysql "$DB_DIR"
    chmod 0750 "$DB_DIR"
    if [[ ! -d $DB_DIR/data/mysql ]]; then
        log "initialising MariaDB in $DB_DIR/data"
        rm -rf "$DB_DIR/data"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR/data" \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG_DIR/mariadb-install-db.log" 2>&1 \
            || { tail -n 20 "$LOG_DIR/mariadb-install-db.log" >&2; die "mariadb-install-db failed"; }
    fi
    rm -f "$DB_SOCKET" "$MARIADBD_PID"
    log "starting mariadbd on 127.0.0.1:$DB_PORT"
    # mariadbd does not daemonise itself: detach it from this shell and the CI job's tty.
    setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DIR/data" --socket="$DB_SOCKET" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$MARIADBD_PID" \
        --log-error="$LOG_DIR/mariadbd.log" --innodb-lock-wait-timeout=900 \
        </dev/null >>"$LOG_DIR/mariadbd.out" 2>&1 9>&- &
    wait_for mariadbd "$LOG_DIR/mariadbd.log" mariadb-admin --no-defaults --socket="$DB_SOCKET" ping
fi
# The slurm DB user; re-applied every time so a changed db.pass always matches.
mariadb --no-defaults --socket="$DB_SOCKET" -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

# ---------------------------------------------------------------- configuration
# Node line straight from the hardware slurmd sees (CPUs, sockets, cores, memory).
NODE_LINE=$(slurmd -C | grep '^NodeName=')
NODE=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$NODE_LINE")

render() {
    sed -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" \
        -e "s|@MAX_ARRAY_SIZE@|10001|g" -e "s|@MAX_JOB_COUNT@|50000|g" \
        -e "s|@NODE_LINE@|$NODE_LINE|g" -e "s|@NODE@|$NODE|g" -e "s|@CTLD_ADDR@|$CTLD_ADDR|g" \
        "$SLURM_SCRIPTS_DIR/templates/$1"
    [[ $1 == slurm.conf.in ]] && ((EXTRA_NODES > 0)) && extra_nodes_conf
    return 0
}
# Nodes n1..nN: the same hardware line as the host's node (they share its CPUs and memory), their own
# address; partitions of their own so one-node jobs never land there by default.
extra_nodes_conf() {
    local k names=()
    echo
    echo "# Compute nodes in network namespaces (slurm/up.sh --nodes $EXTRA_NODES, slurm/netns.sh)"
    for ((k = 1; k <= EXTRA_NODES; k++)); do
        echo "${NODE_LINE/NodeName=$NODE /NodeName=$(node_name "$k") } NodeAddr=$(node_addr "$k") State=UNKNOWN"
        names+=("$(node_name "$k")")
    done
    local list
    list=$(IFS=,; echo "${names[*]}")
    echo "PartitionName=multi Nodes=$list PriorityTier=1 GraceTime=60 MaxTime=INFINITE State=UP"
    echo "PartitionName=multi-high Nodes=$list PriorityTier=10 PreemptMode=OFF MaxTime=INFINITE State=UP"
}
# Write atomically (tmp + rename) with the mode set before the file appears.
install_conf() {
    local src=$1 dst=$2 mode=$3
    render "$src" >"$dst.tmp"
    chmod "$mode" "$dst.tmp"
    if [[ -f $dst ]] && cmp -s "$dst.tmp" "$dst"; then
        rm -f "$dst.tmp" "$dst.new"
    elif [[ -f $dst ]] && ((was_running)); then
        mv "$dst.tmp" "$dst.new"
        log "NOTE: $dst differs from what this run would write ($dst.new); the running cluster keeps" \
            "its configuration. Run slurm/down.sh then slurm/up.sh to apply the new one."
    else
        mv "$dst.tmp" "$dst"
        rm -f "$dst.new"
    fi
}
install_conf slurm.conf.in "$SLURM_CONF_PATH" 0644
# slurmdbd refuses a slurmdbd.conf readable by others; it must sit beside slurm.conf.
install_conf slurmdbd.conf.in "$ETC_DIR/slurmdbd.conf" 0600

# ---------------------------------------------------------------- slurmdbd + accounting
if ! is_running "$SLURMDBD_PID" slurmdbd; then
    require_port "$DBD_PORT" slurmdbd HPCXLT_SLURM_PORT_BASE
    log "starting slurmdbd"
    slurmdbd </dev/null >>"$LOG_DIR/slurmdbd.out" 2>&1 9>&- || { tail -n 20 "$LOG_DIR/slurmdbd.log" >&2; die "slurmdbd failed to start"; }
    wait_for slurmdbd "$LOG_DIR/slurmdbd.log" sacctmgr -n show cluster
fi
# Register cluster, account and the users who submit, so jobs carry an association.
if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! sacctmgr -n -P show account format=account | grep -qx "$ACCOUNT"; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="hpcxlt tests" organization=hpcxlt >/dev/null
fi
for user in root ${SUDO_USER:-} ${HPCXLT_SLURM_USERS:-}; do
    if ! sacctmgr -n -P show assoc cluster="$CLUSTER" user="$user" format=user | grep -qx "$user"; then
        sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    fi
done

# ---------------------------------------------------------------- slurmctld + slurmd
if ! is_running "$SLURMCTLD_PID" slurmctld; then
    require_port "$CTLD_PORT" slurmctld HPCXLT_SLURM_PORT_BASE
    log "starting slurmctld"
    slurmctld -f "$SLURM_CONF_PATH" </dev/null >>"$LOG_DIR/slurmctld.out" 2>&1 9>&- \
        || { tail -n 20 "$LOG_DIR/slurmctld.log" >&2; die "slurmctld failed to start"; }
    wait_for slurmctld "$LOG_DIR/slurmctld.log" scontrol ping
fi
if ! is_running "$(slurmd_pid "$NODE")" slurmd; then
    require_port "$SLURMD_PORT" slurmd HPCXLT_SLURM_PORT_BASE
    log "starting slurmd for node $NODE"
    mkdir -p "$STATE_DIR/spool/d/$NODE"
    slurmd -f "$SLURM_CONF_PATH" -N "$NODE" </dev/null >>"$LOG_DIR/slurmd.out" 2>&1 9>&- \
        || { tail -n 20 "$LOG_DIR/slurmd-$NODE.log" >&2; die "slurmd failed to start"; }
fi
NODES=("$NODE")
for ((k = 1; k <= EXTRA_NODES; k++)); do
    name=$(node_name "$k")
    grep -q "^NodeName=$name " "$SLURM_CONF_PATH" \
        || die "the running cluster's slurm.conf has no node $name; run slurm/down.sh, then slurm/up.sh --nodes $EXTRA_NODES"
    NODES+=("$name")
    if ! is_running "$(slurmd_pid "$name")" slurmd; then
        log "starting slurmd for node $name ($(node_addr "$k"), network namespace $(node_netns "$k"))"
        mkdir -p "$STATE_DIR/spool/d/$name"
        start_node_slurmd "$k" || { tail -n 20 "$LOG_DIR/slurmd-$name.log" >&2; die "slurmd for $name failed to start"; }
    fi
done

# ---------------------------------------------------------------- ready?
# Usable = idle, or busy with jobs kept from before a restart; never down/drained
# and never "not responding" (sinfo appends '*').
node_usable() {
    local state
    state=$(sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1)
    [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}
deadline=$((SECONDS + WAIT_S))
for node in "${NODES[@]}"; do
    until node_usable "$node"; do
        state=$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -n 1 || true)
        # A node left down/drained by an unclean stop: resume it once slurmd answers.
        if [[ $state =~ ^(down|drained|draining)$ ]]; then
            scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
        fi
        if ((SECONDS >= deadline)); then
            log "node $node not usable after ${WAIT_S}s (state: ${state:-none}); last lines of slurmd-$node.log:"
            tail -n 25 "$LOG_DIR/slurmd-$node.log" >&2 || true
            scontrol show node "$node" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
done
wait_for sacct "$LOG_DIR/slurmdbd.log" sacct -n -X -a

printf "export SLURM_CONF=%q\n" "$SLURM_CONF_PATH" >"$STATE_DIR/env.sh.tmp"
mv "$STATE_DIR/env.sh.tmp" "$STATE_DIR/env.sh"
log "cluster '$CLUSTER' is up: nodes ${NODES[*]}; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
log "clients need SLURM_CONF; run: source $STATE_DIR/env.sh"
echo "export SLURM_CONF=$SLURM_CONF_PATH"
