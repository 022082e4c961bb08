//! Settings: every key, its environment override and its default are stated once, in [`keys`].
//!
//! Precedence is environment > TOML file > default. Loading never stops at the first problem:
//! all errors (unknown keys, bad values) are collected and reported together, each naming its key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// One setting: where it lives in the TOML file, its environment override, its default.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub toml: &'static str,
    pub env: &'static str,
    pub default: &'static str,
}

/// The complete list of settings. Nothing else in the code names a key or a default.
pub mod keys {
    use super::Key;

    macro_rules! key {
        ($name:ident, $toml:literal, $env:literal, $default:literal) => {
            pub const $name: Key = Key {
                toml: $toml,
                env: $env,
                default: $default,
            };
        };
    }

    key!(LISTEN, "listen", "GLIMPSE_LISTEN", "127.0.0.1:8080");
    key!(
        CLICKHOUSE_URL,
        "clickhouse.url",
        "GLIMPSE_CLICKHOUSE_URL",
        "http://127.0.0.1:8123"
    );
    key!(
        CLICKHOUSE_DATABASE,
        "clickhouse.database",
        "GLIMPSE_CLICKHOUSE_DATABASE",
        "glimpse"
    );
    key!(
        CLICKHOUSE_USER,
        "clickhouse.user",
        "GLIMPSE_CLICKHOUSE_USER",
        "default"
    );
    key!(
        CLICKHOUSE_PASSWORD,
        "clickhouse.password",
        "GLIMPSE_CLICKHOUSE_PASSWORD",
        ""
    );
    key!(
        GEOIP_DATABASE,
        "geoip.database",
        "GLIMPSE_GEOIP_DATABASE",
        ""
    );
    key!(SITES, "sites", "GLIMPSE_SITES", "");
    key!(PROXY_TRUSTED, "proxy.trusted", "GLIMPSE_PROXY_TRUSTED", "");
    key!(
        RETENTION_EVENTS_DAYS,
        "retention.events_days",
        "GLIMPSE_RETENTION_EVENTS_DAYS",
        "30"
    );
    key!(
        BATCH_MAX_ROWS,
        "batch.max_rows",
        "GLIMPSE_BATCH_MAX_ROWS",
        "50000"
    );
    key!(
        BATCH_MAX_DELAY_MS,
        "batch.max_delay_ms",
        "GLIMPSE_BATCH_MAX_DELAY_MS",
        "1000"
    );
    key!(
        BATCH_QUEUE_CAPACITY,
        "batch.queue_capacity",
        "GLIMPSE_BATCH_QUEUE_CAPACITY",
        "20000"
    );
    key!(
        INGEST_MAX_BODY_BYTES,
        "ingest.max_body_bytes",
        "GLIMPSE_INGEST_MAX_BODY_BYTES",
        "65536"
    );
    key!(
        SERVER_MAX_CONNECTIONS,
        "server.max_connections",
        "GLIMPSE_SERVER_MAX_CONNECTIONS",
        "10000"
    );
    key!(
        SERVER_SHUTDOWN_GRACE_MS,
        "server.shutdown_grace_ms",
        "GLIMPSE_SERVER_SHUTDOWN_GRACE_MS",
        "10000"
    );
    key!(
        SERVER_HEADER_TIMEOUT_MS,
        "server.header_timeout_ms",
        "GLIMPSE_SERVER_HEADER_TIMEOUT_MS",
        "10000"
    );
    key!(
        SERVER_BODY_TIMEOUT_MS,
        "server.body_timeout_ms",
        "GLIMPSE_SERVER_BODY_TIMEOUT_MS",
        "10000"
    );
    key!(
        SERVER_MAX_HEADER_BYTES,
        "server.max_header_bytes",
        "GLIMPSE_SERVER_MAX_HEADER_BYTES",
        "16384"
    );
    key!(SPOOL_DIR, "spool.dir", "GLIMPSE_SPOOL_DIR", "data/spool");
    key!(
        SPOOL_MAX_BYTES,
        "spool.max_bytes",
        "GLIMPSE_SPOOL_MAX_BYTES",
        "1073741824"
    );
    key!(
        SPOOL_COMMIT_INTERVAL_MS,
        "spool.commit_interval_ms",
        "GLIMPSE_SPOOL_COMMIT_INTERVAL_MS",
        "200"
    );
    key!(
        RATE_LIMIT_EVENTS_PER_SECOND,
        "rate_limit.events_per_second",
        "GLIMPSE_RATE_LIMIT_EVENTS_PER_SECOND",
        "20"
    );
    key!(
        RATE_LIMIT_BURST,
        "rate_limit.burst",
        "GLIMPSE_RATE_LIMIT_BURST",
        "200"
    );
    key!(
        RATE_LIMIT_TRUSTED_PROXIES,
        "rate_limit.trusted_proxies",
        "GLIMPSE_RATE_LIMIT_TRUSTED_PROXIES",
        "false"
    );
    key!(
        FILTER_HEADER_CHECKS,
        "filter.header_checks",
        "GLIMPSE_FILTER_HEADER_CHECKS",
        "true"
    );
    key!(
        FILTER_REFERRER_SPAM,
        "filter.referrer_spam",
        "GLIMPSE_FILTER_REFERRER_SPAM",
        "true"
    );
    key!(
        FILTER_DATACENTER_RANGES,
        "filter.datacenter_ranges",
        "GLIMPSE_FILTER_DATACENTER_RANGES",
        ""
    );
    key!(
        VISITS_TIMEOUT_MINUTES,
        "visits.timeout_minutes",
        "GLIMPSE_VISITS_TIMEOUT_MINUTES",
        "30"
    );
    key!(
        VISITS_MAX_OPEN,
        "visits.max_open",
        "GLIMPSE_VISITS_MAX_OPEN",
        "100000"
    );
    key!(
        DASHBOARD_LISTEN,
        "dashboard.listen",
        "GLIMPSE_DASHBOARD_LISTEN",
        "127.0.0.1:8081"
    );
    key!(
        DASHBOARD_TOKEN,
        "dashboard.token",
        "GLIMPSE_DASHBOARD_TOKEN",
        ""
    );
    key!(
        DASHBOARD_MIN_VISITORS,
        "dashboard.min_visitors",
        "GLIMPSE_DASHBOARD_MIN_VISITORS",
        "0"
    );
    key!(LOG_FORMAT, "log.format", "GLIMPSE_LOG_FORMAT", "text");
    key!(LOG_LEVEL, "log.level", "GLIMPSE_LOG_LEVEL", "info");

    /// Every key, for unknown-key detection and documentation.
    pub const ALL: &[Key] = &[
        LISTEN,
        CLICKHOUSE_URL,
        CLICKHOUSE_DATABASE,
        CLICKHOUSE_USER,
        CLICKHOUSE_PASSWORD,
        GEOIP_DATABASE,
        SITES,
        PROXY_TRUSTED,
        RETENTION_EVENTS_DAYS,
        BATCH_MAX_ROWS,
        BATCH_MAX_DELAY_MS,
        BATCH_QUEUE_CAPACITY,
        INGEST_MAX_BODY_BYTES,
        SERVER_MAX_CONNECTIONS,
        SERVER_SHUTDOWN_GRACE_MS,
        SERVER_HEADER_TIMEOUT_MS,
        SERVER_BODY_TIMEOUT_MS,
        SERVER_MAX_HEADER_BYTES,
        SPOOL_DIR,
        SPOOL_MAX_BYTES,
        SPOOL_COMMIT_INTERVAL_MS,
        RATE_LIMIT_EVENTS_PER_SECOND,
        RATE_LIMIT_BURST,
        RATE_LIMIT_TRUSTED_PROXIES,
        FILTER_HEADER_CHECKS,
        FILTER_REFERRER_SPAM,
        FILTER_DATACENTER_RANGES,
        VISITS_TIMEOUT_MINUTES,
        VISITS_MAX_OPEN,
        DASHBOARD_LISTEN,
        DASHBOARD_TOKEN,
        DASHBOARD_MIN_VISITORS,
        LOG_FORMAT,
        LOG_LEVEL,
    ];
}

/// Keys allowed inside each `[[sites]]` table: the domain and the site's shields.
const SITE_KEYS: &[&str] = &[
    "domain",
    "block_ips",
    "block_countries",
    "exclude_paths",
    "allow_hostnames",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub clickhouse: ClickHouseConfig,
    /// MaxMind-format databases (GeoIP2/GeoLite2/DB-IP or the flat ip-location-db schema);
    /// DB-IP Lite ships IPv4 and IPv6 as two files, so this is a list.
    pub geoip_databases: Vec<PathBuf>,
    pub sites: Vec<Site>,
    pub trusted_proxies: Vec<IpNet>,
    /// 0 = aggregates-only mode: raw events are never stored.
    pub events_retention_days: u32,
    pub batch: BatchConfig,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// Also bounds how long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_header_bytes: usize,
    pub spool: SpoolConfig,
    pub rate_limit: RateLimitConfig,
    pub filter: FilterConfig,
    pub visits: VisitsConfig,
    pub dashboard: DashboardConfig,
    pub log_format: LogFormat,
    pub log_level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Site {
    /// Lower-case host name without `www.`, as events are matched against it.
    pub domain: String,
    pub shields: Shields,
}

impl Site {
    pub fn new(domain: &str) -> Site {
        Site {
            domain: domain.to_string(),
            shields: Shields::default(),
        }
    }
}

/// A site's own exclusions, validated (see `check::shield` for their meaning).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shields {
    pub block_ips: Vec<IpNet>,
    /// Upper-case ISO 3166-1 alpha-2 codes.
    pub block_countries: Vec<String>,
    pub exclude_paths: Vec<String>,
    pub allow_hostnames: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    pub listen: SocketAddr,
    /// Bearer token for the stats API; `glimpse dashboard` refuses to start without one.
    pub token: String,
    /// k-anonymity: breakdown rows with fewer visitors are folded into "(other)".
    pub min_visitors: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisitsConfig {
    /// A visit ends after this long without an event.
    pub timeout: Duration,
    /// Open visits held in memory (each a map entry and its exit page's path).
    pub max_open: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    /// Browser-consistency checks on request headers. Off for senders that forward events
    /// server-side without the browser's headers.
    pub header_checks: bool,
    pub referrer_spam: bool,
    /// File of datacenter/hosting CIDRs whose traffic is dropped; `None`: no such filter.
    pub datacenter_ranges: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    pub max_rows: usize,
    pub max_delay: Duration,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Zero: fsync before answering 202.
    pub commit_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Zero disables the limiter.
    pub events_per_second: u32,
    pub burst: u32,
    /// Whether requests whose client address is a trusted proxy's own are limited too.
    pub trusted_proxies: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// All problems found while loading, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Loads from optional TOML text and an environment map (only `GLIMPSE_*` entries matter).
    pub fn load(
        toml_text: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut r = Reader::new(toml_text, env);
        let cfg = Config {
            listen: r.socket_addr(keys::LISTEN),
            clickhouse: ClickHouseConfig {
                url: r.url(keys::CLICKHOUSE_URL),
                database: r.identifier(keys::CLICKHOUSE_DATABASE),
                user: r.string(keys::CLICKHOUSE_USER),
                password: r.string(keys::CLICKHOUSE_PASSWORD),
            },
            geoip_databases: r
                .list(keys::GEOIP_DATABASE)
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            sites: r.sites(),
            trusted_proxies: r
                .list(keys::PROXY_TRUSTED)
                .into_iter()
                .filter_map(|s| r.cidr(keys::PROXY_TRUSTED, &s))
                .collect(),
            events_retention_days: r.bounded(keys::RETENTION_EVENTS_DAYS, 0, 36_500) as u32,
            batch: BatchConfig {
                max_rows: r.bounded(keys::BATCH_MAX_ROWS, 1, 1_000_000) as usize,
                max_delay: Duration::from_millis(r.bounded(keys::BATCH_MAX_DELAY_MS, 1, 600_000)),
                queue_capacity: r.bounded(keys::BATCH_QUEUE_CAPACITY, 1, 10_000_000) as usize,
            },
            max_body_bytes: r.bounded(keys::INGEST_MAX_BODY_BYTES, 256, 16 << 20) as usize,
            max_connections: r.bounded(keys::SERVER_MAX_CONNECTIONS, 1, 1_000_000) as usize,
            shutdown_grace: Duration::from_millis(r.bounded(
                keys::SERVER_SHUTDOWN_GRACE_MS,
                0,
                3_600_000,
            )),
            header_timeout: Duration::from_millis(r.bounded(
                keys::SERVER_HEADER_TIMEOUT_MS,
                100,
                3_600_000,
            )),
            body_timeout: Duration::from_millis(r.bounded(
                keys::SERVER_BODY_TIMEOUT_MS,
                100,
                3_600_000,
            )),
            // hyper's read buffer cannot be smaller than 8 KiB.
            max_header_bytes: r.bounded(keys::SERVER_MAX_HEADER_BYTES, 8192, 1 << 20) as usize,
            spool: SpoolConfig {
                dir: PathBuf::from(r.string(keys::SPOOL_DIR)),
                max_bytes: r.bounded(keys::SPOOL_MAX_BYTES, 1 << 16, u64::MAX >> 1),
                commit_interval: Duration::from_millis(r.bounded(
                    keys::SPOOL_COMMIT_INTERVAL_MS,
                    0,
                    10_000,
                )),
            },
            rate_limit: RateLimitConfig {
                events_per_second: r.bounded(keys::RATE_LIMIT_EVENTS_PER_SECOND, 0, 1_000_000)
                    as u32,
                burst: r.bounded(keys::RATE_LIMIT_BURST, 1, 1_000_000) as u32,
                trusted_proxies: r.boolean(keys::RATE_LIMIT_TRUSTED_PROXIES),
            },
            filter: FilterConfig {
                header_checks: r.boolean(keys::FILTER_HEADER_CHECKS),
                referrer_spam: r.boolean(keys::FILTER_REFERRER_SPAM),
                datacenter_ranges: Some(r.string(keys::FILTER_DATACENTER_RANGES))
                    .filter(|p| !p.trim().is_empty())
                    .map(PathBuf::from),
            },
            visits: VisitsConfig {
                timeout: Duration::from_secs(60 * r.bounded(keys::VISITS_TIMEOUT_MINUTES, 1, 1440)),
                max_open: r.bounded(keys::VISITS_MAX_OPEN, 64, 100_000_000) as usize,
            },
            dashboard: DashboardConfig {
                listen: r.socket_addr(keys::DASHBOARD_LISTEN),
                token: r.string(keys::DASHBOARD_TOKEN),
                min_visitors: r.bounded(keys::DASHBOARD_MIN_VISITORS, 0, 1_000_000) as u32,
            },
            log_format: match r.string(keys::LOG_FORMAT).as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    r.error(
                        keys::LOG_FORMAT,
                        format!("must be \"text\" or \"json\", got {other:?}"),
                    );
                    LogFormat::Text
                }
            },
            log_level: r.string(keys::LOG_LEVEL),
        };
        r.finish()?;
        Ok(cfg)
    }

    /// Loads from the process environment and an optional file.
    pub fn from_file_and_env(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigError(vec![format!(
                    "cannot read config file {}: {e}",
                    p.display()
                )])
            })?),
            None => None,
        };
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("GLIMPSE_"))
            .collect();
        Config::load(text.as_deref(), &env)
    }

    pub fn site(&self, domain: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.domain == domain)
    }
}

/// Walks the TOML table and environment, collecting errors instead of returning early.
struct Reader<'e> {
    table: toml::Table,
    env: &'e BTreeMap<String, String>,
    errors: Vec<String>,
}

impl<'e> Reader<'e> {
    fn new(toml_text: Option<&str>, env: &'e BTreeMap<String, String>) -> Self {
        let mut errors = Vec::new();
        let table = match toml_text.map(str::parse::<toml::Table>) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                errors.push(format!("config file is not valid TOML: {e}"));
                toml::Table::new()
            }
            None => toml::Table::new(),
        };
        Reader { table, env, errors }
    }

    fn error(&mut self, key: Key, msg: impl std::fmt::Display) {
        self.errors
            .push(format!("{} ({}): {msg}", key.toml, key.env));
    }

    fn toml_value(&self, key: Key) -> Option<&toml::Value> {
        let mut parts = key.toml.split('.');
        let first = parts.next()?;
        let mut value = self.table.get(first)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    /// The raw text of a scalar setting: env, then file, then default.
    fn string(&mut self, key: Key) -> String {
        if let Some(v) = self.env.get(key.env) {
            return v.clone();
        }
        match self.toml_value(key) {
            None => key.default.to_string(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Integer(i)) => i.to_string(),
            Some(toml::Value::Boolean(b)) => b.to_string(),
            Some(other) => {
                let msg = format!("expected a string or number, got {}", other.type_str());
                self.error(key, msg);
                key.default.to_string()
            }
        }
    }

    fn socket_addr(&mut self, key: Key) -> SocketAddr {
        let raw = self.string(key);
        raw.trim().parse().unwrap_or_else(|_| {
            self.error(
                key,
                format!("expected a socket address like 127.0.0.1:8080, got {raw:?}"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    fn bounded(&mut self, key: Key, min: u64, max: u64) -> u64 {
        let raw = self.string(key);
        match raw.trim().replace('_', "").parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.error(
                    key,
                    format!("expected a whole number from {min} to {max}, got {raw:?}"),
                );
                key.default.parse().unwrap_or(min)
            }
        }
    }

    fn boolean(&mut self, key: Key) -> bool {
        let raw = self.string(key);
        match raw.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                self.error(key, format!("expected true or false, got {raw:?}"));
                key.default == "true"
            }
        }
    }

    fn url(&mut self, key: Key) -> String {
        let raw = self.string(key);
        let trimmed = raw.trim_end_matches('/').to_string();
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://"))
            || trimmed.len() < 10
        {
            self.error(
                key,
                format!("expected an http:// or https:// URL, got {raw:?}"),
            );
        }
        trimmed
    }

    fn identifier(&mut self, key: Key) -> String {
        let raw = self.string(key);
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !raw.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            self.error(
                key,
                format!("expected a name of letters, digits and _, got {raw:?}"),
            );
        }
        raw
    }

    /// A list setting: comma-separated in the environment, an array of strings in the file.
    fn list(&mut self, key: Key) -> Vec<String> {
        if let Some(v) = self.env.get(key.env) {
            return v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        match self.toml_value(key) {
            None => Vec::new(),
            Some(toml::Value::String(s)) if s.is_empty() => Vec::new(),
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items.clone() {
                    match item {
                        toml::Value::String(s) => out.push(s),
                        other => self.error(
                            key,
                            format!("list items must be strings, got {}", other.type_str()),
                        ),
                    }
                }
                out
            }
            Some(other) => {
                let msg = format!("expected a list of strings, got {}", other.type_str());
                self.error(key, msg);
                Vec::new()
            }
        }
    }

    fn cidr(&mut self, key: Key, raw: &str) -> Option<IpNet> {
        let parsed = raw
            .parse::<IpNet>()
            .or_else(|_| raw.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => Some(net.trunc()),
            Err(_) => {
                self.error(key, format!("{raw:?} is not an IP address or CIDR range"));
                None
            }
        }
    }

    fn sites(&mut self) -> Vec<Site> {
        let key = keys::SITES;
        let entries: Vec<(String, Shields)> = if let Some(v) = self.env.get(key.env) {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|d| (d.to_string(), Shields::default()))
                .collect()
        } else {
            match self.table.get("sites").cloned() {
                None => Vec::new(),
                Some(toml::Value::Array(items)) => {
                    let mut out = Vec::new();
                    for (i, item) in items.into_iter().enumerate() {
                        let Some(t) = item.as_table() else {
                            self.error(key, format!("[[sites]] entry {} must be a table", i + 1));
                            continue;
                        };
                        for k in t.keys().filter(|k| !SITE_KEYS.contains(&k.as_str())) {
                            self.errors.push(format!("sites[{i}].{k}: unknown key"));
                        }
                        let shields = self.shields(i, t);
                        match t.get("domain") {
                            Some(toml::Value::String(d)) => out.push((d.clone(), shields)),
                            _ => self.errors.push(format!(
                                "sites[{i}].domain: required, a host name like \"example.com\""
                            )),
                        }
                    }
                    out
                }
                Some(_) => {
                    self.error(key, "expected [[sites]] tables");
                    Vec::new()
                }
            }
        };
        let mut seen = BTreeSet::new();
        let mut sites = Vec::new();
        for (raw, shields) in entries {
            let domain = raw.trim().to_ascii_lowercase();
            let domain = domain.strip_prefix("www.").unwrap_or(&domain).to_string();
            let valid = !domain.is_empty()
                && domain.len() <= 253
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !valid {
                self.error(
                    key,
                    format!("{raw:?} is not a host name (no scheme, path or port)"),
                );
            } else if !seen.insert(domain.clone()) {
                self.error(key, format!("{domain:?} is listed twice"));
            } else {
                sites.push(Site { domain, shields });
            }
        }
        sites
    }

    /// The shield lists of `[[sites]]` entry `i`; each bad item is an error naming it.
    fn shields(&mut self, i: usize, t: &toml::Table) -> Shields {
        use crate::check::shield::{HostPattern, PathPattern};
        let mut list = |name: &str| -> Vec<String> {
            match t.get(name) {
                None => Vec::new(),
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        toml::Value::String(s) => Some(s.clone()),
                        other => {
                            self.errors.push(format!(
                                "sites[{i}].{name}: list items must be strings, got {}",
                                other.type_str()
                            ));
                            None
                        }
                    })
                    .collect(),
                Some(other) => {
                    self.errors.push(format!(
                        "sites[{i}].{name}: expected a list of strings, got {}",
                        other.type_str()
                    ));
                    Vec::new()
                }
            }
        };
        let ips = list("block_ips");
        let countries = list("block_countries");
        let paths = list("exclude_paths");
        let hosts = list("allow_hostnames");
        let mut shields = Shields::default();
        for ip in ips {
            match crate::check::iprange::parse_net(ip.trim()) {
                Ok(net) => shields.block_ips.push(net),
                Err(e) => self.errors.push(format!("sites[{i}].block_ips: {e}")),
            }
        }
        for c in countries {
            let code = c.trim().to_ascii_uppercase();
            if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
                shields.block_countries.push(code);
            } else {
                self.errors.push(format!(
                    "sites[{i}].block_countries: {c:?} is not a two-letter country code like \"DE\""
                ));
            }
        }
        for p in paths {
            match PathPattern::parse(&p) {
                Ok(_) => shields.exclude_paths.push(p),
                Err(e) => self.errors.push(format!("sites[{i}].exclude_paths: {e}")),
            }
        }
        for h in hosts {
            match HostPattern::parse(&h) {
                Ok(_) => shields.allow_hostnames.push(h),
                Err(e) => self.errors.push(format!("sites[{i}].allow_hostnames: {e}")),
            }
        }
        shields
    }

    fn finish(mut self) -> Result<(), ConfigError> {
        // Unknown keys in the file: walk two levels (top-level keys and tables).
        let known: BTreeSet<&str> = keys::ALL.iter().map(|k| k.toml).collect();
        let sections: BTreeSet<&str> = known
            .iter()
            .filter_map(|k| k.split_once('.').map(|(s, _)| s))
            .collect();
        for (name, value) in &self.table {
            if known.contains(name.as_str()) {
                continue;
            }
            if sections.contains(name.as_str()) {
                if let Some(t) = value.as_table() {
                    for sub in t.keys() {
                        let full = format!("{name}.{sub}");
                        if !known.contains(full.as_str()) {
                            self.errors.push(format!("{full}: unknown key"));
                        }
                    }
                } else {
                    self.errors
                        .push(format!("{name}: expected a [{name}] table"));
                }
            } else {
                self.errors.push(format!("{name}: unknown key"));
            }
        }
        let known_env: BTreeSet<&str> = keys::ALL.iter().map(|k| k.env).collect();
        for name in self.env.keys() {
            if name.starts_with("GLIMPSE_") && !known_env.contains(name.as_str()) {
                self.errors
                    .push(format!("{name}: unknown environment setting"));
            }
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_file() {
        let cfg = Config::load(None, &env(&[])).unwrap();
        assert_eq!(cfg.listen.to_string(), keys::LISTEN.default);
        assert_eq!(cfg.batch.max_rows, 50_000);
        assert_eq!(cfg.batch.max_delay, Duration::from_millis(1000));
        assert_eq!(cfg.events_retention_days, 30);
        assert_eq!(cfg.max_body_bytes, 64 * 1024);
        assert!(cfg.sites.is_empty());
    }

    #[test]
    fn file_values_and_env_overrides() {
        let text = r#"
            listen = "0.0.0.0:9000"
            [clickhouse]
            url = "http://ch:8123/"
            database = "analytics"
            [retention]
            events_days = 7
            [proxy]
            trusted = ["10.0.0.0/8", "::1"]
            [[sites]]
            domain = "www.Example.com"
            [[sites]]
            domain = "shop.example.org"
        "#;
        let cfg =
            Config::load(Some(text), &env(&[("GLIMPSE_RETENTION_EVENTS_DAYS", "0")])).unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.clickhouse.url, "http://ch:8123");
        assert_eq!(cfg.clickhouse.database, "analytics");
        assert_eq!(cfg.events_retention_days, 0, "env wins over file");
        assert_eq!(cfg.trusted_proxies.len(), 2);
        let domains: Vec<_> = cfg.sites.iter().map(|s| s.domain.as_str()).collect();
        assert_eq!(domains, ["example.com", "shop.example.org"]);
    }

    #[test]
    fn all_errors_are_reported_together_naming_keys() {
        let text = r#"
            listen = "nonsense"
            colour = "blue"
            [batch]
            max_rows = 0
            max_dealy_ms = 5
            [[sites]]
            domain = "https://bad/"
            extra = 1
        "#;
        let err = Config::load(
            Some(text),
            &env(&[
                ("GLIMPSE_NOPE", "1"),
                ("GLIMPSE_PROXY_TRUSTED", "300.1.1.1"),
            ]),
        )
        .unwrap_err();
        let all = err.to_string();
        for needle in [
            "listen (GLIMPSE_LISTEN)",
            "colour: unknown key",
            "batch.max_rows (GLIMPSE_BATCH_MAX_ROWS)",
            "batch.max_dealy_ms: unknown key",
            "sites[0].extra: unknown key",
            "\"https://bad/\" is not a host name",
            "GLIMPSE_NOPE: unknown environment setting",
            "\"300.1.1.1\" is not an IP address",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(err.0.len(), 8, "{all}");
    }

    #[test]
    fn site_shields_and_filters() {
        let toml = r#"
            [filter]
            header_checks = false
            datacenter_ranges = "/etc/glimpse/datacenters.txt"
            [[sites]]
            domain = "a.com"
            block_ips = ["203.0.113.0/24", "2001:db8::1"]
            block_countries = ["ru", "CN"]
            exclude_paths = ["/admin/**", "/preview/*"]
            allow_hostnames = ["a.com", "*.a.com"]
            [[sites]]
            domain = "b.org"
        "#;
        let cfg = Config::load(Some(toml), &env(&[])).unwrap();
        let s = &cfg.sites[0].shields;
        assert_eq!(s.block_ips.len(), 2);
        assert_eq!(s.block_countries, ["RU", "CN"]);
        assert_eq!(s.exclude_paths, ["/admin/**", "/preview/*"]);
        assert_eq!(s.allow_hostnames, ["a.com", "*.a.com"]);
        assert_eq!(cfg.sites[1].shields, Shields::default());
        assert!(!cfg.filter.header_checks);
        assert!(cfg.filter.referrer_spam);
        assert_eq!(
            cfg.filter.datacenter_ranges.as_deref(),
            Some(std::path::Path::new("/etc/glimpse/datacenters.txt"))
        );
        let defaults = Config::load(None, &env(&[])).unwrap();
        assert!(defaults.filter.header_checks && defaults.filter.datacenter_ranges.is_none());
    }

    #[test]
    fn bad_shields_are_all_reported() {
        let toml = r#"
            [[sites]]
            domain = "a.com"
            block_ips = ["10.0.0.0/33", "nope"]
            block_countries = ["Germany"]
            exclude_paths = ["admin/**", 5]
            allow_hostnames = "a.com"
        "#;
        let err = Config::load(Some(toml), &env(&[])).unwrap_err().0;
        let text = err.join("\n");
        for needle in [
            "sites[0].block_ips: \"10.0.0.0/33\"",
            "sites[0].block_ips: \"nope\"",
            "sites[0].block_countries: \"Germany\"",
            "sites[0].exclude_paths: \"admin/**\" must start with /",
            "sites[0].exclude_paths: list items must be strings",
            "sites[0].allow_hostnames: expected a list of strings",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.len(), 6, "{text}");
    }

    #[test]
    fn sites_from_env_and_duplicates() {
        let err = Config::load(None, &env(&[("GLIMPSE_SITES", "a.com, www.a.com")])).unwrap_err();
        assert!(err.to_string().contains("listed twice"));
        let cfg = Config::load(None, &env(&[("GLIMPSE_SITES", "a.com,b.org")])).unwrap();
        assert_eq!(cfg.sites.len(), 2);
    }

    #[test]
    fn every_key_has_a_consistent_env_name() {
        for k in keys::ALL {
            let expected = format!("GLIMPSE_{}", k.toml.replace('.', "_").to_ascii_uppercase());
            assert_eq!(k.env, expected);
        }
    }
}
