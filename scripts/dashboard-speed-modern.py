#!/usr/bin/env python3
"""Times the dashboard queries on the modern ClickHouse engine (chdb, 26.x, in-process) over the
aggregates of N generated events (default 10 million), kept raw as well, like `cargo bench
--bench dashboard` does on the server Debian ships: every query file, then the filtered
questions of that bench as the stats APIs' planner writes them (`glimpse explain-query`).
Prints p50/p95 per query.

Usage: GLIMPSE_BIN=target/release/glimpse scripts/dashboard-speed-modern.py [EVENTS] [RUNS]
(RUNS per query, default 20 as in the bench; timing starts once background merges are done)
Requires chdb (pip install chdb-core).
"""
import atexit
import datetime as dt
import importlib.util
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


def schema_check():
    """scripts/check-modern-schema.py as a module: its chdb wrapper and its day closing."""
    spec = importlib.util.spec_from_file_location("check_modern_schema",
                                                  REPO / "scripts" / "check-modern-schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    from chdb import session as chs
    binary = os.environ.get("GLIMPSE_BIN", str(REPO / "target" / "debug" / "glimpse"))
    ddl = subprocess.run([binary, "schema", "--server-version", "26.3"], check=True,
                         capture_output=True, text=True, env={"GLIMPSE_RETENTION_EVENTS_DAYS": "30"}).stdout
    s = chs.Session(scratch("glimpse-speed-"))
    s.query("CREATE DATABASE glimpse")
    s.query("USE glimpse")
    for stmt in [x.strip() for x in re.split(r";\s*\n", ddl) if x.strip()]:
        body = "\n".join(l for l in stmt.splitlines() if not l.strip().startswith("--")).strip()
        if body:
            s.query(body)
    # The same generator as benches/dashboard.rs.
    bench = (REPO / "benches" / "dashboard.rs").read_text()
    template = bench[bench.index('"INSERT INTO glimpse.events_in'):bench.index('LIMIT {count} OFFSET {offset}"')]
    template = template.strip('"').replace("\\\n", "").replace('\\"', '"')
    template = re.sub(r"\s+", " ", template) + " LIMIT {count} OFFSET {offset}"
    today = int(time.time()) // 86400 * 86400
    start, span = today - 29 * 86400, 30 * 86400
    t = time.monotonic()
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    cpu0 = cpu()
    chunk = 1_000_000
    for offset in range(0, n, chunk):
        count = min(chunk, n - offset)
        s.query(template.format(n=n, offset=offset, count=count, start=start, span=span))
    # The engine runs in this process: its CPU (all threads, background merges included) over
    # the inserts, per event, next to what the load harness measures for clickhouse-server.
    print(f"{n} events through the views in {time.monotonic() - t:.1f} s, "
          f"{(cpu() - cpu0) / n * 1e6:.1f} µs of CPU per event")
    # Every day but today is over: close them as the collector would.
    check = schema_check()
    t = time.monotonic()
    closed = check.close_days(check.Engine(s))
    print(f"{closed} (site, day) pairs closed in {time.monotonic() - t:.1f} s")
    # A dashboard is read long after the nightly closing: time the queries once the merges and
    # the deletions the closing started are done, not against them.
    t = time.monotonic()
    while int(str(s.query("SELECT (SELECT count() FROM system.merges) + (SELECT count() FROM "
                          "system.mutations WHERE NOT is_done)", "TSV")).strip() or 0) > 0:
        time.sleep(1)
    print(f"background merges and deletions done after {time.monotonic() - t:.1f} s more")
    day = lambda d: (dt.date.today() - dt.timedelta(days=d)).isoformat()
    values = {"{site}": "'site0.example'", "{from}": f"'{day(29)}'", "{to}": f"'{day(0)}'",
              "{k}": "0", "{limit}": "10", "{offset}": "0"}
    cases = [(f.stem, None) for f in sorted((REPO / "schema" / "queries").glob("*.sql")) if f.stem != "breakdown"]
    cases += [("breakdown", d) for d in ["page", "source", "country", "region", "browser", "device", "event"]]
    queries = []
    for name, dim in cases:
        sql = (REPO / "schema" / "queries" / f"{name}.sql").read_text().strip().rstrip(";")
        for k, v in {**values, "{dimension}": f"'{dim}'"}.items():
            sql = sql.replace(k, v)
        queries.append((name + (f" {dim}" if dim else ""), sql))
    # The bench's filtered questions, as the planner writes them for the raw events.
    config = os.path.join(scratch("glimpse-speed-cfg-"), "glimpse.toml")
    with open(config, "w") as f:
        f.write('[[sites]]\ndomain = "site0.example"\n[[sites.goals]]\nevent = "Signup"\n'
                '[[sites.goals]]\npage = "/pricing/**"\n')
    filtered = [
        ("filtered totals by country", "visitors,visits,pageviews,events,bounce_rate,visit_duration", "", "visit:country==DE", None),
        ("filtered series by country", "visitors,pageviews", "", "visit:country==DE", "date"),
        ("filtered pages by source", "visitors,pageviews", "event:page", "visit:source==Google", None),
        ("filtered sources of a page", "visitors,visits,bounce_rate", "visit:source", "event:page==/pricing/**", None),
        ("filtered two conditions", "visitors,pageviews", "visit:country", "visit:browser==Firefox;visit:device!=tablet", None),
        ("goals", "visitors,events", "event:goal", None, None),
    ]
    for label, metrics, dims, filters, interval in filtered:
        cmd = [binary, "--config", config, "explain-query", "--site", "site0.example",
               "--from", day(29), "--to", day(0), "--metrics", metrics, "--dimensions", dims]
        if filters:
            cmd += ["--filters", filters]
        if interval:
            cmd += ["--interval", interval]
        env = {k: v for k, v in os.environ.items() if k != "GLIMPSE_BIN"}
        plan = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        queries.append((label, plan.strip()))
    print(f"| {'query':<28} | {'p50 ms':>8} | {'p95 ms':>8} |")
    worst = 0.0
    for label, sql in queries:
        times = []
        for _ in range(runs):
            t = time.monotonic()
            s.query(sql, "JSONEachRow")
            times.append((time.monotonic() - t) * 1000)
        times.sort()
        p50, p95 = times[len(times) // 2], times[min(len(times) - 1, round((len(times) - 1) * 0.95))]
        worst = max(worst, p95)
        print(f"| {label:<28} | {p50:>8.1f} | {p95:>8.1f} |")
    print(f"worst p95: {worst:.1f} ms")


if __name__ == "__main__":
    main()
