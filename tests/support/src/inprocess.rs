//! Glimpse in this process: the whole collector against a real ClickHouse ([`Glimpse`]), or
//! only its HTTP front and request path, with no ClickHouse at all ([`Front`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use glimpse::anonymize::{Salt, SaltSet, Salts};
use glimpse::clock::{Clock, day_of};
use glimpse::collector::{self, Collector};
use glimpse::config::Config;
use glimpse::drops::DropCounts;
use glimpse::metrics::Metrics;
use glimpse::model::Site;
use glimpse::server::{self, Probe, Routes};
use glimpse::spool::Spool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clickhouse::ClickHouse;
use crate::client::Endpoint;
use crate::{UA_CHROME_WIN, UA_FIREFOX, UA_IPHONE, repo_path};

/// The configuration every in-process test starts from: two sites, the GeoIP2 fixture,
/// loopback as trusted proxy (so tests choose client addresses with X-Forwarded-For), quick
/// flushes, and no rate limit. Its ClickHouse settings are the defaults: point them at a server
/// with [`test_config`].
pub fn front_config() -> Config {
    let mut cfg = Config::load(None, &Default::default()).unwrap();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.sites = vec![Site::new("a.com"), Site::new("b.org")];
    cfg.geoip.database = vec![repo_path("tests/fixtures/geoip2-city-test.mmdb")];
    cfg.proxy.trusted = vec!["127.0.0.1/32".parse().unwrap()];
    cfg.batch.max_delay = Duration::from_millis(50);
    cfg.server.shutdown_grace = Duration::from_secs(10);
    // Tests send many events from one address; the limiter has tests of its own.
    cfg.rate_limit.events_per_second = 0;
    cfg
}

/// The configuration the tests use with `ch`: [`front_config`] with this server, database and a
/// spool in the server's directory.
pub fn test_config(ch: &ClickHouse, database: &str) -> Config {
    let mut cfg = front_config();
    cfg.clickhouse.url = ch.url();
    cfg.clickhouse.database = database.to_owned();
    cfg.spool.dir = ch.spool_dir(database);
    cfg
}

/// Known traffic for site a.com in database `glimpse`: pages, referrers, UTM tags, countries,
/// browsers, custom events with properties, purchases, and one bot. Returns today's date.
pub async fn seed_known_traffic(ch: &ClickHouse) -> String {
    // All of it on one day, the one returned.
    tokio::time::sleep(crate::wait_clear_of_midnight(Duration::from_secs(60))).await;
    let g = Glimpse::start(test_config(ch, "glimpse")).await;
    let today = glimpse::clock::date_string(glimpse::clock::day_of(g.clock.now()));
    let uas = [UA_FIREFOX, UA_IPHONE, UA_CHROME_WIN];
    let ips = [
        "81.2.69.1",
        "81.2.69.2",
        "2001:db8:1::4",
        "192.0.2.5",
        "203.0.113.9",
    ];
    let pages = ["/", "/pricing", "/blog/one", "/blog/two", "/docs"];
    for (i, ip) in ips.iter().enumerate() {
        for (j, page) in pages.iter().enumerate().take(i + 1) {
            let ua = uas[(i + j) % uas.len()];
            let referrer = ["", "https://news.ycombinator.com/item", "https://t.co/x"][(i * j) % 3];
            let utm = ["", "?utm_source=mail&utm_medium=email&utm_campaign=launch"][j % 2];
            let body =
                format!(r#"{{"n":"pageview","u":"https://a.com{page}{utm}","r":"{referrer}"}}"#);
            assert_eq!(g.send(&body, ua, ip).await.status, 202);
            // The visitor's last page reports how far it was scrolled and how long it was read
            // (the i-th page: (i+1)·20 %, (i+1)·3 s); engagement is never a page view or event.
            if j == i {
                let engagement = format!(
                    r#"{{"n":"engagement","u":"https://a.com{page}{utm}","sd":{},"e":{}}}"#,
                    (i + 1) * 20,
                    (i + 1) * 3000
                );
                assert_eq!(g.send(&engagement, ua, ip).await.dropped, None);
            }
        }
        let signup = format!(
            r#"{{"n":"Signup","u":"https://a.com/pricing","p":{{"plan":"{}","trial":"yes"}}}}"#,
            ["pro", "team"][i % 2]
        );
        assert_eq!(g.send(&signup, uas[i % 3], ip).await.status, 202);
        if i % 2 == 0 {
            let purchase = r#"{"n":"Purchase","u":"https://a.com/checkout","revenue":{"amount":"12.5","currency":"EUR"}}"#;
            assert_eq!(g.send(purchase, uas[i % 3], ip).await.status, 202);
        }
    }
    assert_eq!(
        g.send(
            r#"{"n":"pageview","u":"https://a.com/"}"#,
            "curl/8.5.0",
            "192.0.2.1"
        )
        .await
        .dropped
        .as_deref(),
        Some("http_client")
    );
    g.stop().await;
    today
}

/// Glimpse running in this process on a loopback port.
pub struct Glimpse {
    /// Where it listens: `url`, `send` and `metrics` come from here.
    pub endpoint: Endpoint,
    pub clock: Clock,
    pub salts: Arc<Salts>,
    pub metrics: Arc<Metrics>,
    pub spool: Arc<Spool>,
    pub db: clickhouse::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Glimpse {
    pub async fn start(config: Config) -> Glimpse {
        Glimpse::start_with_clock(config, Clock::default()).await
    }

    pub async fn start_with_clock(config: Config, clock: Clock) -> Glimpse {
        let (_, db) = glimpse::store::clients(&config.clickhouse);
        let collector = Collector::start(config.clone(), clock.clone())
            .await
            .expect("collector start");
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (metrics, salts) = (collector.routes.metrics.clone(), collector.salts.clone());
        let spool = collector.spool.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(collector.serve(listener, async move {
            let _ = rx.await;
        }));
        Glimpse {
            endpoint: Endpoint { addr },
            clock,
            salts,
            metrics,
            spool,
            db,
            stop: Some(tx),
            task,
        }
    }

    /// Waits until `n` events have been accepted, for senders that send when they choose (a
    /// browser); panics after 20 s.
    pub async fn wait_accepted(&self, n: u64) {
        let start = std::time::Instant::now();
        while self.metrics.events_accepted.get() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "only {} events accepted",
                self.metrics.events_accepted.get()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful stop: flushes everything accepted to ClickHouse.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

impl std::ops::Deref for Glimpse {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl std::ops::Deref for Front {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// The collector's routes and request path in this process, over a temporary spool, with no
/// ClickHouse: the salts are made in memory, readiness is whatever `ready` says, and accepted
/// rows stay in the spool, where [`Front::stop`] counts them.
pub struct Front {
    /// Where it listens: `url`, `send` and `metrics` come from here.
    pub endpoint: Endpoint,
    pub metrics: Arc<Metrics>,
    pub spool: Arc<Spool>,
    routes: Arc<Routes>,
    batcher: std::thread::JoinHandle<()>,
    sealed: mpsc::UnboundedReceiver<u64>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Front {
    /// Always ready.
    pub async fn start(config: Config) -> Front {
        Front::start_with(config, Arc::new(|| Box::pin(async { Ok(()) }))).await
    }

    pub async fn start_with(mut config: Config, ready: Probe) -> Front {
        let dir = tempfile::tempdir().unwrap();
        config.spool.dir = dir.path().join("spool");
        let (spool, _) = Spool::open(&config.spool.dir, config.spool.max_bytes).unwrap();
        let spool = Arc::new(spool);
        let clock = Clock::default();
        let salts = Arc::new(Salts::default());
        let today = day_of(clock.now());
        let days = vec![(today, Salt::random()), (today + 1, Salt::random())];
        salts.publish(SaltSet::from_days(days), clock.now());
        let metrics = Arc::new(Metrics::default());
        let drops = Arc::new(DropCounts::new(config.domains()));
        let ingest =
            collector::ingest(&config, clock, salts, spool.clone(), metrics.clone(), drops)
                .expect("ingest path");
        let routes = Arc::new(collector::routes(&config, ingest.pipeline, ready));
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let served = routes.clone();
        let settings = config.server.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            server::run(listener, shutdown, served, settings).await;
        });
        Front {
            endpoint: Endpoint { addr },
            metrics,
            spool,
            routes,
            batcher: ingest.batcher,
            sealed: ingest.sealed,
            stop,
            task,
            _dir: dir,
        }
    }

    /// Stops serving, seals the spool, and returns how many rows it holds: every row accepted.
    pub async fn stop(mut self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        collector::close(&self.routes.pipeline.intake, self.batcher).await;
        let mut rows = 0;
        while let Ok(seq) = self.sealed.try_recv() {
            rows += self.spool.read(seq).unwrap().rows;
        }
        rows
    }
}

/// The stats API and dashboard page in this process, reading what `config` points at, on the
/// shared front with `config.server`'s limits; stopped on drop, or with [`StatsApi::stop`].
pub struct StatsApi {
    pub addr: SocketAddr,
    /// `http://` and `addr`.
    pub url: String,
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl StatsApi {
    pub async fn start(config: Config, token: &str) -> StatsApi {
        let (_, db) = glimpse::store::clients(&config.clickhouse);
        let app = Arc::new(glimpse::dashboard::Dashboard {
            db,
            token: token.into(),
            sites: config.sites.iter().map(|s| s.domain.clone()).collect(),
            min_visitors: config.dashboard.min_visitors,
            clock: Clock::default(),
            goals: config.goals(),
            events_days: config.retention.events_days,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(glimpse::dashboard::run(
            listener,
            async move {
                let _ = rx.await;
            },
            app,
            config.server,
        ));
        StatsApi {
            addr,
            url: format!("http://{addr}"),
            token: token.into(),
            stop: Some(tx),
            task,
        }
    }

    /// GET `path` (from `/api/...`) with the token: the status and the JSON answer (an answer
    /// that is not JSON comes back as a JSON string).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.fetch(path, Some(self.token.as_str())).await;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    /// GET `path` (from `/api/...`) with `token` as the bearer token (`None`: no
    /// `Authorization` header): the status and the answer, which must be JSON, refusals
    /// included.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let (status, text) = self.fetch(path, token).await;
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: answer is not JSON ({e}): {text}"));
        (status, body)
    }

    /// POSTs a v2 query with the token: the status and the JSON answer.
    pub async fn query_v2(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v2/query", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("v2 answer is not JSON ({e}): {text}"));
        (status, body)
    }

    async fn fetch(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    /// Stops serving and waits until the server has finished.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

impl Drop for StatsApi {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
