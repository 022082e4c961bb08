-- Visits by entry page for a site over the days {from}..{to}.
-- Pages with fewer than {k} visits are folded into '(other)' (k-anonymity; 0 keeps every row).
-- Visits, not visitors, decide: visit_pages_daily counts visits only, and a person with several
-- visits counts several times there.
-- Placeholders: {site}, {from}, {to}, {k}, {offset}, {limit}.
SELECT
    if(v < {k}, '(other)', page_value) AS page,
    sum(v) AS visits
FROM
(
    SELECT
        page AS page_value,
        sumMerge(visits) AS v
    FROM visit_pages_daily
    WHERE site = {site}
      AND kind = 'entry'
      AND day >= toDate({from})
      AND day <= toDate({to})
    GROUP BY page_value
)
WHERE v > 0
GROUP BY page
ORDER BY visits DESC, page
LIMIT {offset}, {limit};
