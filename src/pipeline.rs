//! The request path, stage by stage: parse → check → enrich → anonymize → hand to the batcher.
//! Everything it needs is in [`Pipeline`]. The only wait is for the spool's fsync, and only in
//! fsync-before-ack mode.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::anonymize::{self, Salts};
use crate::batch::{Intake, Refused, Rows};
use crate::check::{self, DropReason, Dropped, Rejection, Rules, Sender};
use crate::clock::{Clock, day_of};
use crate::deliver::dropped::DropCounts;
use crate::enrich::{self, Geo};
use crate::metrics::Metrics;
use crate::parse::{self, Payload};
use crate::visits::Visits;

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
    pub rules: Rules,
    pub geo: Geo,
    pub salts: Arc<Salts>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub drops: Arc<DropCounts>,
    pub visits: Visits,
    pub intake: Intake,
    /// Answer only once the rows are fsynced (group-commit interval 0).
    pub durable: bool,
}

impl Pipeline {
    pub async fn ingest_json(&self, body: &[u8], sender: &Sender<'_>) -> Outcome {
        match parse::parse_json(body) {
            Ok(payload) => self.ingest(payload, sender).await,
            Err(e) => Outcome::Invalid(e.0),
        }
    }

    pub async fn ingest(&self, payload: Payload<'_>, sender: &Sender<'_>) -> Outcome {
        let mut rows = match self.prepare(payload, sender) {
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
    pub fn prepare(&self, payload: Payload<'_>, sender: &Sender<'_>) -> Result<Rows, Outcome> {
        let now = self.clock.now();
        let day = day_of(now);
        let checked = match check::check(payload, sender, &self.rules) {
            Ok(c) => c,
            Err(Rejection::Invalid(msg)) => return Err(Outcome::Invalid(msg)),
            Err(Rejection::Dropped(d)) => return Err(self.dropped(day, &d)),
        };
        for &(site, reason) in &checked.shielded {
            self.drops.add(day, site, reason, 1);
        }
        let mut enriched = enrich::enrich(checked, sender.ip, &self.geo);
        // Country shields need the location, so they apply after enrichment.
        let country = enriched.location.country_code;
        let blocked: Vec<usize> = enriched
            .checked
            .sites
            .iter()
            .filter(|s| s.shield.blocks_country(country))
            .map(|s| s.index)
            .collect();
        if !blocked.is_empty() {
            enriched
                .checked
                .sites
                .retain(|s| !blocked.contains(&s.index));
            let reason = DropReason::BlockedCountry;
            if enriched.checked.sites.is_empty() {
                let sites = blocked.into_iter().map(|s| (s, reason)).collect();
                return Err(self.dropped(day, &Dropped { reason, sites }));
            }
            for site in blocked {
                self.drops.add(day, site, reason, 1);
            }
        }
        let salts = self.salts.load();
        let Some(salt) = salts.get(day) else {
            return Err(Outcome::NoSalt);
        };
        let mut bytes = Vec::with_capacity(256);
        let timestamp = u32::try_from(now).unwrap_or(u32::MAX);
        let count = anonymize::encode_rows(
            &enriched,
            salt,
            sender.ip,
            sender.user_agent,
            timestamp,
            &self.visits,
            &mut bytes,
        );
        Ok(Rows {
            count: count as u32,
            bytes,
            durable: None,
        })
    }

    fn dropped(&self, day: u16, d: &Dropped) -> Outcome {
        self.metrics.dropped(d.reason).inc();
        for &(site, reason) in &d.sites {
            self.drops.add(day, site, reason, 1);
        }
        Outcome::Dropped(d.reason)
    }
}
