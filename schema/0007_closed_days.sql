-- Closed days: exact counts copied out of the visitor sketches once a day is over.
-- Merging uniq() states is what a dashboard query spends its time on (each state is decoded
-- element by element), and a finished day's answer does not change. So the collector copies
-- each finished day's aggregates into plain numbers (schema/close_day.sql). The queries in
-- schema/queries read a site's days up to its last copied day from the copies, and only the
-- later days (today, usually) from the sketches. Visitor ids change every day, so a period's
-- visitors are the sum of its days' visitors.
--
-- Each copy carries a generation (when it was made: milliseconds since the epoch times a
-- million, plus a random number below a million so that two collectors copying a day in the
-- same millisecond do not write equal ones). The copy of
-- a (site, day) that counts is the one with the latest generation in closed_days, which is
-- written after that copy's rows. When rows for a copied day arrive late (from a spool after an
-- outage), the day's sums no longer match its closed_days row and the next check copies it
-- again; until then the old copy answers.

-- The sketch tables of 0002 are rebuilt with small index granules, and stats_daily with the
-- day ahead of the dimension in its key: a granule's aggregate states are all decoded when any
-- of its rows is read, and with 8192-row granules, or a dimension's days side by side, the few
-- open days' rows shared granules with months of closed ones. Rows are copied, then the tables swap
-- names, so the views of 0002 write into the rebuilt tables. Every step can run again after a
-- failure. (Rows inserted by another collector during the copy would miss the aggregates:
-- upgrade with one collector running.)
DROP TABLE IF EXISTS stats_hourly_rebuild;
CREATE TABLE stats_hourly_rebuild
(
    site LowCardinality(String),
    hour DateTime,
    pageviews AggregateFunction(sum, UInt64),
    events AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour)
SETTINGS index_granularity = 32;
INSERT INTO stats_hourly_rebuild SELECT site, hour, pageviews, events, visitors FROM stats_hourly;
DROP TABLE IF EXISTS stats_hourly_0002;
RENAME TABLE stats_hourly TO stats_hourly_0002, stats_hourly_rebuild TO stats_hourly;
DROP TABLE stats_hourly_0002;

DROP TABLE IF EXISTS stats_daily_rebuild;
CREATE TABLE stats_daily_rebuild
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
ORDER BY (site, day, dimension, value)
SETTINGS index_granularity = 256;
INSERT INTO stats_daily_rebuild
SELECT site, day, dimension, value, pageviews, events, visitors FROM stats_daily;
DROP TABLE IF EXISTS stats_daily_0002;
RENAME TABLE stats_daily TO stats_daily_0002, stats_daily_rebuild TO stats_daily;
DROP TABLE stats_daily_0002;

-- One row per copy of a (site, day): its totals, visitors being the day's distinct visitors.
CREATE TABLE IF NOT EXISTS closed_days
(
    site LowCardinality(String),
    day Date,
    generation UInt64,
    pageviews UInt64,
    events UInt64,
    visitors UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, generation);

-- stats_hourly, closed.
CREATE TABLE IF NOT EXISTS stats_hourly_closed
(
    site LowCardinality(String),
    hour DateTime,
    generation UInt64,
    pageviews UInt64,
    events UInt64,
    visitors UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour, generation);

-- stats_daily, closed.
CREATE TABLE IF NOT EXISTS stats_daily_closed
(
    site LowCardinality(String),
    day Date,
    generation UInt64,
    dimension LowCardinality(String),
    value String,
    pageviews UInt64,
    events UInt64,
    visitors UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, dimension, day, value);
