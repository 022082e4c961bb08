//! Closed days: once a UTC day is over, its aggregate sketches are copied into exact counts
//! (`schema/0007_closed_days.sql` and `0008_sketches_deleted.sql` explain the tables;
//! `schema/close_day.sql` is the copy), the copy is checked to add up, and the day's sketches are
//! deleted: their uniq() states hold hashed visitor ids, which must not outlive the day's salt.
//! Dashboard queries merge sketches only for the days still open, which also keeps a panel over
//! months of data fast.
//!
//! Sketch rows of a closed day are therefore rows that arrived after its copy (a spool delivered
//! after an outage): the next check adds them to the copy as a new generation and deletes them.
//! Each copy records the sketch sums it consumed, so a check that runs before the deletion has
//! taken effect sees them as copied; and no check runs while a deletion is still under way.
//! Several collectors doing the same work write equal copies. Visitors of late rows are added to
//! the day's count, so a person seen before and after the copy counts twice.

use std::collections::HashMap;

use clickhouse::Client;

use super::queries::quote;
use super::{Layout, StoreError};
use crate::clock::{SECS_PER_DAY, date_string, day_of};

/// The statements that copy one (site, day).
pub(crate) const CLOSE_DAY_SQL: &str = include_str!("../../schema/close_day.sql");
/// A day is closed this long after its UTC midnight, once batches in flight have landed.
pub const CLOSE_AFTER_SECS: u64 = 15 * 60;
/// Generations per millisecond: room for the random part of [`generation_at`].
const GENERATIONS_PER_MS: u64 = 1_000_000;
/// The tables a copy writes, each with a `generation` column.
const CLOSED_TABLES: [(&str, &str); 5] = [
    ("stats_hourly_closed", "toDate(hour)"),
    ("stats_daily_closed", "day"),
    ("props_daily_closed", "day"),
    ("visitor_days", "day"),
    ("closed_days", "day"),
];
/// The sketch tables (their uniq() states hold hashed visitor ids), with their day expression.
const SKETCH_TABLES: [(&str, &str); 3] = [
    ("stats_hourly", "toDate(hour)"),
    ("stats_daily", "day"),
    ("props_daily", "day"),
];

/// One (site, day) whose sketches hold rows, with their sums as the check read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDay {
    pub site: String,
    pub day: u16,
    pub pageviews: u64,
    pub events: u64,
}

/// The latest copy of a (site, day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Copy {
    generation: u64,
    pageviews: u64,
    events: u64,
    /// Made by adding sketch rows to the previous copy, whose sketches were then deleted.
    merged: bool,
    sketch_pageviews: u64,
    sketch_events: u64,
    /// Made the day's visitor days (copies of releases before them did not).
    visitor_days: bool,
}

impl Copy {
    /// Whether the sketches with these sums are the ones this copy consumed (their deletion
    /// has not taken effect yet).
    fn consumed(&self, day: &OpenDay) -> bool {
        self.merged && (self.sketch_pageviews, self.sketch_events) == (day.pageviews, day.events)
    }
}

/// The statements of `CLOSE_DAY_SQL` for one day: the copy of the sketch rows (added to the
/// rows of generation `base`, 0 for none) as `generation`, with the copy's totals.
pub fn render(day: &OpenDay, generation: u64, base: u64, totals: (u64, u64)) -> Vec<String> {
    super::schema::statements(CLOSE_DAY_SQL)
        .into_iter()
        .map(|s| {
            s.replace("{site}", &quote(&day.site))
                .replace("{day}", &quote(&date_string(day.day)))
                .replace("{generation}", &generation.to_string())
                .replace("{base}", &base.to_string())
                .replace("{sketch_pageviews}", &day.pageviews.to_string())
                .replace("{sketch_events}", &day.events.to_string())
                .replace("{pageviews}", &totals.0.to_string())
                .replace("{events}", &totals.1.to_string())
        })
        .collect()
}

/// Days before `day_of(now - CLOSE_AFTER_SECS)` whose sketches hold rows: not yet copied,
/// arrived late after a copy, or copied by an older release; and copied days that lack the
/// visitor days of their kept raw events. None while a deletion of sketches is still running,
/// so that rows already copied are never read as new.
pub async fn days_to_close(
    db: &Client,
    layout: &Layout,
    now: u64,
) -> Result<Vec<OpenDay>, StoreError> {
    let sketches: Vec<String> = SKETCH_TABLES
        .iter()
        .map(|(t, _)| quote(&layout.local(t)))
        .collect();
    // On a cluster every node must answer: a deletion still running there counts.
    let pending: u64 = db
        .query(&format!(
            "SELECT count() FROM {} WHERE database = ? AND NOT is_done AND table IN ({})",
            layout.system("mutations"),
            sketches.join(", ")
        ))
        .bind(&layout.database)
        .fetch_one()
        .await?;
    if pending > 0 {
        return Ok(Vec::new());
    }
    let first_open = day_of(now.saturating_sub(CLOSE_AFTER_SECS));
    let sketched: Vec<(String, u16, u64, u64)> = db
        .query(
            "SELECT site, toUInt16(toDate(hour)) AS d, sumMerge(pageviews), sumMerge(events) \
             FROM stats_hourly WHERE hour < toDateTime(?) GROUP BY site, d",
        )
        .bind(u64::from(first_open) * SECS_PER_DAY)
        .fetch_all()
        .await?;
    let copies = latest_copies(db, None).await?;
    let mut open: Vec<OpenDay> = sketched
        .into_iter()
        .map(|(site, day, pageviews, events)| OpenDay {
            site,
            day,
            pageviews,
            events,
        })
        .filter(|d| {
            !copies
                .get(&(d.site.clone(), d.day))
                .is_some_and(|c| c.consumed(d))
        })
        .collect();
    // Days copied by a release before visitor days whose raw events are still kept: copied
    // again (no sketch rows to add), which makes their visitor days, so that questions over
    // them need not wait for those days to leave the retention to be fast. Only copies the
    // next one adds to (`merged`): another would start from nothing.
    let raw_days = super::partition_days(
        db,
        Some(&layout.database),
        &layout.system("parts"),
        &layout.local("events"),
    )
    .await?;
    for ((site, day), copy) in copies {
        let sketched = open.iter().any(|d| d.site == site && d.day == day);
        if copy.merged
            && !copy.visitor_days
            && !sketched
            && raw_days.contains(&day)
            && day < first_open
        {
            open.push(OpenDay {
                site,
                day,
                pageviews: 0,
                events: 0,
            });
        }
    }
    open.sort_by(|a, b| (a.day, &a.site).cmp(&(b.day, &b.site)));
    Ok(open)
}

/// The latest copy of every (site, day), or of one.
async fn latest_copies(
    db: &Client,
    only: Option<&OpenDay>,
) -> Result<HashMap<(String, u16), Copy>, StoreError> {
    let filter = match only {
        Some(d) => format!(
            "WHERE site = {} AND day = toDate({})",
            quote(&d.site),
            quote(&date_string(d.day))
        ),
        None => String::new(),
    };
    type Row = (String, u16, u64, u64, u64, u8, u64, u64, u8);
    let rows: Vec<Row> = db
        .query(&format!(
            "SELECT site, toUInt16(day) AS d, max(generation), argMax(pageviews, generation), \
             argMax(events, generation), argMax(merged, generation), \
             argMax(sketch_pageviews, generation), argMax(sketch_events, generation), \
             argMax(visitor_days, generation) FROM closed_days {filter} GROUP BY site, d"
        ))
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(site, day, generation, pageviews, events, merged, spv, sev, visitor_days)| {
                let copy = Copy {
                    generation,
                    pageviews,
                    events,
                    merged: merged == 1,
                    sketch_pageviews: spv,
                    sketch_events: sev,
                    visitor_days: visitor_days == 1,
                };
                ((site, day), copy)
            },
        )
        .collect())
}

/// Copies one day's sketch rows as generation `generation` (see [`generation_at`]; raised if
/// needed to stay above the day's last copy), adding them to the previous copy when that one
/// was made this way; checks the copy adds up; records it; deletes older copies. The day's
/// sketches are then due for deletion ([`delete_sketches`]). Returns the generation, or `None`
/// when the sketches were already copied and only their deletion was due.
pub(crate) async fn close_day(
    db: &Client,
    layout: &Layout,
    day: &OpenDay,
    generation: u64,
) -> Result<Option<u64>, StoreError> {
    // Read now rather than taken from `days_to_close`: another collector may have copied the
    // day since.
    let last = latest_copies(db, Some(day))
        .await?
        .remove(&(day.site.clone(), day.day));
    if let Some(last) = last
        && last.consumed(day)
    {
        return Ok(None);
    }
    let base = last.filter(|c| c.merged).unwrap_or_default();
    let totals = (base.pageviews + day.pageviews, base.events + day.events);
    // Equal generations would make two copies count at once.
    let generation = match last {
        Some(last) => generation.max(last.generation + 1),
        None => generation,
    };
    let stmts = render(day, generation, base.generation, totals);
    let (record, copy) = stmts.split_last().ok_or(StoreError::Unexpected {
        table: "closed_days",
        detail: "close_day.sql has no statements".into(),
    })?;
    for stmt in copy {
        db.query(stmt).execute().await?;
    }
    // The sketches are deleted only once the copy is known to hold what they hold.
    let (pageviews, events): (u64, u64) = db
        .query(
            "SELECT sum(pageviews), sum(events) FROM stats_hourly_closed \
             WHERE site = ? AND toDate(hour) = toDate(?) AND generation = ?",
        )
        .bind(&day.site)
        .bind(date_string(day.day))
        .bind(generation)
        .fetch_one()
        .await?;
    if (pageviews, events) != totals {
        // Rows arrived between the check and the copy: drop this copy, the next run retries.
        delete_copies(db, layout, day, &format!("generation = {generation}")).await?;
        return Err(StoreError::Unexpected {
            table: "stats_hourly_closed",
            detail: format!(
                "the copy of {} for {} holds {pageviews} page views and {events} events, not \
                 {totals:?}; kept the sketches and will retry",
                date_string(day.day),
                day.site
            ),
        });
    }
    db.query(record).execute().await?;
    if last.is_some() {
        delete_copies(db, layout, day, &format!("generation < {generation}")).await?;
    }
    Ok(Some(generation))
}

async fn delete_copies(
    db: &Client,
    layout: &Layout,
    day: &OpenDay,
    which: &str,
) -> Result<(), StoreError> {
    for (table, day_expr) in CLOSED_TABLES {
        db.query(&format!(
            "ALTER TABLE {} DELETE WHERE site = {} AND {day_expr} = toDate({}) AND {which}",
            layout.alter_target(table),
            quote(&day.site),
            quote(&date_string(day.day)),
        ))
        .execute()
        .await?;
    }
    Ok(())
}

/// Deletes copied days' sketches (their uniq() states hold hashed visitor ids): one mutation
/// per table for all the days, since each mutation rewrites the parts it touches.
pub(crate) async fn delete_sketches(
    db: &Client,
    layout: &Layout,
    days: &[OpenDay],
) -> Result<(), StoreError> {
    if days.is_empty() {
        return Ok(());
    }
    for (table, day_expr) in SKETCH_TABLES {
        let which: Vec<String> = days
            .iter()
            .map(|d| {
                format!(
                    "(site = {} AND {day_expr} = toDate({}))",
                    quote(&d.site),
                    quote(&date_string(d.day))
                )
            })
            .collect();
        db.query(&format!(
            "ALTER TABLE {} DELETE WHERE {}",
            layout.alter_target(table),
            which.join(" OR ")
        ))
        .execute()
        .await?;
    }
    Ok(())
}

/// A generation for a copy made at `now_millis`: the time in milliseconds times a million plus
/// a random number below a million, so two collectors first copying the same day in the same
/// millisecond still write different generations (equal ones would both count), but for a
/// one-in-a-million chance.
pub(crate) fn generation_at(now_millis: u64) -> u64 {
    let mut b = [0u8; 4];
    // Without randomness the copy is still correct unless another collector collides.
    let _ = getrandom::fill(&mut b);
    now_millis * GENERATIONS_PER_MS + u64::from(u32::from_le_bytes(b)) % GENERATIONS_PER_MS
}

/// Closes every day `days_to_close` finds, then deletes their sketches. Returns the days
/// copied.
pub async fn close_days(
    db: &Client,
    layout: &Layout,
    now_millis: u64,
) -> Result<Vec<OpenDay>, StoreError> {
    let open = days_to_close(db, layout, now_millis / 1000).await?;
    let mut copied = Vec::new();
    let mut done = Vec::new();
    let mut failed = None;
    for day in open {
        match close_day(db, layout, &day, generation_at(now_millis)).await {
            Ok(Some(_)) => {
                copied.push(day.clone());
                done.push(day);
            }
            Ok(None) => done.push(day),
            // The other days go on; this one is retried at the next check.
            Err(e) => failed = Some(e),
        }
    }
    delete_sketches(db, layout, &done).await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(copied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_keep_time_order_and_differ_within_a_millisecond() {
        let t = 1_795_000_000_000;
        let seen: std::collections::HashSet<u64> = (0..50).map(|_| generation_at(t)).collect();
        assert!(seen.len() > 1, "random low digits");
        assert!(seen.iter().all(|g| g / GENERATIONS_PER_MS == t));
        assert!(generation_at(t + 1) > *seen.iter().max().unwrap());
    }

    #[test]
    fn renders_every_statement_with_every_placeholder_filled() {
        let day = OpenDay {
            site: "o'neil.example".into(),
            day: 20_415,
            pageviews: 12,
            events: 3,
        };
        let stmts = render(&day, 1_795_000_000_000, 17, (20, 5));
        assert_eq!(stmts.len(), 5);
        for s in &stmts {
            assert!(!s.contains('{'), "{s}");
            assert!(s.starts_with("INSERT INTO"), "{s}");
        }
        for s in &stmts[..3] {
            assert!(s.contains("generation = 17"), "adds to the base: {s}");
        }
        // Visitor days are made afresh from the raw events, not added to the base.
        assert!(stmts[3].starts_with("INSERT INTO visitor_days"));
        assert!(!stmts[3].contains("generation = 17"), "{}", stmts[3]);
        assert!(stmts[3].contains("'o\\'neil.example'"));
        assert!(stmts[4].starts_with("INSERT INTO closed_days"));
        assert!(stmts[4].contains(
            "'o\\'neil.example', toDate('2025-11-23'), 1795000000000, 20, 5, sum(v), 1, 12, 3, 1"
        ));
    }
}
