-- Visitor days: one row per (site, day, daily visitor id) of a closed day, made from that day's
-- raw events when the day is closed (schema/close_day.sql) and kept exactly as long as the raw
-- events: retention drops both a day at a time, so no visitor id lives longer here than there.
--
-- A visit-level question filtered by what visitors did (the sources of the visitors who read
-- /pricing) otherwise groups a month of raw events by visitor, which on a busy site means
-- millions of groups per question. Each row holds what such a question needs of one visitor's
-- day: how its first visit began (source, referrer, UTM tags, entry page, as the planner reads
-- them off the raw events), the sums of the visit columns, and the (event name, page) pairs of
-- the day's events other than engagement reports, as two arrays of equal length.
--
-- Rows carry the generation of the day's copy, like the other closed tables; the copy that
-- counts is the latest one in closed_days, and only if its visitor_days flag is set (copies made
-- before this table existed have no visitor days, and their days are read from the raw events).
CREATE TABLE IF NOT EXISTS visitor_days
(
    site LowCardinality(String),
    day Date,
    generation UInt64,
    visitor_id UInt64,
    referrer_source LowCardinality(String),
    referrer String CODEC(ZSTD(1)),
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    utm_content LowCardinality(String),
    utm_term LowCardinality(String),
    page String CODEC(ZSTD(1)),
    visits UInt32,
    bounces Int32,
    duration UInt64,
    pageviews UInt32,
    events UInt32,
    name Array(String) CODEC(ZSTD(1)),
    pathname Array(String) CODEC(ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY (site, day, visitor_id);

ALTER TABLE closed_days ADD COLUMN IF NOT EXISTS visitor_days UInt8 DEFAULT 0;
