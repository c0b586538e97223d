#!/bin/bash
# The benchmark suite of BENCHMARKS.md (issue 7): `make bench`, or
#   tools/bench.sh [--smoke] [--runs N] [--build-dir DIR] [--update-doc FILE]
#
# Starts its own fitsyncd (with its embedded redis-server) in a temporary
# directory for every run, and measures five things, --runs times each
# (default 3), reporting medians:
#   1. ceiling      redis-benchmark pipelining the very FCALL fit_activity_put
#                   the upload path makes (captured with MONITOR from a real
#                   upload; user and client_id randomised with __rand_int__)
#   2. ingest       fitsync-bench uploading as fast as acks come back, and its
#                   ratio to the ceiling
#   3. connections  idle authenticated connections; fitsyncd's RSS per
#                   connection from /proc/<pid>/status (VmRSS after - before)
#   4. fanout       subscribers on a board while uploads run: pushes/s and push
#                   latency, at the default board tick (250 ms) and at 20 ms
#   5. floor        a bare libwebsockets echo (fitsync-bench --serve-echo) on
#                   the same loop setup, driven by the same client
# Pinning: fitsyncd on CPU 0, its redis-server on CPU 1 (taskset -p after
# start); the client is not pinned (2 cores: it shares them). The echo server
# is pinned to CPU 0 like fitsyncd.
# --smoke: one run of each with small numbers (a few seconds); fails unless
# every step completes with zero errors. Results (JSON per run and a Markdown
# table) land in $BUILD/bench/; --update-doc FILE replaces the part of FILE
# between "<!-- bench:begin -->" and "<!-- bench:end -->" with the table.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
RUNS=3
SMOKE=0
DOC=
while [ $# -gt 0 ]; do
    case $1 in
    --smoke) SMOKE=1; RUNS=1 ;;
    --runs) RUNS=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --update-doc) DOC=$2; shift ;;
    -h | --help) sed -n 2,26p "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

FITSYNCD=$BUILD/fitsyncd
BENCH=$BUILD/fitsync-bench
for b in "$FITSYNCD" "$BENCH"; do
    [ -x "$b" ] || { echo "bench.sh: $b is missing; build first (make build)" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "bench.sh: needs jq" >&2; exit 2; }

log() { echo "bench.sh: $*" >&2; }

# Scenario sizes: full run, or the smoke run's small numbers.
if [ $SMOKE = 1 ]; then
    CEIL_N=2000; DUR=1; ING_UP=8; CONNS=200; FAN_SUBS=50; FAN_RATE=100; FAN_UP=5; RAMP=0.2
else
    CEIL_N=50000; DUR=8; ING_UP=200; CONNS=20000; FAN_SUBS=5000; FAN_RATE=2000; FAN_UP=10; RAMP=10
fi

# File descriptors: every connection is one in the client and one in the server. Without
# CAP_SYS_RESOURCE the hard limit cannot be raised: then the connection count is what
# the hard limit allows one server process (less a margin for Redis, logs, listeners).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $((CONNS + 1000)) ]; then
    ulimit -Hn $((CONNS + 1000)) 2>/dev/null && ulimit -n $((CONNS + 1000)) || {
        log "the file-descriptor hard limit is $(ulimit -Hn) and cannot be raised here (no CAP_SYS_RESOURCE):" \
            "measuring $(( $(ulimit -Hn) - 150 )) connections instead of $CONNS"
        CONNS=$(( $(ulimit -Hn) - 150 ))
    }
fi

TMP=$(mktemp -d /tmp/fitsync-bench.XXXXXX)
OUT=$BUILD/bench
mkdir -p "$OUT"
rm -f "$OUT"/*.json
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$((20000 + $$ % 20000))
export FITSYNC_TOKEN_SECRET=bench-secret-$$
FAILED=0

# start_server DIR [ENV=VALUE...]: fitsyncd on $PORT with its own Redis; sets SRV, RDS.
start_server() {
    local dir=$1
    shift
    mkdir -p "$dir"
    env FITSYNC_RATE_MESSAGES_PER_S=1000000 FITSYNC_RATE_BURST=1000000 FITSYNC_LOG_LEVEL=warn \
        FITSYNC_MAX_QUEUE_BYTES=16777216 "$@" \
        "$FITSYNCD" --port $PORT --data-dir "$dir/data" >"$dir/server.log" 2>&1 &
    SRV=$!
    PIDS+=($SRV)
    for _ in $(seq 200); do
        curl -sf http://127.0.0.1:$PORT/healthz >/dev/null 2>&1 && break
        sleep 0.05
    done
    curl -sf http://127.0.0.1:$PORT/healthz >/dev/null || { log "fitsyncd did not start"; cat "$dir/server.log" >&2; exit 1; }
    RDS=$(pgrep -P $SRV redis-server || true)
    [ -n "$RDS" ] && PIDS+=($RDS) # orphaned if fitsyncd crashes
    taskset -pc 0 $SRV >/dev/null 2>&1 || true
    [ -n "$RDS" ] && { taskset -pc 1 $RDS >/dev/null 2>&1 || true; }
}

stop_server() {
    kill -TERM $SRV 2>/dev/null || true
    wait $SRV 2>/dev/null || true
    PORT=$((PORT + 1))
}

rss_kb() { awk '/^VmRSS/ {print $2}' /proc/$1/status 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat 2>/dev/null || echo 0; }

# bench NAME RUN ARGS...: runs fitsync-bench, keeps its JSON, counts failures.
bench() {
    local name=$1 run=$2
    shift 2
    local json=$OUT/$name.$run.json
    if ! "$BENCH" --port $PORT --data-dir "$TMP/none" --json "$json" "$@" >"$OUT/$name.$run.txt" 2>&1; then
        log "$name run $run: fitsync-bench failed"
        cat "$OUT/$name.$run.txt" >&2
        FAILED=1
    fi
    if [ $SMOKE = 1 ] || [ -n "${VERBOSE:-}" ]; then cat "$OUT/$name.$run.txt" >&2; fi
}

# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# jmed NAME FILTER: median over runs of a jq filter
jmed() { local f; for f in "$OUT/$1".*.json; do [ -f "$f" ] && jq -r "$2" "$f"; done | median; }

# ---------------------------------------------------------------- 1. ceiling
log "1. ceiling: redis-benchmark of FCALL fit_activity_put"
CEIL_CMD=
for run in $(seq "$RUNS"); do
    D=$TMP/ceil$run
    start_server "$D"
    # One real upload under MONITOR gives the exact FCALL the upload path makes.
    timeout 5 redis-cli -s "$D/data/redis.sock" MONITOR >"$D/monitor.txt" 2>/dev/null &
    MON=$!
    sleep 0.3
    "$BENCH" --port $PORT --data-dir "$TMP/none" --connections 1 --uploaders 1 --upload-rate 5 \
        --duration 0.3 --drain-ms 0 >/dev/null 2>&1 || { log "capture upload failed"; FAILED=1; }
    sleep 0.2
    kill $MON 2>/dev/null || true
    wait $MON 2>/dev/null || true
    LINE=$(grep -m1 '"fit_activity_put"' "$D/monitor.txt" || true)
    [ -n "$LINE" ] || { log "no FCALL fit_activity_put seen by MONITOR"; exit 1; }
    # The captured call's arguments, the member and client_id randomised (tools/monitor-args.mjs).
    mapfile -t ARGS < <(printf '%s\n' "$LINE" | node "$ROOT/tools/monitor-args.mjs")
    echo "${ARGS[*]}" | cut -c1-400 >"$OUT/ceiling.command.txt"
    redis-benchmark -s "$D/data/redis.sock" -n $CEIL_N -c 8 -P 16 -r 100000000 -q "${ARGS[@]}" \
        >"$D/rb.txt" 2>&1 || { log "redis-benchmark failed"; cat "$D/rb.txt" >&2; FAILED=1; }
    RPS=$(tr '\r' '\n' <"$D/rb.txt" | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
    ERRS=$(redis-cli -s "$D/data/redis.sock" INFO errorstats | grep -c '^errorstat' || true)
    [ "$ERRS" = 0 ] || { log "ceiling: Redis reported errors:"; redis-cli -s "$D/data/redis.sock" INFO errorstats >&2; FAILED=1; }
    echo "{\"rps\": ${RPS:-0}, \"errors\": $ERRS}" >"$OUT/ceiling.$run.json"
    [ $SMOKE = 1 ] && log "ceiling: ${RPS:-0} FCALL/s"
    stop_server
done
CEIL=$(jmed ceiling .rps)

# ---------------------------------------------------------------- 2. ingest
log "2. ingest: fitsync-bench, $ING_UP uploaders, closed loop"
for run in $(seq "$RUNS"); do
    D=$TMP/ingest$run
    start_server "$D"
    c0=$(cpu_ticks $SRV); r0=$(cpu_ticks $RDS)
    bench ingest $run --connections $ING_UP --uploaders $ING_UP --inflight 4 --upload-rate 0 --spread-days 42 \
        --duration $DUR --ramp 0
    c1=$(cpu_ticks $SRV); r1=$(cpu_ticks $RDS)
    tmpj=$(jq ".server_cpu_s = $(( c1 - c0 ))/100 | .redis_cpu_s = $(( r1 - r0 ))/100" "$OUT/ingest.$run.json")
    echo "$tmpj" >"$OUT/ingest.$run.json"
    stop_server
done

# ---------------------------------------------------------------- 3. connections
log "3. connections: $CONNS idle authenticated connections"
for run in $(seq "$RUNS"); do
    D=$TMP/conns$run
    start_server "$D"
    sleep 0.2
    before=$(rss_kb $SRV)
    rm -f "$D"/ready.*
    # Two client processes, each half the connections (each needs one fd per connection).
    half=$((CONNS / 2))
    for part in a b; do
        n=$half; [ $part = b ] && n=$((CONNS - half))
        bench conns_$part $run --connections $n --uploaders 0 --ramp $RAMP --hosts 4 --max-pending 256 \
            --duration $([ $SMOKE = 1 ] && echo 1 || echo 6) --ready-file "$D/ready.$part" &
    done
    for _ in $(seq 600); do
        [ -f "$D/ready.a" ] && [ -f "$D/ready.b" ] && break
        [ "$(jobs -rp | wc -l)" -gt 0 ] || break
        sleep 0.1
    done
    sleep 0.5
    after=$(rss_kb $SRV)
    kill -0 $SRV 2>/dev/null || { log "conns run $run: fitsyncd died (see BENCHMARKS.md: crash under a connection storm)"; FAILED=1; after=$before; }
    wait $(jobs -rp | grep -v "^$SRV$") 2>/dev/null || true
    jq -s --argjson before "$before" --argjson after "$after" '{
        connections: (.[0].connections + .[1].connections), ready: (.[0].ready + .[1].ready),
        established: (.[0].established + .[1].established),
        handshakes_per_s: (.[0].handshakes_per_s + .[1].handshakes_per_s),
        errors_total: (.[0].errors_total + .[1].errors_total), errors: [.[0].errors, .[1].errors],
        cpu_s: (.[0].cpu_s + .[1].cpu_s),
        server_rss_before_kb: $before, server_rss_after_kb: $after,
        rss_per_conn_b: (($after - $before) * 1024 / ([.[0].ready + .[1].ready, 1] | max))}' \
        "$OUT/conns_a.$run.json" "$OUT/conns_b.$run.json" >"$OUT/conns.$run.json"
    rm -f "$OUT/conns_a.$run.json" "$OUT/conns_b.$run.json"
    stop_server
done

# ---------------------------------------------------------------- 4. fanout
for tick in 250 20; do
    log "4. fanout: $FAN_SUBS subscribers, $FAN_RATE uploads/s, board tick ${tick} ms"
    for run in $(seq "$RUNS"); do
        D=$TMP/fan$tick.$run
        start_server "$D" FITSYNC_BOARDS_TICK_MS=$tick
        c0=$(cpu_ticks $SRV)
        bench fanout$tick $run --connections $((FAN_SUBS + FAN_UP)) --uploaders $FAN_UP \
            --subscribers $FAN_SUBS --limit 10 --upload-rate $FAN_RATE --inflight 64 \
            --duration $DUR --ramp $([ $SMOKE = 1 ] && echo 0 || echo 3) --hosts 2
        c1=$(cpu_ticks $SRV)
        echo "$(jq ".server_cpu_s = $(( c1 - c0 ))/100" "$OUT/fanout$tick.$run.json")" >"$OUT/fanout$tick.$run.json"
        stop_server
        [ $SMOKE = 1 ] && break
    done
    [ $SMOKE = 1 ] && break
done

# ---------------------------------------------------------------- 5. floor
log "5. floor: bare lws echo on the same loop setup, same client"
for run in $(seq "$RUNS"); do
    taskset -c 0 "$BENCH" --serve-echo $PORT 2>"$TMP/echo$run.log" &
    E=$!
    PIDS+=($E)
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
    bench floor $run --echo --connections $ING_UP --uploaders $ING_UP --inflight 4 \
        --upload-rate 0 --duration $DUR
    kill -TERM $E; wait $E || { log "echo server exited non-zero"; FAILED=1; }
    PORT=$((PORT + 1))
done

# ---------------------------------------------------------------- table
ING=$(jmed ingest .items_per_s)
FLOOR=$(jmed floor .acks_per_s)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
r0() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }
r1() { awk -v a="$1" 'BEGIN { printf "%.1f", a }'; }
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) by \`tools/bench.sh$([ $SMOKE = 1 ] && echo ' --smoke')\`" \
        "($RUNS run(s) each, medians); load average before the table was written: $LOAD."
    echo
    echo "| scenario | figure | median | goal |"
    echo "| --- | --- | ---: | --- |"
    echo "| 1. ceiling | redis-benchmark FCALL fit_activity_put /s (-P 16 -c 8) | $(r0 "$CEIL") | |"
    echo "| 2. ingest | uploads acked /s ($ING_UP uploaders, 4 in flight each) | $(r0 "$ING") | |"
    echo "| 2. ingest | ratio to the ceiling | $(ratio "$ING" "$CEIL") | ≥ 0.5 |"
    echo "| 2. ingest | ack latency p50 / p99 ms | $(r1 "$(jmed ingest .ack_latency_ms.p50)") / $(r1 "$(jmed ingest .ack_latency_ms.p99)") | |"
    echo "| 2. ingest | CPU s per 1 s: fitsyncd / redis / client | $(awk -v a="$(jmed ingest '.server_cpu_s / .window_s')" -v b="$(jmed ingest '.redis_cpu_s / .window_s')" -v c="$(jmed ingest .cpu_window_share)" 'BEGIN{printf "%.2f / %.2f / %.2f", a, b, c}') | |"
    echo "| 3. connections | idle authenticated connections held | $(r0 "$(jmed conns .ready)") of $CONNS | ≥ 20 000 |"
    echo "| 3. connections | handshakes + hello /s | $(r0 "$(jmed conns .handshakes_per_s)") | |"
    echo "| 3. connections | fitsyncd RSS per connection, bytes | $(r0 "$(jmed conns .rss_per_conn_b)") | < 16 384 |"
    for tick in 250 20; do
        ls "$OUT"/fanout$tick.*.json >/dev/null 2>&1 || continue
        echo "| 4. fanout, tick $tick ms | pushes delivered /s ($FAN_SUBS subscribers, $FAN_RATE uploads/s) | $(r0 "$(jmed fanout$tick .pushes_per_s)") | ≥ 100 000 |"
        echo "| 4. fanout, tick $tick ms | push latency p50 / p99 ms | $(r1 "$(jmed fanout$tick .push_latency_ms.p50)") / $(r1 "$(jmed fanout$tick .push_latency_ms.p99)") | p99 < 50 |"
        echo "| 4. fanout, tick $tick ms | uploads acked /s; ack p99 ms | $(r0 "$(jmed fanout$tick .acks_per_s)"); $(r1 "$(jmed fanout$tick .ack_latency_ms.p99)") | |"
        echo "| 4. fanout, tick $tick ms | fitsyncd CPU s per 1 s | $(r1 "$(jmed fanout$tick '.server_cpu_s / .window_s')") | |"
    done
    echo "| 5. floor | bare lws echo: replies /s, same client | $(r0 "$FLOOR") | |"
    echo "| 5. floor | ingest / floor | $(ratio "$ING" "$FLOOR") | |"
} >"$OUT/results.md"
cat "$OUT/results.md"

if [ -n "$DOC" ]; then
    if grep -q '<!-- bench:begin -->' "$DOC"; then
        awk -v table="$OUT/results.md" '
            /<!-- bench:begin -->/ { print; while ((getline l < table) > 0) print l; skip = 1; next }
            /<!-- bench:end -->/ { skip = 0 }
            !skip' "$DOC" >"$DOC.tmp" && mv "$DOC.tmp" "$DOC"
        log "table written to $DOC"
    else
        log "$DOC has no <!-- bench:begin --> marker; table left in $OUT/results.md"
    fi
fi

# Errors of any kind fail the suite (the smoke test's only assertion).
TOTAL_ERR=0
for f in "$OUT"/*.json; do
    e=$(jq -r '(.errors_total // .errors // 0)' "$f")
    [ "$e" = 0 ] || { log "$(basename "$f"): $e errors"; TOTAL_ERR=1; }
done
if [ $FAILED = 1 ] || [ $TOTAL_ERR = 1 ]; then
    log "FAILED (see $OUT)"
    exit 1
fi
log "done, zero errors"
