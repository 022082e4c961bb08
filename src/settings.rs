//! Reading settings: one [`Reader`] walks the TOML file and the environment for every section,
//! collecting each problem instead of stopping at the first.
//!
//! A setting is named once, by its TOML path (`batch.max_rows`), where its section reads it; the
//! environment override is derived from that path (`GLIMPSE_BATCH_MAX_ROWS`). Precedence is
//! environment > file > default. Whatever the file or the environment holds that no section read
//! is reported as unknown when the reader finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::model::net::parse_net;

/// Prefix of every environment setting.
pub(crate) const ENV_PREFIX: &str = "GLIMPSE_";

/// All problems found while loading, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// The environment name of a TOML path: `batch.max_rows` → `GLIMPSE_BATCH_MAX_ROWS`.
pub(crate) fn env_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

/// Walks the TOML table and environment, collecting errors instead of returning early.
pub(crate) struct Reader<'e> {
    table: toml::Table,
    env: &'e BTreeMap<String, String>,
    errors: Vec<String>,
    /// TOML paths read so far: everything else in the file or environment is unknown.
    known: BTreeSet<String>,
}

impl<'e> Reader<'e> {
    pub fn new(toml_text: Option<&str>, env: &'e BTreeMap<String, String>) -> Self {
        let mut errors = Vec::new();
        let table = match toml_text.map(str::parse::<toml::Table>) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                errors.push(format!("config file is not valid TOML: {e}"));
                toml::Table::new()
            }
            None => toml::Table::new(),
        };
        Reader {
            table,
            env,
            errors,
            known: BTreeSet::new(),
        }
    }

    /// Records a problem with `key`, naming its TOML path and environment name.
    pub fn error(&mut self, key: &str, msg: impl std::fmt::Display) {
        self.errors
            .push(format!("{key} ({}): {msg}", env_name(key)));
    }

    /// Records a problem inside a table of an array (`sites[0].domain: …`).
    pub(crate) fn error_at(&mut self, place: String, msg: impl std::fmt::Display) {
        self.errors.push(format!("{place}: {msg}"));
    }

    fn env_value(&mut self, key: &str) -> Option<String> {
        self.known.insert(key.to_string());
        self.env.get(&env_name(key)).cloned()
    }

    fn toml_value(&self, key: &str) -> Option<&toml::Value> {
        let mut parts = key.split('.');
        let mut value = self.table.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    /// The raw text of a scalar setting: env, then file, then `default`.
    pub fn string(&mut self, key: &str, default: &str) -> String {
        if let Some(v) = self.env_value(key) {
            return v;
        }
        match self.toml_value(key) {
            None => default.to_string(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Integer(i)) => i.to_string(),
            Some(toml::Value::Boolean(b)) => b.to_string(),
            Some(other) => {
                let msg = format!("expected a string or number, got {}", other.type_str());
                self.error(key, msg);
                default.to_string()
            }
        }
    }

    pub(crate) fn socket_addr(&mut self, key: &str, default: &str) -> SocketAddr {
        let raw = self.string(key, default);
        raw.trim().parse().unwrap_or_else(|_| {
            self.error(
                key,
                format!("expected a socket address like 127.0.0.1:8080, got {raw:?}"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// A whole number from `min` to `max`.
    pub(crate) fn bounded(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let raw = self.string(key, &default.to_string());
        match raw.trim().replace('_', "").parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.error(
                    key,
                    format!("expected a whole number from {min} to {max}, got {raw:?}"),
                );
                default
            }
        }
    }

    /// A duration given in milliseconds (keys end in `_ms`), from `min` to `max` ms.
    pub(crate) fn millis(&mut self, key: &str, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.bounded(key, default, min, max))
    }

    pub(crate) fn boolean(&mut self, key: &str, default: bool) -> bool {
        let raw = self.string(key, &default.to_string());
        match raw.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                self.error(key, format!("expected true or false, got {raw:?}"));
                default
            }
        }
    }

    /// An http:// or https:// URL, without a trailing slash.
    pub fn url(&mut self, key: &str, default: &str) -> String {
        let raw = self.string(key, default);
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

    /// A name of letters, digits and `_` (a database name), safe to quote into SQL.
    pub(crate) fn identifier(&mut self, key: &str, default: &str) -> String {
        let raw = self.string(key, default);
        if !is_identifier(&raw) {
            self.error(
                key,
                format!("expected a name of letters, digits and _, got {raw:?}"),
            );
        }
        raw
    }

    /// Like [`Reader::identifier`], but `None` when unset or empty.
    pub(crate) fn optional_identifier(&mut self, key: &str) -> Option<String> {
        let raw = self.string(key, "");
        if raw.is_empty() {
            return None;
        }
        if !is_identifier(&raw) {
            self.error(
                key,
                format!("expected a name of letters, digits and _, got {raw:?}"),
            );
        }
        Some(raw)
    }

    /// A file path; `None` when empty.
    pub fn path(&mut self, key: &str) -> Option<PathBuf> {
        Some(self.string(key, ""))
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
    }

    /// One of `choices`.
    pub(crate) fn choice<T: Copy>(&mut self, key: &str, default: &str, choices: &[(&str, T)]) -> T {
        let raw = self.string(key, default);
        let find = |v: &str| choices.iter().find(|(name, _)| *name == v).map(|c| c.1);
        find(&raw).unwrap_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            self.error(key, format!("must be {}, got {raw:?}", names.join(" or ")));
            find(default).unwrap_or(choices[0].1)
        })
    }

    /// A list setting: comma-separated in the environment, an array of strings in the file.
    pub fn list(&mut self, key: &str) -> Vec<String> {
        if let Some(v) = self.env_value(key) {
            return v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        match self.toml_value(key).cloned() {
            None => Vec::new(),
            Some(toml::Value::String(s)) if s.is_empty() => Vec::new(),
            Some(toml::Value::String(s)) => vec![s],
            Some(toml::Value::Array(items)) => strings(items, |msg| self.error(key, msg)),
            Some(other) => {
                let msg = format!("expected a list of strings, got {}", other.type_str());
                self.error(key, msg);
                Vec::new()
            }
        }
    }

    /// A list of CIDRs or single addresses.
    pub(crate) fn cidrs(&mut self, key: &str) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for raw in self.list(key) {
            match parse_net(raw.trim()) {
                Ok(net) => nets.push(net),
                Err(e) => self.error(key, e),
            }
        }
        nets
    }

    /// An array of tables (`[[sites]]`) whose entries may hold only `allowed` keys; in the
    /// environment, a comma-separated list of each entry's `short` key (`GLIMPSE_SITES=a.com`).
    /// Unknown keys inside an entry are reported here, as `key[i].name`.
    pub fn tables(&mut self, key: &str, allowed: &[&str], short: &str) -> Vec<toml::Table> {
        if let Some(v) = self.env_value(key) {
            return v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let mut t = toml::Table::new();
                    t.insert(short.to_string(), toml::Value::String(s.to_string()));
                    t
                })
                .collect();
        }
        match self.table.get(key).cloned() {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let toml::Value::Table(t) = item else {
                        self.error(key, format!("[[{key}]] entry {} must be a table", i + 1));
                        continue;
                    };
                    for k in t.keys().filter(|k| !allowed.contains(&k.as_str())) {
                        self.errors.push(format!("{key}[{i}].{k}: unknown key"));
                    }
                    out.push(t);
                }
                out
            }
            Some(_) => {
                self.error(key, format!("expected [[{key}]] tables"));
                Vec::new()
            }
        }
    }

    /// A list of strings inside an entry of [`Reader::tables`]; `place` names it in errors.
    pub(crate) fn entry_list(
        &mut self,
        place: String,
        entry: &toml::Table,
        name: &str,
    ) -> Vec<String> {
        match entry.get(name).cloned() {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                let place = format!("{place}.{name}");
                strings(items, |msg| self.error_at(place.clone(), msg))
            }
            Some(other) => {
                let msg = format!("expected a list of strings, got {}", other.type_str());
                self.error_at(format!("{place}.{name}"), msg);
                Vec::new()
            }
        }
    }

    /// Reports every key in the file or environment that no section read; then all errors.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        let sections: BTreeSet<&str> = self
            .known
            .iter()
            .filter_map(|k| k.split_once('.').map(|(s, _)| s))
            .collect();
        let mut unknown = Vec::new();
        for (name, value) in &self.table {
            if self.known.contains(name) {
                continue;
            }
            if !sections.contains(name.as_str()) {
                unknown.push(format!("{name}: unknown key"));
                continue;
            }
            let Some(t) = value.as_table() else {
                unknown.push(format!("{name}: expected a [{name}] table"));
                continue;
            };
            for sub in t.keys() {
                let full = format!("{name}.{sub}");
                if !self.known.contains(&full) {
                    unknown.push(format!("{full}: unknown key"));
                }
            }
        }
        let known_env: BTreeSet<String> = self.known.iter().map(|k| env_name(k)).collect();
        for name in self.env.keys() {
            if name.starts_with(ENV_PREFIX) && !known_env.contains(name) {
                unknown.push(format!("{name}: unknown environment setting"));
            }
        }
        self.errors.extend(unknown);
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

/// The strings of a TOML array; `error` hears about every item that is not one.
fn is_identifier(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 64
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !raw.starts_with(|c: char| c.is_ascii_digit())
}

fn strings(items: Vec<toml::Value>, mut error: impl FnMut(String)) -> Vec<String> {
    let mut out = Vec::new();
    for item in items {
        match item {
            toml::Value::String(s) => out.push(s),
            other => error(format!(
                "list items must be strings, got {}",
                other.type_str()
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_derive_from_toml_paths() {
        assert_eq!(env_name("listen"), "GLIMPSE_LISTEN");
        assert_eq!(env_name("batch.max_rows"), "GLIMPSE_BATCH_MAX_ROWS");
    }

    #[test]
    fn unread_keys_are_unknown_and_read_ones_are_not() {
        let env = BTreeMap::from([
            ("GLIMPSE_A_B".to_string(), "1".to_string()),
            ("GLIMPSE_A_C".to_string(), "1".to_string()),
        ]);
        let mut r = Reader::new(Some("[a]\nb = 2\nd = 3\n[e]\nf = 1\n"), &env);
        assert_eq!(r.bounded("a.b", 0, 0, 9), 1, "the environment wins");
        let errors = r.finish().unwrap_err().0;
        assert_eq!(
            errors,
            [
                "a.d: unknown key",
                "e: unknown key",
                "GLIMPSE_A_C: unknown environment setting"
            ]
        );
    }
}
