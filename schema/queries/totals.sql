-- Totals for a site over the days {from}..{to} (inclusive) and over the same number of days
-- just before, for "change vs previous period". Visitors are distinct daily visitors summed
-- over the period's hours' sketches: a person seen on two days counts twice (no cross-day id).
-- Placeholders: {site}, {from}, {to} (dates).
SELECT
    period,
    sumMerge(pageviews) AS pageviews,
    sumMerge(events) AS events,
    uniqMerge(visitors) AS visitors
FROM
(
    SELECT
        if(hour >= toDateTime(toDate({from})), 'current', 'previous') AS period,
        pageviews,
        events,
        visitors
    FROM stats_hourly
    WHERE site = {site}
      AND hour >= toDateTime(toDate({from}) - (toDate({to}) - toDate({from}) + 1))
      AND hour < toDateTime(toDate({to}) + 1)
)
GROUP BY period
ORDER BY period;
