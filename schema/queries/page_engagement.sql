-- Scroll depth and time on page per page for a site over the days {from}..{to}: the average of
-- each visit's deepest scroll of the page (percent) and the average engaged time per visit of
-- the page that had any (seconds). Pages with no engagement report are absent.
-- Placeholders: {site}, {from}, {to}.
SELECT
    page,
    if(sp = 0, NULL, toUInt64(round(ss / sp))) AS scroll_depth,
    if(ep = 0, NULL, toUInt64(round(em / ep / 1000))) AS time_on_page
FROM
(
    SELECT
        page,
        sumMerge(scroll_sum) AS ss,
        sumMerge(scroll_pages) AS sp,
        sumMerge(engaged_ms) AS em,
        sumMerge(engaged_pages) AS ep
    FROM engagement_daily
    WHERE site = {site}
      AND day >= toDate({from})
      AND day <= toDate({to})
    GROUP BY page
)
ORDER BY page;
