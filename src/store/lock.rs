//! A lock that one collector at a time holds: a table that only one `CREATE` can make. On a
//! cluster it is a replicated table with a fixed path and replica name in ZooKeeper, so a second
//! `CREATE` fails on any node; on one server a plain table, whose second `CREATE` fails.
//! Migrations take it on a cluster; the creation of a day's salt takes it everywhere.

use std::time::{Duration, Instant};

use clickhouse::Client;

use super::StoreError;
use super::cluster::Layout;
use crate::deliver::insert::server_code;

/// 57 TABLE_ALREADY_EXISTS, 253 REPLICA_IS_ALREADY_EXIST: the lock is held. It is being released
/// while we look: 999 KEEPER_EXCEPTION "node doesn't exist", or on 18.x 60 UNKNOWN_TABLE, which a
/// `CREATE` meets when the same name is being dropped.
const HELD: &[u32] = &[57, UNKNOWN_TABLE, 253, 999];
const UNKNOWN_TABLE: u32 = 60;

/// What a lock guards, with how long it may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kind {
    /// The lock's table is `glimpse_{name}_lock`.
    pub name: &'static str,
    /// A lock older than this was left by a collector that died holding it.
    pub stale_after: Duration,
    /// How long to wait before giving up: longer than `stale_after`, so that a lock left by a
    /// crash is broken first.
    pub wait: Duration,
    /// Between two tries.
    pub retry: Duration,
}

pub(crate) struct Lock {
    table: String,
    sync: bool,
}

impl Lock {
    pub(crate) async fn acquire(
        db: &Client,
        layout: &Layout,
        kind: Kind,
    ) -> Result<Lock, StoreError> {
        let database = &layout.database;
        let table = format!("glimpse_{}_lock", kind.name);
        let create = match layout.cluster {
            Some(_) => format!(
                "CREATE TABLE {table} (at DateTime) \
                 ENGINE = ReplicatedMergeTree('/clickhouse/glimpse/{database}/{}_lock', 'holder') \
                 ORDER BY at",
                kind.name
            ),
            None => format!("CREATE TABLE {table} (at DateTime) ENGINE = Memory"),
        };
        // Modern servers drop a replicated table lazily unless told to wait.
        let sync = match layout.cluster {
            Some(_) => super::server_version(db).await?.features().uuid_paths,
            None => false,
        };
        let start = Instant::now();
        loop {
            match db.query(&create).execute().await {
                Ok(()) => return Ok(Lock { table, sync }),
                Err(clickhouse::error::Error::BadResponse(msg))
                    if server_code(&msg).is_some_and(|c| HELD.contains(&c)) => {}
                // 18.x may close the connection after an error answer, and the next request on
                // it fails to be sent: ask again. (Had such a CREATE run, the lock would be
                // ours and held until it is stale: a far rarer case, and it heals.)
                Err(clickhouse::error::Error::Network(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if start.elapsed() > kind.wait {
                return Err(StoreError::LockHeld {
                    table,
                    secs: kind.wait.as_secs(),
                });
            }
            match break_if_stale(db, layout, &table, kind).await {
                Err(StoreError::ClickHouse(clickhouse::error::Error::Network(_))) | Ok(()) => {}
                // 18.x: reading `system.tables` while the lock is dropped, it went as we looked.
                Err(StoreError::ClickHouse(clickhouse::error::Error::BadResponse(msg)))
                    if server_code(&msg) == Some(UNKNOWN_TABLE) => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(kind.retry).await;
        }
    }

    /// Releases the lock after the work it guarded, whatever that work's `outcome`; the work's
    /// error comes first, then the release's.
    pub(crate) async fn release_after<T>(
        self,
        db: &Client,
        outcome: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let released = self.release(db).await;
        let value = outcome?;
        released?;
        Ok(value)
    }

    async fn release(self, db: &Client) -> Result<(), StoreError> {
        let sync = if self.sync { " SYNC" } else { "" };
        let sql = format!("DROP TABLE IF EXISTS {}{sync}", self.table);
        // Once more if the request could not be sent (see `acquire`).
        match db.query(&sql).execute().await {
            Err(clickhouse::error::Error::Network(_)) => db.query(&sql).execute().await?,
            other => other?,
        }
        Ok(())
    }
}

/// A lock held far longer than its work takes belongs to a collector that died: drop it
/// wherever it is.
async fn break_if_stale(
    db: &Client,
    layout: &Layout,
    table: &str,
    kind: Kind,
) -> Result<(), StoreError> {
    let ages: Vec<u64> = match layout.cluster {
        Some(_) => {
            db.query(
                "SELECT toUInt64(now() - ctime) FROM system.zookeeper \
                 WHERE path = ? AND name = ?",
            )
            .bind(format!("/clickhouse/glimpse/{}", layout.database))
            .bind(format!("{}_lock", kind.name))
            .fetch_all()
            .await?
        }
        None => {
            db.query(
                "SELECT toUInt64(now() - metadata_modification_time) FROM system.tables \
                 WHERE database = ? AND name = ?",
            )
            .bind(&layout.database)
            .bind(table)
            .fetch_all()
            .await?
        }
    };
    if ages.iter().any(|&a| a > kind.stale_after.as_secs()) {
        tracing::warn!(
            lock = table,
            "breaking a lock left by a collector that stopped"
        );
        db.query(&format!(
            "DROP TABLE IF EXISTS `{}`.{table}{}",
            layout.database,
            layout.on_nodes()
        ))
        .execute()
        .await?;
    }
    Ok(())
}
