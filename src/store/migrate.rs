//! Applying `schema/`'s migrations, once, to one server or to a whole cluster.

use std::time::{Duration, Instant};

use clickhouse::Client;

use super::StoreError;
use super::cluster::{Cluster, Layout, Renderer, SYSTEM_VIEWS};
use super::schema::{self, MIGRATIONS_TABLE, ServerVersion, render};
use crate::deliver::insert::server_code;

/// How long a collector waits for another one's migrations before giving up: longer than a
/// lock takes to be stale, so a lock left by a crash is broken first.
const LOCK_WAIT: Duration = Duration::from_secs(900);
/// A lock older than this was left by a collector that died while migrating.
const LOCK_STALE_SECS: u64 = 600;
/// 44 ILLEGAL_COLUMN: "column with this name already exists" on servers without
/// `ADD COLUMN IF NOT EXISTS`, when a migration that added it is run again.
const COLUMN_EXISTS: u32 = 44;
/// 57 TABLE_ALREADY_EXISTS, 253 REPLICA_IS_ALREADY_EXIST: the migration lock is held. 999
/// KEEPER_EXCEPTION "node doesn't exist": it is being released while we look.
const LOCK_HELD: &[u32] = &[57, 253, 999];

/// Creates the database and applies every migration not yet recorded. Safe to run at every start
/// and from several collectors: on one server each statement is idempotent; on a cluster one
/// collector at a time migrates. A migration is recorded only after all its statements
/// succeeded.
pub async fn migrate(
    server: &Client,
    db: &Client,
    layout: &Layout,
    version: ServerVersion,
) -> Result<Vec<String>, StoreError> {
    migrate_with(server, db, layout, version, schema::MIGRATIONS).await
}

/// `migrate` with a given list: tests use a prefix of it to stand for an older release.
pub async fn migrate_with(
    server: &Client,
    db: &Client,
    layout: &Layout,
    version: ServerVersion,
    migrations: &[(&str, &str)],
) -> Result<Vec<String>, StoreError> {
    match &layout.cluster {
        None => migrate_server(server, db, &layout.database, version, migrations).await,
        Some(cluster) => migrate_cluster(server, db, layout, cluster, version, migrations).await,
    }
}

async fn migrate_server(
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
    db.query(MIGRATIONS_TABLE).execute().await?;
    let pending = pending(db, migrations).await?;
    let features = version.features();
    let mut ran = Vec::new();
    for (name, sql, checksum) in pending {
        for stmt in render(sql, features) {
            db.query(&stmt).execute().await?;
        }
        record(db, name, &checksum).await?;
        ran.push(name.to_string());
    }
    Ok(ran)
}

/// The migrations not recorded yet, with their checksums; an error if an applied one changed.
async fn pending<'m>(
    db: &Client,
    migrations: &'m [(&'m str, &'m str)],
) -> Result<Vec<(&'m str, &'m str, String)>, StoreError> {
    let applied: Vec<(String, String)> = db
        .query("SELECT DISTINCT name, checksum FROM glimpse_migrations")
        .fetch_all()
        .await?;
    let mut out = Vec::new();
    for (name, sql) in migrations {
        let checksum = checksum(sql);
        match applied.iter().find(|(n, _)| n == name) {
            Some((_, recorded)) if *recorded != checksum => {
                return Err(StoreError::ChangedMigration {
                    name: name.to_string(),
                    applied: recorded.clone(),
                    current: checksum,
                });
            }
            Some(_) => {}
            None => out.push((*name, *sql, checksum)),
        }
    }
    Ok(out)
}

fn checksum(sql: &str) -> String {
    blake3::hash(sql.as_bytes()).to_hex()[..16].to_string()
}

async fn record(db: &Client, name: &str, checksum: &str) -> Result<(), StoreError> {
    db.query("INSERT INTO glimpse_migrations (name, checksum) VALUES (?, ?)")
        .bind(name)
        .bind(checksum)
        .execute()
        .await?;
    tracing::info!(migration = name, "applied");
    Ok(())
}

async fn migrate_cluster(
    server: &Client,
    db: &Client,
    layout: &Layout,
    cluster: &Cluster,
    version: ServerVersion,
    migrations: &[(&str, &str)],
) -> Result<Vec<String>, StoreError> {
    check_clusters(server, cluster).await?;
    let database = &layout.database;
    // A restart finds everything in place and sends no distributed DDL, which would wait for
    // every node: a collector restarts while a node is down.
    if up_to_date(server, db, database, migrations).await? {
        return Ok(Vec::new());
    }
    server
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS `{database}`{}",
            layout.on_nodes()
        ))
        .execute()
        .await?;
    let lock = Lock::acquire(db, layout, version).await?;
    let result = migrate_locked(db, layout, cluster, version, migrations).await;
    let released = lock.release(db).await;
    let ran = result?;
    released?;
    Ok(ran)
}

/// Whether the migrations table and the system views exist here and every migration is
/// recorded.
async fn up_to_date(
    server: &Client,
    db: &Client,
    database: &str,
    migrations: &[(&str, &str)],
) -> Result<bool, StoreError> {
    let names: Vec<String> = server
        .query("SELECT name FROM system.tables WHERE database = ?")
        .bind(database)
        .fetch_all()
        .await?;
    let present = |t: &str| names.iter().any(|n| n == t);
    if !present("glimpse_migrations") || !SYSTEM_VIEWS.iter().all(|(v, _)| present(v)) {
        return Ok(false);
    }
    Ok(pending(db, migrations).await?.is_empty())
}

async fn migrate_locked(
    db: &Client,
    layout: &Layout,
    cluster: &Cluster,
    version: ServerVersion,
    migrations: &[(&str, &str)],
) -> Result<Vec<String>, StoreError> {
    let features = version.features();
    let database = &layout.database;
    let rendered: Vec<Vec<String>> = migrations
        .iter()
        .map(|(_, sql)| render(sql, features))
        .collect();
    let all: Vec<String> = rendered.iter().flatten().cloned().collect();
    let mut renderer = Renderer::new(cluster, database, features.uuid_paths, &all);
    // The database exists already (created before taking the lock).
    for stmt in renderer.setup()?.into_iter().skip(1) {
        execute(db, &stmt).await?;
    }
    // Another collector may have just recorded a migration on another replica.
    execute(db, "SYSTEM SYNC REPLICA glimpse_migrations").await?;
    let pending = pending(db, migrations).await?;
    let mut ran = Vec::new();
    for ((name, _), stmts) in migrations.iter().zip(&rendered) {
        // Every statement goes through the renderer, applied or not: it learns the tables.
        let mut cluster_stmts = Vec::new();
        for stmt in stmts {
            cluster_stmts.extend(renderer.statement(stmt)?);
        }
        let Some((_, _, checksum)) = pending.iter().find(|(n, _, _)| n == name) else {
            continue;
        };
        for stmt in cluster_stmts {
            match execute(db, &stmt).await {
                Ok(()) => {}
                // A migration cut short and run again finds its first columns added.
                Err(clickhouse::error::Error::BadResponse(msg))
                    if !features.add_column_if_not_exists
                        && stmt.contains("ADD COLUMN")
                        && server_code(&msg) == Some(COLUMN_EXISTS) => {}
                Err(e) => return Err(e.into()),
            }
        }
        record(db, name, checksum).await?;
        ran.push(name.to_string());
    }
    Ok(ran)
}

/// Runs an idempotent statement, once more if the request could not be sent: 18.x may close a
/// connection after an error answer (a tolerated one included), and the pool hands it out again.
async fn execute(db: &Client, sql: &str) -> Result<(), clickhouse::error::Error> {
    match db.query(sql).execute().await {
        Err(clickhouse::error::Error::Network(_)) => db.query(sql).execute().await,
        other => other,
    }
}

/// Both clusters exist, and the nodes cluster has every node of the cluster, one per shard.
async fn check_clusters(server: &Client, cluster: &Cluster) -> Result<(), StoreError> {
    let rows: Vec<(String, u64, u32)> = server
        .query(
            "SELECT cluster, count(), max(replica_num) FROM system.clusters \
             WHERE cluster IN (?, ?) GROUP BY cluster",
        )
        .bind(&cluster.name)
        .bind(&cluster.nodes)
        .fetch_all()
        .await?;
    let find = |name: &str| rows.iter().find(|(c, _, _)| c == name);
    let problem = match (find(&cluster.name), find(&cluster.nodes)) {
        (None, _) => format!(
            "clickhouse.cluster {:?} is not in this server's remote_servers",
            cluster.name
        ),
        (_, None) => format!(
            "clickhouse.node_cluster {:?} is not in this server's remote_servers: it lists every \
             node of {:?} as a shard of its own",
            cluster.nodes, cluster.name
        ),
        (Some((_, shards_nodes, _)), Some((_, nodes, replicas))) => {
            if *replicas != 1 || nodes != shards_nodes {
                format!(
                    "clickhouse.node_cluster {:?} must list each of the {shards_nodes} nodes of \
                     {:?} as a shard with one replica (it has {nodes} entries, up to {replicas} \
                     replicas per shard)",
                    cluster.nodes, cluster.name
                )
            } else {
                return Ok(());
            }
        }
    };
    Err(StoreError::Cluster(problem))
}

/// One migrating collector per cluster. The lock is a replicated table with a fixed path and
/// replica name: creating it succeeds on one node, and anywhere else while it exists fails,
/// atomically in ZooKeeper (or Keeper). Dropping it releases.
struct Lock {
    sync: bool,
}

impl Lock {
    async fn acquire(
        db: &Client,
        layout: &Layout,
        version: ServerVersion,
    ) -> Result<Lock, StoreError> {
        let database = &layout.database;
        let create = format!(
            "CREATE TABLE glimpse_migration_lock (at DateTime) \
             ENGINE = ReplicatedMergeTree('/clickhouse/glimpse/{database}/migration_lock', 'holder') \
             ORDER BY at"
        );
        // Modern servers drop a replicated table lazily unless told to wait.
        let sync = version.features().uuid_paths;
        let start = Instant::now();
        loop {
            match db.query(&create).execute().await {
                Ok(()) => return Ok(Lock { sync }),
                Err(clickhouse::error::Error::BadResponse(msg))
                    if server_code(&msg).is_some_and(|c| LOCK_HELD.contains(&c)) => {}
                // 18.x may close the connection after an error answer, and the next request on
                // it fails to be sent: ask again. (Had such a CREATE run, the lock would be
                // ours and held until it is stale: a far rarer case, and it heals.)
                Err(clickhouse::error::Error::Network(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if start.elapsed() > LOCK_WAIT {
                return Err(StoreError::Cluster(format!(
                    "another collector has been migrating for over {} s (the table \
                     glimpse_migration_lock exists)",
                    LOCK_WAIT.as_secs()
                )));
            }
            match Self::break_if_stale(db, layout).await {
                Err(StoreError::ClickHouse(clickhouse::error::Error::Network(_))) | Ok(()) => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A lock held far longer than any migration takes belongs to a collector that died: drop
    /// it wherever it is.
    async fn break_if_stale(db: &Client, layout: &Layout) -> Result<(), StoreError> {
        let ages: Vec<u64> = db
            .query(
                "SELECT toUInt64(now() - ctime) FROM system.zookeeper \
                 WHERE path = ? AND name = 'migration_lock'",
            )
            .bind(format!("/clickhouse/glimpse/{}", layout.database))
            .fetch_all()
            .await?;
        if ages.iter().any(|&a| a > LOCK_STALE_SECS) {
            tracing::warn!("breaking a migration lock left by a collector that stopped");
            db.query(&format!(
                "DROP TABLE IF EXISTS `{}`.glimpse_migration_lock{}",
                layout.database,
                layout.on_nodes()
            ))
            .execute()
            .await?;
        }
        Ok(())
    }

    async fn release(self, db: &Client) -> Result<(), StoreError> {
        let sync = if self.sync { " SYNC" } else { "" };
        execute(
            db,
            &format!("DROP TABLE IF EXISTS glimpse_migration_lock{sync}"),
        )
        .await?;
        Ok(())
    }
}
