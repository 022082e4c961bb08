//! Steady load from many simulated visitors, and how their events landed in ClickHouse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::clickhouse::ClickHouse;
use crate::client::browser_client_builder;
use crate::{UA_FIREFOX, pageview};

/// Steady load: `workers` keep-alive clients each POST a uniquely numbered page view
/// (`https://a.com/e/<n>`) every `pause`, from addresses spread over the IPv4 space (through the
/// trusted proxy header), until `finish`. Only answers of 202 without a drop header count as
/// accepted; connection errors (a killed collector) count as failures, never as accepted.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Accepted so far, across workers, for [`Load::reach`].
    accepted: Arc<std::sync::atomic::AtomicU64>,
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
        Load::visits(addr, workers, pause, 1)
    }

    /// Like [`Load::start`], but `pages` consecutive events come from one visitor (one client
    /// address), so each visitor's page views make one visit.
    pub fn visits(addr: SocketAddr, workers: usize, pause: Duration, pages: u64) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(1));
        let accepted = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, next, so_far) = (stop.clone(), next.clone(), accepted.clone());
                tokio::spawn(async move {
                    let client = browser_client_builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap();
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let ip = load_client_ip(n / pages);
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
                                so_far.fetch_add(1, Ordering::Relaxed);
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
        Load {
            stop,
            accepted,
            tasks,
        }
    }

    /// Waits until at least `count` events were accepted, or `limit` passes. Tests that act
    /// "under load" wait for an amount of traffic, not for a time: on a slow machine (fsync before
    /// every 202 on a busy disk) a fixed sleep may see too few events to prove anything.
    pub async fn reach(&self, count: u64, limit: Duration) {
        let start = Instant::now();
        while self.accepted.load(std::sync::atomic::Ordering::Relaxed) < count
            && start.elapsed() < limit
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// The client address (sent through the trusted proxy header) of a [`Load`]'s visitor `n` (its
/// event `n` when each visitor sends one).
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
    /// Waits until at least `want` distinct events are stored (or 120 s pass), then reads. The
    /// limit only decides when to give up: the tests' small segments (200 rows, each insert a
    /// part in every table) drained at about 300 rows a second on a slow disk here, so a backlog
    /// of a few thousand can take half a minute.
    pub fn wait(ch: &ClickHouse, database: &str, want: usize) -> Landed {
        Landed::wait_up_to(ch, database, want, Duration::from_secs(120))
    }

    /// [`Landed::wait`] with a limit other than 30 s.
    pub fn wait_up_to(ch: &ClickHouse, database: &str, want: usize, limit: Duration) -> Landed {
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
            if done || start.elapsed() > limit {
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
