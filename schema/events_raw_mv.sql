-- Copies inserted rows into `events`. Created by the collector when retention.events_days > 0
-- and dropped in aggregates-only mode (events_days = 0); not a numbered migration because it
-- follows the configuration.
CREATE MATERIALIZED VIEW IF NOT EXISTS events_raw_mv TO events AS
SELECT * FROM events_in;
