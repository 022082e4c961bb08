-- What the filters removed for a site over the days {from}..{to}, by reason.
-- Placeholders: {site}, {from}, {to}.
SELECT
    reason,
    sum(events) AS events
FROM dropped_daily
WHERE site = {site}
  AND day >= toDate({from})
  AND day <= toDate({to})
GROUP BY reason
ORDER BY events DESC, reason;
