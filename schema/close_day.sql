-- Copies one closed (site, day) into the *_closed tables as generation {generation}: the sketch
-- rows the day has now, added to the rows of generation {base} (the previous copy when it was
-- made this way, so the sketches it consumed are deleted; 0, which no copy has, otherwise);
-- and makes the day's visitor days from its raw events, as the same generation.
-- The closed_days row goes last: until it exists, queries keep reading the previous copy (or
-- the sketches). {pageviews} and {events} are the copy's totals, {sketch_pageviews} and
-- {sketch_events} the sums of the sketch rows consumed, as read before copying.
-- Placeholders: {site}, {day} (a date), {generation}, {base}, {pageviews}, {events},
-- {sketch_pageviews}, {sketch_events}.
INSERT INTO stats_hourly_closed (site, hour, generation, pageviews, events, visitors)
SELECT site, hour, {generation}, sum(p), sum(e), sum(v)
FROM
(
    SELECT site, hour, sumMerge(pageviews) AS p, sumMerge(events) AS e, uniqMerge(visitors) AS v
    FROM stats_hourly
    WHERE site = {site}
      AND hour >= toDateTime(toDate({day}))
      AND hour < toDateTime(toDate({day}) + 1)
    GROUP BY site, hour
    UNION ALL
    SELECT site, hour, pageviews AS p, events AS e, visitors AS v
    FROM stats_hourly_closed
    WHERE site = {site}
      AND hour >= toDateTime(toDate({day}))
      AND hour < toDateTime(toDate({day}) + 1)
      AND generation = {base}
)
GROUP BY site, hour;

INSERT INTO stats_daily_closed (site, day, generation, dimension, value, pageviews, events, visitors)
SELECT site, day, {generation}, dimension, value, sum(p), sum(e), sum(v)
FROM
(
    SELECT site, day, dimension, value, sumMerge(pageviews) AS p, sumMerge(events) AS e, uniqMerge(visitors) AS v
    FROM stats_daily
    WHERE site = {site}
      AND day = toDate({day})
    GROUP BY site, day, dimension, value
    UNION ALL
    SELECT site, day, dimension, value, pageviews AS p, events AS e, visitors AS v
    FROM stats_daily_closed
    WHERE site = {site}
      AND day = toDate({day})
      AND generation = {base}
)
GROUP BY site, day, dimension, value;

INSERT INTO props_daily_closed (site, day, generation, event, key, value, events, visitors)
SELECT site, day, {generation}, event, key, value, sum(e), sum(v)
FROM
(
    SELECT site, day, event, key, value, sumMerge(events) AS e, uniqMerge(visitors) AS v
    FROM props_daily
    WHERE site = {site}
      AND day = toDate({day})
    GROUP BY site, day, event, key, value
    UNION ALL
    SELECT site, day, event, key, value, events AS e, visitors AS v
    FROM props_daily_closed
    WHERE site = {site}
      AND day = toDate({day})
      AND generation = {base}
)
GROUP BY site, day, event, key, value;

-- The day's visitor days (schema/0013_visitor_days.sql), made afresh from the raw events each
-- time: they hold late rows too. Empty when no raw events are kept.
INSERT INTO visitor_days (site, day, generation, visitor_id, referrer_source, referrer, utm_source, utm_medium, utm_campaign, utm_content, utm_term, page, visits, bounces, duration, pageviews, events, name, pathname)
SELECT
    site,
    toDate(timestamp) AS d,
    {generation},
    visitor_id,
    argMinIf(referrer_source, timestamp, visit_entry = 1),
    argMinIf(referrer, timestamp, visit_entry = 1),
    argMinIf(utm_source, timestamp, visit_entry = 1),
    argMinIf(utm_medium, timestamp, visit_entry = 1),
    argMinIf(utm_campaign, timestamp, visit_entry = 1),
    argMinIf(utm_content, timestamp, visit_entry = 1),
    argMinIf(utm_term, timestamp, visit_entry = 1),
    argMinIf(pathname, timestamp, visit_entry = 1),
    toUInt32(sum(visit_entry)),
    toInt32(sum(visit_bounce)),
    sum(visit_seconds),
    toUInt32(countIf(name = 'pageview')),
    toUInt32(countIf(name != 'engagement')),
    arrayMap(e -> e.1, groupUniqArrayIf((name, pathname), name != 'engagement') AS done),
    arrayMap(e -> e.2, done)
FROM events
WHERE site = {site}
  AND timestamp >= toDateTime(toDate({day}))
  AND timestamp < toDateTime(toDate({day}) + 1)
GROUP BY site, d, visitor_id;

INSERT INTO closed_days (site, day, generation, pageviews, events, visitors, merged, sketch_pageviews, sketch_events, visitor_days)
SELECT {site}, toDate({day}), {generation}, {pageviews}, {events}, sum(v), 1, {sketch_pageviews}, {sketch_events}, 1
FROM
(
    SELECT uniqMerge(visitors) AS v
    FROM stats_hourly
    WHERE site = {site}
      AND hour >= toDateTime(toDate({day}))
      AND hour < toDateTime(toDate({day}) + 1)
    UNION ALL
    SELECT visitors AS v
    FROM closed_days
    WHERE site = {site}
      AND day = toDate({day})
      AND generation = {base}
);
