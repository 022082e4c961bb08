//! Applying `schema/`'s migrations, once, to one server or to a whole cluster.

use std::time::Duration;

use clickhouse::Client;

use super::StoreError;
use super::cluster::{Cluster, Layout, Renderer, SYSTEM_VIEWS};
use super::lock::{Kind, Lock};
use super::schema::{self, MIGRATIONS_TABLE, ServerVersion, render};
use crate::deliver::insert::server_code;

/// 44 ILLEGAL_COLUMN: "column with this name already exists" on servers without
/// `ADD COLUMN IF NOT EXISTS`, when a migration that added it is run again.
const COLUMN_EXISTS: u32 = 44;
/// One migrating collector per cluster. A lock older than `stale_after` was left by a collector
/// that died while migrating.
const MIGRATION_LOCK: Kind = Kind {
    name: "migration",
    stale_after: Duration::from_secs(600),
    wait: Duration::from_secs(900),
    retry: Duration::from_millis(500),
};

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
    let lock = Lock::acquire(db, layout, MIGRATION_LOCK).await?;
    let result = migrate_locked(db, layout, cluster, version, migrations).await;
    lock.release_after(db, result).await
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
