# Compute nodes in Linux network namespaces, for slurm/up.sh and slurm/down.sh (sourced, not run).
#
# Node k (n1, n2, ...) gets namespace hxnK with one veth end named eth0 at SUBNET.(10+k), the other end
# on a host bridge at SUBNET.1, and an /etc/hosts line so its name resolves on the host and in every
# namespace (they share /etc). Everything created is listed in ETC_DIR/netns.list; `netns_down` removes
# exactly what is listed there, and the hosts lines tagged with this STATE_DIR, nothing else.
# Why not `ip netns exec` for the daemons: it remounts /sys and slurmd then finds no /sys/fs/cgroup
# (../shared/notes/multinode-netns.md); `nsenter --net=` enters only the network namespace.

NETNS_LIST=$ETC_DIR/netns.list
SUBNET=${HPCXLT_SLURM_SUBNET:-10.77.0}
BRIDGE=${HPCXLT_SLURM_BRIDGE:-hxbr0}
BRIDGE_ADDR=$SUBNET.1
HOSTS_TAG="# hpcxlt-slurm $STATE_DIR"

node_name() { echo "n$1"; }
node_addr() { echo "$SUBNET.$((10 + $1))"; }
node_netns() { echo "hxn$1"; }

# Create bridge, namespaces, links and hosts entries for nodes 1..COUNT (idempotent).
netns_up() {
    local count=$1 k name ns addr veth
    command -v ip >/dev/null || die "'ip' (iproute2) not found; it is needed for --nodes"
    command -v nsenter >/dev/null && command -v unshare >/dev/null || die "nsenter/unshare (util-linux) not found"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        echo "link $BRIDGE" >>"$NETNS_LIST"
    fi
    ip addr replace "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for ((k = 1; k <= count; k++)); do
        name=$(node_name "$k") ns=$(node_netns "$k") addr=$(node_addr "$k") veth=hxv$k
        if ! ip netns list | grep -qw "^$ns"; then
            ip netns add "$ns"
            echo "netns $ns" >>"$NETNS_LIST"
        fi
        if ! ip link show "$veth" >/dev/null 2>&1; then
            ip -n "$ns" link del eth0 2>/dev/null || true
            ip link add "$veth" type veth peer name eth0 netns "$ns"
            echo "link $veth" >>"$NETNS_LIST"
        fi
        ip link set "$veth" master "$BRIDGE"
        ip link set "$veth" up
        ip -n "$ns" addr replace "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" route replace default via "$BRIDGE_ADDR"
        hosts_set "$addr" "$name"
    done
}

# One "ADDR NAME # tag" line per node in /etc/hosts. Rewritten in place, not renamed: in containers
# /etc/hosts is often a bind mount, which a rename would break.
hosts_set() {
    local addr=$1 name=$2
    { grep -v -F -- " $name $HOSTS_TAG" /etc/hosts || true; echo "$addr $name $HOSTS_TAG"; } >"$ETC_DIR/hosts.tmp"
    cat "$ETC_DIR/hosts.tmp" >/etc/hosts
    rm -f "$ETC_DIR/hosts.tmp"
}

# Start slurmd for node K inside its namespace, with the node's name as host name (own UTS namespace).
start_node_slurmd() {
    local k=$1 name ns
    name=$(node_name "$k") ns=$(node_netns "$k")
    nsenter --net="/run/netns/$ns" unshare --uts sh -c \
        'hostname "$1" && exec slurmd -f "$2" -N "$1"' sh "$name" "$SLURM_CONF_PATH" \
        </dev/null >>"$LOG_DIR/slurmd-$name.out" 2>&1 9>&-
}

# Remove what netns_up created (as listed in NETNS_LIST) and this STATE_DIR's hosts lines.
netns_down() {
    local kind name
    if [[ -f /etc/hosts ]] && grep -qF -- "$HOSTS_TAG" /etc/hosts; then
        grep -v -F -- "$HOSTS_TAG" /etc/hosts >"$ETC_DIR/hosts.tmp" || true
        cat "$ETC_DIR/hosts.tmp" >/etc/hosts
        rm -f "$ETC_DIR/hosts.tmp"
    fi
    [[ -f $NETNS_LIST ]] || return 0
    # links before the bridge they hang on: reverse order of creation
    tac "$NETNS_LIST" | while read -r kind name; do
        case $kind in
            netns) ip netns del "$name" 2>/dev/null && log "removed network namespace $name" || true ;;
            link) ip link del "$name" 2>/dev/null && log "removed link $name" || true ;;
        esac
    done
    rm -f "$NETNS_LIST"
}
