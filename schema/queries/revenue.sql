-- Revenue for a site over the days {from}..{to}, per event name and currency (amounts in the
-- currency's units; stored in micro-units). Event names with fewer than {k} revenue events in a
-- currency are folded into '(other)' (k-anonymity: one purchase can be one person's; events
-- decide, as revenue_daily holds no visitors; 0 keeps every row).
-- Placeholders: {site}, {from}, {to}, {k}.
SELECT
    if(e < {k}, '(other)', event_name) AS event,
    currency,
    sum(r) / 1000000 AS revenue,
    sum(e) AS events
FROM
(
    SELECT
        event AS event_name,
        currency,
        sumMerge(revenue) AS r,
        sumMerge(events) AS e
    FROM revenue_daily
    WHERE site = {site}
      AND day >= toDate({from})
      AND day <= toDate({to})
    GROUP BY event_name, currency
)
GROUP BY event, currency
ORDER BY event, currency;
