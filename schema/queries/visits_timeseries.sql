-- Visits per hour for a site over the days {from}..{to}: visits started, their bounces, seconds
-- of visit time and page views, as sums that the stats API adds up by hour, day or month before
-- it derives bounce rate, visit duration and views per visit. A visit counts in the hour it
-- started.
-- Placeholders: {site}, {from}, {to}.
SELECT
    hour,
    sumMerge(visits) AS visits,
    sumMerge(bounces) AS bounces,
    sumMerge(duration) AS duration,
    sumMerge(pageviews) AS pageviews
FROM visits_hourly
WHERE site = {site}
  AND hour >= toDateTime(toDate({from}))
  AND hour < toDateTime(toDate({to}) + 1)
GROUP BY hour
ORDER BY hour;
