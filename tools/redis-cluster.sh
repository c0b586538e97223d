#!/usr/bin/env bash
# A real Redis Cluster on this machine, for tests and `make run-cluster`:
# 3 primaries with 1 replica each (Debian's redis-server 7.0), on free local
# ports, AOF on, cluster-node-timeout short enough for failover tests.
#
#   tools/redis-cluster.sh start DIR    start (or reuse) the cluster in DIR; prints the seed list
#   tools/redis-cluster.sh stop DIR     stop every node started in DIR (SHUTDOWN, then SIGKILL)
#   tools/redis-cluster.sh status DIR   cluster_state and the nodes, one line each
#   tools/redis-cluster.sh seeds DIR    the seed list (host:port,host:port,...)
#   tools/redis-cluster.sh wait DIR     until cluster_state is ok everywhere and every replica
#                                       is in sync with its primary (after a node restarts)
#
# Environment: CLUSTER_PRIMARIES (3), CLUSTER_REPLICAS (1 per primary),
# CLUSTER_NODE_TIMEOUT_MS (2000), CLUSTER_HOST (127.0.0.1).
# Each node lives in DIR/<port>/ (nodes.conf, AOF, log); DIR/ports lists them.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || { sed -n '2,13p' "$0" >&2; exit 2; }
primaries=${CLUSTER_PRIMARIES:-3}
replicas=${CLUSTER_REPLICAS:-1}
timeout_ms=${CLUSTER_NODE_TIMEOUT_MS:-2000}
host=${CLUSTER_HOST:-127.0.0.1}

die() { echo "redis-cluster: $*" >&2; exit 1; }

# A TCP port nothing listens on, whose cluster bus port (+10000) is free too. Both
# stay below the kernel's ephemeral range (ip_local_port_range, 32768.. by default),
# where an outgoing connection's local port could take them.
free_port() {
    local p lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for _ in $(seq 1 200); do
        p=$((11000 + RANDOM % (lo - 10000 - 11000)))
        if ! (exec 3<>"/dev/tcp/$host/$p") 2>/dev/null && ! (exec 3<>"/dev/tcp/$host/$((p + 10000))") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

cli() { redis-cli -h "$host" -p "$1" "${@:2}"; }

ports() { [[ -f $dir/ports ]] && cat "$dir/ports"; }

seeds() { ports | sed "s/^/$host:/" | paste -sd, -; }

cluster_ok() {
    local p
    for p in $(ports); do
        cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
}

start() {
    command -v redis-server >/dev/null || die "redis-server is not installed (tools/bootstrap.sh)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f $dir/ports ]] && cluster_ok; then
        seeds
        return 0
    fi
    [[ -f $dir/ports ]] && stop >/dev/null 2>&1 || true
    local n=$((primaries * (1 + replicas))) p nodes=()
    : >"$dir/ports"
    for _ in $(seq 1 "$n"); do
        local up=0
        for _try in 1 2 3 4 5; do # a port taken between the check and the bind: another one
            p=$(free_port)
            mkdir -p "$dir/$p"
            redis-server --port "$p" --bind "$host" --dir "$dir/$p" --cluster-enabled yes \
                --cluster-config-file nodes.conf --cluster-node-timeout "$timeout_ms" \
                --appendonly yes --appendfsync everysec --save "" --daemonize yes \
                --pidfile "$dir/$p/redis.pid" --logfile "$dir/$p/redis.log" \
                --protected-mode no --cluster-require-full-coverage no >/dev/null
            for _ in $(seq 1 100); do cli "$p" ping 2>/dev/null | grep -q PONG && { up=1; break; }; sleep 0.05; done
            ((up)) && break
            rm -rf "${dir:?}/$p"
        done
        ((up)) || die "a node did not start (see the redis.log files in $dir)"
        echo "$p" >>"$dir/ports"
        nodes+=("$host:$p")
    done
    if ((primaries >= 3)); then
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 ||
            { cat "$dir/create.log" >&2; die "redis-cli --cluster create failed"; }
    else
        # redis-cli --cluster create wants 3 primaries; fewer (to measure 1 against 3) by hand.
        local all first i=0 per=$((16384 / primaries)) lo hi id
        mapfile -t all < <(ports)
        first=${all[0]}
        for p in "${all[@]:1}"; do cli "$first" cluster meet "$host" "$p" >/dev/null; done
        for ((i = 0; i < primaries; i++)); do
            lo=$((i * per)); hi=$(((i + 1) * per - 1)); ((i == primaries - 1)) && hi=16383
            cli "${all[$i]}" cluster addslotsrange "$lo" "$hi" >/dev/null
        done
        for _ in $(seq 1 100); do
            (($(cli "$first" cluster nodes | wc -l) >= n)) && break
            sleep 0.1
        done
        for ((i = primaries; i < n; i++)); do
            id=$(cli "${all[$(((i - primaries) % primaries))]}" cluster myid)
            for _ in $(seq 1 50); do
                cli "${all[$i]}" cluster replicate "$id" 2>/dev/null | grep -q OK && break
                sleep 0.1
            done
        done
    fi
    for _ in $(seq 1 200); do cluster_ok && break; sleep 0.1; done
    cluster_ok || die "cluster_state is not ok after 20 s"
    settle
    seeds
}

# Every replica attached and in sync (WAIT counts only those), cluster_state ok on every node.
replicas_synced() {
    local p info slaves=0
    for p in $(ports); do
        info=$(cli "$p" info replication 2>/dev/null | tr -d '\r') || return 1
        if grep -q '^role:slave' <<<"$info"; then
            grep -q '^master_link_status:up' <<<"$info" || return 1
            grep -q '^master_sync_in_progress:0' <<<"$info" || return 1
            slaves=$((slaves + 1))
        fi
    done
    ((slaves >= primaries * replicas))
}

settle() {
    for _ in $(seq 1 300); do
        cluster_ok && replicas_synced && return 0
        sleep 0.1
    done
    die "the cluster did not settle in 30 s (cluster_state, replicas in sync)"
}

stop() {
    [[ -d $dir ]] || return 0
    local p pid
    for p in $(ports); do
        cli "$p" shutdown nosave >/dev/null 2>&1 || true
    done
    for p in $(ports); do
        pid=$(cat "$dir/$p/redis.pid" 2>/dev/null || true)
        [[ -n $pid ]] || continue
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$dir/ports"
}

status() {
    local p first
    first=$(ports | head -1)
    [[ -n $first ]] || { echo "no cluster in $dir"; return 1; }
    cli "$first" cluster info | grep -E '^cluster_(state|known_nodes|size):' | tr -d '\r'
    cli "$first" cluster nodes | awk '{print $2, $3, $9, $10, $11}' | sed 's/@[0-9]*//' | sort
}

case $cmd in
start) start ;;
stop) stop ;;
status) status ;;
seeds) seeds ;;
wait) settle ;;
*) die "unknown command $cmd (start, stop, status, seeds, wait)" ;;
esac
