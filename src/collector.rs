//! Wiring, in phases: the spool, the store (ClickHouse schema, retention, salts), the ingest
//! path (pipeline and batcher), delivery, and the background jobs. [`Collector::serve`] then
//! serves until shutdown and stops everything in one order, written down in one place: stop
//! accepting, tell the jobs, seal the spool, deliver what ClickHouse takes within the grace
//! period, write the last drop counts, end what still runs. Whatever ClickHouse has not taken stays in the spool for the
//! next start.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::anonymize::Salts;
use crate::batch::{self, Intake};
use crate::cardinality::Bounds;
use crate::classify::{Classifier, Geo};
use crate::clock::Clock;
use crate::config::Config;
use crate::deliver::Deliverer;
use crate::drops::{self, DropCounts};
use crate::filter::Rules;
use crate::front;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::server::{self, Routes};
use crate::shutdown::{self, First, Shutdown, Trigger};
use crate::spool::{Spool, SpoolError};
use crate::store::{self, ServerVersion, StoreError, schema};
use crate::visits::Visits;

/// How often salts are refreshed (and expired ones destroyed), and retention applied.
pub(crate) const SALT_REFRESH_EVERY: Duration = Duration::from_secs(60);
/// How often salts past their lifetime are forgotten in memory: on its own timer, because a
/// refresh can hang on a ClickHouse that stopped answering.
pub(crate) const SALT_FORGET_EVERY: Duration = Duration::from_secs(1);
pub(crate) const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often finished days are checked and copied into exact counts (`store::closing`).
pub(crate) const CLOSE_DAYS_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot start the batcher thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Filter(String),
}

/// The ClickHouse side, ready: schema migrated, retention applied, salts loaded.
pub(crate) struct Store {
    pub db: clickhouse::Client,
    /// One server or a cluster.
    pub layout: store::Layout,
    pub version: ServerVersion,
    pub salts: Arc<Salts>,
}

/// The request path and the batcher thread behind it.
pub struct Ingest {
    pub pipeline: Pipeline,
    pub batcher: std::thread::JoinHandle<()>,
    /// Numbers of the segments the batcher seals, for delivery.
    pub sealed: mpsc::UnboundedReceiver<u64>,
}

pub struct Collector {
    pub routes: Arc<Routes>,
    pub version: ServerVersion,
    pub salts: Arc<Salts>,
    pub spool: Arc<Spool>,
    server: front::Settings,
    jobs: Jobs,
}

/// What runs besides the HTTP front; [`Collector::serve`] stops it in one order.
struct Jobs {
    trigger: Trigger,
    batcher: std::thread::JoinHandle<()>,
    deliverer: JoinHandle<()>,
    /// Writes drop counts; awaited at shutdown for its last flush.
    drops: JoinHandle<()>,
    periodic: Vec<JoinHandle<()>>,
}

impl Collector {
    /// Everything that must succeed before the first request is served.
    pub async fn start(config: Config, clock: Clock) -> Result<Collector, StartError> {
        // Spool: first, so that a second process on the same directory fails before touching
        // anything else.
        let (spool, backlog) = Spool::open(&config.spool.dir, config.spool.max_bytes)?;
        let spool = Arc::new(spool);
        // Store: salts purged, migrations, retention, today's salts.
        let store = open_store_patiently(&config, &clock).await?;
        // Ingest: the request path and the batcher thread.
        let metrics = Arc::new(Metrics::default());
        let drops = Arc::new(DropCounts::new(config.domains()));
        let ingest = ingest(
            &config,
            clock.clone(),
            store.salts.clone(),
            spool.clone(),
            metrics.clone(),
            drops.clone(),
        )?;
        // Delivery: the backlog first, then what the batcher seals.
        let deliverer = tokio::spawn(
            deliverer(&store, spool.clone(), metrics.clone()).run(backlog, ingest.sealed),
        );
        // Background jobs, stopped by one trigger; then the routes.
        let (trigger, shutdown) = shutdown::channel();
        let (drops, periodic) =
            background_jobs(&config, &store, &spool, &clock, (drops, metrics), &shutdown);
        let routes = serving_routes(&config, ingest.pipeline, &store, &spool);
        Ok(Collector {
            routes: Arc::new(routes),
            version: store.version,
            salts: store.salts,
            spool,
            server: config.server,
            jobs: Jobs {
                trigger,
                batcher: ingest.batcher,
                deliverer,
                drops,
                periodic,
            },
        })
    }

    /// Serves until `shutdown`; then stops accepting, seals the spool, and delivers what it
    /// can within the grace period. Nothing answered 202 is lost either way: what ClickHouse has
    /// not taken stays in the spool.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let grace = self.server.shutdown_grace;
        // The grace period runs from the shutdown signal (not from the start of serving): the
        // drain of open connections and the delivery of the spool share it.
        let signalled = std::sync::Arc::new(std::sync::OnceLock::new());
        let shutdown = {
            let signalled = signalled.clone();
            async move {
                shutdown.await;
                let _ = signalled.set(tokio::time::Instant::now());
            }
        };
        server::run(listener, shutdown, self.routes.clone(), self.server.clone()).await;
        let started = signalled
            .get()
            .copied()
            .unwrap_or_else(tokio::time::Instant::now);
        tracing::info!("stopped accepting; sealing the spool and delivering it");
        let jobs = self.jobs;
        // Periodic jobs stop at their next wait; the drop counter writes its last counts.
        jobs.trigger.fire();
        close(&self.routes.pipeline.intake, jobs.batcher).await;
        let remaining = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        let deliverer_abort = jobs.deliverer.abort_handle();
        if tokio::time::timeout(remaining, jobs.deliverer)
            .await
            .is_err()
        {
            deliverer_abort.abort();
            tracing::warn!(
                segments = self.spool.segments(),
                "ClickHouse did not take everything within the shutdown grace period; \
                 the rest stays in the spool and is delivered at the next start"
            );
        }
        if tokio::time::timeout(Duration::from_secs(2), jobs.drops)
            .await
            .is_err()
        {
            tracing::warn!("drop counts of the last seconds could not be written");
        }
        // A run still in progress is cut: each job is idempotent and runs again at the next
        // start.
        for job in jobs.periodic {
            job.abort();
        }
        tracing::info!("shut down");
    }
}

/// Attempts of [`open_store`] when the connection to ClickHouse fails, with 1, 2, 4, 8 s between.
const OPEN_ATTEMPTS: u32 = 5;

/// [`open_store`], again after a network failure (a server restarting, or one that closed a
/// pooled connection): every step is idempotent. Other errors are final.
async fn open_store_patiently(config: &Config, clock: &Clock) -> Result<Store, StoreError> {
    let mut attempt = 1;
    loop {
        match open_store(config, clock).await {
            Err(StoreError::ClickHouse(clickhouse::error::Error::Network(e)))
                if attempt < OPEN_ATTEMPTS =>
            {
                let wait = Duration::from_secs(1 << (attempt - 1));
                tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "cannot reach ClickHouse at start-up");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Connects, destroys expired salts, migrates, applies retention and deduplication, and loads
/// the salts.
pub(crate) async fn open_store(config: &Config, clock: &Clock) -> Result<Store, StoreError> {
    let (server, db) = store::clients(&config.clickhouse);
    let version = store::server_version(&server).await?;
    tracing::info!(%version, "connected to ClickHouse");
    if !version.features().access_control {
        tracing::warn!(
            %version,
            "this ClickHouse has no per-table access control: ANY user who can read the database \
             can read glimpse_salts and so recompute today's visitor ids. Give dashboards and \
             Grafana no user on this server, or upgrade to 20.4+ and apply \
             deploy/clickhouse/grants.sql"
        );
    }
    let layout = config.clickhouse.layout();
    // Salts past their lifetime go before anything else happens, migrations (and a cluster's
    // wait for the migration lock) included; on a first start there are none.
    let purged = if store::salts::stored(&server, &config.clickhouse.database).await? {
        store::salts::purge_expired(&db, clock.now()).await?
    } else {
        Vec::new()
    };
    if !purged.is_empty() {
        tracing::info!(days = purged.len(), "expired salts destroyed at start-up");
    }
    store::migrate(&server, &db, &layout, version).await?;
    let days = config.retention.events_days;
    store::apply_retention(&db, &layout, version, days, clock.now()).await?;
    let aggregates_days = config.retention.aggregates_days;
    store::apply_aggregate_retention(&db, &layout, aggregates_days, clock.now()).await?;
    store::apply_every_start(&db, &layout, version).await?;
    let salts = Arc::new(Salts::default());
    store::salts::refresh(&salts, &db, &layout, clock.now()).await?;
    Ok(Store {
        db,
        layout,
        version,
        salts,
    })
}

/// The request path over `spool`, with its batcher thread started. It needs no ClickHouse: the
/// salts are whatever `salts` holds, and sealed segments wait in the spool until delivered.
pub fn ingest(
    config: &Config,
    clock: Clock,
    salts: Arc<Salts>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    drops: Arc<DropCounts>,
) -> Result<Ingest, StartError> {
    let (geo, geo_errors) = Geo::open_available(&config.geoip.database);
    for e in &geo_errors {
        tracing::warn!(error = %e, "geo database unavailable");
    }
    if geo.is_empty() {
        tracing::warn!("no geo database loaded: country and region will be empty");
    }
    let rules = Rules::configured(&config.sites, &config.filter).map_err(StartError::Filter)?;
    let (sealed_tx, sealed) = mpsc::unbounded_channel();
    let (intake, batcher) = batch::start(
        spool.clone(),
        spool.next_seq(),
        config.batch.queue_capacity,
        batch::Limits::new(&config.batch, &config.spool),
        sealed_tx,
        metrics.clone(),
    )
    .map_err(StartError::Thread)?;
    let pipeline = Pipeline {
        classifier: Classifier::new(geo),
        rules,
        salts,
        visits: Visits::new(config.visits),
        bounds: Bounds::new(config.limits.clone()),
        clock,
        metrics,
        drops,
        intake,
    };
    Ok(Ingest {
        pipeline,
        batcher,
        sealed,
    })
}

/// The collector's routes over `pipeline`, as `config` sets them up.
pub fn routes(config: &Config, pipeline: Pipeline, ready: server::Probe) -> Routes {
    Routes::new(
        pipeline,
        ready,
        &config.proxy,
        &config.rate_limit,
        &config.ingest,
        &config.metrics,
        &config.server,
    )
}

/// The collector's routes over `pipeline`: ready while ClickHouse answers, with the spool's
/// gauges.
fn serving_routes(
    config: &Config,
    pipeline: Pipeline,
    store: &Store,
    spool: &Arc<Spool>,
) -> Routes {
    let db = store.db.clone();
    let ready: server::Probe = Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { store::ping(&db).await.map_err(|e| e.to_string()) })
    });
    let mut routes = routes(config, pipeline, ready);
    let gauged = spool.clone();
    routes.gauges.push(Box::new(move |out| gauged.gauges(out)));
    routes
}

/// Inserts sealed segments into ClickHouse, deduplicated where the server can.
fn deliverer(store: &Store, spool: Arc<Spool>, metrics: Arc<Metrics>) -> Deliverer {
    let dedup_token = store.version.features().dedup;
    let client = if dedup_token {
        // On a cluster the base client turns content deduplication off; a token is exact.
        store
            .db
            .clone()
            .with_setting("insert_deduplicate", "1")
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1")
    } else {
        store.db.clone()
    };
    let shards_up = (store.layout.cluster.is_some() && !dedup_token)
        .then(|| format!("SELECT count() FROM {}", schema::INSERT_TABLE));
    Deliverer {
        client,
        table: schema::INSERT_TABLE.to_string(),
        legacy_table: schema::LEGACY_INSERT_TABLE.to_string(),
        daily_table: schema::DAILY_INSERT_TABLE.to_string(),
        spool,
        dedup_token,
        shards_up,
        metrics,
    }
}

/// The background phase: the drop-count writer, then each periodic job (salts, retention,
/// closing days), all until `shutdown`. Returns the writer and the periodic jobs.
fn background_jobs(
    config: &Config,
    store: &Store,
    spool: &Arc<Spool>,
    clock: &Clock,
    (drops, metrics): (Arc<DropCounts>, Arc<Metrics>),
    shutdown: &Shutdown,
) -> (JoinHandle<()>, Vec<JoinHandle<()>>) {
    let writer = tokio::spawn(drops::run(
        drops,
        store.db.clone(),
        clock.clone(),
        metrics,
        shutdown.clone(),
    ));
    expire_dead_letters(spool, config.retention.events_days, clock);
    let [forget, keep] = salt_jobs(store, clock, shutdown);
    let periodic = vec![
        forget,
        keep,
        retention_job(config, store, spool, clock, shutdown),
        closing_job(store, clock, shutdown),
    ];
    (writer, periodic)
}

/// Forgetting expired salts in memory (never waits on ClickHouse), and keeping them in the store.
fn salt_jobs(store: &Store, clock: &Clock, shutdown: &Shutdown) -> [JoinHandle<()>; 2] {
    let forget = {
        let (clock, salts) = (clock.clone(), store.salts.clone());
        shutdown::every(SALT_FORGET_EVERY, First::Now, shutdown.clone(), move || {
            salts.forget_expired(clock.now());
            std::future::ready(())
        })
    };
    let (db, clock, salts) = (store.db.clone(), clock.clone(), store.salts.clone());
    let layout = store.layout.clone();
    let keep = shutdown::every(
        SALT_REFRESH_EVERY,
        First::AfterPeriod,
        shutdown.clone(),
        move || {
            let (db, clock, salts) = (db.clone(), clock.clone(), salts.clone());
            let layout = layout.clone();
            async move {
                if let Err(e) = store::salts::keep(&salts, &db, &layout, clock.now()).await {
                    tracing::warn!(error = %e, "salt refresh failed; will retry");
                }
            }
        },
    );
    [tokio::spawn(forget), tokio::spawn(keep)]
}

/// Retention of dead letters, raw events and aggregates.
fn retention_job(
    config: &Config,
    store: &Store,
    spool: &Arc<Spool>,
    clock: &Clock,
    shutdown: &Shutdown,
) -> JoinHandle<()> {
    let (db, clock, spool) = (store.db.clone(), clock.clone(), spool.clone());
    let (version, layout) = (store.version, store.layout.clone());
    let (days, aggregates_days) = (
        config.retention.events_days,
        config.retention.aggregates_days,
    );
    tokio::spawn(shutdown::every(
        RETENTION_EVERY,
        First::AfterPeriod,
        shutdown.clone(),
        move || {
            let (db, clock, spool, layout) =
                (db.clone(), clock.clone(), spool.clone(), layout.clone());
            async move {
                expire_dead_letters(&spool, days, &clock);
                match store::apply_retention(&db, &layout, version, days, clock.now()).await {
                    Ok(dropped) if !dropped.is_empty() => {
                        tracing::info!(days = dropped.len(), "expired raw event partitions dropped")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention run failed; will retry"),
                }
                let now = clock.now();
                match store::apply_aggregate_retention(&db, &layout, aggregates_days, now).await {
                    Ok(dropped) if !dropped.is_empty() => tracing::info!(
                        partitions = dropped.len(),
                        "expired aggregate months dropped"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "aggregate retention failed; will retry"),
                }
            }
        },
    ))
}

/// Copying finished days into exact counts (and deleting their visitor sketches).
fn closing_job(store: &Store, clock: &Clock, shutdown: &Shutdown) -> JoinHandle<()> {
    let (db, clock, layout) = (store.db.clone(), clock.clone(), store.layout.clone());
    tokio::spawn(shutdown::every(
        CLOSE_DAYS_EVERY,
        First::Now,
        shutdown.clone(),
        move || {
            let (db, clock, layout) = (db.clone(), clock.clone(), layout.clone());
            async move {
                match store::closing::close_days(&db, &layout, clock.now_millis()).await {
                    Ok(closed) if !closed.is_empty() => tracing::info!(
                        days = closed.len(),
                        "finished days copied into exact counts"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "closing finished days failed; will retry")
                    }
                }
            }
        },
    ))
}

/// Applies the retention to dead letters (they hold rows too).
fn expire_dead_letters(spool: &Spool, events_days: u32, clock: &Clock) {
    let lifetime = crate::spool::dead_letter_lifetime(events_days);
    let now = std::time::UNIX_EPOCH + Duration::from_millis(clock.now_millis());
    match spool.expire_dead_letters(lifetime, now) {
        Ok(0) => {}
        Ok(n) => tracing::info!(segments = n, "expired dead letters deleted"),
        Err(e) => tracing::warn!(error = %e, "cannot expire dead letters; will retry"),
    }
}

/// Closes the intake and waits for the batcher thread to seal its last segment.
pub async fn close(intake: &Intake, batcher: std::thread::JoinHandle<()>) {
    intake.close().await;
    if tokio::task::spawn_blocking(move || batcher.join())
        .await
        .is_err()
    {
        tracing::error!("the batcher thread panicked");
    }
}
