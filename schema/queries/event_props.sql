-- Custom events with their properties for a site over the days {from}..{to}: per event name,
-- property name and value, the number of events and of daily visitors. Closed days come from
-- props_daily_closed, open days from the daily sketches. Values seen by fewer than {k} visitors
-- are folded into '(other)' (k-anonymity; 0 keeps every row; the folded row's visitors are a
-- sum and may count a person more than once).
-- Placeholders: {site}, {from}, {to}, {k}, {offset}, {limit}.
SELECT
    event,
    key,
    if(v < {k}, '(other)', prop_value) AS value,
    sum(e) AS events,
    sum(v) AS visitors
FROM
(
    SELECT event, key, prop_value, sum(pe) AS e, sum(pv) AS v
    FROM
    (
        SELECT
            event,
            key,
            value AS prop_value,
            sumMerge(events) AS pe,
            uniqMerge(visitors) AS pv
        FROM props_daily
        WHERE site = {site}
          AND day >= toDate({from})
          AND day <= toDate({to})
          AND day >= (SELECT max(day) + 1 FROM closed_days WHERE site = {site})
        GROUP BY event, key, prop_value
        UNION ALL
        SELECT
            event,
            key,
            value AS prop_value,
            sum(events) AS pe,
            sum(visitors) AS pv
        FROM props_daily_closed
        WHERE site = {site}
          AND day >= toDate({from})
          AND day <= toDate({to})
          AND (day, generation) GLOBAL IN (SELECT day, max(generation) FROM closed_days WHERE site = {site} GROUP BY day)
        GROUP BY event, key, prop_value
    )
    GROUP BY event, key, prop_value
)
GROUP BY event, key, value
ORDER BY events DESC, event, key, value
LIMIT {offset}, {limit};
