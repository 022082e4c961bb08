#!/usr/bin/env bash
# Builds src/beacon/glimpse.min.js from src/beacon/glimpse.js with a pinned terser, and prints
# its raw and gzip -9 sizes. The output is deterministic (same source, same bytes), so the
# minified file is committed and `scripts/build-beacon.sh --check` verifies it is up to date.
# Fails if the gzipped script exceeds the 1024-byte budget.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

TERSER_VERSION=5.51.2
SRC=src/beacon/glimpse.js
OUT=src/beacon/glimpse.min.js
BUDGET=1024

command -v npx >/dev/null || { echo "build-beacon: npx (Node.js/npm) is required" >&2; exit 1; }

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

# ecma 2017 output; two compress passes; mangle local names (the script is one IIFE, so no
# globals are renamed); no comments and no source map in the output.
npx --yes "terser@$TERSER_VERSION" "$SRC" \
    --ecma 2017 \
    --compress passes=2,ecma=2017 \
    --mangle \
    --format comments=false,ecma=2017 \
    --output "$tmp"

if [[ "${1:-}" == "--check" ]]; then
    if ! cmp -s "$tmp" "$OUT"; then
        echo "build-beacon: $OUT is out of date; run scripts/build-beacon.sh" >&2
        exit 1
    fi
    echo "build-beacon: $OUT is up to date"
else
    cat "$tmp" >"$OUT"
fi

raw=$(wc -c <"$OUT")
gz=$(gzip -9 -n -c "$OUT" | wc -c)
echo "$OUT: $raw bytes raw, $gz bytes gzip -9 (budget $BUDGET)"
if (( gz > BUDGET )); then
    echo "build-beacon: gzipped size $gz exceeds the $BUDGET-byte budget" >&2
    exit 1
fi
