#!/usr/bin/env bash
# Measures the bot filter on public user-agent corpora (npm packages `user-agents` and
# `crawler-user-agents`) and prints the README's accuracy table. With -v it also lists every
# browser dropped, every bot kept and every device-class disagreement.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/lib.sh

require_cargo
npm_test_deps
if [[ ${1:-} == "-v" ]]; then export GLIMPSE_ACCURACY_VERBOSE=1; fi
cargo test --quiet --test accuracy -- --nocapture 2>&1 | grep -v '^running\|^test result\|^$\|^\.$'
