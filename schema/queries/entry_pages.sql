-- Visits by entry page for a site over the days {from}..{to}.
-- Placeholders: {site}, {from}, {to}, {limit}.
SELECT
    page,
    v AS visits
FROM
(
    SELECT
        page,
        sumMerge(visits) AS v
    FROM visit_pages_daily
    WHERE site = {site}
      AND kind = 'entry'
      AND day >= toDate({from})
      AND day <= toDate({to})
    GROUP BY page
)
WHERE v > 0
ORDER BY v DESC, page
LIMIT {limit};
