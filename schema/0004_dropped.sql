-- Events the filters removed, per site, day and reason (crawler, headless_browser,
-- referrer_spam, blocked_ip, ...). Counts only: no visitor, page or client data. The collector
-- adds rows every few seconds; SummingMergeTree folds them, and queries sum(events) anyway.
CREATE TABLE IF NOT EXISTS dropped_daily
(
    site LowCardinality(String),
    day Date,
    reason LowCardinality(String),
    events UInt64
)
ENGINE = SummingMergeTree(events)
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, reason);
