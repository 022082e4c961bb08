//! Process counters, kept as plain atomics so the request path never takes a lock, and the
//! gauges each component reports about itself. Rendered in Prometheus text format at
//! `GET /metrics`. No label ever names a visitor.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::DropReason;

/// A value sampled when `/metrics` is read; components push theirs into a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The statuses the server answers with; anything else counts as "other".
const STATUSES: [u16; 15] = [
    200, 202, 204, 304, 400, 404, 405, 408, 413, 415, 429, 431, 500, 503, 0,
];

/// Upper bounds of the insert latency histogram, in seconds.
const INSERT_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default)]
pub struct Metrics {
    responses: [Counter; STATUSES.len()],
    pub events_accepted: Counter,
    pub rate_limited: Counter,
    pub rows_accepted: Counter,
    dropped: [Counter; DropReason::ALL.len()],
    pub insert_batches: Counter,
    pub insert_rows: Counter,
    pub insert_errors: Counter,
    pub insert_rejected: Counter,
    /// Rows of daily stats sent, summed from the inserted rows (`deliver::rollup`).
    pub rollup_rows: Counter,
    insert_micros_total: Counter,
    insert_buckets: [Counter; INSERT_BUCKETS.len()],
    pub spool_errors: Counter,
    pub spool_lost_rows: Counter,
}

impl Metrics {
    pub fn dropped(&self, reason: DropReason) -> &Counter {
        &self.dropped[reason.index()]
    }

    pub(crate) fn record_insert(&self, rows: usize, took: Duration) {
        self.insert_batches.inc();
        self.insert_rows.add(rows as u64);
        self.insert_micros_total.add(took.as_micros() as u64);
        let secs = took.as_secs_f64();
        if let Some(i) = INSERT_BUCKETS.iter().position(|b| secs <= *b) {
            self.insert_buckets[i].inc();
        }
    }

    pub(crate) fn record_status(&self, status: u16) {
        let i = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.responses[i].inc();
    }

    pub fn responses(&self, status: u16) -> u64 {
        STATUSES
            .iter()
            .position(|s| *s == status)
            .map_or(0, |i| self.responses[i].get())
    }

    /// Prometheus text exposition; `gauges` are sampled by the caller.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let responses: Vec<(String, u64)> = STATUSES
            .iter()
            .zip(&self.responses)
            .map(|(s, c)| {
                let status = if *s == 0 {
                    "other".to_owned()
                } else {
                    s.to_string()
                };
                (format!("{{status=\"{status}\"}}"), c.get())
            })
            .collect();
        let responses: Vec<(&str, u64)> = responses.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            "glimpse_http_responses_total",
            "HTTP responses by status.",
            &responses,
        );
        counter(
            "glimpse_events_accepted_total",
            "Events answered 202 and queued.",
            &[("", self.events_accepted.get())],
        );
        counter(
            "glimpse_rows_accepted_total",
            "Rows queued (one event may record several sites).",
            &[("", self.rows_accepted.get())],
        );
        let dropped: Vec<(String, u64)> = DropReason::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{}\"}}", r.as_str()),
                    self.dropped(*r).get(),
                )
            })
            .collect();
        let dropped: Vec<(&str, u64)> = dropped.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            "glimpse_events_dropped_total",
            "Events deliberately not recorded, by reason.",
            &dropped,
        );
        counter(
            "glimpse_insert_batches_total",
            "Successful INSERTs.",
            &[("", self.insert_batches.get())],
        );
        counter(
            "glimpse_insert_rows_total",
            "Rows inserted.",
            &[("", self.insert_rows.get())],
        );
        counter(
            "glimpse_insert_rollup_rows_total",
            "Grouped rows of daily stats sent for the inserted rows.",
            &[("", self.rollup_rows.get())],
        );
        counter(
            "glimpse_insert_errors_total",
            "Failed INSERT attempts that will be retried.",
            &[("", self.insert_errors.get())],
        );
        counter(
            "glimpse_insert_rejected_total",
            "Batches ClickHouse rejected as invalid (not retried).",
            &[("", self.insert_rejected.get())],
        );
        counter(
            "glimpse_events_rate_limited_total",
            "Requests refused because their client sent too many.",
            &[("", self.rate_limited.get())],
        );
        counter(
            "glimpse_spool_errors_total",
            "Failed writes to the spool directory.",
            &[("", self.spool_errors.get())],
        );
        counter(
            "glimpse_spool_lost_rows_total",
            "Rows the spool could not write; their requests were answered 503, never 202 (the \
             name is kept from when they were).",
            &[("", self.spool_lost_rows.get())],
        );
        let name = "glimpse_insert_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency of successful INSERTs.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (bound, c) in INSERT_BUCKETS.iter().zip(&self.insert_buckets) {
            cumulative += c.get();
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.insert_batches.get();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.insert_micros_total.get() as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        for Gauge { name, help, value } in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
