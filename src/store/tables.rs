//! The tables Glimpse creates outside the migration files, which both the single-server schema
//! and the cluster renderer name.

/// The log of applied migrations.
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS glimpse_migrations \
     (name String, checksum String, applied_at DateTime DEFAULT now()) \
     ENGINE = MergeTree ORDER BY name";

/// Table the collector inserts into: rows whose daily stats it sums itself (row format 4 on).
pub const INSERT_TABLE: &str = "events_intake";

/// Table that rows of the formats before the daily rollup go to: its views fan their daily
/// stats out (collectors of earlier releases insert there, and spooled segments of theirs do).
pub const LEGACY_INSERT_TABLE: &str = "events_in";

/// Table the deliverer inserts each segment's daily stats into (`deliver::rollup`).
pub const DAILY_INSERT_TABLE: &str = "stats_daily_in";
