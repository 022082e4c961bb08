//! Deliver: insert sealed spool segments into ClickHouse, oldest first, and delete
//! each once the server has acknowledged it.
//!
//! Transient failures (network, overload, a server restarting) are retried with backoff, the
//! same segment again, so order is kept. Deterministic failures are never retried: the same
//! bytes would fail forever and block every segment behind them. Such a segment moves to the
//! dead-letter directory with the server's reason.
//!
//! Every INSERT of a segment carries the same deduplication token where the server supports it,
//! so a retry after a lost acknowledgement, or a replay after a crash, is stored once.
//!
//! A segment is up to three inserts: its rows (not sent in aggregates-only mode, where no view
//! reads them), their daily stats summed here (`rollup`), then their other aggregates
//! (`aggregates`). A retry repeats only the one that failed; a replay after a crash repeats
//! them all, each with its own token.

pub mod aggregates;
pub mod insert;
pub mod rollup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::spool::Spool;

pub use insert::Failure;
use rollup::Rollup;

pub(crate) const BACKOFF_START: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The shard check gives up after this. An insert itself has no deadline: abandoning one that a
/// slow or frozen server still runs would store it twice where the server has no tokens, and a
/// server that is gone resets or times out the connection (TCP) anyway.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Deliverer {
    pub client: clickhouse::Client,
    /// The table rows go to, the column list following each segment's row format; `None` in
    /// aggregates-only mode, where the rows themselves are not kept.
    pub table: Option<String>,
    /// The table rows of formats before the daily rollup go to: its views sum every aggregate.
    pub legacy_table: String,
    /// The table the daily stats of rolled-up rows go to (`rollup`).
    pub daily_table: String,
    /// The table the other aggregates of rolled-up rows go to (`aggregates`).
    pub aggregates_table: String,
    pub spool: Arc<Spool>,
    /// Whether the server deduplicates by `insert_deduplication_token`.
    pub dedup_token: bool,
    /// Asked before each attempt where a retry cannot be recognised (a cluster of servers
    /// without tokens): a query that fails unless every shard has a live replica. An insert
    /// that reached some shards and failed on another would be stored twice on those by its
    /// retry; this keeps inserts from starting while a shard is down.
    pub shards_up: Option<String>,
    pub metrics: Arc<Metrics>,
}

impl Deliverer {
    /// Delivers `backlog` (segments left by a previous run), then every segment the batcher
    /// seals, until the batcher has gone and everything it sealed is handled.
    pub async fn run(self, backlog: Vec<u64>, mut sealed: mpsc::UnboundedReceiver<u64>) {
        if !backlog.is_empty() {
            tracing::info!(
                segments = backlog.len(),
                "replaying the spool left by the previous run"
            );
        }
        for seq in backlog {
            self.deliver(seq).await;
        }
        while let Some(seq) = sealed.recv().await {
            self.deliver(seq).await;
        }
    }

    async fn deliver(&self, seq: u64) {
        let segment = match tokio::fs::read(self.spool.path(seq)).await {
            Ok(raw) => crate::spool::decode_records(raw),
            Err(e) => {
                self.quarantine(seq, &format!("segment unreadable: {e}"));
                return;
            }
        };
        if segment.torn_bytes > 0 && segment.corrupt_at.is_none() {
            tracing::warn!(
                segment = seq,
                bytes = segment.torn_bytes,
                "segment ends in a torn record (crash during a write); delivering the intact part"
            );
        }
        if segment.rows > 0 {
            let token = self.spool.token(seq, segment.nonce.as_deref());
            let started = Instant::now();
            let inserts = self.inserts(&segment.data, segment.format, &token);
            for (i, (what, sql, token, body)) in inserts.iter().enumerate() {
                let Err(code) = self
                    .insert_until_stored(seq, token, sql, body, segment.rows)
                    .await
                else {
                    continue;
                };
                // The server's message can quote row data: it went to the log, and only the
                // code sits next to the rows.
                let reason = if i == 0 {
                    format!(
                        "Code: {code}: ClickHouse rejected {what} as invalid; its message is in \
                         the collector's log"
                    )
                } else {
                    let stored: Vec<&str> = inserts[..i].iter().map(|x| x.0).collect();
                    format!(
                        "Code: {code}: {} were stored, but {what} were rejected; the reason is \
                         in the collector's log. Inserting this segment again would store those \
                         twice",
                        stored.join(" and ")
                    )
                };
                self.quarantine(seq, &reason);
                return;
            }
            self.metrics
                .record_insert(segment.rows as usize, started.elapsed());
        }
        if let Some(at) = segment.corrupt_at {
            // Never deleted: what follows the damage stays on disk for an operator.
            self.quarantine(
                seq,
                &format!(
                    "corrupt record at byte {at}: the {} rows before it were delivered, the {} \
                     bytes from there on were not",
                    segment.rows, segment.torn_bytes
                ),
            );
            return;
        }
        if let Err(e) = self.spool.remove(seq) {
            // Delivered but not deleted: a replay would insert it again (deduplicated where the
            // server supports tokens). Nothing better to do than to say so.
            tracing::error!(segment = seq, error = %e, "cannot delete a delivered segment");
        }
    }

    /// What a segment of rows of `format` is sent as, in order: (what it holds, the INSERT, its
    /// deduplication token, the body).
    fn inserts<'a>(
        &self,
        data: &'a Bytes,
        format: u32,
        token: &str,
    ) -> Vec<(&'static str, String, String, Body<'a>)> {
        if !crate::encode::rolled_up(format) {
            let sql = crate::encode::insert_sql(&self.legacy_table, format);
            return vec![("the rows", sql, token.to_owned(), Body::Rows(data))];
        }
        let mut out = Vec::with_capacity(3);
        if let Some(table) = &self.table {
            let sql = crate::encode::insert_sql(table, format);
            out.push(("the rows", sql, token.to_owned(), Body::Rows(data)));
        }
        for (what, rollup, table, suffix) in [
            (
                "their daily stats",
                Rollup::Daily,
                &self.daily_table,
                "daily",
            ),
            (
                "their other aggregates",
                Rollup::Aggregates,
                &self.aggregates_table,
                "aggregates",
            ),
        ] {
            let sql = rollup.insert_sql(table);
            let body = Body::Sums(rollup, data, format);
            out.push((what, sql, format!("{token}-{suffix}"), body));
        }
        out
    }

    /// Sends one insert of the segment `seq` until the server has it, retrying transient
    /// failures with backoff; a deterministic one returns its code (after logging its message).
    async fn insert_until_stored(
        &self,
        seq: u64,
        token: &str,
        sql: &str,
        body: &Body<'_>,
        rows: u64,
    ) -> Result<(), u32> {
        let client = if self.dedup_token {
            self.client
                .clone()
                .with_setting("insert_deduplication_token", token)
        } else {
            self.client.clone()
        };
        let mut backoff = BACKOFF_START;
        loop {
            match self.attempt(&client, sql, body).await {
                Ok(()) => return Ok(()),
                Err(Failure::Deterministic { code, message }) => {
                    self.metrics.insert_rejected.inc();
                    tracing::error!(segment = seq, rows, code, %message, "ClickHouse rejected a segment; moving it to the dead-letter directory");
                    return Err(code);
                }
                Err(Failure::Transient(message)) => {
                    self.metrics.insert_errors.inc();
                    tracing::warn!(segment = seq, rows, retry_in_ms = backoff.as_millis() as u64, %message, "insert failed; retrying");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn attempt(
        &self,
        client: &clickhouse::Client,
        sql: &str,
        body: &Body<'_>,
    ) -> Result<(), Failure> {
        if let Some(probe) = &self.shards_up {
            let check = client.query(probe).fetch_one::<u64>();
            match tokio::time::timeout(PROBE_TIMEOUT, check).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(Failure::Transient(format!("a shard is unreachable: {e}")));
                }
                Err(_) => {
                    return Err(Failure::Transient(format!(
                        "the shard check had no answer within {} s",
                        PROBE_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        match body {
            Body::Rows(data) => insert::insert(client, sql, Bytes::clone(data)).await,
            Body::Sums(rollup, data, format) => {
                rollup::insert(client, sql, *rollup, data, *format).await
            }
        }
    }

    fn quarantine(&self, seq: u64, reason: &str) {
        match self.spool.quarantine(seq, reason) {
            Ok(path) => {
                tracing::error!(segment = seq, path = %path.display(), "segment quarantined")
            }
            Err(e) => tracing::error!(segment = seq, error = %e, "cannot quarantine a segment"),
        }
    }
}

/// What one insert of a segment sends.
enum Body<'a> {
    /// The segment's rows as they are.
    Rows(&'a Bytes),
    /// A rollup of the segment's rows (of this row format), summed as it is sent.
    Sums(Rollup, &'a Bytes, u32),
}

/// ±25 % so that several collectors do not retry in lock-step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    let factor = 0.75 + f64::from(b[0]) / 255.0 * 0.5;
    d.mul_f64(factor)
}
