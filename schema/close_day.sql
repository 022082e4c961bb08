-- Copies one closed (site, day) out of the sketches into the *_closed tables, as generation
-- {generation}. The closed_days row goes last: until it exists, queries keep reading the
-- sketches (or the previous generation). {pageviews} and {events} are the day's sums as read
-- before copying, so rows arriving meanwhile make the next check copy the day again.
-- Placeholders: {site}, {day} (a date), {generation}, {pageviews}, {events}.
INSERT INTO stats_hourly_closed (site, hour, generation, pageviews, events, visitors)
SELECT site, hour, {generation}, sumMerge(pageviews), sumMerge(events), uniqMerge(visitors)
FROM stats_hourly
WHERE site = {site}
  AND hour >= toDateTime(toDate({day}))
  AND hour < toDateTime(toDate({day}) + 1)
GROUP BY site, hour;

INSERT INTO stats_daily_closed (site, day, generation, dimension, value, pageviews, events, visitors)
SELECT site, day, {generation}, dimension, value, sumMerge(pageviews), sumMerge(events), uniqMerge(visitors)
FROM stats_daily
WHERE site = {site}
  AND day = toDate({day})
GROUP BY site, day, dimension, value;

INSERT INTO closed_days (site, day, generation, pageviews, events, visitors)
SELECT {site}, toDate({day}), {generation}, {pageviews}, {events}, uniqMerge(visitors)
FROM stats_hourly
WHERE site = {site}
  AND hour >= toDateTime(toDate({day}))
  AND hour < toDateTime(toDate({day}) + 1);
