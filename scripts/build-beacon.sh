#!/usr/bin/env bash
# Builds the beacon scripts from src/beacon/beacon.js with a pinned terser, and prints their
# raw and gzip -9 sizes:
#   src/beacon/glimpse.min.js             /js/glimpse.js (hands over to the next with data-engagement)
#   src/beacon/glimpse.engagement.min.js  /js/glimpse.engagement.js (the same, measuring engagement)
#   src/beacon/plausible.min.js           Plausible's script names (/js/script.js, ...)
# The output is deterministic (same source, same bytes), so the minified files are committed
# and `scripts/build-beacon.sh --check` verifies they are up to date. Fails if glimpse.min.js
# gzipped exceeds the 1024-byte budget.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

TERSER_VERSION=5.51.2
SRC=src/beacon/beacon.js
BUDGET=1024

command -v npx >/dev/null || { echo "build-beacon: npx (Node.js/npm) is required" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0

# name:PLAUSIBLE:ENGAGEMENT
for build in glimpse:false:false glimpse.engagement:false:true plausible:true:true; do
    IFS=: read -r name plausible engagement <<<"$build"
    out=src/beacon/$name.min.js
    # ecma 2018 output (object spread); three compress passes with the build's constant, so
    # the other build's code is dropped; mangle local names (the script is one IIFE, so no
    # globals are renamed); no comments and no source map in the output.
    npx --yes "terser@$TERSER_VERSION" "$SRC" \
        --ecma 2018 \
        --define "PLAUSIBLE=$plausible,ENGAGEMENT=$engagement" \
        --compress passes=3,ecma=2018 \
        --mangle \
        --format comments=false,ecma=2018 \
        --output "$tmp/$name.js"
    if [[ "${1:-}" == "--check" ]]; then
        if ! cmp -s "$tmp/$name.js" "$out"; then
            echo "build-beacon: $out is out of date; run scripts/build-beacon.sh" >&2
            status=1
        fi
    else
        cat "$tmp/$name.js" >"$out"
    fi
    raw=$(wc -c <"$tmp/$name.js")
    gz=$(gzip -9 -n -c "$tmp/$name.js" | wc -c)
    echo "$out: $raw bytes raw, $gz bytes gzip -9"
    if [[ $name == glimpse ]] && (( gz > BUDGET )); then
        echo "build-beacon: $out gzipped is $gz bytes, over the $BUDGET-byte budget" >&2
        status=1
    fi
done
exit $status
