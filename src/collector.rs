//! Wiring: opens the spool, connects to ClickHouse, prepares the schema and salts, starts the
//! background work (batcher thread, deliverer, salt keeper, retention, closing days) and serves
//! until shutdown; then stops accepting, seals the spool and delivers what it can within the grace
//! period. Whatever ClickHouse has not taken by then stays in the spool for the next start.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::anonymize::Salts;
use crate::batch::{self, Intake};
use crate::check::{IpRanges, ReferrerSpam, Rules};
use crate::clock::Clock;
use crate::config::Config;
use crate::deliver::Deliverer;
use crate::deliver::dropped::{self, DropCounts};
use crate::enrich::Geo;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::ratelimit::{self, RateLimiter};
use crate::server::{self, App, Limits};
use crate::spool::{Spool, SpoolError};
use crate::store::{self, ServerVersion, StoreError, schema};
use crate::visits::Visits;

/// How often salts are refreshed (and expired ones destroyed), and retention applied.
pub const SALT_REFRESH_EVERY: Duration = Duration::from_secs(60);
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often finished days are checked and copied into exact counts (`store::closing`).
pub const CLOSE_DAYS_EVERY: Duration = Duration::from_secs(600);
/// A segment never grows past this, whatever `batch.max_rows` says: it bounds the deliverer's
/// memory (it reads one segment at a time).
pub const MAX_SEGMENT_BYTES: u64 = 16 << 20;
/// Rate limiter entries kept (about 40 bytes each).
const RATE_LIMIT_CLIENTS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot start the batcher thread: {0}")]
    Thread(std::io::Error),
    #[error("datacenter ranges file {path}: {reason}")]
    DatacenterRanges { path: String, reason: String },
}

pub struct Collector {
    pub app: Arc<App>,
    pub version: ServerVersion,
    pub salts: Arc<Salts>,
    config: Config,
    stop: watch::Sender<bool>,
    batcher: std::thread::JoinHandle<()>,
    deliverer: JoinHandle<()>,
    /// Writes drop counts; awaited at shutdown for its last flush.
    drops: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Collector {
    /// Everything that must succeed before the first request is served.
    pub async fn start(config: Config, clock: Clock) -> Result<Collector, StartError> {
        // The spool first: a second process on the same directory must fail before touching
        // anything else.
        let (spool, backlog) = Spool::open(&config.spool.dir, config.spool.max_bytes)?;
        let spool = Arc::new(spool);
        let (server_client, db) = store::clients(&config.clickhouse);
        let version = store::server_version(&server_client).await?;
        tracing::info!(%version, "connected to ClickHouse");
        store::migrate(&server_client, &db, &config.clickhouse.database, version).await?;
        store::apply_retention(&db, version, config.events_retention_days, clock.now()).await?;
        store::enable_deduplication(&db, version).await?;
        let salts = Arc::new(Salts::default());
        salts.refresh(&db, clock.now()).await?;
        let (geo, geo_errors) = Geo::open_available(&config.geoip_databases);
        for e in &geo_errors {
            tracing::warn!(error = %e, "geo database unavailable");
        }
        if geo.is_empty() {
            tracing::warn!("no geo database loaded: country and region will be empty");
        }

        let rules = rules(&config)?;
        let metrics = Arc::new(Metrics::default());
        let (sealed_tx, sealed_rx) = mpsc::unbounded_channel();
        let (intake, batcher) = batch::start(
            spool.clone(),
            spool.next_seq(),
            config.batch.queue_capacity,
            batch::Settings {
                max_rows: config.batch.max_rows as u64,
                max_bytes: MAX_SEGMENT_BYTES,
                max_delay: config.batch.max_delay,
                commit_interval: config.spool.commit_interval,
            },
            sealed_tx,
            metrics.clone(),
        )
        .map_err(StartError::Thread)?;
        let dedup_token = version.features().dedup;
        let insert_client = if dedup_token {
            db.clone()
                .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1")
        } else {
            db.clone()
        };
        let deliverer = Deliverer {
            client: insert_client,
            table: schema::INSERT_TABLE.to_string(),
            spool: spool.clone(),
            dedup_token,
            metrics: metrics.clone(),
        };
        let deliverer = tokio::spawn(deliverer.run(backlog, sealed_rx));
        let (stop, stop_rx) = watch::channel(false);
        let drop_counts = Arc::new(DropCounts::new(
            config.sites.iter().map(|s| s.domain.clone()).collect(),
        ));
        let drops = tokio::spawn(dropped::run(
            drop_counts.clone(),
            db.clone(),
            clock.clone(),
            metrics.clone(),
            stopped(stop_rx.clone()),
        ));
        let background = vec![
            tokio::spawn(keep_salts(
                salts.clone(),
                db.clone(),
                clock.clone(),
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(keep_retention(
                db.clone(),
                version,
                config.events_retention_days,
                clock.clone(),
                stopped(stop_rx.clone()),
            )),
            tokio::spawn(keep_closing_days(
                db.clone(),
                clock.clone(),
                stopped(stop_rx),
            )),
        ];

        let pipeline = Pipeline {
            rules,
            geo,
            salts: salts.clone(),
            clock,
            metrics: metrics.clone(),
            drops: drop_counts,
            visits: Visits::new(crate::visits::Settings {
                timeout_secs: u32::try_from(config.visits.timeout.as_secs()).unwrap_or(u32::MAX),
                max_open: config.visits.max_open,
            }),
            intake,
            durable: config.spool.commit_interval.is_zero(),
        };
        let app = Arc::new(App {
            pipeline,
            metrics,
            trusted_proxies: config.trusted_proxies.clone(),
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout,
            rate_limiter: RateLimiter::new(ratelimit::Settings {
                per_second: f64::from(config.rate_limit.events_per_second),
                burst: f64::from(config.rate_limit.burst),
                max_clients: RATE_LIMIT_CLIENTS,
            }),
            rate_limit_proxies: config.rate_limit.trusted_proxies,
            spool,
            db,
            script: crate::beacon::Script::new(),
        });
        Ok(Collector {
            app,
            version,
            salts,
            config,
            stop,
            batcher,
            deliverer,
            drops,
            background,
        })
    }

    /// Serves until `shutdown`; then stops accepting, seals the spool, and delivers what it
    /// can within the grace period. Nothing answered 202 is lost either way: what ClickHouse has
    /// not taken stays in the spool.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let limits = Limits {
            max_connections: self.config.max_connections,
            shutdown_grace: self.config.shutdown_grace,
            header_timeout: self.config.header_timeout,
            max_header_bytes: self.config.max_header_bytes,
        };
        let grace = self.config.shutdown_grace;
        let started = tokio::time::Instant::now();
        server::run(listener, shutdown, self.app.clone(), limits).await;
        tracing::info!("stopped accepting; sealing the spool and delivering it");
        let _ = self.stop.send(true);
        close(&self.app.pipeline.intake, self.batcher).await;
        let remaining = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        let deliverer_abort = self.deliverer.abort_handle();
        if tokio::time::timeout(remaining, self.deliverer)
            .await
            .is_err()
        {
            deliverer_abort.abort();
            tracing::warn!(
                segments = self.app.spool.segments(),
                "ClickHouse did not take everything within the shutdown grace period; \
                 the rest stays in the spool and is delivered at the next start"
            );
        }
        if tokio::time::timeout(Duration::from_secs(2), self.drops)
            .await
            .is_err()
        {
            tracing::warn!("drop counts of the last seconds could not be written");
        }
        for task in self.background {
            task.abort();
        }
        tracing::info!("shut down");
    }
}

/// The check stage's rules from the configuration; reads the datacenter ranges file if set.
fn rules(config: &Config) -> Result<Rules, StartError> {
    let mut rules = Rules::new(&config.sites);
    rules.header_checks = config.filter.header_checks;
    if config.filter.referrer_spam {
        rules.spam = ReferrerSpam::bundled();
    }
    if let Some(path) = &config.filter.datacenter_ranges {
        let fail = |reason: String| StartError::DatacenterRanges {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        rules.datacenters = IpRanges::parse(&text).map_err(fail)?;
        tracing::info!(
            ranges = rules.datacenters.len(),
            "datacenter ranges loaded: their traffic is dropped"
        );
    }
    Ok(rules)
}

/// Closes the intake and waits for the batcher thread to seal its last segment.
async fn close(intake: &Intake, batcher: std::thread::JoinHandle<()>) {
    intake.close().await;
    if tokio::task::spawn_blocking(move || batcher.join())
        .await
        .is_err()
    {
        tracing::error!("the batcher thread panicked");
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn keep_salts(
    salts: Arc<Salts>,
    db: clickhouse::Client,
    clock: Clock,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = tokio::time::sleep(SALT_REFRESH_EVERY) => {}
            () = &mut stop => return,
        }
        if let Err(e) = salts.refresh(&db, clock.now()).await {
            tracing::warn!(error = %e, "salt refresh failed; will retry");
        }
    }
}

/// Copies finished days into exact counts, at start and every `CLOSE_DAYS_EVERY`.
async fn keep_closing_days(db: clickhouse::Client, clock: Clock, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        match store::closing::close_days(&db, clock.now_millis()).await {
            Ok(closed) if !closed.is_empty() => {
                tracing::info!(
                    days = closed.len(),
                    "finished days copied into exact counts"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "closing finished days failed; will retry"),
        }
        tokio::select! {
            () = tokio::time::sleep(CLOSE_DAYS_EVERY) => {}
            () = &mut stop => return,
        }
    }
}

async fn keep_retention(
    db: clickhouse::Client,
    version: ServerVersion,
    days: u32,
    clock: Clock,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = tokio::time::sleep(RETENTION_EVERY) => {}
            () = &mut stop => return,
        }
        match store::apply_retention(&db, version, days, clock.now()).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(days = dropped.len(), "expired raw event partitions dropped")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention run failed; will retry"),
        }
    }
}
