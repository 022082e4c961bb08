-- Custom events with their properties for a site over the days {from}..{to}: per event name,
-- property name and value, the number of events and of distinct daily visitors. Values seen by
-- fewer than {k} visitors are folded into '(other)' (k-anonymity; 0 keeps every row; the folded
-- row's visitors are a sum and may count a person more than once).
-- Placeholders: {site}, {from}, {to}, {k}, {limit}.
SELECT
    event,
    key,
    if(v < {k}, '(other)', prop_value) AS value,
    sum(e) AS events,
    sum(v) AS visitors
FROM
(
    SELECT
        event,
        key,
        value AS prop_value,
        sumMerge(events) AS e,
        uniqMerge(visitors) AS v
    FROM props_daily
    WHERE site = {site}
      AND day >= toDate({from})
      AND day <= toDate({to})
    GROUP BY event, key, prop_value
)
GROUP BY event, key, value
ORDER BY events DESC, event, key, value
LIMIT {limit};
