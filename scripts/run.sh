#!/usr/bin/env bash
# Sets up and runs Glimpse on this machine: installs ClickHouse if needed and starts a private
# server under data/clickhouse (unless one already answers on port 8123), downloads the DB-IP
# Lite geo database into data/, builds the release binary and serves on 127.0.0.1:8080.
#
#   scripts/run.sh                         # sites from data/glimpse.toml (created on first run)
#   GLIMPSE_SITES=example.com scripts/run.sh
#
# Any GLIMPSE_* variable overrides the config file (see scripts/glimpse.example.toml).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/lib.sh

require_cargo
start_clickhouse data/clickhouse 8123 9000

geo_db
if [[ ! -f data/glimpse.toml ]]; then
    sed -e 's#^domain = "example.com"#domain = "localhost"#' scripts/glimpse.example.toml >data/glimpse.toml
    echo ">> wrote data/glimpse.toml (edit [[sites]] to add your domains)"
fi

cargo build --release --quiet
echo ">> Glimpse on http://127.0.0.1:8080 (Ctrl-C to stop; ClickHouse keeps running, see data/clickhouse)"
exec target/release/glimpse serve --config data/glimpse.toml
