#!/usr/bin/env python3
"""ClickHouse's CPU per event on the modern engine (chdb, 26.x, in-process) for the two ways
`stats_daily` is filled: the fan-out view over the inserted rows (collectors before the daily
rollup, through `events_in`) and the collector's daily rollup (the rows through `events_intake`,
whose views do not fan out, plus one row per site, day, dimension and value in
`stats_daily_in`).

The events are those of `cargo bench --bench dashboard` (one day of them), generated once into a
staging table, and their rollup rows are summed there once, per ROLLUP_ROWS rows of each
insert of CHUNK rows (a chunk never spans two inserts), as the collector sums a segment; both are
written as files, one per insert, in the format each kind of collector sends (RowBinary before
the rollup, Native blocks with it), and none of that is measured. What is measured is the
engine's CPU (this process, every thread) while the files are inserted, one way and then the
other, into fresh tables, alternating for ROUNDS rounds; then every table is
merged into one part (`OPTIMIZE ... FINAL`), also measured. Raw events are kept (30 days).

Usage: GLIMPSE_BIN=target/release/glimpse scripts/rollup-cost-modern.py [EVENTS] [ROUNDS]
Requires chdb (pip install chdb-core).
"""
import atexit
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def scratch(prefix):
    """A temporary directory, removed when the script exits (a run leaves hundreds of MB)."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


REPO = Path(__file__).resolve().parent.parent
CHUNK = 20_000
# Rows the collector sums at a time, at most, for this data (src/deliver/rollup.rs): a chunk
# holds 1 048 576 (group, visitor) pairs (CHUNK_VISITS), a row adds one per dimension it counts
# in (all 17 for a page view), so a chunk is at most 61 680 rows when its visitors change from
# row to row, fewer when its 65 536 groups fill first (not with 5 sites): an insert of CHUNK
# rows is summed whole.
ROLLUP_ROWS = min(CHUNK, 61_680)
# Rows of a Native block: about what the collector's blocks of 128 KiB of rows hold of these
# events (src/deliver/native.rs).
BLOCK_ROWS = 1_000

# stats_daily's dimensions as the fan-out view computes them (schema/0010, 0011).
DIMENSIONS = [
    ("page", "pathname"), ("hostname", "hostname"), ("source", "referrer_source"),
    ("referrer", "referrer"), ("utm_source", "utm_source"), ("utm_medium", "utm_medium"),
    ("utm_campaign", "utm_campaign"), ("utm_content", "utm_content"), ("utm_term", "utm_term"),
    ("country", "country_code"),
    ("region", "if(region = '', '', concat(country_code, '-', region))"),
    ("browser", "browser"), ("browser_version", "concat(browser, ' ', browser_version)"),
    ("os", "os"), ("os_version", "concat(os, ' ', os_version)"), ("device", "device"),
    ("event", "if(name = 'pageview', '', name)"),
]


def cpu():
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    from chdb import session as chs
    binary = os.environ.get("GLIMPSE_BIN", str(REPO / "target" / "debug" / "glimpse"))
    ddl = subprocess.run([binary, "schema", "--server-version", "26.3"], check=True,
                         capture_output=True, text=True,
                         env={"GLIMPSE_RETENTION_EVENTS_DAYS": "30"}).stdout
    statements = []
    for stmt in [x.strip() for x in re.split(r";\s*\n", ddl) if x.strip()]:
        body = "\n".join(l for l in stmt.splitlines() if not l.strip().startswith("--")).strip()
        if body:
            statements.append(body)
    s = chs.Session(scratch("glimpse-rollup-"))
    s.query("CREATE DATABASE staging")
    s.query("CREATE DATABASE glimpse")
    s.query("USE glimpse")
    for stmt in statements:
        s.query(stmt)
    columns = [r.split("\t")[0] for r in
               str(s.query("SELECT name FROM system.columns WHERE database = 'glimpse' "
                           "AND table = 'events_in' ORDER BY position", "TSV")).splitlines()]
    rows = [c for c in columns if c != "rolled_up"]

    # One day of the dashboard bench's events, numbered by insert.
    bench = (REPO / "benches" / "dashboard.rs").read_text()
    template = bench[bench.index('"INSERT INTO glimpse.events_in'):
                     bench.index('LIMIT {count} OFFSET {offset}"')]
    template = template.strip('"').replace("\\\n", "").replace('\\"', '"')
    template = re.sub(r"\s+", " ", template)
    generated = template[template.index("events_in (") + 11:template.index(") SELECT ")]
    select = template[template.index(") SELECT ") + 2:]
    # Ordered by insert, so that reading one insert's rows reads only those.
    s.query("CREATE TABLE staging.src AS glimpse.events_in ENGINE = Memory")
    s.query("ALTER TABLE staging.src ADD COLUMN chunk UInt32")
    s.query("ALTER TABLE staging.src ADD COLUMN part UInt32")
    s.query("CREATE TABLE staging.src2 AS staging.src ENGINE = MergeTree ORDER BY chunk")
    day = int(time.time()) // 86400 * 86400 - 86400
    s.query(f"INSERT INTO staging.src ({generated}, chunk, part) "
            f"SELECT *, intDiv(rowNumberInAllBlocks(), {CHUNK}), "
            f"intDiv(rowNumberInAllBlocks(), {CHUNK}) * 1000 "
            f"+ intDiv(rowNumberInAllBlocks() % {CHUNK}, {ROLLUP_ROWS}) FROM ("
            + select.format(n=n, start=day, span=86400) + f" LIMIT {n} OFFSET 0)")
    s.query("INSERT INTO staging.src2 SELECT * FROM staging.src")
    s.query("DROP TABLE staging.src")
    s.query("RENAME TABLE staging.src2 TO staging.src")
    s.query("OPTIMIZE TABLE staging.src FINAL")
    dims = ", ".join(f"('{d}', {e})" for d, e in DIMENSIONS)
    s.query("CREATE TABLE staging.roll (chunk UInt32, site String, day Date, dimension String, "
            "value String, pageviews UInt64, events UInt64, visitors Array(UInt64)) "
            "ENGINE = MergeTree ORDER BY chunk")
    s.query("INSERT INTO staging.roll SELECT chunk, site, toDate(timestamp) AS day, "
            "dim.1 AS dimension, dim.2 AS value, countIf(name = 'pageview'), "
            "countIf(name != 'pageview'), groupUniqArray(visitor_id) FROM staging.src "
            f"ARRAY JOIN arrayFilter(d -> d.1 != 'page' OR name = 'pageview', [{dims}]) AS dim "
            "WHERE name != 'engagement' GROUP BY chunk, part, site, day, dimension, value")
    chunks = int(str(s.query("SELECT max(chunk) + 1 FROM staging.src", "TSV")).strip())
    # Each insert's bytes as each kind of collector sends them, parsed by every insert: RowBinary
    # before the rollup, Native blocks (of at most BLOCK_ROWS rows) with it.
    files = Path(scratch("glimpse-rollup-files-"))
    types = dict(r.split("\t") for r in str(s.query(
        "SELECT name, type FROM system.columns WHERE database = 'glimpse' "
        "AND table = 'events_in'", "TSV")).splitlines())
    row_structure = ", ".join(f"{c} {types[c]}" for c in rows)
    roll_structure = ("site String, day Date, dimension String, value String, "
                      "pageviews UInt64, events UInt64, visitors Array(UInt64)")
    for k in range(chunks):
        (files / f"rows-{k}.bin").write_bytes(s.query(
            f"SELECT {', '.join(rows)} FROM staging.src WHERE chunk = {k}", "RowBinary").bytes())
        (files / f"marked-{k}.bin").write_bytes(s.query(
            f"SELECT {', '.join(rows)}, toUInt8(1) AS rolled_up FROM staging.src "
            f"WHERE chunk = {k} SETTINGS max_block_size = {BLOCK_ROWS}", "Native").bytes())
        (files / f"daily-{k}.bin").write_bytes(s.query(
            "SELECT site, day, dimension, value, pageviews, events, visitors FROM staging.roll "
            f"WHERE chunk = {k} SETTINGS max_block_size = {BLOCK_ROWS}", "Native").bytes())
    tables = [r for r in str(s.query(
        "SELECT name FROM system.tables WHERE database = 'glimpse' AND engine LIKE '%MergeTree' "
        "AND name NOT IN ('glimpse_salts', 'glimpse_migrations')", "TSV")).split()]

    def run(way):
        for t in tables:
            s.query(f"TRUNCATE TABLE glimpse.{t}")
        c0 = cpu()
        for k in range(chunks):
            if way == "fan-out":
                s.query(f"INSERT INTO glimpse.events_in ({', '.join(rows)}) SELECT * FROM "
                        f"file('{files}/rows-{k}.bin', RowBinary, '{row_structure}')")
            else:
                s.query(f"INSERT INTO glimpse.events_intake ({', '.join(rows)}, rolled_up) "
                        f"SELECT * FROM file('{files}/marked-{k}.bin', Native, "
                        f"'{row_structure}, rolled_up UInt8')")
                s.query("INSERT INTO glimpse.stats_daily_in SELECT * FROM "
                        f"file('{files}/daily-{k}.bin', Native, '{roll_structure}')")
        c1 = cpu()
        for t in tables:
            s.query(f"OPTIMIZE TABLE glimpse.{t} FINAL")
        c2 = cpu()
        check = str(s.query("SELECT count(), sum(p), sum(u) FROM (SELECT dimension, value, "
                            "sumMerge(pageviews) + sumMerge(events) AS p, "
                            "uniqMerge(visitors) AS u FROM glimpse.stats_daily "
                            "GROUP BY dimension, value)", "TSV")).strip()
        return (c1 - c0) / n * 1e6, (c2 - c0) / n * 1e6, check

    s.query("DROP DATABASE staging")
    results = {"fan-out": [], "rollup": []}
    checks = set()
    for _ in range(rounds):
        for way in results:
            inserts, merged, check = run(way)
            results[way].append((inserts, merged))
            checks.add(check)
    if len(checks) != 1:
        print(f"FAIL: the two ways give different stats_daily: {checks}", file=sys.stderr)
        return 1
    version = str(s.query("SELECT version()", "TSV")).strip()
    print(f"ClickHouse {version} (chdb), {n} events in {chunks} inserts, raw events kept; "
          "CPU per event, each round:")
    for way, rs in results.items():
        print(f"  {way:8} inserts {' / '.join(f'{r[0]:.1f}' for r in rs)} µs; "
              f"with a full merge {' / '.join(f'{r[1]:.1f}' for r in rs)} µs")
    print(f"stats_daily is the same both ways ({checks.pop()}: groups, counts, visitors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
