-- Visits for a site over the days {from}..{to} and over the same number of days just before:
-- visits, bounce rate (% of visits with one page view and no interaction), average visit
-- duration (seconds) and page views per visit, rounded as Plausible's Stats API rounds them. A
-- visit is counted in the hour it started.
-- Placeholders: {site}, {from}, {to}.
SELECT
    period,
    v AS visits,
    if(v = 0, 0, round(100 * b / v)) AS bounce_rate,
    if(v = 0, 0, round(d / v)) AS visit_duration,
    if(v = 0, 0, round(p / v, 2)) AS views_per_visit
FROM
(
    SELECT
        period,
        sumMerge(visits) AS v,
        sumMerge(bounces) AS b,
        sumMerge(duration) AS d,
        sumMerge(pageviews) AS p
    FROM
    (
        SELECT
            if(hour >= toDateTime(toDate({from})), 'current', 'previous') AS period,
            visits,
            bounces,
            duration,
            pageviews
        FROM visits_hourly
        WHERE site = {site}
          AND hour >= toDateTime(toDate({from}) - (toDate({to}) - toDate({from}) + 1))
          AND hour < toDateTime(toDate({to}) + 1)
    )
    GROUP BY period
)
ORDER BY period;
