-- Revenue for a site over the days {from}..{to}, per event name and currency (amounts in the
-- currency's units; stored in micro-units).
-- Placeholders: {site}, {from}, {to}.
SELECT
    event,
    currency,
    sumMerge(revenue) / 1000000 AS revenue,
    sumMerge(events) AS events
FROM revenue_daily
WHERE site = {site}
  AND day >= toDate({from})
  AND day <= toDate({to})
GROUP BY event, currency
ORDER BY event, currency;
