-- Closed days without visitor sketches. The uniq() states of stats_hourly, stats_daily and
-- props_daily hold hashed visitor ids; once a day's exact copy is verified, the collector
-- deletes that day's sketches (store::closing), so no visitor hash outlives its day's salt
-- outside the raw events. Custom-event properties get a closed copy of their own, and each copy
-- in closed_days records whether it was made this way (merged: it adds to the previous copy
-- whatever sketch rows arrived since) and the sketch sums it consumed, so that a check running
-- before the deletion has taken effect does not add the same rows twice.
CREATE TABLE IF NOT EXISTS props_daily_closed
(
    site LowCardinality(String),
    day Date,
    generation UInt64,
    event LowCardinality(String),
    key String,
    value String,
    events UInt64,
    visitors UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, event, key, value);

ALTER TABLE closed_days ADD COLUMN IF NOT EXISTS merged UInt8 DEFAULT 0;
ALTER TABLE closed_days ADD COLUMN IF NOT EXISTS sketch_pageviews UInt64 DEFAULT 0;
ALTER TABLE closed_days ADD COLUMN IF NOT EXISTS sketch_events UInt64 DEFAULT 0;
