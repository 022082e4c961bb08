-- Visits. Each row says what its event changes about its visit (see src/visits.rs): whether it
-- starts one, the seconds since the visit's previous event, +1/-1 to the bounce count, and the
-- page it replaces as the visit's exit page. No visit or visitor identifier is added.
ALTER TABLE events_in
    ADD COLUMN IF NOT EXISTS visit_entry UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS visit_seconds UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS visit_bounce Int8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS visit_exit_prev String DEFAULT '';

ALTER TABLE events
    ADD COLUMN IF NOT EXISTS visit_entry UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS visit_seconds UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS visit_bounce Int8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS visit_exit_prev String DEFAULT '';

-- The raw-copy view fixed its column list when it was created; the collector recreates it with
-- the new columns at its next start (it manages that view, following retention.events_days).
DROP TABLE IF EXISTS events_raw_mv;

-- Per site and hour: visits started, bounces, seconds of visit time, page views.
CREATE TABLE IF NOT EXISTS visits_hourly
(
    site LowCardinality(String),
    hour DateTime,
    visits AggregateFunction(sum, UInt64),
    bounces AggregateFunction(sum, Int64),
    duration AggregateFunction(sum, UInt64),
    pageviews AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS visits_hourly_mv TO visits_hourly AS
SELECT
    site,
    toStartOfHour(timestamp) AS hour,
    sumState(toUInt64(visit_entry)) AS visits,
    sumState(toInt64(visit_bounce)) AS bounces,
    sumState(toUInt64(visit_seconds)) AS duration,
    sumState(toUInt64(name = 'pageview')) AS pageviews
FROM events_in
GROUP BY site, hour;

-- Per site and day: visits by entry page and by exit page. A page view moving a visit's exit
-- page adds 1 to the new page and takes 1 from the one it replaces.
CREATE TABLE IF NOT EXISTS visit_pages_daily
(
    site LowCardinality(String),
    day Date,
    kind LowCardinality(String),
    page String,
    visits AggregateFunction(sum, Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, kind, page);

CREATE MATERIALIZED VIEW IF NOT EXISTS visit_pages_daily_mv TO visit_pages_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    step.1 AS kind,
    step.2 AS page,
    sumState(step.3) AS visits
FROM events_in
ARRAY JOIN arrayFilter(x -> x.3 != 0, [
    ('entry', pathname, toInt64(visit_entry)),
    ('exit', pathname, toInt64(name = 'pageview')),
    ('exit', visit_exit_prev, -toInt64(name = 'pageview' AND visit_exit_prev != ''))
]) AS step
GROUP BY site, day, kind, page;
