//! The request path, stage by stage: parse → check → enrich → anonymize → queue for batching.
//! Everything it needs is in [`Pipeline`]; nothing here does I/O or blocks.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::anonymize::{self, Salts};
use crate::batch::Rows;
use crate::check::{self, DropReason, Rejection, Sites};
use crate::clock::{Clock, day_of};
use crate::enrich::{self, Geo};
use crate::metrics::Metrics;
use crate::parse::{self, Payload};

/// What became of one request's event.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Queued: one row per site.
    Accepted { rows: usize },
    /// Deliberately not recorded.
    Dropped(DropReason),
    /// Malformed; the message says what is wrong.
    Invalid(String),
    /// The queue is full: the client should retry later.
    Busy,
    /// No salt for the current day is loaded (ClickHouse unreachable for over a day).
    NoSalt,
}

pub struct Pipeline {
    pub sites: Sites,
    pub geo: Geo,
    pub salts: Arc<Salts>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub intake: mpsc::Sender<Rows>,
}

impl Pipeline {
    pub fn ingest_json(&self, body: &[u8], ip: IpAddr, user_agent: &str) -> Outcome {
        match parse::parse_json(body) {
            Ok(payload) => self.ingest(payload, ip, user_agent),
            Err(e) => Outcome::Invalid(e.0),
        }
    }

    pub fn ingest(&self, payload: Payload<'_>, ip: IpAddr, user_agent: &str) -> Outcome {
        let checked = match check::check(payload, user_agent, &self.sites) {
            Ok(c) => c,
            Err(Rejection::Invalid(msg)) => return Outcome::Invalid(msg),
            Err(Rejection::Dropped(reason)) => {
                self.metrics.dropped(reason).inc();
                return Outcome::Dropped(reason);
            }
        };
        let enriched = enrich::enrich(checked, ip, &self.geo);
        let now = self.clock.now();
        let salts = self.salts.load();
        let Some(salt) = salts.get(day_of(now)) else {
            return Outcome::NoSalt;
        };
        let mut bytes = Vec::with_capacity(256);
        let timestamp = u32::try_from(now).unwrap_or(u32::MAX);
        let rows = anonymize::encode_rows(&enriched, salt, ip, user_agent, timestamp, &mut bytes);
        match self.intake.try_send(Rows {
            count: rows as u32,
            bytes,
        }) {
            Ok(()) => {
                self.metrics.events_accepted.inc();
                self.metrics.rows_accepted.add(rows as u64);
                Outcome::Accepted { rows }
            }
            Err(_) => Outcome::Busy,
        }
    }
}
