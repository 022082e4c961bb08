-- Visitors, page views and events per hour for a site over the days {from}..{to}.
-- Placeholders: {site}, {from}, {to}.
SELECT
    hour,
    sumMerge(pageviews) AS pageviews,
    sumMerge(events) AS events,
    uniqMerge(visitors) AS visitors
FROM stats_hourly
WHERE site = {site}
  AND hour >= toDateTime(toDate({from}))
  AND hour < toDateTime(toDate({to}) + 1)
GROUP BY hour
ORDER BY hour;
