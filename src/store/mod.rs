//! Store: the ClickHouse side. Connection, server version, migrations, retention, the salts
//! table and closed days. Inserting batches is `deliver`'s job; everything here is control
//! traffic.

pub mod tables;
pub mod cluster;
pub mod schema;
mod lock;
mod migrate;
pub mod salts;
pub mod queries;
pub mod closing;

use clickhouse::Client;

use crate::clock::{date_string, day_of};
use crate::settings::Reader;
pub use cluster::{Cluster, Layout};
pub use migrate::{migrate, migrate_with};
pub use schema::{ServerVersion, render};

/// The `[clickhouse]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Off by default: one server.
    pub cluster: Option<Cluster>,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        let url = r.url("clickhouse.url", "http://127.0.0.1:8123");
        let database = r.identifier("clickhouse.database", "glimpse");
        let user = r.string("clickhouse.user", "default");
        let password = r.string("clickhouse.password", "");
        let name = r.optional_identifier("clickhouse.cluster");
        let nodes = r.optional_identifier("clickhouse.node_cluster");
        let cluster = match (name, nodes) {
            (Some(name), nodes) => Some(Cluster {
                nodes: nodes.unwrap_or_else(|| format!("{name}_nodes")),
                name,
            }),
            (None, Some(_)) => {
                r.error(
                    "clickhouse.node_cluster",
                    "is set, but clickhouse.cluster is not",
                );
                None
            }
            (None, None) => None,
        };
        Settings {
            url,
            database,
            user,
            password,
            cluster,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout {
            database: self.database.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// The `[retention]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Days raw events are kept; 0 = aggregates-only mode: raw events are never stored.
    pub events_days: u32,
    /// Days aggregates are kept; 0 = kept. They are partitioned by month: a month goes once its
    /// last day is this many days old.
    pub aggregates_days: u32,
}

impl Retention {
    pub(crate) fn read(r: &mut Reader) -> Retention {
        Retention {
            events_days: r.bounded("retention.events_days", 30, 0, 36_500) as u32,
            aggregates_days: r.bounded("retention.aggregates_days", 0, 0, 36_500) as u32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("ClickHouse reports version {0:?}, which Glimpse cannot read")]
    Version(String),
    #[error(
        "migration {name} was changed after it was applied (checksum {applied} in the database, {current} now)"
    )]
    ChangedMigration {
        name: String,
        applied: String,
        current: String,
    },
    #[error("ClickHouse cluster: {0}")]
    Cluster(String),
    #[error("another collector has held the lock table {table} for over {secs} s")]
    LockHeld { table: String, secs: u64 },
    #[error(transparent)]
    Render(#[from] cluster::Unsupported),
    #[error("unexpected data in {table}: {detail}")]
    Unexpected { table: &'static str, detail: String },
}

/// A client for `cfg`, without a database (for `CREATE DATABASE`), and one bound to it.
pub fn clients(cfg: &Settings) -> (Client, Client) {
    let server = Client::default()
        .with_url(&cfg.url)
        .with_user(&cfg.user)
        .with_password(&cfg.password)
        // Old servers cannot describe columns the way validation needs; rows are encoded by
        // `encode::Event::encode`, checked against the live table in the integration tests.
        .with_validation(false)
        // 18.x reports an error found mid-stream inside a 200 response unless told to wait.
        .with_setting("wait_end_of_query", "1");
    let server = match cfg.cluster {
        // Acknowledged means stored on every shard the rows went to. Identical blocks are not
        // dropped as retries: only a deduplication token (deliver) says what a retry is; by
        // content, two distinct drop-count or view blocks can be equal. Visitor subqueries run
        // on each shard, which holds all of its visitors' rows.
        Some(_) => server
            .with_setting("insert_distributed_sync", "1")
            .with_setting("insert_deduplicate", "0")
            .with_setting("distributed_product_mode", "local")
            // Reads and inserts prefer the same replica, so a copy is read back as written.
            .with_setting("load_balancing", "in_order"),
        None => server,
    };
    let db = server.clone().with_database(&cfg.database);
    (server, db)
}

/// Whether ClickHouse answers a trivial query, for readiness checks.
pub async fn ping(client: &Client) -> Result<(), StoreError> {
    client.query("SELECT 1").fetch_one::<u8>().await?;
    Ok(())
}

pub async fn server_version(client: &Client) -> Result<ServerVersion, StoreError> {
    let v: String = client.query("SELECT version()").fetch_one().await?;
    ServerVersion::parse(&v).ok_or(StoreError::Version(v))
}

/// Lets the tables an insert reaches recognise a retried block by its deduplication token, and
/// sets the salts' TTL backstop. Run at every start rather than as a migration, so it takes
/// effect after a server upgrade.
pub(crate) async fn apply_every_start(
    db: &Client,
    layout: &Layout,
    version: ServerVersion,
) -> Result<(), StoreError> {
    for stmt in schema::every_start_statements(version.features(), layout.cluster.is_some()) {
        db.query(&stmt).execute().await?;
    }
    Ok(())
}

/// Applies the retention policy: raw rows are copied into `events` only when kept, and whole
/// days older than `events_days` are dropped, with the visitor days made from them. With
/// `events_days == 0`, every raw partition goes. Returns the days dropped from `events`.
pub async fn apply_retention(
    db: &Client,
    layout: &Layout,
    version: ServerVersion,
    events_days: u32,
    now: u64,
) -> Result<Vec<u16>, StoreError> {
    raw_events_view(db, layout, version, events_days > 0).await?;
    let today = day_of(now);
    let mut dropped = Vec::new();
    let parts = layout.system("parts");
    for table in RAW_TABLES {
        let local = layout.local(table);
        for day in partition_days(db, Some(&layout.database), &parts, &local).await? {
            if u32::from(day) + events_days <= u32::from(today) {
                drop_day_partition(db, &layout.alter_target(table), day).await?;
                if table == "events" {
                    dropped.push(day);
                }
            }
        }
    }
    Ok(dropped)
}

/// Tables under the raw events' retention, a day per partition: they hold daily visitor ids.
const RAW_TABLES: [&str; 2] = ["events", "visitor_days"];

/// The views that copy inserted rows into `events`, one per insert table
/// (`schema/events_raw_mv.sql`).
const RAW_VIEWS: [&str; 2] = ["events_raw_mv", "events_intake_raw_mv"];

/// Creates or drops the views that copy inserted rows into `events`. On a cluster, distributed
/// DDL is sent only when this node lacks or has a view, so that a start with a node down does
/// not wait for it.
async fn raw_events_view(
    db: &Client,
    layout: &Layout,
    version: ServerVersion,
    keep: bool,
) -> Result<(), StoreError> {
    let features = version.features();
    let Some(cluster) = &layout.cluster else {
        if keep {
            for stmt in render(schema::EVENTS_RAW_MV, features) {
                db.query(&stmt).execute().await?;
            }
        } else {
            for view in RAW_VIEWS {
                db.query(&format!("DROP TABLE IF EXISTS {view}"))
                    .execute()
                    .await?;
            }
        }
        return Ok(());
    };
    let here: u64 = db
        .query(&format!(
            "SELECT count() FROM system.tables WHERE database = ? AND name IN ('{}')",
            RAW_VIEWS.join("', '")
        ))
        .bind(&layout.database)
        .fetch_one()
        .await?;
    let done = if keep {
        here == RAW_VIEWS.len() as u64
    } else {
        here == 0
    };
    if done {
        return Ok(());
    }
    let stmts = if keep {
        let mut r = cluster::Renderer::new(cluster, &layout.database, features.uuid_paths, &[]);
        let mut out = Vec::new();
        for stmt in render(schema::EVENTS_RAW_MV, features) {
            out.extend(r.statement(&stmt)?);
        }
        out
    } else {
        RAW_VIEWS
            .iter()
            .map(|view| {
                format!(
                    "DROP TABLE IF EXISTS `{}`.{view}{}",
                    layout.database,
                    layout.on_nodes()
                )
            })
            .collect()
    };
    for stmt in stmts {
        db.query(&stmt).execute().await?;
    }
    Ok(())
}

/// Drops the months of every aggregate table whose last day is `aggregates_days` old or more;
/// `0` keeps everything. Returns the (table, `YYYYMM`) partitions dropped.
pub async fn apply_aggregate_retention(
    db: &Client,
    layout: &Layout,
    aggregates_days: u32,
    now: u64,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    let mut dropped = Vec::new();
    if aggregates_days == 0 {
        return Ok(dropped);
    }
    let today = u32::from(day_of(now));
    for &table in schema::AGGREGATE_TABLES {
        let ids = partition_ids(
            db,
            Some(&layout.database),
            &layout.system("parts"),
            &layout.local(table),
        )
        .await?;
        for id in ids {
            let last_day = month_last_day(&id).ok_or_else(|| StoreError::Unexpected {
                table,
                detail: format!("partition id {id:?}"),
            })?;
            if u32::from(last_day) + aggregates_days <= today {
                db.query(&format!(
                    "ALTER TABLE {} DROP PARTITION {id}",
                    layout.alter_target(table)
                ))
                .execute()
                .await?;
                dropped.push((table, id));
            }
        }
    }
    Ok(dropped)
}

/// The last day of a `YYYYMM` partition's month.
fn month_last_day(id: &str) -> Option<u16> {
    if id.len() != 6 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m): (u32, u32) = (id[..4].parse().ok()?, id[4..].parse().ok()?);
    if !(1..=12).contains(&m) {
        return None;
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    parse_partition_id(&format!("{ny:04}{nm:02}01")).map(|first| first - 1)
}

/// Days of the active partitions of a table partitioned by a `Date`.
/// `parts` is `system.parts`, or on a cluster its view over every node (a node that does not
/// answer is skipped: the replicas of its shard hold the same parts, and a partition it alone
/// still holds goes at the next run).
/// `database`: `None` for the client's own, which only a local `system.parts` can use (a
/// cluster view's query runs on other nodes, in their default database).
pub(crate) async fn partition_ids(
    db: &Client,
    database: Option<&str>,
    parts: &str,
    table: &str,
) -> Result<Vec<String>, StoreError> {
    let which = if database.is_some() {
        "?"
    } else {
        "currentDatabase()"
    };
    let mut query = db.query(&format!(
        "SELECT DISTINCT partition_id FROM {parts} \
         WHERE database = {which} AND table = ? AND active ORDER BY partition_id \
         SETTINGS skip_unavailable_shards = 1"
    ));
    if let Some(name) = database {
        query = query.bind(name);
    }
    Ok(query.bind(table).fetch_all().await?)
}

pub(crate) async fn partition_days(
    db: &Client,
    database: Option<&str>,
    parts: &str,
    table: &str,
) -> Result<Vec<u16>, StoreError> {
    partition_ids(db, database, parts, table)
        .await?
        .iter()
        .map(|id| {
            parse_partition_id(id).ok_or_else(|| StoreError::Unexpected {
                table: "system.parts",
                detail: format!("partition id {id:?} of {table}"),
            })
        })
        .collect()
}

/// Partition ids of a Date key are `YYYYMMDD`.
fn parse_partition_id(id: &str) -> Option<u16> {
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (
        id[..4].parse::<i64>().ok()?,
        id[4..6].parse::<i64>().ok()?,
        id[6..].parse::<i64>().ok()?,
    );
    // days_from_civil (Howard Hinnant), the inverse of clock::date_string.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u16::try_from(era * 146_097 + doe - 719_468).ok()
}

/// `table` as [`Layout::alter_target`] names it.
pub(crate) async fn drop_day_partition(
    db: &Client,
    table: &str,
    day: u16,
) -> Result<(), StoreError> {
    let sql = format!("ALTER TABLE {table} DROP PARTITION '{}'", date_string(day));
    db.query(&sql).execute().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_partitions_end_on_their_last_day() {
        let day = |s: &str| parse_partition_id(s).unwrap();
        assert_eq!(month_last_day("202602"), Some(day("20260228")));
        assert_eq!(month_last_day("202412"), Some(day("20241231")));
        assert_eq!(month_last_day("202402"), Some(day("20240229")));
        assert_eq!(month_last_day("2024"), None);
        assert_eq!(month_last_day("202413"), None);
    }

    #[test]
    fn partition_ids_round_trip() {
        for day in [0u16, 10_957, 20_413, 20_778] {
            let id = date_string(day).replace('-', "");
            assert_eq!(parse_partition_id(&id), Some(day));
        }
        assert_eq!(parse_partition_id("all"), None);
    }
}
