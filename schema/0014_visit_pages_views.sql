-- Entry and exit pages from the collector's insert table by three plain views instead of one.
-- The view of 0012 built, for every row, an array of three (kind, page, count) tuples, filtered
-- it and joined it: on 18.16 that cost 0.79 µs of CPU per row, against 0.42 µs for these three
-- views together, each a filter and a grouping (the same 40 000 rows inserted 25 times, five
-- rounds). They count exactly what it counted: an entry for a row that starts a visit, an exit
-- for every page view, and minus one exit for the page a page view replaces as its visit's exit.
-- `events_in` keeps its one view, for collectors of earlier releases.
--
-- The new views are created before the old one is dropped: a batch that another collector
-- inserts in that moment counts twice in `visit_pages_daily`. Upgrade with one collector
-- running to rule that out.
CREATE MATERIALIZED VIEW IF NOT EXISTS visit_entries_intake_mv TO visit_pages_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    'entry' AS kind,
    pathname AS page,
    sumState(toInt64(visit_entry)) AS visits
FROM events_intake
WHERE visit_entry != 0
GROUP BY site, day, kind, page;

CREATE MATERIALIZED VIEW IF NOT EXISTS visit_exits_intake_mv TO visit_pages_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    'exit' AS kind,
    pathname AS page,
    sumState(toInt64(1)) AS visits
FROM events_intake
WHERE name = 'pageview'
GROUP BY site, day, kind, page;

CREATE MATERIALIZED VIEW IF NOT EXISTS visit_exits_replaced_intake_mv TO visit_pages_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    'exit' AS kind,
    visit_exit_prev AS page,
    sumState(toInt64(-1)) AS visits
FROM events_intake
WHERE name = 'pageview' AND visit_exit_prev != ''
GROUP BY site, day, kind, page;

DROP TABLE IF EXISTS visit_pages_daily_intake_mv;
