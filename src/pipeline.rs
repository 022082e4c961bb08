//! The request path, stages 1–8 of `lib.rs`: parse → classify → filter → anonymize → visits →
//! cardinality → encode → hand to the batcher. Everything it needs is in [`Pipeline`], the
//! ingest handle the HTTP front is given. The only wait is for the batcher to write (and, by
//! default, fsync) the rows to the spool.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::anonymize::{self, Salts};
use crate::batch::{Intake, Refused, Rows};
use crate::cardinality::{Bounds, SiteValues};
use crate::classify::Classifier;
use crate::clock::{Clock, day_of};
use crate::drops::DropCounts;
use crate::encode::Event;
use crate::filter::{self, Dropped, Rules, Signals};
use crate::metrics::{Gauge, Metrics};
use crate::model::DropReason;
use crate::parse::{self, Payload};
use crate::visits::{Step, Visits};

/// What became of one request's event.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the spool (and, by default, fsynced): one row per site.
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

/// Who sent an event: what classification, the filter and anonymisation need from the request.
/// It goes no further than this module.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'r> {
    pub ip: IpAddr,
    pub user_agent: &'r str,
    pub signals: Signals,
}

pub struct Pipeline {
    pub classifier: Classifier,
    pub rules: Rules,
    pub salts: Arc<Salts>,
    pub visits: Visits,
    pub bounds: Bounds,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub drops: Arc<DropCounts>,
    pub intake: Intake,
}

impl Pipeline {
    pub async fn ingest_json(&self, body: &[u8], request: &Requester<'_>) -> Outcome {
        match parse::parse_json(body) {
            Ok(payload) => self.ingest(payload, request).await,
            Err(e) => Outcome::Invalid(e.0),
        }
    }

    pub async fn ingest(&self, payload: Payload<'_>, request: &Requester<'_>) -> Outcome {
        let mut rows = match self.prepare(payload, request) {
            Ok(rows) => rows,
            Err(outcome) => return outcome,
        };
        let count = rows.count;
        // 202 only once the rows are written to the spool (and fsynced, unless a commit
        // interval is set); a batcher that could not write them drops the sender: 503.
        let (tx, written) = oneshot::channel();
        rows.written = Some(tx);
        match self.intake.offer(rows) {
            Ok(()) => {}
            Err(Refused::Full) => return Outcome::Busy,
            Err(Refused::Unavailable) => return Outcome::Unavailable,
        }
        if written.await.is_err() {
            return Outcome::Unavailable;
        }
        self.metrics.events_accepted.inc();
        self.metrics.rows_accepted.add(u64::from(count));
        Outcome::Accepted {
            rows: count as usize,
        }
    }

    /// Every stage before the hand-off: the encoded rows of one event, or why there are none.
    pub fn prepare(&self, payload: Payload<'_>, request: &Requester<'_>) -> Result<Rows, Outcome> {
        let now = self.clock.now();
        let day = day_of(now);
        let event = self
            .classifier
            .classify(payload, request.ip, request.user_agent)
            .map_err(Outcome::Invalid)?;
        let accepted = match filter::filter(event, request.ip, request.signals, &self.rules) {
            Ok(accepted) => accepted,
            Err(d) => return Err(self.dropped(day, &d)),
        };
        for &(site, reason) in &accepted.shielded {
            self.drops.add(day, site, reason, 1);
        }
        let salts = self.salts.load();
        let Some(salt) = salts.get(day) else {
            return Err(Outcome::NoSalt);
        };
        let timestamp = u32::try_from(now).unwrap_or(u32::MAX);
        let payload = &accepted.event.payload;
        let pageview = payload.name == "pageview";
        let engagement = payload.engagement.is_some();
        let mut bytes = Vec::with_capacity(256);
        let mut count = 0;
        for &(index, site) in &accepted.sites {
            let visitor = anonymize::visitor(salt, &site.domain, request.ip, request.user_agent);
            // The visit's slot comes into the cache while the bound works.
            self.visits.warm(visitor);
            // Every value of the row against the site's bound for the day, under one lock.
            let mut bound = self.bounds.row(index, day);
            let values = SiteValues::of(&accepted, site, &mut bound, engagement);
            drop(bound);
            // An engagement report adds to its visit's page and duration, and is neither a page
            // view nor an event.
            let (step, engaged) = match payload.engagement {
                Some(report) => {
                    let Some(engaged) = self.visits.engage(
                        visitor,
                        timestamp,
                        &values.pathname,
                        report.scroll_depth,
                        report.engaged_ms,
                    ) else {
                        continue;
                    };
                    let step = Step {
                        seconds: engaged.seconds,
                        bounce: 0,
                        entry: false,
                        exit_prev: None,
                    };
                    (step, Some(engaged))
                }
                None => {
                    let step = self.visits.step(
                        visitor,
                        timestamp,
                        pageview,
                        payload.interactive,
                        &values.pathname,
                    );
                    (step, None)
                }
            };
            let row = Event::of(
                &accepted,
                &site.domain,
                &values,
                timestamp,
                visitor,
                &step,
                engaged,
            );
            row.encode(&mut bytes);
            count += 1;
        }
        if count == 0 {
            let none = Dropped {
                reason: DropReason::EngagementWithoutVisit,
                sites: Vec::new(),
            };
            return Err(self.dropped(day, &none));
        }
        Ok(Rows {
            count,
            bytes,
            written: None,
        })
    }

    fn dropped(&self, day: u16, d: &Dropped) -> Outcome {
        self.metrics.dropped(d.reason).inc();
        for &(site, reason) in &d.sites {
            self.drops.add(day, site, reason, 1);
        }
        Outcome::Dropped(d.reason)
    }

    /// Gauges of the request path's own state, for `/metrics`.
    pub(crate) fn gauges(&self, out: &mut Vec<Gauge>) {
        self.intake.gauges(out);
        self.salts.gauges(self.clock.now(), out);
        self.visits.gauges(out);
        self.bounds.gauges(out);
    }
}
