#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/glimpse.json: a Grafana dashboard for the ClickHouse data
source plugin whose every panel runs one of the queries in schema/queries/, with Grafana's
time range and a `site` variable in place of the placeholders. Run it after changing a query;
tests/queries.rs checks that the committed dashboard matches the query files and runs on a
real server.

Usage: scripts/grafana-dashboard.py [--check]   (--check: fail if the file is out of date)
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERIES = REPO / "schema" / "queries"
OUT = REPO / "deploy" / "grafana" / "dashboards" / "glimpse.json"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "glimpse-clickhouse"}

# Grafana stand-ins for the placeholders; tests/queries.rs applies the inverse. No variable
# reaches SQL as typed: Grafana percent-encodes it (`:percentencode` leaves only letters, digits,
# `-._~` and `%XX`), so inside a quoted literal it can close nothing, whatever a viewer puts in
# the URL, and ClickHouse decodes it back to a plain value. Rows per table are fixed here.
MACROS = {
    "{site}": "decodeURLComponent('${site:percentencode}')",
    "{from}": "toDate($__fromTime)",
    "{to}": "toDate($__toTime)",
    "{k}": "toUInt32OrZero(decodeURLComponent('${k:percentencode}'))",
    "{limit}": "100",
    "{offset}": "0",
}

# (title, query file, dimension, panel type, width)
PANELS = [
    ("Totals (current vs previous period)", "totals", None, "table", 12),
    ("Visits, bounce rate, duration (current vs previous)", "visits", None, "table", 12),
    ("Visitors and page views per day", "timeseries_daily", None, "timeseries", 12),
    ("Visitors and page views per hour", "timeseries_hourly", None, "timeseries", 12),
    ("Visits per hour", "visits_timeseries", None, "timeseries", 12),
    ("Top pages", "breakdown", "page", "table", 12),
    ("Entry pages", "entry_pages", None, "table", 6),
    ("Exit pages", "exit_pages", None, "table", 6),
    ("Scroll depth and time on page", "page_engagement", None, "table", 12),
    ("Sources", "breakdown", "source", "table", 12),
    ("Referrers", "breakdown", "referrer", "table", 12),
    ("UTM sources", "breakdown", "utm_source", "table", 6),
    ("UTM mediums", "breakdown", "utm_medium", "table", 6),
    ("UTM campaigns", "breakdown", "utm_campaign", "table", 6),
    ("UTM contents", "breakdown", "utm_content", "table", 6),
    ("UTM terms", "breakdown", "utm_term", "table", 6),
    ("Countries", "breakdown", "country", "table", 6),
    ("Regions", "breakdown", "region", "table", 6),
    ("Host names", "breakdown", "hostname", "table", 6),
    ("Browsers", "breakdown", "browser", "table", 6),
    ("Browser versions", "breakdown", "browser_version", "table", 6),
    ("Operating systems", "breakdown", "os", "table", 6),
    ("Operating system versions", "breakdown", "os_version", "table", 6),
    ("Devices", "breakdown", "device", "table", 6),
    ("Custom events", "breakdown", "event", "table", 6),
    ("Custom event properties", "event_props", None, "table", 12),
    ("Revenue", "revenue", None, "table", 12),
    ("Filtered out (bots, spam, shields)", "dropped", None, "table", 12),
]


def grafana_sql(name, dimension):
    sql = (QUERIES / f"{name}.sql").read_text()
    lines = [l for l in sql.splitlines() if not l.lstrip().startswith("--")]
    sql = "\n".join(lines).strip().rstrip(";")
    if dimension is not None:
        sql = sql.replace("{dimension}", f"'{dimension}'")
    for key, value in MACROS.items():
        sql = sql.replace(key, value)
    if "{" in sql.replace("${", ""):
        sys.exit(f"{name}.sql has a placeholder this script does not know")
    return sql


def dashboard():
    panels, x, y, row_h = [], 0, 0, 8
    for i, (title, name, dimension, kind, width) in enumerate(PANELS, 1):
        if x + width > 24:
            x, y = 0, y + row_h
        panel = {
            "id": i,
            "title": title,
            "type": kind,
            "datasource": DATASOURCE,
            "gridPos": {"h": row_h, "w": width, "x": x, "y": y},
            "description": f"schema/queries/{name}.sql"
                           + (f" (dimension {dimension})" if dimension else ""),
            "targets": [{
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "queryType": "timeseries" if kind == "timeseries" else "table",
                "format": 0 if kind == "timeseries" else 1,
                "rawSql": grafana_sql(name, dimension),
            }],
        }
        panels.append(panel)
        x += width
    site = {
        "name": "site", "label": "site", "type": "query",
        "query": "SELECT DISTINCT site FROM stats_hourly ORDER BY site",
        "datasource": DATASOURCE, "refresh": 1, "allowCustomValue": False,
        "current": {"text": "", "value": ""},
    }
    # k-anonymity is the operator's policy, not a viewer's choice: a constant, set here or in
    # the provisioned copy, hidden from the dashboard.
    k = {
        "name": "k", "label": "k", "type": "constant", "hide": 2, "query": "0",
        "current": {"text": "0", "value": "0"},
    }
    return {
        "uid": "glimpse",
        "title": "Glimpse",
        "tags": ["glimpse", "web analytics"],
        "timezone": "utc",
        "schemaVersion": 39,
        "time": {"from": "now-7d/d", "to": "now"},
        "templating": {"list": [site, k]},
        "panels": panels,
    }


def main():
    text = json.dumps(dashboard(), indent=2) + "\n"
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT.relative_to(REPO)} is out of date: run scripts/grafana-dashboard.py")
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(REPO)} ({len(PANELS)} panels)")


if __name__ == "__main__":
    main()
