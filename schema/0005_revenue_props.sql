-- Revenue and custom-event properties, per site and day, for dashboards that must not read raw
-- events (and for aggregates-only mode, where there are none).

-- Revenue per event name and currency, in micro-units (1 EUR = 1 000 000).
CREATE TABLE IF NOT EXISTS revenue_daily
(
    site LowCardinality(String),
    day Date,
    event LowCardinality(String),
    currency LowCardinality(String),
    revenue AggregateFunction(sum, Int64),
    events AggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, event, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_daily_mv TO revenue_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    name AS event,
    revenue_currency AS currency,
    sumState(revenue_micros) AS revenue,
    sumState(toUInt64(1)) AS events
FROM events_in
WHERE revenue_currency != ''
GROUP BY site, day, event, currency;

-- Custom events by property: one row per (event, property name, property value).
CREATE TABLE IF NOT EXISTS props_daily
(
    site LowCardinality(String),
    day Date,
    event LowCardinality(String),
    key String,
    value String,
    events AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, event, key, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS props_daily_mv TO props_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    name AS event,
    key,
    value,
    sumState(toUInt64(1)) AS events,
    uniqState(visitor_id) AS visitors
FROM events_in
ARRAY JOIN prop_keys AS key, prop_values AS value
GROUP BY site, day, event, key, value;
