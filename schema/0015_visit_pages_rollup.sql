-- Entry and exit pages summed by the collector (src/deliver/pages.rs): per site, day, kind and
-- page of each segment, the visits entered and the net change of exits, leaving out sums of
-- zero. A visit's page views add an exit to their page and take one from the page before, so
-- over a segment they cancel but for the visit's last page. The three views of 0014 made and
-- grouped rows for every inserted row: about 1.1-1.8 µs of 18.16's CPU per event on the load
-- harness's events (replayed with `scripts/clickhouse-cost.sh`).
CREATE TABLE IF NOT EXISTS visit_pages_daily_in
(
    site String,
    day Date,
    kind String,
    page String,
    visits Int64
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS visit_pages_daily_in_mv TO visit_pages_daily AS
SELECT
    site,
    day,
    kind,
    page,
    arrayReduce('sumState', [visits]) AS visits
FROM visit_pages_daily_in;

-- Rows whose entry and exit pages the collector sent are marked; the views below count only
-- the others: rows of collectors of the release before during an upgrade, and its spooled
-- segments. `events_in` gets the column too, so both insert tables keep one column list.
ALTER TABLE events_intake
    ADD COLUMN IF NOT EXISTS pages_rolled_up UInt8 DEFAULT 0;

ALTER TABLE events_in
    ADD COLUMN IF NOT EXISTS pages_rolled_up UInt8 DEFAULT 0;

-- The views of 0014 for unmarked rows. They are created before the old ones are dropped: an
-- unmarked batch inserted in that moment counts twice. Upgrade with one collector running to
-- rule that out.
CREATE MATERIALIZED VIEW IF NOT EXISTS visit_entries_unmarked_mv TO visit_pages_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    'entry' AS kind,
    pathname AS page,
    sumState(toInt64(visit_entry)) AS visits
FROM events_intake
WHERE visit_entry != 0 AND pages_rolled_up = 0
GROUP BY site, day, kind, page;

CREATE MATERIALIZED VIEW IF NOT EXISTS visit_exits_unmarked_mv TO visit_pages_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    'exit' AS kind,
    pathname AS page,
    sumState(toInt64(1)) AS visits
FROM events_intake
WHERE name = 'pageview' AND pages_rolled_up = 0
GROUP BY site, day, kind, page;

CREATE MATERIALIZED VIEW IF NOT EXISTS visit_exits_replaced_unmarked_mv TO visit_pages_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    'exit' AS kind,
    visit_exit_prev AS page,
    sumState(toInt64(-1)) AS visits
FROM events_intake
WHERE name = 'pageview' AND visit_exit_prev != '' AND pages_rolled_up = 0
GROUP BY site, day, kind, page;

DROP TABLE IF EXISTS visit_entries_intake_mv;

DROP TABLE IF EXISTS visit_exits_intake_mv;

DROP TABLE IF EXISTS visit_exits_replaced_intake_mv;
