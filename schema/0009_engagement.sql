-- Engagement: scroll depth and time on page. An `engagement` row says what its report adds to
-- its visit's page (see src/visits.rs): the rise of the visit-page's maximum scroll depth and,
-- for the visit-page's first report, 1 to count it; the engaged milliseconds and, for the first
-- report with engaged time, 1 to count it. Its visit_seconds extend the visit's duration. No
-- visit or visitor identifier is added.
ALTER TABLE events_in
    ADD COLUMN IF NOT EXISTS scroll_gain UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS scroll_first UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS engaged_ms UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS engaged_first UInt8 DEFAULT 0;

ALTER TABLE events
    ADD COLUMN IF NOT EXISTS scroll_gain UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS scroll_first UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS engaged_ms UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS engaged_first UInt8 DEFAULT 0;

-- The collector recreates the raw-copy view with the new columns at its next start.
DROP TABLE IF EXISTS events_raw_mv;

-- An engagement report is neither a page view nor an event, and its visitor already counts
-- through the page view it follows: the totals' views leave it out.
DROP TABLE IF EXISTS stats_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_hourly_mv TO stats_hourly AS
SELECT
    site,
    toStartOfHour(timestamp) AS hour,
    sumState(toUInt64(name = 'pageview')) AS pageviews,
    sumState(toUInt64(name != 'pageview')) AS events,
    uniqState(visitor_id) AS visitors
FROM events_in
WHERE name != 'engagement'
GROUP BY site, hour;

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
WHERE name != 'engagement'
GROUP BY site, day, dimension, value;

-- Per site, day and page: the sum of visit-pages' maximum scroll depth and their count, the
-- engaged milliseconds and the count of visit-pages that had any. Plain sums: nothing here can
-- link two reports to one person.
CREATE TABLE IF NOT EXISTS engagement_daily
(
    site LowCardinality(String),
    day Date,
    page String,
    scroll_sum AggregateFunction(sum, UInt64),
    scroll_pages AggregateFunction(sum, UInt64),
    engaged_ms AggregateFunction(sum, UInt64),
    engaged_pages AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, page);

CREATE MATERIALIZED VIEW IF NOT EXISTS engagement_daily_mv TO engagement_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    pathname AS page,
    sumState(toUInt64(scroll_gain)) AS scroll_sum,
    sumState(toUInt64(scroll_first)) AS scroll_pages,
    sumState(toUInt64(engaged_ms)) AS engaged_ms,
    sumState(toUInt64(engaged_first)) AS engaged_pages
FROM events_in
WHERE name = 'engagement'
GROUP BY site, day, page;
