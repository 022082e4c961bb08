//! Per-site, per-day counts of dropped events by reason, for dashboards to show what the filters
//! removed. Requests add to lock-free counters; a background task moves the counts into the
//! `dropped_daily` table every few seconds and once more at shutdown. No visitor data is
//! involved: a row is (site, day, reason, events).
//!
//! Counters live in two day slots (day parity), so counts made just before midnight are still
//! credited to the right day when they are flushed just after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::clock::{Clock, day_of};
use crate::deliver::insert::insert;
use crate::encode::put_str;
use crate::metrics::Metrics;
use crate::model::DropReason;
use crate::shutdown::{self, Shutdown};

/// How often counts are written to ClickHouse.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

pub const TABLE: &str = "dropped_daily";

const REASONS: usize = DropReason::ALL.len();

pub struct DropCounts {
    domains: Vec<String>,
    /// `slots[day % 2][site * REASONS + reason]`.
    slots: [Box<[AtomicU64]>; 2],
}

/// One row of `dropped_daily`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub site: usize,
    pub day: u16,
    pub reason: DropReason,
    pub events: u64,
}

impl DropCounts {
    pub fn new(domains: Vec<String>) -> DropCounts {
        let slot = || {
            (0..domains.len() * REASONS)
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        DropCounts {
            slots: [slot(), slot()],
            domains,
        }
    }

    /// Whether this reason is counted per site: unknown sites have no site, and an engagement
    /// report without a visit is a late time-on-page report, not traffic that was filtered.
    pub fn counts(reason: DropReason) -> bool {
        !matches!(
            reason,
            DropReason::UnknownSite | DropReason::EngagementWithoutVisit
        )
    }

    pub fn add(&self, day: u16, site: usize, reason: DropReason, n: u64) {
        if !Self::counts(reason) {
            return;
        }
        if let Some(c) = self.slots[usize::from(day % 2)].get(site * REASONS + reason.index()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Takes every count so far: the current slot is `today`, the other one is yesterday's.
    pub fn take(&self, today: u16) -> Vec<Row> {
        let mut rows = Vec::new();
        for day in [today.wrapping_sub(1), today] {
            let slot = &self.slots[usize::from(day % 2)];
            for (i, c) in slot.iter().enumerate() {
                let events = c.swap(0, Ordering::Relaxed);
                if events > 0 {
                    rows.push(Row {
                        site: i / REASONS,
                        day,
                        reason: DropReason::ALL[i % REASONS],
                        events,
                    });
                }
            }
        }
        rows
    }

    /// Puts counts back after a failed insert, to be written with the next flush.
    pub(crate) fn restore(&self, rows: &[Row]) {
        for r in rows {
            self.add(r.day, r.site, r.reason, r.events);
        }
    }

    /// RowBinary for `INSERT INTO dropped_daily (site, day, reason, events)`.
    pub fn encode(&self, rows: &[Row]) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows.len() * 48);
        for r in rows {
            put_str(&mut out, &self.domains[r.site]);
            out.extend_from_slice(&r.day.to_le_bytes());
            put_str(&mut out, r.reason.as_str());
            out.extend_from_slice(&r.events.to_le_bytes());
        }
        out
    }
}

pub(crate) fn insert_sql() -> String {
    format!("INSERT INTO {TABLE} (site, day, reason, events) FORMAT RowBinary")
}

/// Writes what has been counted; on failure the counts are kept for the next attempt.
pub async fn flush(
    counts: &DropCounts,
    client: &clickhouse::Client,
    clock: &Clock,
    metrics: &Metrics,
) {
    let rows = counts.take(day_of(clock.now()));
    if rows.is_empty() {
        return;
    }
    let data = Bytes::from(counts.encode(&rows));
    if let Err(e) = insert(client, &insert_sql(), data).await {
        tracing::warn!(error = ?e, rows = rows.len(), "could not write drop counts; will retry");
        metrics.insert_errors.inc();
        counts.restore(&rows);
    }
}

/// Flushes every [`FLUSH_INTERVAL`] until `shutdown`, then once more.
pub async fn run(
    counts: std::sync::Arc<DropCounts>,
    client: clickhouse::Client,
    clock: Clock,
    metrics: std::sync::Arc<Metrics>,
    shutdown: Shutdown,
) {
    shutdown::every(FLUSH_INTERVAL, shutdown::First::Now, shutdown, || {
        flush(&counts, &client, &clock, &metrics)
    })
    .await;
    flush(&counts, &client, &clock, &metrics).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_site_day_and_reason_and_restore() {
        let c = DropCounts::new(vec!["a.com".into(), "b.org".into()]);
        c.add(100, 0, DropReason::Crawler, 1);
        c.add(100, 0, DropReason::Crawler, 2);
        c.add(100, 1, DropReason::BlockedIp, 1);
        c.add(101, 1, DropReason::Crawler, 5);
        c.add(101, 0, DropReason::UnknownSite, 7);
        c.add(101, 0, DropReason::EngagementWithoutVisit, 7);
        let rows = c.take(101);
        assert_eq!(
            rows,
            vec![
                Row {
                    site: 0,
                    day: 100,
                    reason: DropReason::Crawler,
                    events: 3
                },
                Row {
                    site: 1,
                    day: 100,
                    reason: DropReason::BlockedIp,
                    events: 1
                },
                Row {
                    site: 1,
                    day: 101,
                    reason: DropReason::Crawler,
                    events: 5
                },
            ]
        );
        assert!(c.take(101).is_empty(), "taken counts are gone");
        c.restore(&rows);
        assert_eq!(c.take(101), rows);
    }

    #[test]
    fn encoding_is_rowbinary() {
        let c = DropCounts::new(vec!["a.com".into()]);
        let rows = [Row {
            site: 0,
            day: 2,
            reason: DropReason::Crawler,
            events: 9,
        }];
        let mut want = vec![5];
        want.extend_from_slice(b"a.com");
        want.extend_from_slice(&[2, 0, 7]);
        want.extend_from_slice(b"crawler");
        want.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(c.encode(&rows), want);
    }
}
