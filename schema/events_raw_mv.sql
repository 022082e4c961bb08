-- Copies inserted rows into `events`, from both insert tables (`events_intake`, and `events_in`
-- of collectors before it). Created by the collector when retention.events_days > 0 and
-- dropped in aggregates-only mode (events_days = 0); not a numbered migration because it
-- follows the configuration. It names the stored columns: `rolled_up` only tells the views
-- which rows' daily stats the collector sent, and is not kept.
CREATE MATERIALIZED VIEW IF NOT EXISTS events_raw_mv TO events AS
SELECT
    timestamp, site, name, hostname, pathname, referrer,
    referrer_source, utm_source, utm_medium, utm_campaign, utm_content, utm_term,
    country_code, region, browser, browser_version, os, os_version,
    device, visitor_id, interactive, revenue_micros, revenue_currency, prop_keys,
    prop_values, visit_entry, visit_seconds, visit_bounce, visit_exit_prev, scroll_gain,
    scroll_first, engaged_ms, engaged_first
FROM events_in;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_intake_raw_mv TO events AS
SELECT
    timestamp, site, name, hostname, pathname, referrer,
    referrer_source, utm_source, utm_medium, utm_campaign, utm_content, utm_term,
    country_code, region, browser, browser_version, os, os_version,
    device, visitor_id, interactive, revenue_micros, revenue_currency, prop_keys,
    prop_values, visit_entry, visit_seconds, visit_bounce, visit_exit_prev, scroll_gain,
    scroll_first, engaged_ms, engaged_first
FROM events_intake;
