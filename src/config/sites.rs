//! The `[[sites]]` section: each site's domain and its shields, compiled as they are read.

use std::collections::BTreeSet;

use crate::model::site::{HostPattern, PathPattern, Shields, Site, country_code};
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
];

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
            }),
        }
    }
    sites
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
