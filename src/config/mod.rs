//! The whole configuration: one section per component, each read by the component itself
//! through [`settings::Reader`] (the struct mirrors the TOML file), plus the sites list and
//! logging, read here.
//!
//! Precedence is environment > TOML file > default. Loading never stops at the first problem:
//! all errors (unknown keys, bad values) are collected and reported together, each naming its key.

mod sites;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::model::Site;
use crate::settings::{self, Reader};
use crate::visits;
use crate::{batch, cardinality, classify, clientip, dashboard, filter, front, ratelimit, server};
use crate::{spool, store};

pub use settings::ConfigError;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the collector accepts events.
    pub listen: SocketAddr,
    pub clickhouse: store::Settings,
    pub geoip: classify::geo::Settings,
    pub sites: Vec<Site>,
    pub proxy: clientip::Settings,
    pub retention: store::Retention,
    pub batch: batch::Settings,
    pub ingest: server::Ingest,
    pub server: front::Settings,
    pub spool: spool::Settings,
    pub rate_limit: ratelimit::Settings,
    pub filter: filter::Settings,
    pub visits: visits::Settings,
    pub limits: cardinality::Settings,
    pub dashboard: dashboard::Settings,
    pub metrics: server::MetricsSettings,
    pub log: Log,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter directive such as `info` or `glimpse=debug`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Loads from optional TOML text and an environment map (only `GLIMPSE_*` entries matter).
    pub fn load(
        toml_text: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut r = Reader::new(toml_text, env);
        let cfg = Config {
            listen: r.socket_addr("listen", "127.0.0.1:8080"),
            clickhouse: store::Settings::read(&mut r),
            geoip: classify::geo::Settings::read(&mut r),
            sites: sites::read(&mut r),
            proxy: clientip::Settings::read(&mut r),
            retention: store::Retention::read(&mut r),
            batch: batch::Settings::read(&mut r),
            ingest: server::Ingest::read(&mut r),
            server: front::Settings::read(&mut r),
            spool: spool::Settings::read(&mut r),
            rate_limit: ratelimit::Settings::read(&mut r),
            filter: filter::Settings::read(&mut r),
            visits: visits::Settings::read(&mut r),
            limits: cardinality::Settings::read(&mut r),
            dashboard: dashboard::Settings::read(&mut r),
            metrics: server::MetricsSettings::read(&mut r),
            log: Log {
                format: r.choice(
                    "log.format",
                    "text",
                    &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                ),
                level: r.string("log.level", "info"),
            },
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
            .filter(|(k, _)| k.starts_with(settings::ENV_PREFIX))
            .collect();
        Config::load(text.as_deref(), &env)
    }

    pub fn site(&self, domain: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.domain == domain)
    }

    /// The configured domains, in order (their positions key per-site counters).
    pub fn domains(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.domain.clone()).collect()
    }

    /// Each site's goals, by domain (what the stats APIs answer `event:goal` with).
    pub fn goals(&self) -> std::collections::HashMap<String, Vec<crate::model::Goal>> {
        self.sites
            .iter()
            .map(|s| (s.domain.clone(), s.goals.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Shields;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_file() {
        let cfg = Config::load(None, &env(&[])).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.batch.max_rows, 50_000);
        assert_eq!(cfg.batch.max_delay, Duration::from_millis(1000));
        assert_eq!(cfg.retention.events_days, 30);
        assert_eq!(cfg.ingest.max_body_bytes, 64 * 1024);
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
        assert_eq!(cfg.retention.events_days, 0, "env wins over file");
        assert_eq!(cfg.proxy.trusted.len(), 2);
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
    fn token_redaction_is_on_unless_a_site_turns_it_off() {
        let toml = r#"
            [[sites]]
            domain = "a.com"
            [[sites]]
            domain = "b.org"
            redact_tokens = false
        "#;
        let cfg = Config::load(Some(toml), &env(&[])).unwrap();
        assert!(cfg.sites[0].redact_tokens && !cfg.sites[1].redact_tokens);
        let from_env = Config::load(None, &env(&[("GLIMPSE_SITES", "a.com")])).unwrap();
        assert!(from_env.sites[0].redact_tokens);
        let bad = "[[sites]]\ndomain = \"a.com\"\nredact_tokens = \"no\"\n";
        let err = Config::load(Some(bad), &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("sites[0].redact_tokens: expected true or false"),
            "{err}"
        );
    }

    #[test]
    fn goals_in_the_shape_of_the_docs() {
        use crate::model::GoalKind;
        let toml = r#"
            [[sites]]
            domain = "a.com"
            [[sites.goals]]
            event = "Signup"
            [[sites.goals]]
            page = "/pricing/**"
            [[sites.goals]]
            page = "/blog/*"
            scroll = 75
            [[sites.goals]]
            event = "Purchase"
            name = "Bought"
        "#;
        let cfg = Config::load(Some(toml), &env(&[])).unwrap();
        let goals: Vec<(&str, &GoalKind)> = cfg.sites[0]
            .goals
            .iter()
            .map(|g| (g.name.as_str(), &g.kind))
            .collect();
        assert_eq!(
            goals,
            [
                ("Signup", &GoalKind::Event("Signup".into())),
                ("Visit /pricing/**", &GoalKind::Page("/pricing/**".into())),
                (
                    "Scroll 75% /blog/*",
                    &GoalKind::Scroll {
                        page: "/blog/*".into(),
                        percent: 75
                    }
                ),
                ("Bought", &GoalKind::Event("Purchase".into())),
            ]
        );
        let bad = r#"
            [[sites]]
            domain = "a.com"
            [[sites.goals]]
            event = "Signup"
            page = "/x"
            [[sites.goals]]
            page = "/x"
            scroll = 120
            [[sites.goals]]
            colour = "red"
            [[sites.goals]]
            event = "Signup"
            [[sites.goals]]
            event = "Signup"
        "#;
        let err = Config::load(Some(bad), &env(&[])).unwrap_err().to_string();
        for needle in [
            "sites[0].goals[0]: a goal is",
            "sites[0].goals[1]: a goal is",
            "sites[0].goals[2].colour: unknown key",
            "sites[0].goals[4]: goal \"Signup\" is named twice",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn sites_from_env_and_duplicates() {
        let err = Config::load(None, &env(&[("GLIMPSE_SITES", "a.com, www.a.com")])).unwrap_err();
        assert!(err.to_string().contains("listed twice"));
        let cfg = Config::load(None, &env(&[("GLIMPSE_SITES", "a.com,b.org")])).unwrap();
        assert_eq!(cfg.sites.len(), 2);
    }

    /// Every key of the example file (which lists them all) loads, and so does its environment
    /// name, derived from the TOML path.
    #[test]
    fn every_key_has_a_consistent_env_name() {
        let text = include_str!("../../scripts/glimpse.example.toml");
        Config::load(Some(text), &env(&[])).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let mut paths = Vec::new();
        for (name, value) in &table {
            match value {
                toml::Value::Table(t) => paths.extend(t.keys().map(|k| format!("{name}.{k}"))),
                _ => paths.push(name.clone()),
            }
        }
        assert!(paths.len() >= 30, "{paths:?}");
        for path in paths {
            let name = format!("GLIMPSE_{}", path.replace('.', "_").to_ascii_uppercase());
            assert_eq!(name, settings::env_name(&path));
            let value = match path.as_str() {
                "sites" => "a.com".to_string(),
                _ => toml_scalar(table.get(path.split('.').next().unwrap()).unwrap(), &path),
            };
            let loaded = Config::load(None, &env(&[(name.as_str(), value.as_str())]));
            assert!(loaded.is_ok(), "{name}={value:?}: {:?}", loaded.err());
        }
    }

    /// The example's value at `path`, as the environment would give it.
    fn toml_scalar(section: &toml::Value, path: &str) -> String {
        let value = match path.split_once('.') {
            Some((_, key)) => &section[key],
            None => section,
        };
        match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        }
    }
}
