#!/usr/bin/env bash
# Ingest on one Redis against ingest on a local Redis Cluster, in one run
# (issue 14, item 8): fitsync-bench uploading as fast as acks come back
# (closed loop, --inflight 4 per uploader) to
#   a. fitsyncd with its embedded Redis (shards 16),
#   b. fitsyncd on a 3-primary cluster (1 replica each), redis.wait_replicas 1,
#   c. the same cluster, redis.wait_replicas 0 (acknowledged on the primary's word),
#   d. fitsyncd on a 1-primary cluster (1 replica), wait_replicas 1,
# each DURATION seconds, RUNS times, medians; prints a Markdown table.
#
#   tools/bench-cluster.sh [--runs N] [--duration S] [--uploaders N] [--build-dir build]
#
# On this project's 2-core machines every node, fitsyncd and the client share
# the same two cores: the figures show what routing, WAIT and replication cost
# per upload, not how a cluster of separate machines scales.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3 DUR=15 UP=20 BUILD=build
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --uploaders) UP=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
TMP=$(mktemp -d /tmp/fitsync-bench-cluster.XXXXXX)
PORT=$((20000 + $$ % 10000))
export FITSYNC_TOKEN_SECRET=bench-cluster-$$
SRV=
cleanup() {
    [[ -n $SRV ]] && kill "$SRV" 2>/dev/null && wait "$SRV" 2>/dev/null
    for d in "$TMP"/cluster*; do [[ -d $d ]] && tools/redis-cluster.sh stop "$d" >/dev/null 2>&1; done
    rm -rf "$TMP"
}
trap cleanup EXIT
log() { echo "bench-cluster: $*" >&2; }

# run NAME [ENV=VALUE...]: fitsyncd with that environment, fitsync-bench against it; prints acks/s.
run() {
    local name=$1 dir=$TMP/$1.$2
    shift 2
    mkdir -p "$dir"
    env "$@" FITSYNC_SHARDS=16 FITSYNC_RATE_MESSAGES_PER_S=100000 FITSYNC_RATE_BURST=100000 \
        "$BUILD/fitsyncd" --port $PORT --data-dir "$dir/data" >"$dir/server.log" 2>&1 &
    SRV=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    "$BUILD/fitsync-bench" --port $PORT --data-dir "$dir/none" --connections "$UP" --uploaders "$UP" \
        --inflight 4 --upload-rate 0 --spread-days 42 --duration "$DUR" --ramp 0 --json "$dir/out.json" \
        >"$dir/bench.txt" 2>&1 || log "$name: fitsync-bench reported errors (see $dir/bench.txt)"
    kill "$SRV" && wait "$SRV" 2>/dev/null || true
    SRV=
    PORT=$((PORT + 1))
    jq -r '[.items_per_s, .ack_latency_ms.p50, .ack_latency_ms.p99] | @tsv' "$dir/out.json"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -A RES
for r in $(seq "$RUNS"); do
    log "run $r: one Redis (embedded)"
    RES[one]+="$(run one "$r")"$'\n'
    CLUSTER_PRIMARIES=3 tools/redis-cluster.sh start "$TMP/cluster3" >/dev/null
    seeds=$(tools/redis-cluster.sh seeds "$TMP/cluster3")
    log "run $r: 3 primaries, wait_replicas 1"
    RES[c3w1]+="$(run c3w1 "$r" FITSYNC_REDIS_CLUSTER="$seeds" FITSYNC_REDIS_WAIT_REPLICAS=1)"$'\n'
    log "run $r: 3 primaries, wait_replicas 0"
    RES[c3w0]+="$(run c3w0 "$r" FITSYNC_REDIS_CLUSTER="$seeds" FITSYNC_REDIS_WAIT_REPLICAS=0)"$'\n'
    tools/redis-cluster.sh stop "$TMP/cluster3" >/dev/null
    rm -rf "$TMP/cluster3"
    CLUSTER_PRIMARIES=1 tools/redis-cluster.sh start "$TMP/cluster1" >/dev/null
    seeds=$(tools/redis-cluster.sh seeds "$TMP/cluster1")
    log "run $r: 1 primary, wait_replicas 1"
    RES[c1w1]+="$(run c1w1 "$r" FITSYNC_REDIS_CLUSTER="$seeds" FITSYNC_REDIS_WAIT_REPLICAS=1)"$'\n'
    tools/redis-cluster.sh stop "$TMP/cluster1" >/dev/null
    rm -rf "$TMP/cluster1"
done

echo "| setup | uploads acked /s | ack p50 ms | ack p99 ms |"
echo "| --- | --- | --- | --- |"
for k in one c1w1 c3w1 c3w0; do
    case $k in
    one) label="one Redis (embedded)" ;;
    c1w1) label="cluster, 1 primary + 1 replica, wait_replicas 1" ;;
    c3w1) label="cluster, 3 primaries + 3 replicas, wait_replicas 1" ;;
    c3w0) label="cluster, 3 primaries + 3 replicas, wait_replicas 0" ;;
    esac
    rows=$(printf '%s' "${RES[$k]}" | sed '/^$/d')
    printf '| %s | %.0f | %.1f | %.1f |\n' "$label" \
        "$(cut -f1 <<<"$rows" | median)" "$(cut -f2 <<<"$rows" | median)" "$(cut -f3 <<<"$rows" | median)"
done
