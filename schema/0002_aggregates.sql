-- Aggregates filled by materialized views as rows arrive. Dashboards read only these.
-- Visitors are uniq() states of the daily visitor id, so they merge correctly across hours,
-- pages and collectors. Counts use AggregateFunction(sum) rather than SimpleAggregateFunction,
-- which older servers lack, so the same queries run on every version.

-- Per site and hour: totals.
CREATE TABLE IF NOT EXISTS stats_hourly
(
    site LowCardinality(String),
    hour DateTime,
    pageviews AggregateFunction(sum, UInt64),
    events AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_hourly_mv TO stats_hourly AS
SELECT
    site,
    toStartOfHour(timestamp) AS hour,
    sumState(toUInt64(name = 'pageview')) AS pageviews,
    sumState(toUInt64(name != 'pageview')) AS events,
    uniqState(visitor_id) AS visitors
FROM events_in
GROUP BY site, hour;

-- Per site and day: one row per (dimension, value), e.g. ('country', 'DE') or ('page', '/pricing').
-- Regions are stored as 'CC-Region' because region names repeat across countries.
CREATE TABLE IF NOT EXISTS stats_daily
(
    site LowCardinality(String),
    day Date,
    dimension LowCardinality(String),
    value String,
    pageviews AggregateFunction(sum, UInt64),
    events AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, dimension, day, value);

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
ARRAY JOIN [
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
] AS dim
GROUP BY site, day, dimension, value;
