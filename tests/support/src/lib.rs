//! The shared harness of Glimpse's integration tests and benches, split by concern:
//!
//! - [`clickhouse`]: a real, throwaway ClickHouse server per test;
//! - [`cluster`]: ZooKeeper, a sharded and replicated ClickHouse cluster, and nginx;
//! - [`inprocess`]: Glimpse in this process, whole ([`Glimpse`]) or only its HTTP front with no
//!   ClickHouse ([`Front`]), and the stats API ([`StatsApi`]);
//! - [`process`]: the `glimpse` binary as a child process;
//! - [`client`]: HTTP clients, and [`Send`], the one way tests send events;
//! - [`disk`]: a small tmpfs to fill up;
//! - [`browser`]: headless Chromium and a loopback test site;
//! - [`load`]: steady load from many visitors, and how it landed;
//! - [`modern`]: the modern ClickHouse engine, in-process (chdb);
//! - [`rows`]: RowBinary rows of every column list the collector inserts;
//! - [`proxy`]: an event proxy that forwards only what server-side integrations send.
//!
//! Missing components fail the test with an install hint; nothing is skipped.

pub mod browser;
pub mod clickhouse;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod inprocess;
pub mod load;
pub mod modern;
pub mod process;
pub mod proxy;
pub mod rows;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use browser::{BROWSER_UA, Chromium, TestSite, plausible_tracker_js};
pub use clickhouse::{ClickHouse, DASHBOARDS_USER};
pub use client::{
    Endpoint, Reply, Send, browser_client, browser_client_builder, http, metric, post_in_pieces,
};
pub use cluster::{ClickHouseCluster, Nginx, ZooKeeper};
pub use disk::{Tmpfs, spool_record};
pub use inprocess::{Front, Glimpse, StatsApi, front_config, seed_known_traffic, test_config};
pub use load::{Landed, Load, Tally, load_client_ip};
pub use modern::chdb;
pub use process::{GlimpseProcess, binary_env, cpu_seconds};
pub use proxy::EventProxy;
pub use rows::{column_sql, insert_column_lists, varied_rows};

pub const UA_FIREFOX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
pub const UA_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
pub const UA_CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36";

/// A path in the repository (this crate lives in `tests/support`).
pub fn repo_path(rel: &str) -> PathBuf {
    let support = Path::new(env!("CARGO_MANIFEST_DIR"));
    support
        .parent()
        .and_then(Path::parent)
        .unwrap_or(support)
        .join(rel)
}

/// Waits until something listens on loopback `port`; after `limit`, panics with `what` and
/// `detail()` (a log to show).
pub fn wait_listening(
    port: u16,
    limit: std::time::Duration,
    what: &str,
    detail: impl Fn() -> String,
) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "{what} did not listen within {limit:?}: {}",
            detail()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How long to wait until more than `span` is left of the UTC day (zero if it already is).
/// The collector runs on the real clock, and at midnight the salt changes and with it every
/// visitor id: a test whose visitors' events must fall on one day sleeps this long first.
pub fn wait_clear_of_midnight(span: Duration) -> Duration {
    wait_clear_of_boundary(glimpse::clock::SECS_PER_DAY, "UTC midnight", span)
}

/// How long to wait until more than `span` is left of the UTC hour (zero if it already is): for
/// a test that compares hourly counts of events sent at different times (the hour ends the day
/// too, so this is also clear of midnight).
pub fn wait_clear_of_the_hour(span: Duration) -> Duration {
    wait_clear_of_boundary(3600, "the hour", span)
}

fn wait_clear_of_boundary(every_secs: u64, name: &str, span: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let left = every_secs - now % every_secs;
    if left > span.as_secs() {
        return Duration::ZERO;
    }
    eprintln!("waiting {left} s for {name} to pass");
    Duration::from_secs(left + 1)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A page view of `url`.
pub fn pageview(url: &str) -> String {
    format!(r#"{{"n":"pageview","u":"{url}"}}"#)
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
