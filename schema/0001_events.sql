-- Raw anonymized events.
--
-- The collector inserts into `events_in`, a Null-engine table: it stores nothing itself, it only
-- feeds the materialized views that read from it. One of them (`events_raw_mv`, managed by the
-- collector from `retention.events_days`, see events_raw_mv.sql) copies rows into `events`; in
-- aggregates-only mode (events_days = 0) that view does not exist and raw rows are never stored.
--
-- No column can hold an IP address or a user-agent string.

CREATE TABLE IF NOT EXISTS events_in
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
    prop_values Array(String)
)
ENGINE = Null;

-- Partitioned by UTC day so that retention drops whole days exactly, on every server version.
CREATE TABLE IF NOT EXISTS events
(
    timestamp DateTime CODEC(Delta, ZSTD(1)),
    site LowCardinality(String),
    name LowCardinality(String),
    hostname LowCardinality(String),
    pathname String CODEC(ZSTD(1)),
    referrer String CODEC(ZSTD(1)),
    referrer_source LowCardinality(String),
    utm_source LowCardinality(String),
    utm_medium LowCardinality(String),
    utm_campaign LowCardinality(String),
    utm_content LowCardinality(String),
    utm_term LowCardinality(String),
    country_code LowCardinality(String),
    region LowCardinality(String),
    browser LowCardinality(String),
    browser_version LowCardinality(String),
    os LowCardinality(String),
    os_version LowCardinality(String),
    device LowCardinality(String),
    visitor_id UInt64,
    interactive UInt8,
    revenue_micros Int64,
    revenue_currency LowCardinality(String),
    prop_keys Array(String),
    prop_values Array(String)
)
ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (site, toDate(timestamp), visitor_id, timestamp);
