//! Shared integration-test harness: a real, throwaway ClickHouse server and Glimpse instances
//! (in-process or as the real binary) pointed at it. Each test gets its own server and data dir.
//!
//! Missing components fail the test with an install hint; nothing is skipped.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glimpse::anonymize::Salts;
use glimpse::clock::Clock;
use glimpse::collector::Collector;
use glimpse::config::{Config, Site};
use glimpse::server::App;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const UA_FIREFOX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
pub const UA_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
pub const UA_CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36";

const SERVER_CANDIDATES: &[&str] = &["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"];

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A ClickHouse server in a temp dir, on free loopback ports; killed on drop.
/// The read-only user of `scripts/clickhouse/users.xml`: (name, password).
pub const DASHBOARDS_USER: (&str, &str) = ("dashboards", "dashboards");

pub struct ClickHouse {
    pub http_port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ClickHouse {
    pub fn start() -> ClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_owned();
        let http_port = free_port();
        let tcp_port = free_port();
        let fill = |t: &str| {
            t.replace("{{DIR}}", &d)
                .replace("{{HTTP_PORT}}", &http_port.to_string())
                .replace("{{TCP_PORT}}", &tcp_port.to_string())
        };
        let config = std::fs::read_to_string(repo_path("scripts/clickhouse/config.xml")).unwrap();
        let users = std::fs::read_to_string(repo_path("scripts/clickhouse/users.xml")).unwrap();
        std::fs::write(dir.path().join("config.xml"), fill(&config)).unwrap();
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        let mut ch = ClickHouse {
            http_port,
            dir,
            child: None,
        };
        ch.spawn();
        ch
    }

    fn spawn(&mut self) {
        let binary = SERVER_CANDIDATES.iter().find(|p| Path::new(p).exists()).unwrap_or_else(|| {
            panic!(
                "clickhouse-server not found (looked in {SERVER_CANDIDATES:?}). Install it with \
                 `sudo apt-get install -y clickhouse-server`, or run `scripts/test.sh`, which installs everything the tests need."
            )
        });
        let d = self.dir.path().to_str().unwrap().to_owned();
        let child = Command::new(binary)
            .arg(format!("--config-file={d}/config.xml"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30));
    }

    /// SIGKILL: the server vanishes mid-whatever, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data and ports after `stop`.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Where a Glimpse instance of this test keeps its spool (shared across its restarts).
    pub fn spool_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("spool-{name}"))
    }

    /// The server's process id (for CPU accounting in the load harness).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A path in this test's temporary directory, for files a test hands to Glimpse.
    pub fn temp_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok((200, body)) = http("GET", self.http_port, "/ping", "")
                && body.starts_with("Ok.")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.path().join("log/clickhouse-server.err.log"))
            .unwrap_or_default();
        panic!("ClickHouse did not answer /ping within {limit:?}; its error log:\n{log}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Runs one statement and returns its TSV output.
    pub fn sql(&self, database: &str, query: &str) -> String {
        let (status, text) = self.sql_as(("default", ""), database, query);
        assert!(status == 200, "query failed ({status}): {query}\n{text}");
        text
    }

    /// Runs one statement as `(user, password)`: the HTTP status and the answer, or the error.
    pub fn sql_as(
        &self,
        (user, password): (&str, &str),
        database: &str,
        query: &str,
    ) -> (u16, String) {
        http(
            "POST",
            self.http_port,
            &format!("/?database={database}&user={user}&password={password}"),
            query,
        )
        .unwrap_or_else(|e| panic!("ClickHouse request failed: {e}"))
    }

    /// TSV rows as vectors of fields.
    pub fn rows(&self, database: &str, query: &str) -> Vec<Vec<String>> {
        self.sql(database, &format!("{query} FORMAT TSV"))
            .lines()
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    }

    pub fn count(&self, database: &str, query: &str) -> u64 {
        self.sql(database, query)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number from {query}"))
    }

    /// Polls until `query` returns at least `want`, then returns what it returned.
    pub fn wait_count(&self, database: &str, query: &str, want: u64) -> u64 {
        let start = Instant::now();
        loop {
            let n = self.count(database, query);
            if n >= want || start.elapsed() > Duration::from_secs(20) {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM for a clean shutdown: running queries finish, new ones are refused. The
        // server then waits ~10 s for idle keep-alive connections to go away; by 3 s it is only
        // doing that, so the harness ends it there.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal blocking HTTP/1.1 exchange (one request, then close) on loopback, usable from
/// sync and async tests alike.
pub fn http(method: &str, port: u16, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = raw[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

/// The configuration the tests use: two sites, the GeoIP2 fixture, loopback as trusted proxy
/// (so tests choose client addresses with X-Forwarded-For) and quick flushes.
pub fn test_config(ch: &ClickHouse, database: &str) -> Config {
    let mut cfg = Config::load(None, &Default::default()).unwrap();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.clickhouse.url = ch.url();
    cfg.clickhouse.database = database.to_owned();
    cfg.sites = vec![Site::new("a.com"), Site::new("b.org")];
    cfg.geoip_databases = vec![repo_path("tests/fixtures/geoip2-city-test.mmdb")];
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    cfg.batch.max_delay = Duration::from_millis(50);
    cfg.shutdown_grace = Duration::from_secs(10);
    cfg.spool.dir = ch.spool_dir(database);
    // Tests send many events from one address; the limiter has tests of its own.
    cfg.rate_limit.events_per_second = 0;
    cfg
}

/// Known traffic for site a.com in database `glimpse`: pages, referrers, UTM tags, countries,
/// browsers, custom events with properties, purchases, and one bot. Returns today's date.
pub async fn seed_known_traffic(ch: &ClickHouse) -> String {
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

/// For a bench target with `harness = false`: `cargo bench` passes `--bench` (a full run, `true`);
/// test runners first list tests (libtest's `--list`, answered here with `name` and `None`),
/// then run the binary without `--bench` (a smoke run, `false`).
pub fn bench_mode(name: &str) -> Option<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("{name}: test");
        }
        return None;
    }
    Some(args.iter().any(|a| a == "--bench"))
}

/// An HTTP client that sends what every browser sends with a beacon request besides its user
/// agent (`Accept-Language`), so the header checks treat it as a browser.
pub fn browser_client() -> reqwest::Client {
    browser_client_builder().build().expect("reqwest client")
}

pub fn browser_client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT_LANGUAGE,
        reqwest::header::HeaderValue::from_static("en-GB,en;q=0.9"),
    );
    reqwest::Client::builder().default_headers(headers)
}

/// Glimpse running in this process on a loopback port.
pub struct Glimpse {
    pub addr: SocketAddr,
    pub clock: Clock,
    pub salts: Arc<Salts>,
    pub app: Arc<App>,
    pub db: clickhouse::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

pub struct Reply {
    pub status: u16,
    pub dropped: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
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
        let (app, salts) = (collector.app.clone(), collector.salts.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(collector.serve(listener, async move {
            let _ = rx.await;
        }));
        Glimpse {
            addr,
            clock,
            salts,
            app,
            db,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs an event as a browser at `ip` with user agent `ua` would (through the trusted proxy).
    pub async fn send(&self, body: &str, ua: &str, ip: &str) -> Reply {
        let res = browser_client()
            .post(self.url("/api/event"))
            .header("content-type", "text/plain")
            .header("user-agent", ua)
            .header("x-forwarded-for", ip)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        Reply::from(res).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Graceful stop: flushes everything accepted to ClickHouse.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

impl Reply {
    pub async fn from(res: reqwest::Response) -> Reply {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let dropped = headers
            .get("x-glimpse-dropped")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.text().await.unwrap();
        Reply {
            status,
            dropped,
            body,
            headers,
        }
    }
}

pub fn pageview(url: &str) -> String {
    format!(r#"{{"n":"pageview","u":"{url}"}}"#)
}

/// The `glimpse` binary as a child process, with its stderr captured to a file.
pub struct GlimpseProcess {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl GlimpseProcess {
    pub fn start(env: &[(&str, String)], log: PathBuf) -> GlimpseProcess {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_glimpse"));
        cmd.arg("serve")
            .env_clear()
            .env("GLIMPSE_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if !env.iter().any(|(k, _)| *k == "GLIMPSE_SPOOL_DIR") {
            cmd.env("GLIMPSE_SPOOL_DIR", log.with_extension("spool"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn glimpse");
        let p = GlimpseProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            child,
        };
        let start = Instant::now();
        while http("GET", port, "/healthz", "").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "glimpse did not start: {}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        status.code()
    }
}

impl Drop for GlimpseProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A desktop Chrome user agent for the browser tests: headless Chromium's own says
/// "HeadlessChrome", which Glimpse rightly drops as automation.
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// chromedriver driving Debian's headless Chromium, with a fresh profile per session.
pub struct Chromium {
    port: u16,
    child: Child,
    profiles: tempfile::TempDir,
}

impl Chromium {
    pub fn start() -> Chromium {
        for (bin, what) in [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
        ] {
            assert!(
                Path::new(bin).exists(),
                "{bin} not found. Install it with `sudo apt-get install -y chromium chromium-driver`, \
                 or run `scripts/test.sh`, which installs everything the tests need ({what})."
            );
        }
        let port = free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let start = Instant::now();
        // chromedriver listens once it is ready for sessions.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Chromium {
            port,
            child,
            profiles: tempfile::tempdir().unwrap(),
        }
    }

    /// A new headless browser session.
    pub async fn session(&self) -> fantoccini::Client {
        let profile = tempfile::tempdir_in(self.profiles.path()).unwrap().keep();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-component-update".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--user-agent={BROWSER_UA}"),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("WebDriver session")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file from an npm package that `scripts/test.sh` unpacks into `target/test-deps/`.
pub fn test_dep(package: &str, file: &str) -> String {
    let path = repo_path(&format!("target/test-deps/{package}/package/{file}"));
    std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} not found: run `scripts/test.sh` once (it runs `npm pack {package}` into \
             target/test-deps/{package} and unpacks it); needs npm (`apt-get install npm`)",
            path.display()
        )
    })
}

/// The official Plausible tracker.
pub fn plausible_tracker_js() -> String {
    test_dep("@plausible-analytics/tracker", "plausible.js")
}

/// A test web site on loopback: every path answers with `page(path)` as HTML.
pub struct TestSite {
    pub port: u16,
    task: JoinHandle<()>,
}

impl TestSite {
    pub async fn start(page: impl Fn(&str) -> String + Send + Sync + 'static) -> TestSite {
        use http_body_util::Full;
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let page = Arc::new(page);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let page = page.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_owned();
                        let html = page(&path);
                        async move {
                            let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(html)));
                            let ct = if path.ends_with(".js") {
                                "application/javascript"
                            } else {
                                "text/html; charset=utf-8"
                            };
                            r.headers_mut().insert("content-type", ct.parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestSite { port, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Steady load: `workers` keep-alive clients each POST a uniquely numbered page view
/// (`https://a.com/e/<n>`) every `pause`, from addresses spread over the IPv4 space (through the
/// trusted proxy header), until `finish`. Only answers of 202 without a drop header count as
/// accepted; connection errors (a killed collector) count as failures, never as accepted.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<Tally>>,
}

#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: std::collections::BTreeSet<u64>,
    /// Status → count, for everything else (0: no answer).
    pub other: std::collections::BTreeMap<u16, u64>,
}

impl Load {
    pub fn start(addr: SocketAddr, workers: usize, pause: Duration) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(1));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, next) = (stop.clone(), next.clone());
                tokio::spawn(async move {
                    let client = browser_client_builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let ip = load_client_ip(n);
                        let res = client
                            .post(format!("http://{addr}/api/event"))
                            .header("content-type", "text/plain")
                            .header("user-agent", UA_FIREFOX)
                            .header("x-forwarded-for", ip.to_string())
                            .body(pageview(&format!("https://a.com/e/{n}")))
                            .send()
                            .await;
                        match res {
                            Ok(r)
                                if r.status() == 202
                                    && r.headers().get("x-glimpse-dropped").is_none() =>
                            {
                                tally.accepted.insert(n);
                            }
                            Ok(r) => *tally.other.entry(r.status().as_u16()).or_default() += 1,
                            Err(_) => {
                                *tally.other.entry(0).or_default() += 1;
                                // A refused connection fails fast; do not spin.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                    tally
                })
            })
            .collect();
        Load { stop, tasks }
    }

    pub async fn finish(self) -> Tally {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.tasks {
            let t = t.await.unwrap();
            all.accepted.extend(t.accepted);
            for (k, v) in t.other {
                *all.other.entry(k).or_default() += v;
            }
        }
        all
    }
}

/// The client address (sent through the trusted proxy header) of a [`Load`]'s event `n`.
pub fn load_client_ip(n: u64) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from((n as u32).wrapping_mul(2_654_435_761))
}

/// How the `/e/<n>` page views of a [`Load`] landed in ClickHouse.
#[derive(Debug)]
pub struct Landed {
    /// Raw rows per event number.
    pub rows: std::collections::BTreeMap<u64, u64>,
    /// Page views counted by the daily aggregate (one dimension: each view counts once there).
    pub aggregated: u64,
}

impl Landed {
    /// Waits until at least `want` distinct events are stored (or 30 s pass), then reads.
    pub fn wait(ch: &ClickHouse, database: &str, want: usize) -> Landed {
        let start = Instant::now();
        loop {
            let n = ch.count(
                database,
                "SELECT uniqExact(pathname) FROM events WHERE pathname LIKE '/e/%'",
            );
            // The views are written one after another: wait for the aggregate too.
            let aggregated = ch.count(
                database,
                "SELECT sumMerge(pageviews) FROM stats_daily \
                 WHERE dimension = 'device' AND site = 'a.com'",
            );
            let done = n as usize >= want && aggregated >= n;
            if done || start.elapsed() > Duration::from_secs(30) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let rows = ch
            .rows(
                database,
                "SELECT substring(pathname, 4), count() FROM events \
                 WHERE pathname LIKE '/e/%' GROUP BY pathname",
            )
            .into_iter()
            .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
            .collect();
        let aggregated = ch.count(
            database,
            "SELECT sumMerge(pageviews) FROM stats_daily \
             WHERE dimension = 'device' AND site = 'a.com'",
        );
        Landed { rows, aggregated }
    }

    /// Accepted events with no row.
    pub fn missing(&self, accepted: &std::collections::BTreeSet<u64>) -> Vec<u64> {
        accepted
            .iter()
            .filter(|n| !self.rows.contains_key(n))
            .copied()
            .collect()
    }

    /// Rows beyond the first of each event.
    pub fn duplicates(&self) -> u64 {
        self.rows.values().map(|c| c - 1).sum()
    }
}
