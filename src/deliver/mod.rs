//! Stage 6 — deliver: insert batches into ClickHouse, retrying transient failures with backoff.
//!
//! Deterministic failures are never retried (the same bytes would fail forever and block every
//! batch behind them); they are counted and logged with the server's reason.

pub mod insert;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::metrics::Metrics;

pub use insert::Failure;

pub const BACKOFF_START: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

pub struct Deliverer {
    pub client: clickhouse::Client,
    pub sql: String,
    pub metrics: Arc<Metrics>,
}

impl Deliverer {
    /// Runs until the batch channel closes and every batch has been handled.
    pub async fn run(self, mut batches: mpsc::Receiver<Batch>) {
        while let Some(batch) = batches.recv().await {
            self.deliver(batch).await;
        }
    }

    async fn deliver(&self, batch: Batch) {
        let mut backoff = BACKOFF_START;
        loop {
            let started = std::time::Instant::now();
            match insert::insert(&self.client, &self.sql, batch.data.clone()).await {
                Ok(()) => {
                    self.metrics.record_insert(batch.rows, started.elapsed());
                    return;
                }
                Err(Failure::Deterministic { code, message }) => {
                    self.metrics.insert_rejected.inc();
                    tracing::error!(rows = batch.rows, code, %message, "ClickHouse rejected a batch; not retrying");
                    return;
                }
                Err(Failure::Transient(message)) => {
                    self.metrics.insert_errors.inc();
                    tracing::warn!(rows = batch.rows, retry_in_ms = backoff.as_millis() as u64, %message, "insert failed; retrying");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// ±25 % so that several collectors do not retry in lock-step.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    let factor = 0.75 + f64::from(b[0]) / 255.0 * 0.5;
    d.mul_f64(factor)
}
