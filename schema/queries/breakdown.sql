-- Top values of one dimension for a site over the days {from}..{to}: pages ('page'), host
-- names, sources ('source'), referrers, UTM tags ('utm_source', 'utm_medium', 'utm_campaign',
-- 'utm_content', 'utm_term'), countries, regions ('CC-Region'), browsers, browser versions,
-- operating systems ('os', 'os_version'), devices, and custom events ('event', where '' is page
-- views). Closed days come from stats_daily_closed, open days from the daily sketches. Rows
-- with fewer than {k} visitors are folded into '(other)' (k-anonymity; 0 keeps every row; the
-- folded row's visitors are a sum of the folded rows' and may count a person more than once).
-- Placeholders: {site}, {from}, {to}, {dimension}, {k}, {offset}, {limit}.
SELECT
    if(v < {k}, '(other)', dimension_value) AS value,
    sum(v) AS visitors,
    sum(p) AS pageviews,
    sum(e) AS events
FROM
(
    SELECT dimension_value, sum(vis) AS v, sum(pv) AS p, sum(ev) AS e
    FROM
    (
        SELECT
            value AS dimension_value,
            uniqMerge(visitors) AS vis,
            sumMerge(pageviews) AS pv,
            sumMerge(events) AS ev
        FROM stats_daily
        WHERE site = {site}
          AND dimension = {dimension}
          AND day >= toDate({from})
          AND day <= toDate({to})
          AND day >= (SELECT max(day) + 1 FROM closed_days WHERE site = {site})
        GROUP BY dimension_value
        UNION ALL
        SELECT
            value AS dimension_value,
            sum(visitors) AS vis,
            sum(pageviews) AS pv,
            sum(events) AS ev
        FROM stats_daily_closed
        WHERE site = {site}
          AND dimension = {dimension}
          AND day >= toDate({from})
          AND day <= toDate({to})
          AND (day, generation) GLOBAL IN (SELECT day, max(generation) FROM closed_days WHERE site = {site} GROUP BY day)
        GROUP BY dimension_value
    )
    GROUP BY dimension_value
)
GROUP BY value
ORDER BY visitors DESC, pageviews DESC, value
LIMIT {offset}, {limit};
