-- Daily visitor-hash salts, shared by all collectors. Only the collector's own user may read
-- this table; dashboard users must never be granted access to it (see README, "Grants").
-- One partition per day: the collector drops a day's partition 47 h after the day began, so a
-- salt is destroyed within 48 h. On servers with TTL support, a TTL backs that up.
CREATE TABLE IF NOT EXISTS glimpse_salts
(
    day Date,
    salt String,
    created_at DateTime DEFAULT now()
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY (day, salt)
TTL day + INTERVAL 2 DAY -- requires: ttl
;
