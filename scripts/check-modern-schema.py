#!/usr/bin/env python3
"""Check that Glimpse's modern-server DDL and aggregate queries work on a real
modern ClickHouse engine, using chdb (ClickHouse in-process, no server).

What it does:
  1. Runs `$GLIMPSE_BIN schema --server-version 26.3` to get the DDL Glimpse
     renders for a modern server, and checks that the modern features
     (LowCardinality, CODEC, TTL) appear in it.
  2. In a fresh temporary chdb session, creates database `glimpse`, applies
     every statement in order, then applies the whole DDL again to prove it
     is idempotent (IF NOT EXISTS everywhere). The cluster rendering
     (clickhouse.cluster set) is parsed too: a cluster cannot run in-process.
  3. Inserts ~30 test rows (2 sites, 2 days, pageviews and custom events)
     into the Null-engine table `events_in`.
  4. Checks that `events` holds exactly those rows (via events_raw_mv), that
     `stats_hourly` and `stats_daily` agree with raw GROUP BY queries over
     `events`, and that the created tables really use LowCardinality, CODEC
     and TTL. Then rebuilds `stats_daily` from rows shaped like the
     collector's daily rollup, inserted twice with one token into
     `stats_daily_in`, and checks it again.
  5. Runs every dashboard query in `schema/queries/` with its placeholders
     filled for the test data, and compares each answer with the same question
     asked of the raw events.
  6. Checks that rows inserted into `events_intake`, the collector's insert
     table, give every table but `stats_daily` the same answers as through
     `events_in` (each key's states merged: views may split a key over rows).
  7. Prints a summary; exits 0 on success, 1 (with a message) on any failure.

Usage (from anywhere):

    scripts/check-modern-schema.py [--server-version 26.3]

Environment:
    GLIMPSE_BIN  the glimpse binary (default: <repo>/target/debug/glimpse;
                 build it with `cargo build`).

Requires only Python 3 and chdb (`pip install chdb-core`).
"""

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "glimpse"
QUERIES_DIR = REPO_ROOT / "schema" / "queries"
GRANTS = REPO_ROOT / "deploy" / "clickhouse" / "grants.sql"
DATABASE = "glimpse"

# Columns of events_in / events, in DDL order.
COLUMNS = [
    "timestamp", "site", "name", "hostname", "pathname", "referrer",
    "referrer_source", "utm_source", "utm_medium", "utm_campaign",
    "utm_content", "utm_term", "country_code", "region", "browser",
    "browser_version", "os", "os_version", "device", "visitor_id",
    "interactive", "revenue_micros", "revenue_currency", "prop_keys",
    "prop_values", "visit_entry", "visit_seconds", "visit_bounce",
    "visit_exit_prev",
]

# stats_daily dimension -> equivalent expression over raw `events` columns.
DAILY_DIMENSIONS = {
    "page": "pathname",
    "hostname": "hostname",
    "country": "country_code",
    "region": "if(region = '', '', concat(country_code, '-', region))",
    "browser": "browser",
    "device": "device",
    "os": "os",
    "source": "referrer_source",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "event": "if(name = 'pageview', '', name)",
}


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


# --------------------------------------------------------------------------
# DDL


def render_ddl(server_version, extra_env=None):
    glimpse_bin = os.environ.get("GLIMPSE_BIN") or str(DEFAULT_BIN)
    if not (os.path.isfile(glimpse_bin) and os.access(glimpse_bin, os.X_OK)):
        fail(f"glimpse binary not found or not executable: {glimpse_bin}\n"
             f"hint: build it with `cargo build` (or set GLIMPSE_BIN)")
    cmd = [glimpse_bin, "schema", "--server-version", server_version]
    # glimpse rejects unknown GLIMPSE_* environment settings, so hide ours.
    env = {k: v for k, v in os.environ.items() if k != "GLIMPSE_BIN"}
    env.update(extra_env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        err = "\n".join(proc.stderr.strip().splitlines()[:10])
        fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{err}")
    ddl = proc.stdout
    for needle in ("LowCardinality(", "CODEC(", "TTL "):
        if needle not in ddl:
            fail(f"rendered DDL for {server_version} lacks {needle!r}; "
                 f"modern features must be enabled for a modern server")
    return ddl


def check_cluster_ddl(engine, server_version):
    """The cluster DDL (clickhouse.cluster set) parses on this engine, uses
    `{uuid}` replication paths, and is distributed DDL throughout. No cluster
    can run in-process, so the statements are parsed (EXPLAIN AST), not run."""
    ddl = render_ddl(server_version, {"GLIMPSE_CLICKHOUSE_CLUSTER": "glimpse"})
    statements = split_statements(ddl)
    for needle in ("ReplicatedAggregatingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')",
                   "ENGINE = Distributed(`glimpse`, `glimpse`, events_in_local, visitor_id)",
                   "ON CLUSTER `glimpse_nodes`"):
        if needle not in ddl:
            fail(f"cluster DDL for {server_version} lacks {needle!r}")
    for i, (label, sql) in enumerate(statements, 1):
        # ALTERs of a table replicated to every node reach the others by replication.
        if " ON CLUSTER " not in sql and not re.match(
                r"ALTER TABLE (`glimpse`\.)?(closed_days|glimpse_salts) ", sql):
            fail(f"cluster statement {i} ({label}) is not distributed DDL:\n{sql[:300]}")
        engine.exec(f"EXPLAIN AST {sql}", f"cluster statement {i}/{len(statements)} from {label}")
    return len(statements)


def split_statements(text):
    """Split SQL into (label, statement) pairs.

    Whole-line `--` comments are dropped (the most recent `-- *.sql` comment
    becomes the label); a statement ends at a line ending with `;`.
    """
    statements, current, label = [], [], "?"
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            name = stripped[2:].strip()
            if name.endswith(".sql"):
                label = name
            continue
        if not stripped and not current:
            continue
        current.append(line)
        if stripped.endswith(";"):
            sql = "\n".join(current).strip().rstrip(";").strip()
            if sql:
                statements.append((label, sql))
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append((label, tail))
    return statements


# --------------------------------------------------------------------------
# chdb helpers


class Engine:
    def __init__(self, session):
        self.s = session

    def exec(self, sql, what=None):
        try:
            return str(self.s.query(sql, "TabSeparated"))
        except Exception as e:  # chdb raises ChdbError / RuntimeError
            head = "\n".join(sql.splitlines()[:6])
            fail(f"ClickHouse rejected {what or 'statement'}:\n"
                 f"    {head.replace(chr(10), chr(10) + '    ')}\n"
                 f"error: {str(e).strip()}")

    def rows(self, sql):
        out = None
        try:
            out = str(self.s.query(sql, "JSONEachRow"))
        except Exception as e:
            fail(f"check query failed:\n    {sql}\nerror: {str(e).strip()}")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def scalar(self, sql):
        return self.exec(sql, "check query").strip()


def apply_ddl(engine, statements, round_no):
    for i, (label, sql) in enumerate(statements, 1):
        engine.exec(sql, f"statement {i}/{len(statements)} from {label} "
                         f"(pass {round_no})")


# --------------------------------------------------------------------------
# test data


def sql_literal(v):
    if isinstance(v, list):
        return "[" + ", ".join(sql_literal(x) for x in v) + "]"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_rows():
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [today - dt.timedelta(days=2), today - dt.timedelta(days=1)]
    visitors = [
        0x1, 0x2A, 0xDEADBEEF, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFF0,
        123456789012345, 987654321,
    ]
    pages = ["/", "/pricing", "/blog/hello-world", "/docs/it's-fine", "/café"]
    geo = [("DE", "BE"), ("US", "CA"), ("FR", ""), ("GB", "ENG"), ("", "")]
    browsers = [("Firefox", "128"), ("Chrome", "126"), ("Safari", "17")]
    oses = [("Linux", ""), ("Windows", "11"), ("macOS", "14"), ("iOS", "17")]
    devices = ["desktop", "mobile", "tablet"]
    sources = [("", ""), ("https://www.google.com/", "Google"),
               ("https://news.ycombinator.com/item?id=1", "Hacker News")]
    utms = [("", "", ""), ("newsletter", "email", "spring"),
            ("twitter", "social", "")]
    custom = ["signup", "purchase", "outbound-link"]

    rows = []
    for n in range(30):
        site = "a.com" if n % 3 != 2 else "b.org"
        day = days[n % 2]
        ts = dt.datetime.combine(day, dt.time(9 + n % 5, (n * 7) % 60, n % 60))
        is_custom = n % 4 == 3
        name = custom[n % 3] if is_custom else "pageview"
        country, region = geo[n % 5]
        browser, bver = browsers[n % 3]
        os_, osver = oses[n % 4]
        referrer, source = sources[n % 3]
        utm_source, utm_medium, utm_campaign = utms[(n // 2) % 3]
        revenue = 12_340_000 if name == "purchase" else 0
        props = [("plan", "pro"), ("ref", "x")] if is_custom else []
        rows.append({
            "timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"),
            "site": site,
            "name": name,
            "hostname": site if n % 5 else "www." + site,
            "pathname": pages[n % 5],
            "referrer": referrer,
            "referrer_source": source,
            "utm_source": utm_source,
            "utm_medium": utm_medium,
            "utm_campaign": utm_campaign,
            "utm_content": "",
            "utm_term": "",
            "country_code": country,
            "region": region,
            "browser": browser,
            "browser_version": bver,
            "os": os_,
            "os_version": osver,
            "device": devices[n % 3],
            # Ids differ between days, as the collector's do (a new salt every day).
            "visitor_id": visitors[(n * 3) % 7] ^ ((n % 2) << 48),
            "interactive": 0 if n % 7 == 6 else 1,
            "revenue_micros": revenue,
            "revenue_currency": "EUR" if revenue else "",
            "prop_keys": [k for k, _ in props],
            "prop_values": [v for _, v in props],
            # Visit steps as the collector writes them (values, not a real sequence: the
            # aggregates must simply add them up).
            "visit_entry": 1 if n % 3 == 0 else 0,
            "visit_seconds": 0 if n % 3 == 0 else 60 * (n % 7),
            "visit_bounce": 1 if n % 3 == 0 else (-1 if n % 6 == 1 else 0),
            "visit_exit_prev": "" if n % 3 == 0 or is_custom else pages[(n + 1) % 5],
        })
    return rows


def insert_rows(engine, rows, settings="", table="events_in"):
    values = ",\n".join(
        "(" + ", ".join(sql_literal(r[c]) for c in COLUMNS) + ")" for r in rows)
    engine.exec(f"INSERT INTO {table} ({', '.join(COLUMNS)}) {settings} VALUES\n{values}",
                f"INSERT into {table}")


# What the deliverer sends with every INSERT of a spool segment on servers with tokens.
def dedup_settings(token):
    return ("SETTINGS deduplicate_blocks_in_dependent_materialized_views = 1, "
            f"insert_deduplication_token = '{token}'")


def check_dedup(engine, rows):
    """A segment inserted again with its token (a retry after a lost answer, or a replay after
    a crash) must not be stored twice, in the raw table or in any aggregate."""
    def totals():
        return (engine.scalar("SELECT count() FROM events"),
                engine.scalar("SELECT sumMerge(pageviews) + sumMerge(events) FROM stats_hourly"),
                engine.scalar("SELECT sumMerge(pageviews) + sumMerge(events) FROM stats_daily"),
                engine.scalar("SELECT sumMerge(events) FROM revenue_daily"),
                engine.scalar("SELECT sumMerge(events) FROM props_daily"),
                engine.scalar("SELECT sumMerge(visits) + sumMerge(duration) FROM visits_hourly"),
                engine.scalar("SELECT sumMerge(visits) FROM visit_pages_daily WHERE kind = 'entry'"))
    before = totals()
    insert_rows(engine, rows, dedup_settings("glimpse-check-1"))
    once = totals()
    for _ in range(2):
        insert_rows(engine, rows, dedup_settings("glimpse-check-1"))
    if totals() != once:
        fail(f"a retried segment was stored again: {once} -> {totals()}")
    insert_rows(engine, rows, dedup_settings("glimpse-check-2"))
    twice = totals()
    if [int(t) - int(b) for t, b in zip(twice, before)] != \
            [2 * (int(o) - int(b)) for o, b in zip(once, before)]:
        fail(f"a new segment with another token was not stored: {before} {once} {twice}")
    return int(once[0]) - int(before[0])


# --------------------------------------------------------------------------
# checks


def row_key(r):
    return json.dumps([r[c] for c in COLUMNS], sort_keys=True)


def check_events(engine, rows):
    got = engine.rows(f"SELECT {', '.join(COLUMNS)} FROM events")
    if len(got) != len(rows):
        fail(f"events holds {len(got)} rows, expected {len(rows)} "
             f"(events_raw_mv should copy events_in into events exactly once)")
    want = sorted(row_key(r) for r in rows)
    have = sorted(row_key(r) for r in got)
    if want != have:
        missing = sorted(set(want) - set(have))[:3]
        extra = sorted(set(have) - set(want))[:3]
        fail("events does not hold exactly the inserted rows\n"
             f"  missing (first 3): {missing}\n  unexpected (first 3): {extra}")


def compare(label, want, have):
    if want != have:
        lines = [f"{label}: aggregate table disagrees with raw events"]
        for k in sorted(set(want) | set(have)):
            if want.get(k) != have.get(k):
                lines.append(f"  {k}: raw={want.get(k)} aggregate={have.get(k)}")
        fail("\n".join(lines[:20]))
    if not want:
        fail(f"{label}: no rows to compare (test data did not reach it?)")


def keyed(rows, keys):
    return {tuple(r[k] for k in keys):
            (int(r["pageviews"]), int(r["events"]), int(r["visitors"]))
            for r in rows}


RAW_AGG = ("countIf(name = 'pageview') AS pageviews, "
           "countIf(name != 'pageview') AS events, "
           "uniqExact(visitor_id) AS visitors")
MERGED_AGG = ("sumMerge(pageviews) AS pageviews, sumMerge(events) AS events, "
              "uniqMerge(visitors) AS visitors")


def check_hourly(engine):
    checked = 0
    for keys, raw_group, agg_group in (
        (["site"], "site", "site"),
        (["site", "hour"], "site, toStartOfHour(timestamp) AS hour",
         "site, hour"),
    ):
        raw = keyed(engine.rows(
            f"SELECT {raw_group}, {RAW_AGG} FROM events "
            f"GROUP BY {', '.join(keys)}"), keys)
        agg = keyed(engine.rows(
            f"SELECT {agg_group}, {MERGED_AGG} FROM stats_hourly "
            f"GROUP BY {', '.join(keys)}"), keys)
        compare(f"stats_hourly by {'+'.join(keys)}", raw, agg)
        checked += len(raw)
    return checked


def check_daily(engine):
    present = {r["dimension"] for r in engine.rows(
        "SELECT DISTINCT dimension FROM stats_daily")}
    missing = sorted(set(DAILY_DIMENSIONS) - present)
    if missing:
        fail(f"stats_daily has no rows for dimension(s) {missing}")
    checked = 0
    keys = ["site", "day", "value"]
    for dim, expr in DAILY_DIMENSIONS.items():
        # Pages count page views only (migration 0010).
        only = "WHERE name = 'pageview' " if dim == "page" else ""
        raw = keyed(engine.rows(
            f"SELECT site, toDate(timestamp) AS day, {expr} AS value, "
            f"{RAW_AGG} FROM events {only}GROUP BY site, day, value"), keys)
        agg = keyed(engine.rows(
            f"SELECT site, day, value, {MERGED_AGG} FROM stats_daily "
            f"WHERE dimension = {sql_literal(dim)} "
            f"GROUP BY site, day, value"), keys)
        compare(f"stats_daily dimension {dim!r}", raw, agg)
        checked += len(raw)
    return checked


def check_rollup(engine):
    """The collector sums each segment's daily stats itself and inserts one row per site, day,
    dimension and value, with its distinct visitors, into `stats_daily_in`. Its view must build
    the same states as the fan-out view did, and an insert retried with its token must count
    once."""
    engine.exec("TRUNCATE TABLE stats_daily")
    groups = []
    for dim, expr in DAILY_DIMENSIONS.items():
        only = "AND name = 'pageview' " if dim == "page" else ""
        groups += engine.rows(
            f"SELECT site, toString(toDate(timestamp)) AS day, {sql_literal(dim)} AS dimension, "
            f"{expr} AS value, countIf(name = 'pageview') AS pv, "
            f"countIf(name != 'pageview') AS ev, groupUniqArray(visitor_id) AS visitors "
            f"FROM events WHERE name != 'engagement' {only}GROUP BY site, day, value")
    values = ",\n".join(
        "(" + ", ".join([sql_literal(g["site"]), sql_literal(g["day"]),
                         sql_literal(g["dimension"]), sql_literal(g["value"]),
                         str(int(g["pv"])), str(int(g["ev"])),
                         "[" + ", ".join(str(int(v)) for v in g["visitors"]) + "]"]) + ")"
        for g in groups)
    for _ in range(2):
        engine.exec(
            "INSERT INTO stats_daily_in (site, day, dimension, value, pageviews, events, "
            f"visitors) {dedup_settings('glimpse-check-rollup-daily')} VALUES\n{values}",
            "INSERT into stats_daily_in")
    return len(groups), check_daily(engine)


# Tables the insert tables' views write, with `events` (the raw copy).
INTAKE_TARGETS = ["events", "stats_hourly", "visits_hourly", "visit_pages_daily",
                  "engagement_daily", "revenue_daily", "props_daily"]


def snapshot(engine, table):
    """What a table answers: its rows in a fixed order, or for an aggregating table each key's
    states merged (views may split a key's counts over several rows, as merges would join
    them)."""
    columns = engine.rows(
        f"SELECT name, type FROM system.columns WHERE database = '{DATABASE}' "
        f"AND table = '{table}' ORDER BY position")
    keys = [c["name"] for c in columns if not c["type"].startswith("AggregateFunction")]
    function = re.compile(r"AggregateFunction\((\w+)")
    states = [function.match(c["type"]).group(1) + f"Merge({c['name']})"
              for c in columns if c["type"].startswith("AggregateFunction")]
    if not states:
        return engine.rows(f"SELECT {', '.join(keys)} FROM {table} ORDER BY {', '.join(keys)}")
    exprs = keys + states
    return engine.rows(f"SELECT {', '.join(exprs)} FROM {table} GROUP BY {', '.join(keys)} "
                       f"ORDER BY {', '.join(exprs)}")


def check_intake(engine, rows):
    """The collector inserts into `events_intake`: every view of `events_in` but the daily
    fan-out (the collector sums daily stats itself) must give the same rows from it."""
    def truncate():
        for table in INTAKE_TARGETS + ["stats_daily"]:
            engine.exec(f"TRUNCATE TABLE {table}")
    truncate()
    insert_rows(engine, rows)
    legacy = {t: snapshot(engine, t) for t in INTAKE_TARGETS}
    truncate()
    insert_rows(engine, rows, table="events_intake")
    for table in INTAKE_TARGETS:
        # The test rows hold no engagement reports: that table is compared empty.
        if not legacy[table] and table != "engagement_daily":
            fail(f"the test rows leave {table} empty")
        if snapshot(engine, table) != legacy[table]:
            fail(f"{table} differs when the rows go through events_intake")
    if engine.scalar("SELECT count() FROM stats_daily") != "0":
        fail("events_intake fanned daily stats out; the collector sends those itself")
    # Back to the state the later checks expect: the rows through events_in.
    truncate()
    insert_rows(engine, rows)
    return len(INTAKE_TARGETS)


def check_features(engine):
    events = engine.scalar("SHOW CREATE TABLE events FORMAT TSVRaw")
    for needle in ("LowCardinality(", "CODEC("):
        if needle not in events:
            fail(f"SHOW CREATE TABLE events lacks {needle!r}:\n{events}")
    salts = engine.scalar("SHOW CREATE TABLE glimpse_salts FORMAT TSVRaw")
    # The TTL backstop the collector sets at every start (also on tables made by older releases).
    for needle in ("TTL toDateTime(day, 'UTC') + toIntervalHour(40)", "merge_with_ttl_timeout = 3600",
                   "ttl_only_drop_parts = 1"):
        if needle not in salts:
            fail(f"SHOW CREATE TABLE glimpse_salts lacks {needle!r}:\n{salts}")
    # And the backstop works: a salt of three days ago and one of today, then a merge (what the
    # server does at least hourly): the old one's part is dropped, today's stays.
    engine.exec("INSERT INTO glimpse_salts (day, salt) VALUES "
                "(today() - 3, repeat('a', 64)), (today(), repeat('b', 64))")
    engine.exec("OPTIMIZE TABLE glimpse_salts FINAL")
    left = engine.scalar("SELECT arrayStringConcat(groupArray(toString(day - today())), ',') "
                         "FROM glimpse_salts")
    if left != "0":
        fail(f"the salts' TTL left days {left!r} (relative to today); expected only 0")
    engine.exec("TRUNCATE TABLE glimpse_salts")
    for table in ("events_intake", "events_in"):
        engine_of = engine.scalar(
            f"SELECT engine FROM system.tables WHERE database = '{DATABASE}' "
            f"AND name = '{table}'")
        if engine_of != "Null":
            fail(f"{table} should use the Null engine, found {engine_of!r}")


def display(path):
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def render_query(text, site, day_from, day_to, dimension="page", k=0, limit=1000):
    """Fills the placeholders as Glimpse does (quoted literals), minus the final ';'."""
    values = {
        "{site}": sql_literal(site), "{from}": sql_literal(day_from),
        "{to}": sql_literal(day_to), "{dimension}": sql_literal(dimension),
        "{k}": str(k), "{limit}": str(limit), "{offset}": "0",
    }
    for key, value in values.items():
        text = text.replace(key, value)
    if "{" in text:
        fail(f"unknown placeholder left in query:\n{text}")
    return text.strip().rstrip(";")


def run_query_files(engine):
    """Runs every dashboard query with its placeholders filled for the test data's site and
    days, and compares the answers with the same questions asked of the raw events."""
    if not QUERIES_DIR.is_dir():
        fail(f"{display(QUERIES_DIR)}/ not found")
    days = [r["d"] for r in engine.rows(
        "SELECT toString(toDate(timestamp)) AS d FROM events GROUP BY d ORDER BY d")]
    day_from, day_to = days[0], days[-1]
    site = "a.com"
    where = f"site = '{site}'"
    texts = {p.stem: p.read_text() for p in sorted(QUERIES_DIR.glob("*.sql"))}

    def run(name, **kw):
        return engine.rows(render_query(texts[name], site, day_from, day_to, **kw))

    def same(label, got, want):
        got = [list(r.values()) for r in got]
        want = [list(r.values()) for r in want]
        if [[str(x) for x in r] for r in got] != [[str(x) for x in r] for r in want]:
            fail(f"{label}: query gave {got}, raw events give {want}")

    same("totals", run("totals"), engine.rows(
        f"SELECT 'current' AS period, countIf(name = 'pageview') AS p, "
        f"countIf(name != 'pageview') AS e, uniqExact(visitor_id) AS v "
        f"FROM events WHERE {where}"))
    same("timeseries_daily", run("timeseries_daily"), engine.rows(
        f"SELECT toDate(timestamp) AS day, countIf(name = 'pageview') AS p, "
        f"countIf(name != 'pageview') AS e, uniqExact(visitor_id) AS v "
        f"FROM events WHERE {where} GROUP BY day ORDER BY day"))
    same("timeseries_hourly", run("timeseries_hourly"), engine.rows(
        f"SELECT toStartOfHour(timestamp) AS h, countIf(name = 'pageview') AS p, "
        f"countIf(name != 'pageview') AS e, uniqExact(visitor_id) AS v "
        f"FROM events WHERE {where} GROUP BY h ORDER BY h"))
    for dim, expr in DAILY_DIMENSIONS.items():
        # Pages count page views only.
        only = " AND name = 'pageview'" if dim == "page" else ""
        same(f"breakdown {dim}", run("breakdown", dimension=dim), engine.rows(
            f"SELECT value, v, p, e FROM (SELECT {expr} AS value, "
            f"uniqExact(visitor_id) AS v, countIf(name = 'pageview') AS p, "
            f"countIf(name != 'pageview') AS e FROM events WHERE {where}{only} "
            f"GROUP BY value) ORDER BY v DESC, p DESC, value"))
    folded = run("breakdown", dimension="page", k=3)
    if any(r["value"] != "(other)" and int(r["visitors"]) < 3 for r in folded):
        fail(f"breakdown with k=3 shows a row under 3 visitors: {folded}")
    same("event_props", run("event_props"), engine.rows(
        f"SELECT name, k, v, count() AS c, uniqExact(visitor_id) AS u FROM events "
        f"ARRAY JOIN prop_keys AS k, prop_values AS v WHERE {where} "
        f"GROUP BY name, k, v ORDER BY c DESC, name, k, v"))
    same("revenue", run("revenue"), engine.rows(
        f"SELECT name, revenue_currency, sum(revenue_micros) / 1000000 AS r, count() AS c "
        f"FROM events WHERE {where} AND revenue_currency != '' "
        f"GROUP BY name, revenue_currency ORDER BY name, revenue_currency"))
    run("dropped")  # no drops in this data: it must only run
    same("visits", run("visits"), engine.rows(
        f"SELECT 'current' AS period, v, if(v = 0, 0, round(100 * b / v)) AS br, "
        f"if(v = 0, 0, round(d / v)) AS dur, if(v = 0, 0, round(p / v, 2)) AS ppv FROM ("
        f"SELECT sum(visit_entry) AS v, sum(visit_bounce) AS b, sum(visit_seconds) AS d, "
        f"countIf(name = 'pageview') AS p FROM events WHERE {where})"))
    same("visits_timeseries", run("visits_timeseries"), engine.rows(
        f"SELECT toStartOfHour(timestamp) AS h, sum(visit_entry) AS v, sum(visit_bounce) AS b, "
        f"sum(visit_seconds) AS d, countIf(name = 'pageview') AS p FROM events WHERE {where} "
        f"GROUP BY h ORDER BY h"))
    same("entry_pages", run("entry_pages"), engine.rows(
        f"SELECT pathname AS page, sum(visit_entry) AS v FROM events WHERE {where} "
        f"GROUP BY page HAVING v > 0 ORDER BY v DESC, page"))
    same("exit_pages", run("exit_pages"), engine.rows(
        f"SELECT page, sum(w) AS v FROM (SELECT pathname AS page, toInt64(name = 'pageview') "
        f"AS w FROM events WHERE {where} UNION ALL SELECT visit_exit_prev AS page, "
        f"-toInt64(name = 'pageview' AND visit_exit_prev != '') AS w FROM events "
        f"WHERE {where}) GROUP BY page HAVING v > 0 ORDER BY v DESC, page"))
    for name in texts:
        print(f"ran     {display(QUERIES_DIR / (name + '.sql'))}")
    return len(texts), 0


PLANNER_CONFIG = """
[[sites]]
domain = "a.com"
[[sites.goals]]
event = "signup"
[[sites.goals]]
page = "/blog/**"
[[sites]]
domain = "b.org"
"""


def check_planner(engine, tmpdir):
    """The stats APIs' planner SQL for raw events (`glimpse explain-query`), run on this
    engine, answers as hand-written SQL over the raw events does: each operator, an entry
    dimension (with visit metrics: closed days from visitor_days), goals, and time
    buckets."""
    glimpse_bin = os.environ.get("GLIMPSE_BIN") or str(DEFAULT_BIN)
    config = os.path.join(tmpdir, "planner.toml")
    with open(config, "w") as f:
        f.write(PLANNER_CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "GLIMPSE_BIN"}
    days = [r["d"] for r in engine.rows(
        "SELECT toString(toDate(timestamp)) AS d FROM events GROUP BY d ORDER BY d")]
    day_from, day_to = days[0], days[-1]
    rng = (f"site = 'a.com' AND timestamp >= toDateTime(toDate('{day_from}')) "
           f"AND timestamp < toDateTime(toDate('{day_to}') + 1)")

    def plan(metrics, dims="", filters=None, interval=None):
        cmd = [glimpse_bin, "--config", config, "explain-query", "--site", "a.com",
               "--from", day_from, "--to", day_to, "--metrics", metrics, "--dimensions", dims]
        if filters:
            cmd += ["--filters", filters]
        if interval:
            cmd += ["--interval", interval]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            fail(f"`{' '.join(cmd)}` exited with {proc.returncode}: {proc.stderr.strip()}")
        return engine.rows(proc.stdout.strip())

    def rows_of(rows):
        return sorted([[str(v) for v in r.values()] for r in rows])

    cases = [
        ("is, one of several", plan("visitors,pageviews,events", filters="visit:country==DE|US"),
         f"SELECT uniqExactIf(visitor_id, c), countIf(c AND name = 'pageview'), countIf(c) FROM "
         f"(SELECT *, country_code IN ('DE', 'US') AND name != 'engagement' AS c FROM events WHERE {rng})"),
        ("is_not and contains", plan("visitors,events", "visit:browser",
                                     "visit:os!=iOS;event:page~blog"),
         f"SELECT browser, uniqExact(visitor_id), count() FROM events WHERE {rng} "
         f"AND name != 'engagement' AND os != 'iOS' AND position(pathname, 'blog') > 0 "
         f"GROUP BY browser"),
        ("matches (a page wildcard) and contains_not",
         plan("visitors,pageviews", "visit:device", "event:page==/blog/**;visit:country!~U"),
         f"SELECT device, uniqExact(visitor_id), countIf(name = 'pageview') FROM events "
         f"WHERE {rng} AND name != 'engagement' AND match(pathname, '^/blog/.*$') "
         f"AND position(country_code, 'U') = 0 GROUP BY device"),
        ("visits of the matching visitors", plan("visits", filters="visit:browser==Firefox"),
         f"SELECT sum(visit_entry) FROM events WHERE {rng} AND visitor_id IN "
         f"(SELECT visitor_id FROM events WHERE {rng} AND browser = 'Firefox')"),
        ("an entry dimension: the first visit's source", plan("visitors", "visit:source"),
         f"SELECT e.s, uniqExactIf(visitor_id, name != 'engagement') FROM events ANY LEFT JOIN "
         f"(SELECT visitor_id, argMin(referrer_source, timestamp) AS s FROM events "
         f"WHERE {rng} AND visit_entry = 1 GROUP BY visitor_id) AS e USING visitor_id "
         f"WHERE {rng} GROUP BY e.s"),
        ("visit metrics by the first visit's source, of the visitors who read the blog",
         plan("visitors,visits,bounce_rate,visit_duration", "visit:source", "event:page==/blog/**"),
         f"SELECT e.s, uniqExactIf(visitor_id, name != 'engagement'), sum(visit_entry) AS v, "
         f"if(v = 0, 0, round(100 * sum(visit_bounce) / v)), "
         f"if(v = 0, 0, round(sum(visit_seconds) / v)) FROM events ANY LEFT JOIN "
         f"(SELECT visitor_id, argMin(referrer_source, timestamp) AS s FROM events "
         f"WHERE {rng} AND visit_entry = 1 GROUP BY visitor_id) AS e USING visitor_id "
         f"WHERE {rng} AND visitor_id IN (SELECT visitor_id FROM events WHERE {rng} "
         f"AND name != 'engagement' AND match(pathname, '^/blog/.*$')) GROUP BY e.s"),
        ("an entry filter: visitors who began a visit from Google",
         plan("visitors,pageviews", "visit:device", "visit:source==Google"),
         f"SELECT device, uniqExact(visitor_id), countIf(name = 'pageview') FROM events "
         f"WHERE {rng} AND name != 'engagement' AND visitor_id IN (SELECT visitor_id FROM "
         f"events WHERE {rng} AND visit_entry = 1 AND referrer_source = 'Google') "
         f"GROUP BY device"),
        ("goals", plan("visitors,events", "event:goal"),
         f"SELECT g, uniqExact(visitor_id), count() FROM (SELECT visitor_id, 'signup' AS g "
         f"FROM events WHERE {rng} AND name = 'signup' UNION ALL SELECT visitor_id, "
         f"'Visit /blog/**' FROM events WHERE {rng} AND name = 'pageview' "
         f"AND match(pathname, '^/blog/.*$')) GROUP BY g"),
        ("days", plan("pageviews", filters="visit:device!=tablet", interval="date"),
         f"SELECT toString(toDate(timestamp)) AS d, countIf(name = 'pageview') FROM events "
         f"WHERE {rng} AND device != 'tablet' GROUP BY d"),
    ]
    for label, got, want_sql in cases:
        want = engine.rows(want_sql)
        if rows_of(got) != rows_of(want):
            fail(f"planner, {label}: the plan gave {rows_of(got)}, raw SQL gives {rows_of(want)}")
    print(f"planner: {len(cases)} filtered questions agree with hand-written SQL")
    return len(cases)


def check_grants(engine):
    """The access recipe parses on this server and names only tables the schema made.

    The in-process engine has no writable user storage, so the statements are parsed
    (EXPLAIN AST), not executed; tests/queries.rs checks which tables they grant.
    """
    statements = split_statements(GRANTS.read_text())
    tables = {r["name"] for r in engine.rows(
        f"SELECT name FROM system.tables WHERE database = '{DATABASE}'")}
    for _, sql in statements:
        engine.exec(f"EXPLAIN AST {sql}", f"{display(GRANTS)}: {sql}")
        for table in re.findall(rf"\bON {DATABASE}\.(\w+)", sql):
            if table not in tables:
                fail(f"{display(GRANTS)} grants {DATABASE}.{table}, which the schema lacks")
    return len(statements)


def close_days(engine):
    """Copies every (site, day) but the last day into the closed-day tables with
    schema/close_day.sql, as the collector does once a day is over (a first copy: base
    generation 0), then deletes the day's sketches. Returns how many."""
    text = (REPO_ROOT / "schema" / "close_day.sql").read_text()
    last = engine.scalar("SELECT toString(max(toDate(hour))) FROM stats_hourly")
    days = engine.rows(
        f"SELECT site, toString(toDate(hour)) AS d, sumMerge(pageviews) AS p, "
        f"sumMerge(events) AS e FROM stats_hourly WHERE toDate(hour) < '{last}' "
        f"GROUP BY site, d ORDER BY site, d")
    for n, day in enumerate(days, 1):
        values = {"{site}": sql_literal(day["site"]), "{day}": sql_literal(day["d"]),
                  "{generation}": str(n), "{base}": "0",
                  "{sketch_pageviews}": str(day["p"]), "{sketch_events}": str(day["e"]),
                  "{pageviews}": str(day["p"]), "{events}": str(day["e"])}
        for _, stmt in split_statements(text):
            for key, value in values.items():
                stmt = stmt.replace(key, value)
            engine.exec(stmt, "close_day.sql")
        for table, day_expr in (("stats_hourly", "toDate(hour)"), ("stats_daily", "day"),
                                ("props_daily", "day")):
            engine.exec(
                f"ALTER TABLE {table} DELETE WHERE site = {sql_literal(day['site'])} "
                f"AND {day_expr} = toDate({sql_literal(day['d'])}) "
                f"SETTINGS mutations_sync = 1", "delete sketches")
    return len(days)


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-version", default="26.3",
                    help="server version to render the DDL for (default 26.3)")
    args = ap.parse_args()
    started = time.monotonic()

    try:
        from chdb import session as chs
    except ImportError:
        print("FAIL: python module chdb not found (pip install chdb-core)",
              file=sys.stderr)
        return 1

    tmpdir = tempfile.mkdtemp(prefix="glimpse-chdb-")
    session = None
    try:
        ddl = render_ddl(args.server_version)
        statements = split_statements(ddl)
        if not statements:
            fail("glimpse schema produced no SQL statements")

        session = chs.Session(os.path.join(tmpdir, "db"))
        engine = Engine(session)
        engine.exec(f"CREATE DATABASE {DATABASE}")
        engine.exec(f"USE {DATABASE}")
        if engine.scalar("SELECT currentDatabase()") != DATABASE:
            fail("USE did not switch the chdb session's current database")
        version = engine.scalar("SELECT version()")

        apply_ddl(engine, statements, 1)
        objects = engine.scalar(
            f"SELECT count() FROM system.tables WHERE database = '{DATABASE}'")
        apply_ddl(engine, statements, 2)
        again = engine.scalar(
            f"SELECT count() FROM system.tables WHERE database = '{DATABASE}'")
        if objects != again:
            fail(f"second DDL pass changed the table count: {objects} -> {again}")
        print(f"applied {len(statements)} statements twice "
              f"({objects} tables/views in {DATABASE})")

        parsed = check_cluster_ddl(engine, args.server_version)
        print(f"cluster DDL: {parsed} statements parse")

        rows = make_rows()
        insert_rows(engine, rows)
        check_events(engine, rows)
        hourly = check_hourly(engine)
        daily = check_daily(engine)
        rolled, rolled_checked = check_rollup(engine)
        print(f"daily rollup: {rolled} rows inserted twice with one token into stats_daily_in "
              f"give the same {rolled_checked} groups")
        check_features(engine)
        targets = check_intake(engine, rows)
        print(f"events_intake: the same rows give the same {targets} tables as events_in, "
              f"and no daily fan-out")
        print(f"events: {len(rows)} rows match; stats_hourly: {hourly} groups "
              f"match; stats_daily: {daily} groups over "
              f"{len(DAILY_DIMENSIONS)} dimensions match")
        deduped = check_dedup(engine, rows)
        print(f"deduplication: a segment of {deduped} rows retried with its token "
              f"is stored once in events and every aggregate")
        ran, skipped = run_query_files(engine)
        grants = check_grants(engine)
        print(f"{display(GRANTS)}: {grants} statements parse; every granted table exists")
        closed = close_days(engine)
        if closed == 0:
            fail("the test data has no day to close")
        run_query_files(engine)
        check_planner(engine, tmpdir)
        print(f"closed {closed} (site, day) pairs with schema/close_day.sql; "
              f"the query files still agree with the raw events")

        print(f"OK: Glimpse DDL for server {args.server_version} is valid on "
              f"ClickHouse {version} (chdb); {len(statements)} statements, "
              f"{len(rows)} rows, {ran} query files run, {skipped} skipped "
              f"[{time.monotonic() - started:.1f}s]")
        return 0
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        if session is not None:
            try:
                session.close()
            except Exception:
                pass
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
