//! The tables Glimpse creates outside the migration files, which both the single-server schema
//! and the cluster renderer name.

/// The log of applied migrations.
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS glimpse_migrations \
     (name String, checksum String, applied_at DateTime DEFAULT now()) \
     ENGINE = MergeTree ORDER BY name";

/// Table the collector inserts rows into: rows whose aggregates it sums itself (row format 4
/// on). Its one view copies them into `events` within retention.
pub const INSERT_TABLE: &str = "events_raw_in";

/// Table the release before inserted rows of format 4 into: its views fill every aggregate but
/// the daily stats. Kept for collectors of that release during an upgrade.
pub const INTAKE_TABLE: &str = "events_intake";

/// Table that rows of the formats before the daily rollup go to: its views fan their daily
/// stats out (collectors of earlier releases insert there, and spooled segments of theirs do).
pub const LEGACY_INSERT_TABLE: &str = "events_in";

/// Table the deliverer inserts each segment's daily stats into (`deliver::rollup`).
pub const DAILY_INSERT_TABLE: &str = "stats_daily_in";

/// Table the deliverer inserts each segment's other aggregates into (`deliver::rollup`).
pub const AGGREGATES_INSERT_TABLE: &str = "aggregates_in";
