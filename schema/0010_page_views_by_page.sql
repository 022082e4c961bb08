-- The page dimension counts page views only, as Plausible's pages do: a custom event on a page
-- made the pages panel show more visitors than page views. Custom events stay in the event
-- dimension; days already stored keep their counts.
DROP TABLE IF EXISTS stats_daily_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS stats_daily_mv TO stats_daily AS
SELECT
    site,
    toDate(timestamp) AS day,
    dim.1 AS dimension,
    dim.2 AS value,
    sumState(toUInt64(name = 'pageview')) AS pageviews,
    sumState(toUInt64(name != 'pageview')) AS events,
    uniqState(visitor_id) AS visitors
FROM events_in
ARRAY JOIN arrayFilter(d -> d.1 != 'page' OR name = 'pageview', [
    ('page', pathname),
    ('hostname', hostname),
    ('source', referrer_source),
    ('referrer', referrer),
    ('utm_source', utm_source),
    ('utm_medium', utm_medium),
    ('utm_campaign', utm_campaign),
    ('utm_content', utm_content),
    ('utm_term', utm_term),
    ('country', country_code),
    ('region', if(region = '', '', concat(country_code, '-', region))),
    ('browser', browser),
    ('browser_version', concat(browser, ' ', browser_version)),
    ('os', os),
    ('os_version', concat(os, ' ', os_version)),
    ('device', device),
    ('event', if(name = 'pageview', '', name))
]) AS dim
WHERE name != 'engagement'
GROUP BY site, day, dimension, value;
