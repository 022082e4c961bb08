//! Wiring: connects to ClickHouse, prepares the schema and salts, starts the background tasks
//! (batcher, deliverer, salt keeper, retention) and serves until shutdown, then drains.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::anonymize::Salts;
use crate::batch;
use crate::check::Sites;
use crate::clock::Clock;
use crate::config::Config;
use crate::deliver::Deliverer;
use crate::enrich::Geo;
use crate::event;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::server::{self, App, Limits};
use crate::store::{self, ServerVersion, StoreError, schema};

/// How often salts are refreshed (and expired ones destroyed), and retention applied.
pub const SALT_REFRESH_EVERY: Duration = Duration::from_secs(60);
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How many encoded batches may wait for the deliverer.
const BATCH_QUEUE: usize = 2;

pub struct Collector {
    pub app: Arc<App>,
    pub version: ServerVersion,
    pub salts: Arc<Salts>,
    config: Config,
    stop: watch::Sender<bool>,
    batcher: JoinHandle<()>,
    deliverer: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl Collector {
    /// Everything that must succeed before the first request is served.
    pub async fn start(config: Config, clock: Clock) -> Result<Collector, StoreError> {
        let (server_client, db) = store::clients(&config.clickhouse);
        let version = store::server_version(&server_client).await?;
        tracing::info!(%version, "connected to ClickHouse");
        store::migrate(&server_client, &db, &config.clickhouse.database, version).await?;
        store::apply_retention(&db, version, config.events_retention_days, clock.now()).await?;
        let salts = Arc::new(Salts::default());
        salts.refresh(&db, clock.now()).await?;
        let (geo, geo_errors) = Geo::open_available(&config.geoip_databases);
        for e in &geo_errors {
            tracing::warn!(error = %e, "geo database unavailable");
        }
        if geo.is_empty() {
            tracing::warn!("no geo database loaded: country and region will be empty");
        }

        let metrics = Arc::new(Metrics::default());
        let (intake_tx, intake_rx) = mpsc::channel(config.batch.queue_capacity);
        let (batch_tx, batch_rx) = mpsc::channel(BATCH_QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        let batcher = tokio::spawn(batch::run(
            intake_rx,
            batch_tx,
            config.batch.max_rows,
            config.batch.max_delay,
            stopped(stop_rx.clone()),
        ));
        let deliverer = Deliverer {
            client: db.clone(),
            sql: event::insert_sql(schema::INSERT_TABLE),
            metrics: metrics.clone(),
        };
        let deliverer = tokio::spawn(deliverer.run(batch_rx));
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
                stopped(stop_rx),
            )),
        ];

        let pipeline = Pipeline {
            sites: Sites::new(&config.sites),
            geo,
            salts: salts.clone(),
            clock,
            metrics: metrics.clone(),
            intake: intake_tx,
        };
        let app = Arc::new(App {
            pipeline,
            metrics,
            trusted_proxies: config.trusted_proxies.clone(),
            max_body_bytes: config.max_body_bytes,
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
            background,
        })
    }

    /// Serves until `shutdown`, then stops accepting, flushes every queued event to ClickHouse
    /// (retrying within the grace period) and stops the background tasks.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let limits = Limits {
            max_connections: self.config.max_connections,
            shutdown_grace: self.config.shutdown_grace,
        };
        let grace = self.config.shutdown_grace;
        let started = tokio::time::Instant::now();
        server::run(listener, shutdown, self.app.clone(), limits).await;
        tracing::info!("stopped accepting; flushing queued events");
        let _ = self.stop.send(true);
        let _ = self.batcher.await;
        let remaining = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        let deliverer_abort = self.deliverer.abort_handle();
        if tokio::time::timeout(remaining, self.deliverer)
            .await
            .is_err()
        {
            deliverer_abort.abort();
            tracing::error!(
                "ClickHouse did not take the last batches within the shutdown grace period"
            );
        }
        for task in self.background {
            task.abort();
        }
        tracing::info!("shut down");
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
