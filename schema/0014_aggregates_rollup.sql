-- The collector sums every aggregate of its rows itself (src/deliver/rollup.rs), not only the
-- daily stats (0011): the hourly totals and visits, entry and exit pages, engagement, revenue
-- and properties too. Each view over `events_intake` grouped every inserted row again on the
-- server; the collector sends one row per group of each chunk of a segment instead, and the
-- views below only turn those into the same states.
--
-- Rows go to `events_raw_in`, whose one view copies them into `events` while raw events are
-- kept (events_raw_mv.sql); in aggregates-only mode the collector does not send them at all.
-- `events_intake` keeps its views for collectors of the release before this one during an
-- upgrade; a later release can drop it.
CREATE TABLE IF NOT EXISTS events_raw_in
(
    timestamp DateTime,
    site String,
    name String,
    hostname String,
    pathname String,
    referrer String,
    referrer_source String,
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_content String,
    utm_term String,
    country_code String,
    region String,
    browser String,
    browser_version String,
    os String,
    os_version String,
    device String,
    visitor_id UInt64,
    interactive UInt8,
    revenue_micros Int64,
    revenue_currency String,
    prop_keys Array(String),
    prop_values Array(String),
    visit_entry UInt8 DEFAULT 0,
    visit_seconds UInt32 DEFAULT 0,
    visit_bounce Int8 DEFAULT 0,
    visit_exit_prev String DEFAULT '',
    scroll_gain UInt8 DEFAULT 0,
    scroll_first UInt8 DEFAULT 0,
    engaged_ms UInt32 DEFAULT 0,
    engaged_first UInt8 DEFAULT 0,
    rolled_up UInt8 DEFAULT 1
)
ENGINE = Null;

-- One row per group of one aggregate table, named by `target` (not `kind`: a view's alias
-- would shadow it in its WHERE). `k1`-`k3` are the group's text
-- keys and `s1`-`s5` its sums, as each view below names them; `visitors` are the group's
-- distinct visitor ids where the table counts visitors. `day` is the group's UTC day, `hour`
-- its hour for the hourly kinds.
CREATE TABLE IF NOT EXISTS aggregates_in
(
    target String,
    site String,
    day Date,
    hour DateTime,
    k1 String,
    k2 String,
    k3 String,
    s1 Int64,
    s2 Int64,
    s3 Int64,
    s4 Int64,
    s5 Int64,
    visitors Array(UInt64)
)
ENGINE = Null;

-- An hour's page views, other events and visitors leave engagement reports out; its visits,
-- bounces and duration count every row. An hour of engagement reports alone has no totals row.
CREATE MATERIALIZED VIEW IF NOT EXISTS stats_hourly_in_mv TO stats_hourly AS
SELECT
    site,
    hour,
    arrayReduce('sumState', [toUInt64(s1)]) AS pageviews,
    arrayReduce('sumState', [toUInt64(s2)]) AS events,
    arrayReduce('uniqState', visitors) AS visitors
FROM aggregates_in
WHERE target = 'hour' AND s1 + s2 > 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS visits_hourly_in_mv TO visits_hourly AS
SELECT
    site,
    hour,
    arrayReduce('sumState', [toUInt64(s3)]) AS visits,
    arrayReduce('sumState', [s4]) AS bounces,
    arrayReduce('sumState', [toUInt64(s5)]) AS duration,
    arrayReduce('sumState', [toUInt64(s1)]) AS pageviews
FROM aggregates_in
WHERE target = 'hour';

-- k1: 'entry' or 'exit'; k2: the page; s1: visits begun or ended there.
CREATE MATERIALIZED VIEW IF NOT EXISTS visit_pages_daily_in_mv TO visit_pages_daily AS
SELECT
    site,
    day,
    k1 AS kind,
    k2 AS page,
    arrayReduce('sumState', [s1]) AS visits
FROM aggregates_in
WHERE target = 'visit_page';

-- k1: the page; s1-s4: scroll gain, first scroll reports, engaged ms, first engaged reports.
CREATE MATERIALIZED VIEW IF NOT EXISTS engagement_daily_in_mv TO engagement_daily AS
SELECT
    site,
    day,
    k1 AS page,
    arrayReduce('sumState', [toUInt64(s1)]) AS scroll_sum,
    arrayReduce('sumState', [toUInt64(s2)]) AS scroll_pages,
    arrayReduce('sumState', [toUInt64(s3)]) AS engaged_ms,
    arrayReduce('sumState', [toUInt64(s4)]) AS engaged_pages
FROM aggregates_in
WHERE target = 'engagement';

-- k1: the event; k2: the currency; s1: revenue in micro-units; s2: purchases.
CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_daily_in_mv TO revenue_daily AS
SELECT
    site,
    day,
    k1 AS event,
    k2 AS currency,
    arrayReduce('sumState', [s1]) AS revenue,
    arrayReduce('sumState', [toUInt64(s2)]) AS events
FROM aggregates_in
WHERE target = 'revenue';

-- k1: the event; k2, k3: the property's name and value; s1: events.
CREATE MATERIALIZED VIEW IF NOT EXISTS props_daily_in_mv TO props_daily AS
SELECT
    site,
    day,
    k1 AS event,
    k2 AS key,
    k3 AS value,
    arrayReduce('sumState', [toUInt64(s1)]) AS events,
    arrayReduce('uniqState', visitors) AS visitors
FROM aggregates_in
WHERE target = 'prop';
