//! Process counters, kept as plain atomics so the request path never takes a lock.
//! Rendered in Prometheus text format at `GET /metrics`. No label ever names a visitor.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::check::DropReason;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub responses_2xx: Counter,
    pub responses_400: Counter,
    pub responses_413: Counter,
    pub responses_429: Counter,
    pub responses_other: Counter,
    pub events_accepted: Counter,
    pub rows_accepted: Counter,
    dropped: [Counter; DropReason::ALL.len()],
    pub insert_batches: Counter,
    pub insert_rows: Counter,
    pub insert_errors: Counter,
    pub insert_rejected: Counter,
    insert_micros_total: Counter,
}

impl Metrics {
    pub fn dropped(&self, reason: DropReason) -> &Counter {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        &self.dropped[i]
    }

    pub fn record_insert(&self, rows: usize, took: Duration) {
        self.insert_batches.inc();
        self.insert_rows.add(rows as u64);
        self.insert_micros_total.add(took.as_micros() as u64);
    }

    pub fn record_status(&self, status: u16) {
        match status {
            200..=299 => self.responses_2xx.inc(),
            400 => self.responses_400.inc(),
            413 => self.responses_413.inc(),
            429 => self.responses_429.inc(),
            _ => self.responses_other.inc(),
        }
    }

    /// Prometheus text exposition; `gauges` are sampled by the caller.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        counter(
            "glimpse_http_responses_total",
            "HTTP responses by status class.",
            &[
                ("{status=\"2xx\"}", self.responses_2xx.get()),
                ("{status=\"400\"}", self.responses_400.get()),
                ("{status=\"413\"}", self.responses_413.get()),
                ("{status=\"429\"}", self.responses_429.get()),
                ("{status=\"other\"}", self.responses_other.get()),
            ],
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
            "glimpse_insert_seconds_total",
            "Time spent in successful INSERTs.",
            &[("", self.insert_micros_total.get() / 1_000_000)],
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
