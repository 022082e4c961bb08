//! Closed days: once a UTC day is over, its aggregate sketches are copied into exact counts
//! (`schema/0007_closed_days.sql` explains the tables; `schema/close_day.sql` is the copy).
//! Dashboard queries then merge sketches only for the days still open, which is what keeps a
//! panel over months of data fast.
//!
//! Copying is idempotent and needs no coordination: a day is (re)copied whenever its sums in the
//! sketches differ from those recorded with its latest copy, so late rows (a spool delivered
//! after an outage) and several collectors doing the same work both end in the right answer.

use std::collections::HashMap;

use clickhouse::Client;

use super::StoreError;
use super::queries::quote;
use crate::clock::{SECS_PER_DAY, date_string, day_of};

/// The statements that copy one (site, day).
pub const CLOSE_DAY_SQL: &str = include_str!("../../schema/close_day.sql");
/// A day is closed this long after its UTC midnight, once batches in flight have landed.
pub const CLOSE_AFTER_SECS: u64 = 15 * 60;
/// Generations per millisecond: room for the random part of [`generation_at`].
const GENERATIONS_PER_MS: u64 = 1_000_000;
/// The tables a copy writes, each with a `generation` column.
const CLOSED_TABLES: [(&str, &str); 3] = [
    ("stats_hourly_closed", "toDate(hour)"),
    ("stats_daily_closed", "day"),
    ("closed_days", "day"),
];

/// One (site, day) to copy and the sums it had when the check read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDay {
    pub site: String,
    pub day: u16,
    pub pageviews: u64,
    pub events: u64,
}

/// The statements of `CLOSE_DAY_SQL` for one day and generation.
pub fn render(day: &OpenDay, generation: u64) -> Vec<String> {
    super::schema::statements(CLOSE_DAY_SQL)
        .into_iter()
        .map(|s| {
            s.replace("{site}", &quote(&day.site))
                .replace("{day}", &quote(&date_string(day.day)))
                .replace("{generation}", &generation.to_string())
                .replace("{pageviews}", &day.pageviews.to_string())
                .replace("{events}", &day.events.to_string())
        })
        .collect()
}

/// Days before `day_of(now - CLOSE_AFTER_SECS)` whose sketches hold rows their latest copy
/// lacks (or that have no copy yet).
pub async fn days_to_close(db: &Client, now: u64) -> Result<Vec<OpenDay>, StoreError> {
    let first_open = day_of(now.saturating_sub(CLOSE_AFTER_SECS));
    let sketched: Vec<(String, u16, u64, u64)> = db
        .query(
            "SELECT site, toUInt16(toDate(hour)) AS d, sumMerge(pageviews), sumMerge(events) \
             FROM stats_hourly WHERE hour < toDateTime(?) GROUP BY site, d",
        )
        .bind(u64::from(first_open) * SECS_PER_DAY)
        .fetch_all()
        .await?;
    let copied: Vec<(String, u16, u64, u64)> = db
        .query(
            "SELECT site, toUInt16(day) AS d, argMax(pageviews, generation), \
             argMax(events, generation) FROM closed_days GROUP BY site, d",
        )
        .fetch_all()
        .await?;
    let copied: HashMap<(String, u16), (u64, u64)> = copied
        .into_iter()
        .map(|(site, day, pv, ev)| ((site, day), (pv, ev)))
        .collect();
    let mut open: Vec<OpenDay> = sketched
        .into_iter()
        .filter(|(site, day, pv, ev)| copied.get(&(site.clone(), *day)) != Some(&(*pv, *ev)))
        .map(|(site, day, pageviews, events)| OpenDay {
            site,
            day,
            pageviews,
            events,
        })
        .collect();
    open.sort_by(|a, b| (a.day, &a.site).cmp(&(b.day, &b.site)));
    Ok(open)
}

/// Copies one day as generation `generation` (see [`generation_at`]; raised if needed to stay
/// above the day's last copy), then deletes older copies of it. Returns the generation.
pub async fn close_day(db: &Client, day: &OpenDay, generation: u64) -> Result<u64, StoreError> {
    // Read now rather than taken from `days_to_close`: another collector may have copied the
    // day since.
    let (copies, last): (u64, u64) = db
        .query(
            "SELECT count(), max(generation) FROM closed_days \
             WHERE site = ? AND day = toDate(?)",
        )
        .bind(&day.site)
        .bind(date_string(day.day))
        .fetch_one()
        .await?;
    let recopy = copies > 0;
    // Equal generations would make two copies count at once.
    let generation = if recopy {
        generation.max(last + 1)
    } else {
        generation
    };
    for stmt in render(day, generation) {
        db.query(&stmt).execute().await?;
    }
    // Only a re-copy has rows to delete; a mutation on every first copy would rewrite parts
    // for nothing. Queries ignore older generations anyway, so this only reclaims space.
    if recopy {
        for (table, day_expr) in CLOSED_TABLES {
            db.query(&format!(
                "ALTER TABLE {table} DELETE WHERE site = {} AND {day_expr} = toDate({}) \
                 AND generation < {generation}",
                quote(&day.site),
                quote(&date_string(day.day)),
            ))
            .execute()
            .await?;
        }
    }
    Ok(generation)
}

/// A generation for a copy made at `now_millis`: the time in milliseconds times a million plus
/// a random number below a million, so two collectors first copying the same day in the same
/// millisecond still write different generations (equal ones would both count), but for a
/// one-in-a-million chance.
pub fn generation_at(now_millis: u64) -> u64 {
    let mut b = [0u8; 4];
    // Without randomness the copy is still correct unless another collector collides.
    let _ = getrandom::fill(&mut b);
    now_millis * GENERATIONS_PER_MS + u64::from(u32::from_le_bytes(b)) % GENERATIONS_PER_MS
}

/// Closes every day `days_to_close` finds. Returns the days copied.
pub async fn close_days(db: &Client, now_millis: u64) -> Result<Vec<OpenDay>, StoreError> {
    let open = days_to_close(db, now_millis / 1000).await?;
    for day in &open {
        close_day(db, day, generation_at(now_millis)).await?;
    }
    Ok(open)
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
    fn renders_three_statements_with_every_placeholder_filled() {
        let day = OpenDay {
            site: "o'neil.example".into(),
            day: 20_415,
            pageviews: 12,
            events: 3,
        };
        let stmts = render(&day, 1_795_000_000_000);
        assert_eq!(stmts.len(), 3);
        for s in &stmts {
            assert!(!s.contains('{'), "{s}");
            assert!(s.starts_with("INSERT INTO"), "{s}");
        }
        assert!(stmts[2].starts_with("INSERT INTO closed_days"));
        assert!(
            stmts[2].contains("'o\\'neil.example', toDate('2025-11-23'), 1795000000000, 12, 3")
        );
    }
}
