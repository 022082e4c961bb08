#!/usr/bin/env bash
# Counts the user-space instructions the collector executes per event, next to the load
# harness's bare POST server (the anchor) under the same wrk requests (benches/wrk/events.lua,
# with a fixed seed). CPU time on a shared machine moves by 10-20 % between runs; an instruction
# count under valgrind's callgrind is the same from run to run within a fraction of a percent,
# so it shows changes of a few percent that timings cannot.
#
# Both servers run under callgrind. Counting starts after start-up and a 2 s warm-up and covers
# SECONDS of traffic (default 10) over 16 connections. ClickHouse is stopped (SIGSTOP) while the
# collector is counted, as in the harness's collector-alone mode: the figure is the request path,
# the batcher and the spool writer, not the delivery. Kernel work (the network, fsync) is not
# counted: see the README's Performance section for what that costs.
#
#   scripts/instructions-per-event.sh [SECONDS]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/lib.sh

SECONDS_COUNTED=${1:-10}
require_cargo
apt_install valgrind wrk curl
geo_db

work=$(mktemp -d)
ch_pid=""
server_pid=""
cleanup() {
    [[ -n $ch_pid ]] && kill -CONT "$ch_pid" 2>/dev/null || true
    [[ -n $server_pid ]] && kill -9 "$server_pid" 2>/dev/null || true
    [[ -n $ch_pid ]] && kill "$ch_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT


ch_http=$(free_port)
ch_tcp=$(free_port)
start_clickhouse "$work/clickhouse" "$ch_http" "$ch_tcp"
ch_pid=$(cat "$work/clickhouse/clickhouse.pid")

echo ">> building the release binary and the load harness (its bare POST server)"
cargo build --release --quiet
anchor=$(cargo bench --bench load --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\))$/\1/p' | tail -1)
[[ -x $anchor ]] || { echo "error: load harness binary not found" >&2; exit 1; }

# count LABEL PORT PAUSE CMD...: instructions per request of CMD serving on PORT.
count() {
    local label=$1 port=$2 pause=$3
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$work/$label.out" "$@" >"$work/$label.log" 2>&1 &
    server_pid=$!
    local i
    for i in $(seq 1 600); do
        curl -s -o /dev/null -X POST "http://127.0.0.1:$port/" && break
        sleep 0.5
    done
    [[ $pause == 1 ]] && kill -STOP "$ch_pid"
    WRK_SEED=7 wrk -t1 -c16 -d2s -s benches/wrk/events.lua "http://127.0.0.1:$port" >/dev/null
    callgrind_control -z "$server_pid" >/dev/null 2>&1
    WRK_SEED=7 wrk -t1 -c16 -d"${SECONDS_COUNTED}s" -s benches/wrk/events.lua \
        "http://127.0.0.1:$port" >"$work/$label.wrk"
    callgrind_control -d "$server_pid" >/dev/null 2>&1
    [[ $pause == 1 ]] && kill -CONT "$ch_pid"
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    local requests total
    requests=$(awk '/requests in/ {print $1}' "$work/$label.wrk")
    total=$(callgrind_annotate "$work/$label.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo $((total / requests))
}

echo ">> counting the bare POST server"
bare_port=$(free_port)
bare=$(GLIMPSE_LOAD_BARE_POST="127.0.0.1:$bare_port" count bare "$bare_port" 0 "$anchor")

echo ">> counting the collector (ClickHouse paused)"
port=$(free_port)
collector=$(
    with_bench_collector "$port" "$work/spool" "$ch_http" \
        count collector "$port" 1 target/release/glimpse serve
)

echo
echo "| server | user-space instructions per request |"
echo "|---|---:|"
echo "| bare POST server (anchor) | $bare |"
echo "| collector | $collector ($(python3 -c "print(f'{$collector / $bare:.2f}')")x) |"
