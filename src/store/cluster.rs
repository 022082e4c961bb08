//! Cluster mode: the same schema on replicated shards.
//!
//! Every table that holds rows becomes a `Replicated*MergeTree` table named `<table>_local` on
//! each shard, plus a `Distributed` table under the original name, so that every query Glimpse
//! runs (dashboards, both APIs, Grafana, closing days) reads the whole cluster unchanged. The
//! insert tables (`events_intake`, and `events_in` of earlier releases) become `Null` tables on
//! every node behind `Distributed` tables sharded by `visitor_id`; the materialized views run on every node and write the shard's
//! local tables. All of a visitor's rows of a day are therefore on one shard, so the planner's
//! visitor subqueries run shard-locally (`distributed_product_mode = 'local'`).
//!
//! The salts, the migrations log and the record of closed days are replicated to every node
//! instead (one replica set over all nodes): every collector reads the same salts, and every
//! closed day, from whichever node it talks to.
//!
//! Two clusters from the server's `remote_servers` are used. `cluster` has the shards and
//! their replicas (`internal_replication` on): replicated tables are created and altered on it.
//! `nodes` lists every node as a shard of its own: tables that exist once per node (`Null`,
//! `Distributed`, the views) are created and altered on it, which 18.x requires (it refuses an
//! `ALTER ... ON CLUSTER` of a non-replicated table on a cluster with replicated shards), and
//! the cluster-wide views of `system.parts`, `system.mutations` and `system.tables` read every
//! node through it.
//!
//! The migrations are rendered from the single-server files (`schema/`), statement by
//! statement. A table rebuild (a `<table>_rebuild` copy renamed over the original) is not
//! replayed: a cluster is created with the rebuilt definition from the start.

use std::collections::HashMap;

/// The two cluster names of `[clickhouse]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Shards of replicas: replicated tables, `Distributed` reads and inserts.
    pub name: String,
    /// Every node as a shard of its own: per-node DDL and system views.
    pub nodes: String,
}

/// Where Glimpse's tables live: one server, or a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub database: String,
    pub cluster: Option<Cluster>,
}

/// Tables replicated to every node rather than sharded: the salts, the migrations log, and the
/// small record of closed days, which every collector reads whole from its own node.
pub(crate) const EVERYWHERE: &[&str] = &["glimpse_salts", "glimpse_migrations", "closed_days"];
/// Cluster-wide views of system tables, read through the nodes cluster.
pub(crate) const SYSTEM_VIEWS: &[(&str, &str)] = &[
    ("glimpse_cluster_parts", "parts"),
    ("glimpse_cluster_mutations", "mutations"),
    ("glimpse_cluster_tables", "tables"),
];

impl Layout {
    pub fn single(database: &str) -> Layout {
        Layout {
            database: database.to_owned(),
            cluster: None,
        }
    }

    /// The table that holds this node's rows of `table`.
    pub fn local(&self, table: &str) -> String {
        match &self.cluster {
            Some(_) if !EVERYWHERE.contains(&table) => format!("{table}_local"),
            _ => table.to_owned(),
        }
    }

    /// ` ON CLUSTER <cluster>`, for replicated tables (empty on one server).
    pub fn on_cluster(&self) -> String {
        self.cluster
            .as_ref()
            .map_or_else(String::new, |c| format!(" ON CLUSTER `{}`", c.name))
    }

    /// ` ON CLUSTER <nodes>`, for what exists once per node (empty on one server).
    pub(crate) fn on_nodes(&self) -> String {
        self.cluster
            .as_ref()
            .map_or_else(String::new, |c| format!(" ON CLUSTER `{}`", c.nodes))
    }

    /// The table to name in an `ALTER` of `table`'s rows: on a cluster, its local tables on
    /// every shard (a replicated ALTER reaches the other replicas).
    pub(crate) fn alter_target(&self, table: &str) -> String {
        match &self.cluster {
            Some(c) if !EVERYWHERE.contains(&table) => {
                format!("`{}`.{table}_local ON CLUSTER `{}`", self.database, c.name)
            }
            _ => table.to_owned(),
        }
    }

    /// `system.<name>` on one server; its cluster-wide view on a cluster.
    pub fn system(&self, name: &str) -> String {
        match &self.cluster {
            Some(_) => SYSTEM_VIEWS
                .iter()
                .find(|(_, s)| *s == name)
                .map_or_else(|| format!("system.{name}"), |(v, _)| v.to_string()),
            None => format!("system.{name}"),
        }
    }
}

/// What a migration statement does to a table, as far as cluster rendering needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `Null` locally, `Distributed` in front.
    Null,
    /// Replicated shard-local table, `Distributed` in front.
    Sharded,
    /// Replicated to every node.
    Everywhere,
    View,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot render for a cluster: {0}")]
pub struct Unsupported(pub String);

/// Renders migration statements (already rendered for the server's features) for a cluster.
pub(crate) struct Renderer<'a> {
    cluster: &'a Cluster,
    db: &'a str,
    uuid_paths: bool,
    kinds: HashMap<String, Kind>,
    /// `table` → the definition (after the name) of its `<table>_rebuild`.
    rebuilt: HashMap<String, String>,
}

impl<'a> Renderer<'a> {
    /// `all` holds every statement of every migration, so that a table later rebuilt is
    /// created with its final definition. `uuid_paths`: the server's replicated tables take
    /// `{uuid}` in their paths (Atomic databases).
    pub fn new(cluster: &'a Cluster, db: &'a str, uuid_paths: bool, all: &[String]) -> Self {
        let mut rebuilt = HashMap::new();
        for stmt in all {
            if let Some((name, rest)) = create_table(stmt)
                && let Some(base) = name.strip_suffix("_rebuild")
            {
                rebuilt.insert(base.to_owned(), rest.to_owned());
            }
        }
        Renderer {
            cluster,
            db,
            uuid_paths,
            kinds: HashMap::new(),
            rebuilt,
        }
    }

    /// What comes before the migrations: the database, the migrations log (replicated to
    /// every node) and the cluster-wide system views.
    pub fn setup(&mut self) -> Result<Vec<String>, Unsupported> {
        let (db, nodes) = (self.db, &self.cluster.nodes);
        let mut out = vec![format!(
            "CREATE DATABASE IF NOT EXISTS `{db}` ON CLUSTER `{nodes}`"
        )];
        out.extend(self.statement(super::tables::MIGRATIONS_TABLE)?);
        for (view, table) in SYSTEM_VIEWS {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.{view} ON CLUSTER `{nodes}` AS system.{table} \
                 ENGINE = Distributed(`{nodes}`, system, {table})"
            ));
        }
        Ok(out)
    }

    /// The cluster statements for one single-server statement (none for a rebuild step).
    pub fn statement(&mut self, stmt: &str) -> Result<Vec<String>, Unsupported> {
        let db = self.db;
        let (nodes, cluster) = (&self.cluster.nodes, &self.cluster.name);
        if let Some((name, rest)) = create_table(stmt) {
            if name.ends_with("_rebuild") {
                return Ok(Vec::new());
            }
            let rest = self
                .rebuilt
                .get(name)
                .map_or(rest, String::as_str)
                .to_owned();
            return self.create_table(name, &rest);
        }
        if let Some((name, target, select)) = create_view(stmt) {
            self.kinds.insert(name.to_owned(), Kind::View);
            let target = self.local(target);
            let select = qualify_from(select, |t| format!("`{db}`.{}", self.local(t)))?;
            return Ok(vec![format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS `{db}`.{name} ON CLUSTER `{nodes}` TO `{db}`.{target} AS{select}"
            )]);
        }
        if let Some(rest) = stmt.strip_prefix("ALTER TABLE ") {
            let (name, change) = split_name(rest);
            return Ok(match self.kind(name) {
                Kind::Sharded => vec![
                    format!("ALTER TABLE `{db}`.{name}_local ON CLUSTER `{cluster}`{change}"),
                    format!("ALTER TABLE `{db}`.{name} ON CLUSTER `{nodes}`{change}"),
                ],
                Kind::Null => vec![
                    format!("ALTER TABLE `{db}`.{name}_local ON CLUSTER `{nodes}`{change}"),
                    format!("ALTER TABLE `{db}`.{name} ON CLUSTER `{nodes}`{change}"),
                ],
                // A replicated ALTER reaches every replica from one.
                Kind::Everywhere => vec![format!("ALTER TABLE `{db}`.{name}{change}")],
                Kind::View => return Err(Unsupported(stmt.to_owned())),
            });
        }
        if let Some(name) = stmt
            .strip_prefix("DROP TABLE IF EXISTS ")
            .or_else(|| stmt.strip_prefix("DROP TABLE "))
        {
            let name = name.trim();
            if self.is_rebuild_step(name) {
                return Ok(Vec::new());
            }
            let mut out = vec![format!(
                "DROP TABLE IF EXISTS `{db}`.{name} ON CLUSTER `{nodes}`"
            )];
            match self.kinds.remove(name) {
                Some(Kind::Sharded) => out.push(format!(
                    "DROP TABLE IF EXISTS `{db}`.{name}_local ON CLUSTER `{cluster}`"
                )),
                Some(Kind::Null) => out.push(format!(
                    "DROP TABLE IF EXISTS `{db}`.{name}_local ON CLUSTER `{nodes}`"
                )),
                _ => {}
            }
            return Ok(out);
        }
        // The copy and the swap of a rebuild.
        let rebuild_step = (stmt.starts_with("INSERT INTO ") || stmt.starts_with("RENAME TABLE "))
            && stmt
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| self.is_rebuild_step(w));
        if rebuild_step {
            return Ok(Vec::new());
        }
        Err(Unsupported(stmt.to_owned()))
    }

    fn create_table(&mut self, name: &str, rest: &str) -> Result<Vec<String>, Unsupported> {
        let db = self.db;
        let (nodes, cluster) = (&self.cluster.nodes, &self.cluster.name);
        let (columns, engine) = rest
            .split_once("ENGINE = ")
            .ok_or_else(|| Unsupported(format!("table {name} without ENGINE")))?;
        let distributed = |key: &str| {
            format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.{name} ON CLUSTER `{nodes}` AS `{db}`.{name}_local \
                 ENGINE = Distributed(`{cluster}`, `{db}`, {name}_local, {key})"
            )
        };
        if engine.trim_start().starts_with("Null") {
            self.kinds.insert(name.to_owned(), Kind::Null);
            return Ok(vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS `{db}`.{name}_local ON CLUSTER `{nodes}`{columns}ENGINE = {engine}"
                ),
                distributed(shard_key(name)),
            ]);
        }
        let family_end = engine
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(engine.len());
        let family = &engine[..family_end];
        if !family.ends_with("MergeTree") || family.starts_with("Replicated") {
            return Err(Unsupported(format!("table {name} with engine {family}")));
        }
        let mut after = &engine[family_end..];
        let mut args = String::new();
        if let Some(inner) = after.strip_prefix('(') {
            let close = inner
                .find(')')
                .ok_or_else(|| Unsupported(format!("table {name}: unclosed engine arguments")))?;
            if !inner[..close].trim().is_empty() {
                args = format!(", {}", &inner[..close]);
            }
            after = &inner[close + 1..];
        }
        let everywhere = EVERYWHERE.contains(&name);
        let (path, replica) = match (everywhere, self.uuid_paths) {
            (true, true) => (
                "/clickhouse/tables/{uuid}/all".to_owned(),
                "{shard}-{replica}",
            ),
            (true, false) => (
                format!("/clickhouse/tables/all/{db}/{name}"),
                "{shard}-{replica}",
            ),
            (false, true) => ("/clickhouse/tables/{uuid}/{shard}".to_owned(), "{replica}"),
            (false, false) => (
                format!("/clickhouse/tables/{{shard}}/{db}/{name}_local"),
                "{replica}",
            ),
        };
        let engine = format!("Replicated{family}('{path}', '{replica}'{args}){after}");
        if everywhere {
            self.kinds.insert(name.to_owned(), Kind::Everywhere);
            return Ok(vec![format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.{name} ON CLUSTER `{nodes}`{columns}ENGINE = {engine}"
            )]);
        }
        self.kinds.insert(name.to_owned(), Kind::Sharded);
        Ok(vec![
            format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.{name}_local ON CLUSTER `{cluster}`{columns}ENGINE = {engine}"
            ),
            distributed(shard_key(name)),
        ])
    }

    /// Tables created before this renderer saw them (the raw-events view's source and target)
    /// are known by name.
    fn kind(&self, name: &str) -> Kind {
        match self.kinds.get(name) {
            Some(k) => *k,
            None if name == super::tables::INSERT_TABLE
                || name == super::tables::LEGACY_INSERT_TABLE =>
            {
                Kind::Null
            }
            None if EVERYWHERE.contains(&name) => Kind::Everywhere,
            None => Kind::Sharded,
        }
    }

    fn local(&self, table: &str) -> String {
        match self.kind(table) {
            Kind::Everywhere | Kind::View => table.to_owned(),
            Kind::Null | Kind::Sharded => format!("{table}_local"),
        }
    }

    fn is_rebuild_step(&self, name: &str) -> bool {
        name.strip_suffix("_rebuild")
            .or_else(|| name.strip_suffix("_0002"))
            .is_some_and(|base| self.rebuilt.contains_key(base))
    }
}

/// Rows of one visitor stay on one shard; other tables spread evenly.
fn shard_key(table: &str) -> &'static str {
    match table {
        "events_intake" | "events_in" | "events" | "visitor_days" => "visitor_id",
        _ => "rand()",
    }
}

/// `CREATE TABLE [IF NOT EXISTS] name<rest>` → (name, rest).
fn create_table(stmt: &str) -> Option<(&str, &str)> {
    let rest = stmt.strip_prefix("CREATE TABLE ")?;
    let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
    Some(split_name(rest))
}

/// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name TO target AS<select>`.
fn create_view(stmt: &str) -> Option<(&str, &str, &str)> {
    let rest = stmt.strip_prefix("CREATE MATERIALIZED VIEW ")?;
    let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
    let (name, rest) = split_name(rest);
    let rest = rest.trim_start().strip_prefix("TO ")?;
    let (target, rest) = split_name(rest);
    let select = rest.trim_start().strip_prefix("AS")?;
    Some((name, target, select))
}

fn split_name(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// The view's query with its one `FROM <table>` read from `local(table)` in the database.
fn qualify_from(select: &str, local: impl Fn(&str) -> String) -> Result<String, Unsupported> {
    let at = select
        .find("FROM ")
        .ok_or_else(|| Unsupported("a view without FROM".into()))?;
    let after = &select[at + 5..];
    let (table, rest) = split_name(after);
    if select[at + 5..].contains("FROM ") {
        return Err(Unsupported("a view reading more than one table".into()));
    }
    Ok(format!("{}FROM {}{rest}", &select[..at], local(table)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{EVENTS_RAW_MV, MIGRATIONS, ServerVersion, render};

    fn cluster() -> Cluster {
        Cluster {
            name: "shards".into(),
            nodes: "nodes".into(),
        }
    }

    fn all(version: &str) -> Vec<String> {
        let f = ServerVersion::parse(version).unwrap().features();
        MIGRATIONS.iter().flat_map(|(_, s)| render(s, f)).collect()
    }

    #[test]
    fn every_migration_renders_for_a_cluster() {
        for version in ["18.16", "26.3"] {
            let stmts = all(version);
            let c = cluster();
            let mut r = Renderer::new(&c, "g", version != "18.16", &stmts);
            let mut out = Vec::new();
            for s in &stmts {
                out.extend(r.statement(s).unwrap());
            }
            let f = ServerVersion::parse(version).unwrap().features();
            for s in render(EVENTS_RAW_MV, f) {
                out.extend(r.statement(&s).unwrap());
            }
            let text = out.join(";\n");
            assert!(
                !text.contains("_rebuild") && !text.contains("RENAME"),
                "{text}"
            );
            // Every statement is distributed DDL, but for ALTERs of tables replicated to every
            // node, which replication carries from one node to the others.
            for s in &out {
                assert!(
                    s.contains(" ON CLUSTER ") || s.starts_with("ALTER TABLE `g`.closed_days "),
                    "{s}"
                );
            }
            assert!(
                text.contains("ReplicatedMergeTree('/clickhouse/tables/")
                    && text.contains("closed_days")
            );
            assert!(!text.contains("closed_days_local"), "{text}");
            assert!(text.contains(
                "CREATE TABLE IF NOT EXISTS `g`.events ON CLUSTER `nodes` AS `g`.events_local ENGINE = Distributed(`shards`, `g`, events_local, visitor_id)"
            ));
            assert!(text.contains(
                "CREATE TABLE IF NOT EXISTS `g`.events_in ON CLUSTER `nodes` AS `g`.events_in_local ENGINE = Distributed(`shards`, `g`, events_in_local, visitor_id)"
            ));
            assert!(text.contains("TO `g`.stats_hourly_local AS"), "{text}");
            assert!(text.contains("FROM `g`.events_in_local\n"), "{text}");
            assert!(text.contains("TO `g`.events_local AS\nSELECT\n    timestamp, site,"));
            assert!(
                text.contains("engaged_first\nFROM `g`.events_in_local"),
                "{text}"
            );
            // The daily rollup's insert table is a Null table behind a Distributed one, and
            // its view fills the shard-local aggregate.
            assert!(text.contains(
                "CREATE TABLE IF NOT EXISTS `g`.stats_daily_in ON CLUSTER `nodes` AS `g`.stats_daily_in_local ENGINE = Distributed(`shards`, `g`, stats_daily_in_local, rand())"
            ));
            assert!(text.contains("TO `g`.stats_daily_local AS\nSELECT\n    site,\n    day,"));
            // The rebuilt layout from the start.
            assert!(text.contains("SETTINGS index_granularity = 32"), "{text}");
            if version == "18.16" {
                assert!(text.contains("ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/g/stats_hourly_local', '{replica}')"), "{text}");
                assert!(text.contains("ReplicatedMergeTree('/clickhouse/tables/all/g/glimpse_salts', '{shard}-{replica}')"));
                assert!(text.contains("ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/g/dropped_daily_local', '{replica}', events)"));
            } else {
                assert!(text.contains("ReplicatedAggregatingMergeTree('/clickhouse/tables/{uuid}/{shard}', '{replica}')"));
            }
            assert!(
                text.contains("ALTER TABLE `g`.events_in_local ON CLUSTER `nodes`\n    ADD COLUMN")
            );
            assert!(
                text.contains("ALTER TABLE `g`.events_local ON CLUSTER `shards`\n    ADD COLUMN")
            );
        }
    }

    #[test]
    fn layout_names() {
        let one = Layout::single("g");
        assert_eq!(one.local("events"), "events");
        assert_eq!(one.on_cluster(), "");
        assert_eq!(one.system("parts"), "system.parts");
        let many = Layout {
            database: "g".into(),
            cluster: Some(cluster()),
        };
        assert_eq!(many.local("events"), "events_local");
        assert_eq!(many.local("glimpse_salts"), "glimpse_salts");
        assert_eq!(many.on_cluster(), " ON CLUSTER `shards`");
        assert_eq!(many.on_nodes(), " ON CLUSTER `nodes`");
        assert_eq!(many.system("mutations"), "glimpse_cluster_mutations");
    }

    #[test]
    fn what_cannot_be_rendered_is_an_error() {
        let c = cluster();
        let mut r = Renderer::new(&c, "g", false, &[]);
        assert!(r.statement("OPTIMIZE TABLE events FINAL").is_err());
        assert!(
            r.statement("CREATE TABLE t (x UInt8) ENGINE = Log")
                .is_err()
        );
    }
}
