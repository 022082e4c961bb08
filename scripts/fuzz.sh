#!/usr/bin/env bash
# Fuzzes what Glimpse reads from outside with libFuzzer (cargo-fuzz): the payload parser, the
# URL and referrer normalisation, the filters, and the deliverer's reading of spooled rows.
#
#   scripts/fuzz.sh            # 20 s per target: the smoke run scripts/test.sh does
#   scripts/fuzz.sh 3600       # an hour per target
#   scripts/fuzz.sh 0 payload  # one target until stopped (Ctrl-C)
#
# The committed seed corpus (fuzz/corpus/<target>) is only read; what libFuzzer discovers goes
# to fuzz/target/corpus/<target> and is reused by the next run. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script; replay it with
# `cargo fuzz run <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/lib.sh
require_cargo

SECONDS_PER_TARGET=${1:-20}
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=(payload url filters rows)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo ">> installing cargo-fuzz (cargo install)"
    cargo install cargo-fuzz --locked --quiet
fi

for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/target/corpus/$t"
    echo ">> fuzzing $t for ${SECONDS_PER_TARGET}s"
    # No sanitizer: safe Rust needs none, and this builds on the stable toolchain.
    log="fuzz/target/fuzz-$t.log"
    status=0
    cargo fuzz run --sanitizer none -O "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=1024 -max_len=70000 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|panicked" "$log" || true
    if [[ $status -ne 0 ]]; then
        echo "fuzz target $t failed (exit $status); input in fuzz/artifacts/$t/, log in $log" >&2
        exit 1
    fi
done
