//! The `[[sites]]` section: each site's domain and its shields, compiled as they are read.

use std::collections::BTreeSet;

use crate::model::site::{
    Goal, GoalKind, HostPattern, MAX_PATTERN_LEN, PathPattern, Shields, Site, country_code,
};
use crate::model::{IpRanges, net, text};
use crate::settings::Reader;

const KEY: &str = "sites";

/// Keys allowed inside each `[[sites]]` table: the domain and the site's shields.
const SITE_KEYS: &[&str] = &[
    "domain",
    "block_ips",
    "block_countries",
    "exclude_paths",
    "allow_hostnames",
    "redact_tokens",
    "goals",
];

/// Keys of each `[[sites.goals]]` table.
const GOAL_KEYS: &[&str] = &["event", "page", "scroll", "name"];

pub(super) fn read(r: &mut Reader) -> Vec<Site> {
    let mut seen = BTreeSet::new();
    let mut sites = Vec::new();
    for (i, entry) in r.tables(KEY, SITE_KEYS, "domain").into_iter().enumerate() {
        let shields = shields(r, i, &entry);
        let redact_tokens = match entry.get("redact_tokens") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                r.error_at(
                    format!("{KEY}[{i}].redact_tokens"),
                    format!("expected true or false, got {}", other.type_str()),
                );
                true
            }
        };
        let raw = match entry.get("domain") {
            Some(toml::Value::String(d)) => d.clone(),
            _ => {
                r.error_at(
                    format!("{KEY}[{i}].domain"),
                    "required, a host name like \"example.com\"",
                );
                continue;
            }
        };
        match text::host_name(&raw) {
            None => r.error(
                KEY,
                format!("{raw:?} is not a host name (no scheme, path or port)"),
            ),
            Some(domain) if !seen.insert(domain.clone()) => {
                r.error(KEY, format!("{domain:?} is listed twice"));
            }
            Some(domain) => sites.push(Site {
                domain,
                shields,
                redact_tokens,
                goals: goals(r, i, &entry),
            }),
        }
    }
    sites
}

/// The goals of `[[sites]]` entry `i`: `event = "Signup"`, `page = "/pricing/**"`, or
/// `page` with `scroll = 75`; an optional `name` replaces the shown one. Each bad goal is an
/// error naming it.
fn goals(r: &mut Reader, i: usize, entry: &toml::Table) -> Vec<Goal> {
    let items = match entry.get("goals") {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items.clone(),
        Some(other) => {
            r.error_at(
                format!("{KEY}[{i}].goals"),
                format!("expected a list of tables, got {}", other.type_str()),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Goal> = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let place = format!("{KEY}[{i}].goals[{j}]");
        let Some(t) = item.as_table() else {
            r.error_at(place, "expected a table like { event = \"Signup\" }");
            continue;
        };
        if let Some(k) = t.keys().find(|k| !GOAL_KEYS.contains(&k.as_str())) {
            r.error_at(
                format!("{place}.{k}"),
                format!("unknown key; a goal has: {}", GOAL_KEYS.join(", ")),
            );
            continue;
        }
        let text = |k: &str| t.get(k).and_then(toml::Value::as_str).map(str::to_owned);
        let page = text("page");
        let page_ok = |p: &String| p.starts_with('/') && p.len() <= MAX_PATTERN_LEN;
        let kind = match (text("event"), page, t.get("scroll")) {
            (Some(e), None, None) if !e.trim().is_empty() && e.len() <= 120 => GoalKind::Event(e),
            (None, Some(p), None) if page_ok(&p) => GoalKind::Page(p),
            (None, Some(p), Some(toml::Value::Integer(n)))
                if page_ok(&p) && (1..=100).contains(n) =>
            {
                GoalKind::Scroll {
                    page: p,
                    percent: *n as u8,
                }
            }
            _ => {
                r.error_at(
                    place,
                    "a goal is `event = \"Name\"`, `page = \"/path/**\"`, or `page` with \
                     `scroll = 1..100` (pages start with /)",
                );
                continue;
            }
        };
        let name = text("name").unwrap_or_else(|| match &kind {
            GoalKind::Event(e) => e.clone(),
            GoalKind::Page(p) => format!("Visit {p}"),
            GoalKind::Scroll { page, percent } => format!("Scroll {percent}% {page}"),
        });
        if out.iter().any(|g| g.name == name) {
            r.error_at(place, format!("goal {name:?} is named twice"));
            continue;
        }
        out.push(Goal { name, kind });
    }
    out
}

/// The shields of `[[sites]]` entry `i`; each bad item is an error naming it.
fn shields(r: &mut Reader, i: usize, entry: &toml::Table) -> Shields {
    let place = |name: &str| format!("{KEY}[{i}].{name}");
    let list = |r: &mut Reader, name: &str| r.entry_list(format!("{KEY}[{i}]"), entry, name);
    let ips = list(r, "block_ips");
    let countries = list(r, "block_countries");
    let paths = list(r, "exclude_paths");
    let hosts = list(r, "allow_hostnames");
    let mut shields = Shields::default();
    let mut nets = Vec::new();
    for ip in ips {
        match net::parse_net(ip.trim()) {
            Ok(net) => nets.push(net),
            Err(e) => r.error_at(place("block_ips"), e),
        }
    }
    shields.block_ips = IpRanges::new(nets);
    for c in countries {
        match country_code(&c) {
            Ok(code) => shields.block_countries.push(code),
            Err(e) => r.error_at(place("block_countries"), e),
        }
    }
    for p in paths {
        match PathPattern::parse(&p) {
            Ok(pattern) => shields.exclude_paths.push(pattern),
            Err(e) => r.error_at(place("exclude_paths"), e),
        }
    }
    for h in hosts {
        match HostPattern::parse(&h) {
            Ok(pattern) => shields.allow_hostnames.push(pattern),
            Err(e) => r.error_at(place("allow_hostnames"), e),
        }
    }
    shields
}
