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
//! A segment is two inserts: its rows, then their daily stats summed here (`rollup`). A retry
//! repeats only the one that failed; a replay after a crash repeats both, each with its own
//! token. Both are sent as Native blocks (`native`), made from the RowBinary rows as they go.

pub mod native;
pub mod insert;
pub mod rollup;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::spool::Spool;

pub use insert::Failure;

pub(crate) const BACKOFF_START: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The shard check gives up after this. An insert itself has no deadline: abandoning one that a
/// slow or frozen server still runs would store it twice where the server has no tokens, and a
/// server that is gone resets or times out the connection (TCP) anyway.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Deliverer {
    pub client: clickhouse::Client,
    /// The table rows go to; the column list follows each segment's row format.
    pub table: String,
    /// The table rows of formats before the daily rollup go to: its views sum their daily
    /// stats.
    pub legacy_table: String,
    /// The table the daily stats of rolled-up rows go to (`rollup`).
    pub daily_table: String,
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
        // Read and checked off the request threads: checking a segment of megabytes would hold
        // a worker, and the requests queued behind it, for milliseconds.
        let path = self.spool.path(seq);
        let read = tokio::task::spawn_blocking(move || {
            std::fs::read(path).map(crate::spool::decode_records)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let segment = match read {
            Ok(segment) => segment,
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
            let rolled_up = crate::encode::rolled_up(segment.format);
            let table = if rolled_up {
                &self.table
            } else {
                &self.legacy_table
            };
            let rows = crate::encode::insert_sql(table, segment.format);
            let started = Instant::now();
            if let Err(refusal) = self
                .insert_until_stored(
                    seq,
                    &token,
                    &rows,
                    &Body::Rows(&segment.data, segment.format),
                    segment.rows,
                )
                .await
            {
                // The server's message can quote row data: it went to the log, and only the
                // code sits next to the rows.
                self.quarantine(
                    seq,
                    &match refusal {
                        Refusal::Server(code) => format!(
                            "Code: {code}: ClickHouse rejected the rows as invalid; its message \
                             is in the collector's log"
                        ),
                        Refusal::Unreadable(e) => format!(
                            "the rows cannot be read back ({e}): damage that the record \
                             checksums did not catch; the insert was abandoned, so none of \
                             them were stored"
                        ),
                    },
                );
                return;
            }
            self.metrics
                .record_insert(segment.rows as usize, started.elapsed());
            if rolled_up {
                let sql = rollup::insert_sql(&self.daily_table);
                let token = format!("{token}-daily");
                let body = Body::Daily(&segment.data, segment.format);
                if let Err(refusal) = self
                    .insert_until_stored(seq, &token, &sql, &body, segment.rows)
                    .await
                {
                    let why = match refusal {
                        Refusal::Server(code) => format!(
                            "Code: {code}: the rows were stored, but their daily stats were \
                             rejected; the reason is in the collector's log"
                        ),
                        Refusal::Unreadable(e) => format!(
                            "the rows were stored, but their daily stats cannot be summed ({e})"
                        ),
                    };
                    self.quarantine(
                        seq,
                        &format!("{why}. Inserting this segment again would store its rows twice"),
                    );
                    return;
                }
            }
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

    /// Sends one insert of the segment `seq` until the server has it, retrying transient
    /// failures with backoff; a deterministic one returns why (after logging the server's
    /// message).
    async fn insert_until_stored(
        &self,
        seq: u64,
        token: &str,
        sql: &str,
        body: &Body<'_>,
        rows: u64,
    ) -> Result<(), Refusal> {
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
                    return Err(Refusal::Server(code));
                }
                Err(Failure::Unreadable(e)) => {
                    self.metrics.insert_rejected.inc();
                    tracing::error!(segment = seq, rows, error = %e, "a segment's rows cannot be read back; moving it to the dead-letter directory");
                    return Err(Refusal::Unreadable(e));
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
            Body::Rows(data, format) => {
                insert::insert_rows(client, sql, data, crate::encode::columns_of(*format)).await
            }
            // The daily stats' rows are counted once stored.
            Body::Daily(data, format) => rollup::insert(client, sql, data, *format)
                .await
                .map(|sent| self.metrics.rollup_rows.add(sent)),
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

/// Why an insert of a segment can never succeed.
enum Refusal {
    /// ClickHouse rejected the data, with this error code.
    Server(u32),
    /// The rows could not be read out of the segment.
    Unreadable(crate::encode::Unreadable),
}

/// What one insert of a segment sends.
enum Body<'a> {
    /// The segment's rows (of this row format), sent as Native blocks.
    Rows(&'a Bytes, u32),
    /// The daily stats of the segment's rows (of this row format), summed as they are sent.
    Daily(&'a Bytes, u32),
}

/// ±25 % so that several collectors do not retry in lock-step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    let factor = 0.75 + f64::from(b[0]) / 255.0 * 0.5;
    d.mul_f64(factor)
}
