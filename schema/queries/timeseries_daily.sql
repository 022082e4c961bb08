-- Visitors, page views and events per day for a site over the days {from}..{to}. Closed days
-- come from closed_days, open days from the hourly sketches.
-- Placeholders: {site}, {from}, {to}.
SELECT
    day,
    sum(pv) AS pageviews,
    sum(ev) AS events,
    sum(vis) AS visitors
FROM
(
    SELECT
        toDate(hour) AS day,
        sumMerge(pageviews) AS pv,
        sumMerge(events) AS ev,
        uniqMerge(visitors) AS vis
    FROM stats_hourly
    WHERE site = {site}
      AND hour >= toDateTime(toDate({from}))
      AND hour < toDateTime(toDate({to}) + 1)
      AND hour >= toDateTime((SELECT max(day) + 1 FROM closed_days WHERE site = {site}))
    GROUP BY day
    UNION ALL
    SELECT day, pageviews AS pv, events AS ev, visitors AS vis
    FROM closed_days
    WHERE site = {site}
      AND day >= toDate({from})
      AND day <= toDate({to})
      AND (day, generation) GLOBAL IN (SELECT day, max(generation) FROM closed_days WHERE site = {site} GROUP BY day)
)
GROUP BY day
ORDER BY day;
