-- Custom events with their properties for a site over the days {from}..{to}: per event name,
-- property name and value, the number of events and of distinct daily visitors.
-- Placeholders: {site}, {from}, {to}, {limit}.
SELECT
    event,
    key,
    value,
    sumMerge(events) AS events,
    uniqMerge(visitors) AS visitors
FROM props_daily
WHERE site = {site}
  AND day >= toDate({from})
  AND day <= toDate({to})
GROUP BY event, key, value
ORDER BY events DESC, event, key, value
LIMIT {limit};
