#!/usr/bin/env bash
# Ingest on one Redis against ingest on a local Redis Cluster, in one run
# (issue 14, item 8): fitsync-bench uploading as fast as acks come back
# (closed loop, --inflight 4 per uploader) to
#   a. fitsyncd with its embedded Redis (shards 16),
#   b. fitsyncd on a 3-primary cluster (1 replica each), redis.wait_replicas 1,
#   c. the same cluster, redis.wait_replicas 0 (acknowledged on the primary's word),
#   d. fitsyncd on a 1-primary cluster (1 replica), wait_replicas 1,
# each DURATION seconds, RUNS times, medians; and beside each its ceiling:
# redis-benchmark of the very FCALL fit_activity_put an upload makes (captured
# with MONITOR, member and client_id randomised), pipelined, against every
# primary at once (each with a shard tag it owns), summed. Prints a Markdown table.
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
    CEIL=$(ceiling "$dir" "${CEIL_CLUSTER:-}")
    kill "$SRV" && wait "$SRV" 2>/dev/null || true
    SRV=
    PORT=$((PORT + 1))
    printf '%s\t%s\n' "$(jq -r '[.items_per_s, .ack_latency_ms.p50, .ack_latency_ms.p99] | @tsv' "$dir/out.json")" "$CEIL"
}

# ceiling DIR CLUSTER_DIR|"": the Functions ceiling (FCALL/s), fitsyncd running on $PORT.
ceiling() {
    local dir=$1 cdir=$2 p k line targets=() rps total=0
    if [[ -n $cdir ]]; then
        for p in $(tools/redis-cluster.sh seeds "$cdir" | tr ',' '\n' | cut -d: -f2); do
            redis-cli -p "$p" info replication | grep -q '^role:master' && targets+=("-h 127.0.0.1 -p $p")
        done
    else
        targets=("-s $dir/data/redis.sock")
    fi
    local m=0
    for t in "${targets[@]}"; do
        # shellcheck disable=SC2086
        timeout 3 redis-cli $t MONITOR >"$dir/monitor.$((m++)).txt" 2>/dev/null &
    done
    sleep 0.3
    "$BUILD/fitsync-bench" --port $PORT --data-dir "$dir/none" --connections 1 --uploaders 1 \
        --upload-rate 5 --duration 0.3 --drain-ms 0 >/dev/null 2>&1 || true
    wait
    line=$(cat "$dir"/monitor.*.txt | grep -m1 '"fit_activity_put"' || true)
    [[ -n $line ]] || { log "no FCALL fit_activity_put seen by MONITOR"; echo 0; return; }
    mapfile -t args < <(printf '%s\n' "$line" | node tools/monitor-args.mjs)
    local i=0 pids=()
    for t in "${targets[@]}"; do
        # A shard tag this primary owns (any other answers MOVED).
        local a=("${args[@]}")
        if [[ -n $cdir ]]; then
            for k in $(seq 0 2000); do
                # shellcheck disable=SC2086
                redis-cli $t exists "fit:{s$k}:x" | grep -q MOVED || break
            done
            a[3]=$(sed -E "s/\{s[0-9]+\}/{s$k}/" <<<"${a[3]}")
        fi
        # shellcheck disable=SC2086
        redis-benchmark $t -n 20000 -c 8 -P 16 -r 100000000 -q "${a[@]}" >"$dir/rb.$i.txt" 2>&1 &
        pids+=($!)
        i=$((i + 1))
    done
    wait "${pids[@]}"
    for f in "$dir"/rb.*.txt; do
        rps=$(tr '\r' '\n' <"$f" | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
        total=$(awk -v a="$total" -v b="${rps:-0}" 'BEGIN {print a + b}')
    done
    echo "$total"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

declare -A RES
for r in $(seq "$RUNS"); do
    log "run $r: one Redis (embedded)"
    RES[one]+="$(run one "$r")"$'\n'
    CLUSTER_PRIMARIES=3 tools/redis-cluster.sh start "$TMP/cluster3" >/dev/null
    seeds=$(tools/redis-cluster.sh seeds "$TMP/cluster3")
    log "run $r: 3 primaries, wait_replicas 1"
    RES[c3w1]+="$(CEIL_CLUSTER=$TMP/cluster3 run c3w1 "$r" FITSYNC_REDIS_CLUSTER="$seeds" FITSYNC_REDIS_WAIT_REPLICAS=1)"$'\n'
    log "run $r: 3 primaries, wait_replicas 0"
    RES[c3w0]+="$(CEIL_CLUSTER=$TMP/cluster3 run c3w0 "$r" FITSYNC_REDIS_CLUSTER="$seeds" FITSYNC_REDIS_WAIT_REPLICAS=0)"$'\n'
    tools/redis-cluster.sh stop "$TMP/cluster3" >/dev/null
    rm -rf "$TMP/cluster3"
    CLUSTER_PRIMARIES=1 tools/redis-cluster.sh start "$TMP/cluster1" >/dev/null
    seeds=$(tools/redis-cluster.sh seeds "$TMP/cluster1")
    log "run $r: 1 primary, wait_replicas 1"
    RES[c1w1]+="$(CEIL_CLUSTER=$TMP/cluster1 run c1w1 "$r" FITSYNC_REDIS_CLUSTER="$seeds" FITSYNC_REDIS_WAIT_REPLICAS=1)"$'\n'
    tools/redis-cluster.sh stop "$TMP/cluster1" >/dev/null
    rm -rf "$TMP/cluster1"
done

echo "| setup | uploads acked /s | ack p50 ms | ack p99 ms | ceiling FCALL/s (all primaries) | ratio to the ceiling |"
echo "| --- | --- | --- | --- | --- | --- |"
for k in one c1w1 c3w1 c3w0; do
    case $k in
    one) label="one Redis (embedded)" ;;
    c1w1) label="cluster, 1 primary + 1 replica, wait_replicas 1" ;;
    c3w1) label="cluster, 3 primaries + 3 replicas, wait_replicas 1" ;;
    c3w0) label="cluster, 3 primaries + 3 replicas, wait_replicas 0" ;;
    esac
    rows=$(printf '%s' "${RES[$k]}" | sed '/^$/d')
    ing=$(cut -f1 <<<"$rows" | median)
    ceil=$(cut -f4 <<<"$rows" | median)
    printf '| %s | %.0f | %.1f | %.1f | %.0f | %s |\n' "$label" "$ing" \
        "$(cut -f2 <<<"$rows" | median)" "$(cut -f3 <<<"$rows" | median)" "$ceil" \
        "$(awk -v a="$ing" -v b="$ceil" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')"
done
