-- The collector sums the daily stats of each segment itself (src/deliver/rollup.rs): one row per
-- site, UTC day, dimension and value, with the page views, the other events and the group's
-- distinct visitor ids. The fan-out view below made seventeen rows of every event and grouped
-- them, half of the server's work per event; the rows the collector sends are few and already
-- grouped, and this view only turns them into the same states.
CREATE TABLE IF NOT EXISTS stats_daily_in
(
    site String,
    day Date,
    dimension String,
    value String,
    pageviews UInt64,
    events UInt64,
    visitors Array(UInt64)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_daily_in_mv TO stats_daily AS
SELECT
    site,
    day,
    dimension,
    value,
    arrayReduce('sumState', [pageviews]) AS pageviews,
    arrayReduce('sumState', [events]) AS events,
    arrayReduce('uniqState', visitors) AS visitors
FROM stats_daily_in;

-- Rows whose daily stats the collector sent are marked. The fan-out view still counts the
-- unmarked ones: rows of an older collector during an upgrade, and the segments it spooled.
ALTER TABLE events_in
    ADD COLUMN IF NOT EXISTS rolled_up UInt8 DEFAULT 0;

-- The raw-copy view now names its columns (the mark is not stored); the collector recreates it
-- at its next start.
DROP TABLE IF EXISTS events_raw_mv;

DROP TABLE IF EXISTS stats_daily_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_daily_mv TO stats_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    dim.1 AS dimension,
    dim.2 AS value,
    sumState(toUInt64(name = 'pageview')) AS pageviews,
    sumState(toUInt64(name != 'pageview')) AS events,
    uniqState(visitor_id) AS visitors
FROM events_in
ARRAY JOIN arrayFilter(d -> d.1 != 'page' OR name = 'pageview', [
    ('page', pathname),
    ('hostname', hostname),
    ('source', referrer_source),
    ('referrer', referrer),
    ('utm_source', utm_source),
    ('utm_medium', utm_medium),
    ('utm_campaign', utm_campaign),
    ('utm_content', utm_content),
    ('utm_term', utm_term),
    ('country', country_code),
    ('region', if(region = '', '', concat(country_code, '-', region))),
    ('browser', browser),
    ('browser_version', concat(browser, ' ', browser_version)),
    ('os', os),
    ('os_version', concat(os, ' ', os_version)),
    ('device', device),
    ('event', if(name = 'pageview', '', name))
]) AS dim
WHERE name != 'engagement' AND rolled_up = 0
GROUP BY site, day, dimension, value;
