#!/usr/bin/env bash
# ClickHouse's CPU per event for the same events delivered by one or more builds of the
# collector, so that two ways of writing them can be compared on identical data.
#
# A spool is recorded once: the first binary takes wrk's event mix (benches/wrk/events.lua with a
# fixed seed, 64 connections, SECONDS) while ClickHouse is paused, so every accepted row stays
# in spool segments of the size saturation gives. Then, for each round and each binary in turn:
# a fresh clickhouse-server 18.16 and database, the schema migrated, a copy of the spool, and the
# collector started on it, which delivers the backlog at start-up. Measured from
# /proc/<pid>/stat (user + system): clickhouse-server's CPU from the collector's start until the
# spool is empty ("delivery"), then while every table is merged into one part with
# `OPTIMIZE TABLE ... FINAL` ("merges"), and the collector's own CPU until the spool is empty.
# Each is divided by the rows delivered. `COST_RECORD_EACH=1` records a spool per binary, for
# builds whose spool formats differ. `COST_MIX=harness` records the load harness's event mix
# instead of wrk's (benches/load: real browser user agents by traffic weight and bots, UTM tags, custom events
# with a property, and every visitor new after a visit of four events, or COST_EVENTS_PER_VISIT,
# where wrk's mix cycles through 20 000 requests of seven browsers, so the same visitors return
# all along). The collector's peak anonymous memory while it delivers
# is read from /proc/<pid>/status every 50 ms. Other environment variables reach the collector, so
# `GLIMPSE_RETENTION_EVENTS_DAYS=0` measures aggregates-only mode.
#
#   scripts/clickhouse-cost.sh [ROUNDS] [SECONDS] [BINARY...]   (default: 3 rounds, 20 s,
#                                                               target/release/glimpse)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/lib.sh

ROUNDS=${1:-3}
RECORD_SECONDS=${2:-20}
shift $(($# > 2 ? 2 : $#))
BINARIES=("$@")
if [[ ${#BINARIES[@]} -eq 0 ]]; then
    require_cargo
    cargo build --release --quiet
    BINARIES=(target/release/glimpse)
fi
MIX=${COST_MIX:-wrk}
case $MIX in
wrk) ;;
harness)
    require_cargo
    npm_test_deps
    harness=$(cargo bench --bench load --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))$/\1/p' | tail -1)
    [[ -x $harness ]] || { echo "error: load harness binary not found" >&2; exit 1; }
    ;;
*) echo "error: COST_MIX=$MIX: expected wrk or harness" >&2; exit 2 ;;
esac
apt_install wrk curl
geo_db

work=$(mktemp -d)
ch_pid=""
glimpse_pid=""
cleanup() {
    [[ -n $glimpse_pid ]] && kill -9 "$glimpse_pid" 2>/dev/null || true
    [[ -n $ch_pid ]] && kill -CONT "$ch_pid" 2>/dev/null || true
    [[ -n $ch_pid ]] && kill -9 "$ch_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# CPU seconds (user + system) of a process and its threads.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
segments() { find "$1" -maxdepth 1 -name '*.seg' | wc -l; }

# fresh_clickhouse NAME: a new server in its own directory; sets ch_pid and ch_http.
fresh_clickhouse() {
    if [[ -n $ch_pid ]]; then
        kill -CONT "$ch_pid" 2>/dev/null || true
        kill "$ch_pid" 2>/dev/null || true
        while kill -0 "$ch_pid" 2>/dev/null; do sleep 0.2; done
    fi
    ch_http=$(free_port)
    start_clickhouse "$work/ch-$1" "$ch_http" "$(free_port)" >/dev/null
    ch_pid=$(cat "$work/ch-$1/clickhouse.pid")
}

# serve BINARY SPOOL PORT: starts the collector; sets glimpse_pid.
serve() {
    # exec: the background job is the collector itself, whose CPU is read from its pid.
    with_bench_collector "$3" "$2" "$ch_http" exec "$1" serve >>"$work/glimpse.log" 2>&1 &
    glimpse_pid=$!
}

stop_glimpse() {
    kill "$glimpse_pid" 2>/dev/null || true
    wait "$glimpse_pid" 2>/dev/null || true
    glimpse_pid=""
}

# record BINARY DIR: DIR holds the spool BINARY wrote while the mix was sent to it.
record() {
    echo ">> recording a spool: $1, ${RECORD_SECONDS} s of the $MIX mix with ClickHouse paused"
    fresh_clickhouse "record-$(basename "$2")"
    rm -rf "$work/spool"
    port=$(free_port)
    serve "$1" "$work/spool" "$port"
    for _ in $(seq 1 600); do
        curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.1
    done
    kill -STOP "$ch_pid"
    if [[ $MIX == harness ]]; then
        GLIMPSE_LOAD_DRIVE="127.0.0.1:$port" GLIMPSE_LOAD_SECONDS="$RECORD_SECONDS" \
            GLIMPSE_LOAD_CONNECTIONS=64 GLIMPSE_LOAD_EVENTS_PER_VISIT="${COST_EVENTS_PER_VISIT:-4}" \
            "$harness" >"$work/record.wrk"
    else
        WRK_SEED=7 wrk -t1 -c64 -d"${RECORD_SECONDS}s" -s benches/wrk/events.lua \
            "http://127.0.0.1:$port" >"$work/record.wrk"
    fi
    # Stop the collector while ClickHouse cannot take the rows: they all stay in the spool.
    kill -9 "$glimpse_pid"
    wait "$glimpse_pid" 2>/dev/null || true
    glimpse_pid=""
    cp -a "$work/spool" "$2"
    echo ">> $(segments "$2") segments, $(du -sh "$2" | cut -f1)"
}

# The recording each binary delivers: one for all, or with COST_RECORD_EACH=1 one of its own
# (binaries whose spool row formats differ: a release cannot read a newer one's rows). The mix
# is the same sequence each time; what differs is how much of it the seconds took.
recordings=()
for i in "${!BINARIES[@]}"; do
    if [[ $i -eq 0 || ${COST_RECORD_EACH:-0} == 1 ]]; then
        record "${BINARIES[$i]}" "$work/recorded-$i"
        recordings+=("$work/recorded-$i")
    else
        recordings+=("$work/recorded-0")
    fi
done

echo
echo "| round | binary | rows | ClickHouse delivery µs/row | merges µs/row | collector µs/row | daily stats rows per row | collector peak anon MiB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
run=0
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!BINARIES[@]}"; do
        bin=${BINARIES[$i]}
        # A directory of its own per run: binaries may share a file name, and a server started
        # in a used directory would hold the previous run's tables.
        run=$((run + 1))
        fresh_clickhouse "$run"
        GLIMPSE_CLICKHOUSE_URL="http://127.0.0.1:$ch_http" "$bin" migrate >>"$work/glimpse.log" 2>&1
        rm -rf "$work/spool"
        cp -a "${recordings[$i]}" "$work/spool"
        ch0=$(cpu "$ch_pid")
        port=$(free_port)
        serve "$bin" "$work/spool" "$port"
        peak=0
        while [[ $(segments "$work/spool") -gt 0 ]]; do
            anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$glimpse_pid/status" 2>/dev/null || echo 0)
            [[ ${anon:-0} -gt $peak ]] && peak=$anon
            sleep 0.05
        done
        ch1=$(cpu "$ch_pid")
        mine=$(cpu "$glimpse_pid")
        curl -fsS "http://127.0.0.1:$port/metrics" >"$work/metrics"
        rows=$(awk '/^glimpse_insert_rows_total/ {print $2}' "$work/metrics")
        # Grouped rows of daily stats sent per row (releases that count them).
        rollup=$(awk -v n="$rows" '/^glimpse_insert_rollup_rows_total/ {printf "%.3f", $2 / n}' "$work/metrics")
        stop_glimpse
        tables=$(curl -fsS "http://127.0.0.1:$ch_http/" --data-binary \
            "SELECT name FROM system.tables WHERE database = 'glimpse' AND engine LIKE '%MergeTree'")
        for t in $tables; do
            curl -fsS "http://127.0.0.1:$ch_http/" --data-binary "OPTIMIZE TABLE glimpse.$t FINAL" >/dev/null
        done
        ch2=$(cpu "$ch_pid")
        python3 - "$round" "$bin" "$rows" "${rollup:--}" "$peak" "$ch0" "$ch1" "$ch2" "$mine" <<'EOF'
import sys
r, b, rows, rollup, peak = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
c0, c1, c2, mine = map(float, sys.argv[6:])
us = lambda s: f"{s / rows * 1e6:.2f}"
print(f"| {r} | {b} | {rows} | {us(c1 - c0)} | {us(c2 - c1)} | {us(mine)} | {rollup} | {peak / 1024:.1f} |")
EOF
    done
done
