#!/bin/bash
# The flat-cost benchmark of BENCHMARKS.md (issue 11):
#   tools/bench_cost.sh [--runs N] [--build-dir DIR] [--update-doc FILE] [--smoke]
#
# Does an upload cost Redis the same whatever the member's history? For two
# populations, each on its own fitsyncd with its embedded redis-server (pinned:
# fitsyncd CPU 0, redis-server CPU 1, as tools/bench.sh does):
#   new    UPLOADERS members with no history
#   heavy  UPLOADERS members with 56 days x 30 sessions a day of history and 10
#          virtual challenges joined, 8 of them ended (fitsync-bench
#          --history-days 56 --sessions-per-day 30 --challenges 10)
# both on two boards each (all, their district) and uploading one session per
# message as fast as acks come back (4 in flight each) for DUR seconds, the
# sessions spread over week W's seven days. Around the measured window (from
# fitsync-bench's --ready-file to its exit) it reads INFO commandstats:
#   commands per upload   all commands' calls (those a Function runs included,
#                         INFO and CONFIG left out) / FCALL calls; the upload
#                         Function's share is that less the progress read that
#                         follows each upload (FCALL_RO fit_weeks_get + 2 HMGET)
#                         and fitsyncd's own PUBLISHes (all PUBLISH calls but one
#                         per upload)
#   usec_per_call         cmdstat_fcall: the Function's whole time in Redis
# Then, on the same Redis, a reference Function doing 12 HINCRBY on one hash
# (redis-benchmark -n REF_N -c 8 -P 16), its usec_per_call, and the ratio.
# The ceiling of a population is 1e6 / usec_per_call (uploads/s if Redis did
# nothing but these calls); the ingest ratio is uploads acked/s over it.
# Medians over --runs (default 3). --update-doc FILE replaces the part of FILE
# between "<!-- cost:begin -->" and "<!-- cost:end -->".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build
RUNS=3
DOC=
SMOKE=0
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --update-doc) DOC=$2; shift ;;
    --smoke) SMOKE=1; RUNS=1 ;;
    -h | --help) sed -n 2,26p "$0"; exit 0 ;;
    *) echo "bench_cost.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
FITSYNCD=$BUILD/fitsyncd
BENCH=$BUILD/fitsync-bench
for b in "$FITSYNCD" "$BENCH"; do
    [ -x "$b" ] || { echo "bench_cost.sh: $b is missing; build first (make build)" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "bench_cost.sh: needs jq" >&2; exit 2; }
log() { echo "bench_cost.sh: $*" >&2; }

if [ $SMOKE = 1 ]; then
    UPLOADERS=4; DUR=1; REF_N=2000; HIST="--history-days 7 --sessions-per-day 5 --challenges 3"
else
    UPLOADERS=100; DUR=4; REF_N=50000; HIST="--history-days 56 --sessions-per-day 30 --challenges 10"
fi

TMP=$(mktemp -d /tmp/fitsync-cost.XXXXXX)
OUT=$BUILD/bench
mkdir -p "$OUT"
rm -f "$OUT"/cost_*.json
SRV=
cleanup() {
    [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$((21000 + $$ % 20000))
export FITSYNC_TOKEN_SECRET=bench-secret-$$
FAILED=0

start_server() {
    local dir=$1
    mkdir -p "$dir"
    # History reaches back further than the default acceptance window of 8 weeks.
    env FITSYNC_RATE_MESSAGES_PER_S=1000000 FITSYNC_RATE_BURST=1000000 FITSYNC_LOG_LEVEL=warn \
        FITSYNC_MAX_QUEUE_BYTES=16777216 FITSYNC_MAX_AGE_WEEKS=0 \
        "$FITSYNCD" --port $PORT --data-dir "$dir/data" >"$dir/server.log" 2>&1 &
    SRV=$!
    for _ in $(seq 200); do
        curl -sf http://127.0.0.1:$PORT/healthz >/dev/null 2>&1 && break
        sleep 0.05
    done
    curl -sf http://127.0.0.1:$PORT/healthz >/dev/null || { log "fitsyncd did not start"; cat "$dir/server.log" >&2; exit 1; }
    RDS=$(pgrep -P $SRV redis-server || true)
    taskset -pc 0 $SRV >/dev/null 2>&1 || true
    [ -n "$RDS" ] && { taskset -pc 1 $RDS >/dev/null 2>&1 || true; }
    SOCK=$dir/data/redis.sock
}

stop_server() {
    kill -TERM $SRV 2>/dev/null || true
    wait $SRV 2>/dev/null || true
    SRV=
    PORT=$((PORT + 1))
}

# stats FILE: INFO commandstats as JSON {calls (all but info/config), fcall, fcall_usec, fcall_ro}
stats() {
    redis-cli -s "$SOCK" INFO commandstats | tr -d '\r' | awk -F'[:,=]' '
        /^cmdstat_/ { name = substr($1, 9); calls = $3; usec_per_call = $7
            if (name != "info" && name !~ /^config/) total += calls
            if (name == "fcall") { f = calls; fu = usec_per_call }
            if (name == "fcall_ro") fro = calls
            if (name != "info" && name !~ /^config/) { n[name] = calls; names[++k] = name } }
        END { printf "{\"calls\": %d, \"fcall\": %d, \"fcall_usec\": %s, \"fcall_ro\": %d, \"by_command\": {", total, f, fu + 0, fro + 0
              for (i = 1; i <= k; i++) printf "%s\"%s\": %d", (i > 1 ? ", " : ""), names[i], n[names[i]]
              print "}}" }' >"$1"
}

REF_LIB='#!lua name=fitbenchref
redis.register_function("fit_ref", function(keys)
    for i = 1, 12 do redis.call("HINCRBY", keys[1], "f" .. i, 1) end
    return 12
end)'

for pop in new heavy; do
    for run in $(seq "$RUNS"); do
        D=$TMP/$pop$run
        log "$pop run $run"
        start_server "$D"
        extra=""
        [ $pop = heavy ] && extra=$HIST
        # shellcheck disable=SC2086
        "$BENCH" --port $PORT --data-dir "$TMP/none" --json "$D/bench.json" --ready-file "$D/ready" \
            --connections $UPLOADERS --uploaders $UPLOADERS --boards 2 --upload-rate 0 --inflight 4 \
            --spread-days 7 --duration $DUR --ramp 0 --reply-timeout 120 $extra >"$D/bench.txt" 2>&1 &
        B=$!
        for _ in $(seq 6000); do
            [ -f "$D/ready" ] && break
            kill -0 $B 2>/dev/null || break
            sleep 0.05
        done
        redis-cli -s "$SOCK" CONFIG RESETSTAT >/dev/null
        if ! wait $B; then log "$pop run $run: fitsync-bench failed"; cat "$D/bench.txt" >&2; FAILED=1; fi
        stats "$D/upload.json"
        redis-cli -s "$SOCK" FUNCTION LOAD REPLACE "$REF_LIB" >/dev/null
        redis-cli -s "$SOCK" CONFIG RESETSTAT >/dev/null
        redis-benchmark -s "$SOCK" -n $REF_N -c 8 -P 16 -q FCALL fit_ref 1 'fit:{s0}:ref' >"$D/ref.txt" 2>&1 ||
            { log "redis-benchmark failed"; cat "$D/ref.txt" >&2; FAILED=1; }
        stats "$D/ref.json"
        used=$(redis-cli -s "$SOCK" INFO memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
        jq -n --slurpfile u "$D/upload.json" --slurpfile r "$D/ref.json" --slurpfile b "$D/bench.json" \
            --arg pop $pop --argjson used "$used" '{
            population: $pop, uploads: $u[0].fcall, fcall_ro: $u[0].fcall_ro,
            commands_per_upload: (if $u[0].fcall > 0 then $u[0].calls / $u[0].fcall else 0 end),
            function_commands_per_upload: (if $u[0].fcall > 0 then
                ($u[0].calls - 3 * $u[0].fcall_ro - ($u[0].by_command.publish // 0) + $u[0].fcall) / $u[0].fcall
                else 0 end),
            per_upload_by_command: ($u[0].by_command | map_values(. / ([$u[0].fcall, 1] | max) * 100 | round / 100)),
            usec_per_call: $u[0].fcall_usec, ref_usec_per_call: $r[0].fcall_usec,
            ratio_to_ref: (if $r[0].fcall_usec > 0 then $u[0].fcall_usec / $r[0].fcall_usec else 0 end),
            acks_per_s: $b[0].acks_per_s, ack_p99_ms: $b[0].ack_latency_ms.p99,
            ceiling: (if $u[0].fcall_usec > 0 then 1e6 / $u[0].fcall_usec else 0 end),
            ingest_ratio: (if $u[0].fcall_usec > 0 then $b[0].acks_per_s * $u[0].fcall_usec / 1e6 else 0 end),
            errors: $b[0].errors_total, used_memory: $used}' >"$OUT/cost_$pop.$run.json"
        [ $SMOKE = 1 ] && cat "$OUT/cost_$pop.$run.json" >&2
        stop_server
    done
done

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
jmed() { local f; for f in "$OUT/cost_$1".*.json; do [ -f "$f" ] && jq -r "$2" "$f"; done | median; }
fmt() { awk -v a="$1" -v p="$2" 'BEGIN { printf "%." p "f", a }'; }
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) by \`tools/bench_cost.sh$([ $SMOKE = 1 ] && echo ' --smoke')\`" \
        "($RUNS run(s) each, medians; $UPLOADERS uploaders, ${DUR} s); load average after: $LOAD."
    echo
    echo "| figure | new member | heavy member | goal |"
    echo "| --- | ---: | ---: | --- |"
    echo "| Redis commands per upload, all (progress read and fitsyncd's PUBLISHes included) | $(fmt "$(jmed new .commands_per_upload)" 1) | $(fmt "$(jmed heavy .commands_per_upload)" 1) | |"
    echo "| of which the upload Function's, FCALL included (derived) | $(fmt "$(jmed new .function_commands_per_upload)" 1) | $(fmt "$(jmed heavy .function_commands_per_upload)" 1) | ≤ 15 |"
    echo "| FCALL usec_per_call | $(fmt "$(jmed new .usec_per_call)" 1) | $(fmt "$(jmed heavy .usec_per_call)" 1) | heavy ≤ 1.3 × new |"
    echo "| reference (12 HINCRBY on one hash) usec_per_call, same run | $(fmt "$(jmed new .ref_usec_per_call)" 1) | $(fmt "$(jmed heavy .ref_usec_per_call)" 1) | |"
    echo "| usec_per_call / reference | $(fmt "$(jmed new .ratio_to_ref)" 2) | $(fmt "$(jmed heavy .ratio_to_ref)" 2) | new ≤ 3 |"
    echo "| uploads acked /s (ack p99 ms) | $(fmt "$(jmed new .acks_per_s)" 0) ($(fmt "$(jmed new .ack_p99_ms)" 1)) | $(fmt "$(jmed heavy .acks_per_s)" 0) ($(fmt "$(jmed heavy .ack_p99_ms)" 1)) | |"
    echo "| ceiling 1e6 / usec_per_call, uploads/s | $(fmt "$(jmed new .ceiling)" 0) | $(fmt "$(jmed heavy .ceiling)" 0) | |"
    echo "| ingest ratio to the ceiling | $(fmt "$(jmed new .ingest_ratio)" 2) | $(fmt "$(jmed heavy .ingest_ratio)" 2) | |"
    echo "| heavy usec_per_call / new | | $(awk -v a="$(jmed heavy .usec_per_call)" -v b="$(jmed new .usec_per_call)" 'BEGIN { printf "%.2f", a / b }') | ≤ 1.3 |"
} >"$OUT/cost.md"
cat "$OUT/cost.md"
if [ -n "$DOC" ]; then
    awk -v table="$OUT/cost.md" '
        /<!-- cost:begin -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
        /<!-- cost:end -->/ { skip = 0 }
        !skip { print }' "$DOC" >"$DOC.tmp" && mv "$DOC.tmp" "$DOC"
fi
exit $FAILED
