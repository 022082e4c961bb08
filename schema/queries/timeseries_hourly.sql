-- Visitors, page views and events per hour for a site over the days {from}..{to}. Hours of
-- closed days come from stats_hourly_closed, the others from the hourly sketches.
-- Placeholders: {site}, {from}, {to}.
SELECT
    hour,
    sum(pv) AS pageviews,
    sum(ev) AS events,
    sum(vis) AS visitors
FROM
(
    SELECT
        hour,
        sumMerge(pageviews) AS pv,
        sumMerge(events) AS ev,
        uniqMerge(visitors) AS vis
    FROM stats_hourly
    WHERE site = {site}
      AND hour >= toDateTime(toDate({from}))
      AND hour < toDateTime(toDate({to}) + 1)
      AND hour >= toDateTime((SELECT max(day) + 1 FROM closed_days WHERE site = {site}))
    GROUP BY hour
    UNION ALL
    SELECT hour, pageviews AS pv, events AS ev, visitors AS vis
    FROM stats_hourly_closed
    WHERE site = {site}
      AND hour >= toDateTime(toDate({from}))
      AND hour < toDateTime(toDate({to}) + 1)
      AND (toDate(hour), generation) GLOBAL IN (SELECT day, max(generation) FROM closed_days WHERE site = {site} GROUP BY day)
)
GROUP BY hour
ORDER BY hour;
