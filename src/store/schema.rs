//! The DDL in `schema/`, embedded in the binary and rendered for the server's version.
//!
//! The files are written for a current server. For older servers, rendering removes what they
//! lack instead of giving it up everywhere: `LowCardinality(T)` becomes `T`, column `CODEC(...)`
//! clauses are removed, and a line marked `-- requires: ttl` is left out.

use super::cluster::{Layout, Renderer, Unsupported};

/// Numbered migrations, applied in this order and recorded in `glimpse_migrations`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_events.sql",
        include_str!("../../schema/0001_events.sql"),
    ),
    (
        "0002_aggregates.sql",
        include_str!("../../schema/0002_aggregates.sql"),
    ),
    (
        "0003_salts.sql",
        include_str!("../../schema/0003_salts.sql"),
    ),
    (
        "0004_dropped.sql",
        include_str!("../../schema/0004_dropped.sql"),
    ),
    (
        "0005_revenue_props.sql",
        include_str!("../../schema/0005_revenue_props.sql"),
    ),
    (
        "0006_visits.sql",
        include_str!("../../schema/0006_visits.sql"),
    ),
    (
        "0007_closed_days.sql",
        include_str!("../../schema/0007_closed_days.sql"),
    ),
    (
        "0008_sketches_deleted.sql",
        include_str!("../../schema/0008_sketches_deleted.sql"),
    ),
    (
        "0009_engagement.sql",
        include_str!("../../schema/0009_engagement.sql"),
    ),
    (
        "0010_page_views_by_page.sql",
        include_str!("../../schema/0010_page_views_by_page.sql"),
    ),
    (
        "0011_daily_rollup.sql",
        include_str!("../../schema/0011_daily_rollup.sql"),
    ),
    (
        "0012_intake.sql",
        include_str!("../../schema/0012_intake.sql"),
    ),
    (
        "0013_visitor_days.sql",
        include_str!("../../schema/0013_visitor_days.sql"),
    ),
    (
        "0014_visit_pages_views.sql",
        include_str!("../../schema/0014_visit_pages_views.sql"),
    ),
];

/// The view that stores raw rows; present only when raw events are retained.
pub(crate) const EVENTS_RAW_MV: &str = include_str!("../../schema/events_raw_mv.sql");

pub use super::tables::{DAILY_INSERT_TABLE, INSERT_TABLE, LEGACY_INSERT_TABLE, MIGRATIONS_TABLE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Parses `18.16.1`, `24.8.4.13` or `26.3`.
    pub fn parse(s: &str) -> Option<ServerVersion> {
        let mut parts = s.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
        Some(ServerVersion { major, minor })
    }

    pub fn features(self) -> Features {
        let at_least = |major, minor| self >= ServerVersion { major, minor };
        Features {
            // LowCardinality left experimental and column codecs arrived in 19.1; TTL in 19.6.
            low_cardinality: at_least(19, 1),
            codecs: at_least(19, 1),
            ttl: at_least(19, 6),
            // insert_deduplication_token arrived in 22.2.
            dedup: at_least(22, 2),
            // ADD COLUMN IF NOT EXISTS is missing in 18.16; present in every 20.x.
            add_column_if_not_exists: at_least(20, 1),
            // CREATE ROLE / GRANT arrived in 20.4 (deploy/clickhouse/grants.sql needs them).
            access_control: at_least(20, 4),
            // Atomic databases (default from 20.10) give each table a UUID for `{uuid}` in
            // replication paths; settled by 21.3.
            uuid_paths: at_least(21, 3),
        }
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub low_cardinality: bool,
    pub codecs: bool,
    pub ttl: bool,
    /// Inserts can carry a deduplication token that non-replicated tables honour.
    pub dedup: bool,
    pub add_column_if_not_exists: bool,
    /// SQL access control: per-table grants, so dashboard users can be kept from the salts.
    pub access_control: bool,
    /// Replicated tables take `{uuid}` in their paths; `DROP ... SYNC`.
    pub uuid_paths: bool,
}

/// The statements of one SQL file, rendered for a server with `features`.
pub fn render(sql: &str, features: Features) -> Vec<String> {
    let mut text = String::with_capacity(sql.len());
    for line in sql.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") {
            continue;
        }
        let (code, directive) = match line.split_once("-- requires:") {
            Some((code, feature)) => (code, Some(feature.trim())),
            None => (line, None),
        };
        if directive == Some("ttl") && !features.ttl {
            continue;
        }
        text.push_str(code.trim_end());
        text.push('\n');
    }
    if !features.low_cardinality {
        text = unwrap_call(&text, "LowCardinality(");
    }
    if !features.codecs {
        text = remove_call(&text, " CODEC(");
    }
    if !features.add_column_if_not_exists {
        // Migrations run once, so the guard only matters for re-running a rendered script.
        text = text.replace("ADD COLUMN IF NOT EXISTS ", "ADD COLUMN ");
    }
    statements(&text)
}

/// The statements of a SQL text, without its whole-line `--` comments.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `LowCardinality(String)` → `String`.
fn unwrap_call(text: &str, open: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        out.push_str(&rest[..i]);
        let inner_start = i + open.len();
        let close = matching_paren(&rest[inner_start..]).map_or(rest.len(), |j| inner_start + j);
        out.push_str(&rest[inner_start..close]);
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// ` CODEC(Delta, ZSTD(1))` → ``.
fn remove_call(text: &str, open: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        out.push_str(&rest[..i]);
        let inner_start = i + open.len();
        let close = matching_paren(&rest[inner_start..]).map_or(rest.len(), |j| inner_start + j);
        rest = rest.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Index of the `)` closing an already-opened parenthesis.
fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Tables of aggregates, each partitioned by month (`retention.aggregates_days` drops months).
pub(crate) const AGGREGATE_TABLES: &[&str] = &[
    "stats_hourly",
    "stats_daily",
    "revenue_daily",
    "props_daily",
    "visits_hourly",
    "visit_pages_daily",
    "engagement_daily",
    "dropped_daily",
    "closed_days",
    "stats_hourly_closed",
    "stats_daily_closed",
    "props_daily_closed",
];

/// Tables an insert reaches (through the views) whose blocks are deduplicated by token.
pub(crate) const DEDUPLICATED_TABLES: &[&str] = &[
    "events",
    "stats_hourly",
    "stats_daily",
    "revenue_daily",
    "props_daily",
    "visits_hourly",
    "visit_pages_daily",
    "engagement_daily",
];
/// Block hashes each table remembers; at one insert a second, hours of history.
pub(crate) const DEDUP_WINDOW_BLOCKS: u32 = 10_000;

/// Hours after its day began at which a salt's row expires by TTL, where the server has TTL:
/// after its day is over, and (with TTL merges at least hourly) gone well within 48 h. The
/// collector's own partition drop at 47 h does the same on every server.
pub(crate) const SALT_TTL_HOURS: u32 = 40;
/// How often, at most, a TTL merge is due on the salts table.
pub(crate) const SALT_TTL_MERGE_SECS: u32 = 3600;

/// Statements that make non-replicated tables honour insert deduplication tokens (none for a
/// server without tokens).
pub(crate) fn dedup_statements(features: Features) -> Vec<String> {
    if !features.dedup {
        return Vec::new();
    }
    DEDUPLICATED_TABLES
        .iter()
        .map(|t| {
            format!(
                "ALTER TABLE {t} MODIFY SETTING non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}"
            )
        })
        .collect()
}

/// The TTL backstop of the salts table, for tables created by any release (none for a server
/// without TTL). Current servers also get hourly TTL merges that drop whole parts.
pub(crate) fn salt_ttl_statements(features: Features) -> Vec<String> {
    let mut out = Vec::new();
    if features.ttl {
        out.push(format!(
            "ALTER TABLE glimpse_salts MODIFY TTL toDateTime(day, 'UTC') + INTERVAL {SALT_TTL_HOURS} HOUR"
        ));
    }
    // Table-level MODIFY SETTING and ttl_only_drop_parts are long settled by the servers that
    // have deduplication tokens (22.2+).
    if features.dedup {
        out.push(format!(
            "ALTER TABLE glimpse_salts MODIFY SETTING merge_with_ttl_timeout = {SALT_TTL_MERGE_SECS}, ttl_only_drop_parts = 1"
        ));
    }
    out
}

/// What is applied at every start rather than as a migration, so that it takes effect after a
/// server upgrade too.
pub(crate) fn every_start_statements(features: Features, cluster: bool) -> Vec<String> {
    // Replicated tables deduplicate by token without a setting.
    let mut out = if cluster {
        Vec::new()
    } else {
        dedup_statements(features)
    };
    out.extend(salt_ttl_statements(features));
    out
}

/// Everything `glimpse migrate` would run, as one SQL script, for `glimpse schema`.
pub fn script(
    version: ServerVersion,
    keep_raw_events: bool,
    layout: &Layout,
) -> Result<String, Unsupported> {
    let f = version.features();
    let mut out = format!(
        "-- Glimpse schema rendered for ClickHouse {version} (features: low_cardinality={}, codecs={}, ttl={})\n",
        f.low_cardinality, f.codecs, f.ttl
    );
    let mut files: Vec<(&str, &str)> = MIGRATIONS.to_vec();
    if keep_raw_events {
        files.push(("events_raw_mv.sql", EVENTS_RAW_MV));
    }
    let all: Vec<String> = files.iter().flat_map(|(_, sql)| render(sql, f)).collect();
    let mut cluster = match &layout.cluster {
        Some(c) => {
            let mut r = Renderer::new(c, &layout.database, f.uuid_paths, &all);
            out.push_str(&format!(
                "\n-- cluster {} (nodes: {}): the database, the migrations log, system views\n",
                c.name, c.nodes
            ));
            for stmt in r.setup()? {
                out.push_str(&stmt);
                out.push_str(";\n\n");
            }
            Some(r)
        }
        None => None,
    };
    for (name, sql) in files {
        out.push_str(&format!("\n-- {name}\n"));
        for stmt in render(sql, f) {
            let stmts = match cluster.as_mut() {
                Some(r) => r.statement(&stmt)?,
                None => vec![stmt],
            };
            for stmt in stmts {
                out.push_str(&stmt);
                out.push_str(";\n\n");
            }
        }
    }
    let every_start = every_start_statements(f, layout.cluster.is_some());
    if !every_start.is_empty() {
        out.push_str("\n-- insert deduplication and the salts' TTL (applied at every start)\n");
        for stmt in every_start {
            out.push_str(&stmt);
            out.push_str(";\n\n");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: ServerVersion = ServerVersion {
        major: 18,
        minor: 16,
    };
    const NEW: ServerVersion = ServerVersion {
        major: 26,
        minor: 3,
    };

    #[test]
    fn versions() {
        assert_eq!(ServerVersion::parse("18.16.1"), Some(OLD));
        assert_eq!(ServerVersion::parse("26.3.1.5"), Some(NEW));
        assert_eq!(
            ServerVersion::parse("26"),
            Some(ServerVersion {
                major: 26,
                minor: 0
            })
        );
        assert_eq!(ServerVersion::parse("x"), None);
        assert!(!OLD.features().low_cardinality && !OLD.features().ttl && !OLD.features().dedup);
        assert!(NEW.features().dedup);
        assert!(NEW.features().low_cardinality && NEW.features().codecs && NEW.features().ttl);
    }

    #[test]
    fn old_server_rendering_drops_modern_features() {
        let all = script(OLD, true, &Layout::single("g")).unwrap();
        assert!(!all.contains("LowCardinality"), "{all}");
        assert!(!all.contains("CODEC"));
        assert!(!all.contains("TTL"));
        assert!(all.contains("site String,"));
        assert!(all.contains("timestamp DateTime,"));
    }

    #[test]
    fn new_server_rendering_keeps_them() {
        let all = script(NEW, true, &Layout::single("g")).unwrap();
        assert!(all.contains("site LowCardinality(String)"));
        assert!(all.contains("timestamp DateTime CODEC(Delta, ZSTD(1))"));
        assert!(all.contains("TTL day + INTERVAL 2 DAY"));
        assert!(!all.contains("requires:"));
        assert!(all.contains("non_replicated_deduplication_window"));
        assert!(
            !script(OLD, true, &Layout::single("g"))
                .unwrap()
                .contains("deduplication")
        );
    }

    #[test]
    fn statements_split_and_comments_go() {
        let stmts = render(MIGRATIONS[1].1, NEW.features());
        assert_eq!(stmts.len(), 4);
        assert!(stmts.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn every_schema_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        embedded.push("events_raw_mv.sql".into());
        // Not a migration: the statements the collector runs to close a day (store::closing).
        embedded.push("close_day.sql".into());
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn insert_table_columns_match_event_encoder() {
        // The Null table's column list must be exactly encode::COLUMNS, in order.
        let stmts = render(MIGRATIONS[0].1, OLD.features());
        let create = stmts.iter().find(|s| s.contains("events_in")).unwrap();
        let body = &create[create.find('(').unwrap() + 1..create.rfind(')').unwrap()];
        let cols: Vec<(String, String)> = body
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, t) = l.split_once(' ').unwrap();
                (n.to_string(), t.to_string())
            })
            .collect();
        let want: Vec<(String, String)> = crate::encode::columns_of(1)
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(cols, want);
        // 0006 adds the visit columns and 0009 the engagement ones, to events_in and to events
        // alike.
        for (file, from, to) in [("0006_visits.sql", 25, 29), ("0009_engagement.sql", 29, 33)] {
            let sql = MIGRATIONS.iter().find(|(n, _)| *n == file).unwrap().1;
            added_columns_are(sql, &crate::encode::COLUMNS[from..to]);
        }
        let visits = MIGRATIONS[5].1;
        assert!(!render(visits, OLD.features())[0].contains("IF NOT EXISTS"));
    }

    fn added_columns_are(sql: &str, columns: &[(&str, &str)]) {
        for table in ["events_in", "events"] {
            let stmt = render(sql, NEW.features())
                .into_iter()
                .find(|s| s.starts_with(&format!("ALTER TABLE {table}\n")))
                .unwrap();
            let added: Vec<(String, String)> = stmt
                .lines()
                .filter_map(|l| l.trim().strip_prefix("ADD COLUMN IF NOT EXISTS "))
                .map(|l| {
                    let mut parts = l.split_whitespace();
                    (
                        parts.next().unwrap().to_string(),
                        parts.next().unwrap().to_string(),
                    )
                })
                .collect();
            let want: Vec<(String, String)> = columns
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect();
            assert_eq!(added, want, "{table}");
        }
    }

    #[test]
    fn salts_get_a_ttl_backstop_where_the_server_has_ttl() {
        let old = ServerVersion::parse("18.16").unwrap().features();
        assert!(salt_ttl_statements(old).is_empty());
        let ttl_only = ServerVersion::parse("19.6").unwrap().features();
        assert_eq!(salt_ttl_statements(ttl_only).len(), 1);
        let modern = ServerVersion::parse("26.3").unwrap().features();
        let stmts = salt_ttl_statements(modern);
        assert!(stmts[0].contains("INTERVAL 40 HOUR"), "{stmts:?}");
        assert!(
            stmts[1].contains("merge_with_ttl_timeout = 3600"),
            "{stmts:?}"
        );
        assert!(every_start_statements(modern, false).ends_with(&stmts));
        assert_eq!(every_start_statements(modern, true), stmts);
        // Expired by TTL after its day is over and well before the 48 h promise.
        assert!((24..47).contains(&SALT_TTL_HOURS));
        assert!(u64::from(SALT_TTL_HOURS) * 3600 + u64::from(SALT_TTL_MERGE_SECS) < 47 * 3600);
    }
}
