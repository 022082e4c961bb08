//! The request path, stage by stage: parse → check → enrich → anonymize → hand to the batcher.
//! Everything it needs is in [`Pipeline`]. The only wait is for the spool's fsync, and only in
//! fsync-before-ack mode.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::anonymize::{self, Salts};
use crate::batch::{Intake, Refused, Rows};
use crate::check::{self, DropReason, Rejection, Sites};
use crate::clock::{Clock, day_of};
use crate::enrich::{self, Geo};
use crate::metrics::Metrics;
use crate::parse::{self, Payload};

/// What became of one request's event.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Queued (and, in fsync-before-ack mode, on disk): one row per site.
    Accepted { rows: usize },
    /// Deliberately not recorded.
    Dropped(DropReason),
    /// Malformed; the message says what is wrong.
    Invalid(String),
    /// The queue or the spool is full: the client should retry later.
    Busy,
    /// No salt for the current day is loaded (ClickHouse unreachable for over a day).
    NoSalt,
    /// Shutting down, or the spool cannot be written.
    Unavailable,
}

pub struct Pipeline {
    pub sites: Sites,
    pub geo: Geo,
    pub salts: Arc<Salts>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub intake: Intake,
    /// Answer only once the rows are fsynced (group-commit interval 0).
    pub durable: bool,
}

impl Pipeline {
    pub async fn ingest_json(&self, body: &[u8], ip: IpAddr, user_agent: &str) -> Outcome {
        match parse::parse_json(body) {
            Ok(payload) => self.ingest(payload, ip, user_agent).await,
            Err(e) => Outcome::Invalid(e.0),
        }
    }

    pub async fn ingest(&self, payload: Payload<'_>, ip: IpAddr, user_agent: &str) -> Outcome {
        let mut rows = match self.prepare(payload, ip, user_agent) {
            Ok(rows) => rows,
            Err(outcome) => return outcome,
        };
        let count = rows.count;
        let ack = self.durable.then(|| {
            let (tx, rx) = oneshot::channel();
            rows.durable = Some(tx);
            rx
        });
        match self.intake.offer(rows) {
            Ok(()) => {}
            Err(Refused::Full) => return Outcome::Busy,
            Err(Refused::Unavailable) => return Outcome::Unavailable,
        }
        if let Some(ack) = ack
            && ack.await.is_err()
        {
            return Outcome::Unavailable;
        }
        self.metrics.events_accepted.inc();
        self.metrics.rows_accepted.add(u64::from(count));
        Outcome::Accepted {
            rows: count as usize,
        }
    }

    /// Stages 1–4 without the hand-off: the encoded rows of one event, or why there are none.
    pub fn prepare(
        &self,
        payload: Payload<'_>,
        ip: IpAddr,
        user_agent: &str,
    ) -> Result<Rows, Outcome> {
        let checked = match check::check(payload, user_agent, &self.sites) {
            Ok(c) => c,
            Err(Rejection::Invalid(msg)) => return Err(Outcome::Invalid(msg)),
            Err(Rejection::Dropped(reason)) => {
                self.metrics.dropped(reason).inc();
                return Err(Outcome::Dropped(reason));
            }
        };
        let enriched = enrich::enrich(checked, ip, &self.geo);
        let now = self.clock.now();
        let salts = self.salts.load();
        let Some(salt) = salts.get(day_of(now)) else {
            return Err(Outcome::NoSalt);
        };
        let mut bytes = Vec::with_capacity(256);
        let timestamp = u32::try_from(now).unwrap_or(u32::MAX);
        let count = anonymize::encode_rows(&enriched, salt, ip, user_agent, timestamp, &mut bytes);
        Ok(Rows {
            count: count as u32,
            bytes,
            durable: None,
        })
    }
}
