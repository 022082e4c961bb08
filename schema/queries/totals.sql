-- Totals for a site over the days {from}..{to} (inclusive) and over the same number of days
-- just before, for "change vs previous period". Visitors are distinct daily visitors summed
-- over the period's days: a person seen on two days counts twice (no cross-day id). Closed
-- days are read from closed_days, open days from the hourly sketches (see 0007_closed_days).
-- Placeholders: {site}, {from}, {to} (dates).
SELECT
    period,
    sum(pv) AS pageviews,
    sum(ev) AS events,
    sum(vis) AS visitors
FROM
(
    SELECT
        if(hour >= toDateTime(toDate({from})), 'current', 'previous') AS period,
        sumMerge(pageviews) AS pv,
        sumMerge(events) AS ev,
        uniqMerge(visitors) AS vis
    FROM stats_hourly
    WHERE site = {site}
      AND hour >= toDateTime(toDate({from}) - (toDate({to}) - toDate({from}) + 1))
      AND hour < toDateTime(toDate({to}) + 1)
      AND hour >= toDateTime((SELECT max(day) + 1 FROM closed_days WHERE site = {site}))
    GROUP BY period
    UNION ALL
    SELECT
        if(day >= toDate({from}), 'current', 'previous') AS period,
        pageviews AS pv,
        events AS ev,
        visitors AS vis
    FROM closed_days
    WHERE site = {site}
      AND day >= toDate({from}) - (toDate({to}) - toDate({from}) + 1)
      AND day <= toDate({to})
      AND (day, generation) GLOBAL IN (SELECT day, max(generation) FROM closed_days WHERE site = {site} GROUP BY day)
)
GROUP BY period
ORDER BY period;
