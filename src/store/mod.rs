//! Store: the ClickHouse side. Connection, server version, migrations, retention, the salts
//! table and closed days. Inserting batches is `deliver`'s job; everything here is control
//! traffic.

pub mod closing;
pub mod queries;
pub mod salts;
pub mod schema;

use clickhouse::Client;

use crate::clock::{date_string, day_of};
use crate::settings::Reader;
pub use schema::{ServerVersion, render};

/// The `[clickhouse]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            url: r.url("clickhouse.url", "http://127.0.0.1:8123"),
            database: r.identifier("clickhouse.database", "glimpse"),
            user: r.string("clickhouse.user", "default"),
            password: r.string("clickhouse.password", ""),
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

/// Creates the database and applies every migration not yet recorded. Safe to run at every start
/// and from several collectors: each statement is idempotent, and a migration is recorded only
/// after all its statements succeeded.
pub async fn migrate(
    server: &Client,
    db: &Client,
    database: &str,
    version: ServerVersion,
) -> Result<Vec<String>, StoreError> {
    migrate_with(server, db, database, version, schema::MIGRATIONS).await
}

/// `migrate` with a given list: tests use a prefix of it to stand for an older release.
pub async fn migrate_with(
    server: &Client,
    db: &Client,
    database: &str,
    version: ServerVersion,
    migrations: &[(&str, &str)],
) -> Result<Vec<String>, StoreError> {
    server
        .query(&format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
        .execute()
        .await?;
    db.query(
        "CREATE TABLE IF NOT EXISTS glimpse_migrations \
         (name String, checksum String, applied_at DateTime DEFAULT now()) \
         ENGINE = MergeTree ORDER BY name",
    )
    .execute()
    .await?;
    let applied: Vec<(String, String)> = db
        .query("SELECT name, checksum FROM glimpse_migrations")
        .fetch_all()
        .await?;
    let features = version.features();
    let mut ran = Vec::new();
    for (name, sql) in migrations {
        let checksum = blake3::hash(sql.as_bytes()).to_hex()[..16].to_string();
        if let Some((_, recorded)) = applied.iter().find(|(n, _)| n == name) {
            if *recorded != checksum {
                return Err(StoreError::ChangedMigration {
                    name: name.to_string(),
                    applied: recorded.clone(),
                    current: checksum,
                });
            }
            continue;
        }
        for stmt in render(sql, features) {
            db.query(&stmt).execute().await?;
        }
        db.query("INSERT INTO glimpse_migrations (name, checksum) VALUES (?, ?)")
            .bind(*name)
            .bind(&checksum)
            .execute()
            .await?;
        tracing::info!(migration = name, "applied");
        ran.push(name.to_string());
    }
    Ok(ran)
}

/// Lets the tables an insert reaches recognise a retried block by its deduplication token, and
/// sets the salts' TTL backstop. Run at every start rather than as a migration, so it takes
/// effect after a server upgrade.
pub async fn apply_every_start(db: &Client, version: ServerVersion) -> Result<(), StoreError> {
    for stmt in schema::every_start_statements(version.features()) {
        db.query(&stmt).execute().await?;
    }
    Ok(())
}

/// Applies the retention policy: raw rows are copied into `events` only when kept, and whole
/// days older than `events_days` are dropped. With `events_days == 0`, every raw partition goes.
pub async fn apply_retention(
    db: &Client,
    version: ServerVersion,
    events_days: u32,
    now: u64,
) -> Result<Vec<u16>, StoreError> {
    if events_days > 0 {
        for stmt in render(schema::EVENTS_RAW_MV, version.features()) {
            db.query(&stmt).execute().await?;
        }
    } else {
        db.query("DROP TABLE IF EXISTS events_raw_mv")
            .execute()
            .await?;
    }
    let today = day_of(now);
    let mut dropped = Vec::new();
    for day in partition_days(db, "events").await? {
        if u32::from(day) + events_days <= u32::from(today) {
            drop_day_partition(db, "events", day).await?;
            dropped.push(day);
        }
    }
    Ok(dropped)
}

/// Drops the months of every aggregate table whose last day is `aggregates_days` old or more;
/// `0` keeps everything. Returns the (table, `YYYYMM`) partitions dropped.
pub async fn apply_aggregate_retention(
    db: &Client,
    aggregates_days: u32,
    now: u64,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    let mut dropped = Vec::new();
    if aggregates_days == 0 {
        return Ok(dropped);
    }
    let today = u32::from(day_of(now));
    for &table in schema::AGGREGATE_TABLES {
        let ids: Vec<String> = db
            .query(
                "SELECT DISTINCT partition_id FROM system.parts \
                 WHERE database = currentDatabase() AND table = ? AND active",
            )
            .bind(table)
            .fetch_all()
            .await?;
        for id in ids {
            let last_day = month_last_day(&id).ok_or_else(|| StoreError::Unexpected {
                table,
                detail: format!("partition id {id:?}"),
            })?;
            if u32::from(last_day) + aggregates_days <= today {
                db.query(&format!("ALTER TABLE {table} DROP PARTITION {id}"))
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
pub(crate) async fn partition_days(
    db: &Client,
    table: &'static str,
) -> Result<Vec<u16>, StoreError> {
    let ids: Vec<String> = db
        .query(
            "SELECT DISTINCT partition_id FROM system.parts \
             WHERE database = currentDatabase() AND table = ? AND active ORDER BY partition_id",
        )
        .bind(table)
        .fetch_all()
        .await?;
    ids.iter()
        .map(|id| {
            parse_partition_id(id).ok_or_else(|| StoreError::Unexpected {
                table,
                detail: format!("partition id {id:?}"),
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

pub(crate) async fn drop_day_partition(
    db: &Client,
    table: &'static str,
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
