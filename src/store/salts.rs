//! The `glimpse_salts` table, and the keeper that makes every collector use the same salts.
//! Salts are stored hex-encoded; reads select only the days asked for.
//!
//! A day's salt is created under a lock, so collectors starting together agree on it from their
//! first event; each day's salt is made a day ahead.

use std::time::Duration;

use clickhouse::Client;

use super::StoreError;
use super::cluster::Layout;
use super::lock::{Kind, Lock};
use crate::anonymize::{Salt, SaltSet, Salts, expired};
use crate::clock::day_of;

const TABLE: &str = "glimpse_salts";
/// Held while a day's salt is created, which takes a few queries.
const SALT_LOCK: Kind = Kind {
    name: "salt",
    stale_after: Duration::from_secs(30),
    wait: Duration::from_secs(60),
    retry: Duration::from_millis(200),
};

/// Every stored salt for `days`, in (day, salt) order.
pub async fn load(db: &Client, days: &[u16]) -> Result<Vec<(u16, Salt)>, StoreError> {
    let list: Vec<String> = days.iter().map(u16::to_string).collect();
    let sql = format!(
        "SELECT toUInt16(day), salt FROM {TABLE} WHERE toUInt16(day) IN ({}) ORDER BY day, salt",
        list.join(",")
    );
    let rows: Vec<(u16, String)> = db.query(&sql).fetch_all().await?;
    rows.into_iter()
        .map(|(day, hex)| {
            // The hex copy is as secret as the salt: wiped once decoded.
            let hex = zeroize::Zeroizing::new(hex);
            decode_hex(&hex)
                .map(|b| (day, Salt(b)))
                .ok_or_else(|| StoreError::Unexpected {
                    table: TABLE,
                    detail: format!("salt for day {day} is not 64 hex digits"),
                })
        })
        .collect()
}

/// Whether `database` (a checked identifier) has the salts table yet, through the server
/// client: the database itself may not exist before the first migration. `EXISTS` looks up one
/// name instead of reading `system.tables`, which other collectors may be filling right then.
pub async fn stored(server: &Client, database: &str) -> Result<bool, StoreError> {
    let exists: u8 = server
        .query(&format!("EXISTS TABLE `{database}`.{TABLE}"))
        .fetch_one()
        .await?;
    Ok(exists == 1)
}

/// Destroys every stored salt past its lifetime. Run at start-up before anything else, and by
/// every refresh.
pub async fn purge_expired(db: &Client, now: u64) -> Result<Vec<u16>, StoreError> {
    let mut purged = Vec::new();
    for day in stored_days(db).await? {
        if expired(day, now) {
            destroy(db, day).await?;
            purged.push(day);
        }
    }
    Ok(purged)
}

/// The salt keeper's minute: first forget expired salts in memory (even when ClickHouse cannot
/// be reached, a salt is never kept past its lifetime), then [`refresh`].
pub async fn keep(salts: &Salts, db: &Client, layout: &Layout, now: u64) -> Result<(), StoreError> {
    salts.forget_expired(now);
    refresh(salts, db, layout, now).await
}

/// Makes sure today's and tomorrow's salts exist in ClickHouse, adopts the stored ones into
/// `salts`, and destroys expired ones. Run at start-up and then every minute.
pub async fn refresh(
    salts: &Salts,
    db: &Client,
    layout: &Layout,
    now: u64,
) -> Result<(), StoreError> {
    let today = day_of(now);
    let wanted = [today, today.saturating_add(1)];
    let mut stored = load(db, &wanted).await?;
    if !missing(&stored, &wanted).is_empty() {
        stored = create_missing(db, layout, &wanted).await?;
    }
    let mut days = Vec::with_capacity(2);
    for day in wanted {
        // One salt per day, but a day salted by collectors from before the lock may have two:
        // everyone takes the smallest.
        if let Some((_, salt)) = stored
            .iter()
            .filter(|(d, _)| *d == day)
            .min_by(|a, b| a.1.0.cmp(&b.1.0))
        {
            days.push((day, salt.clone()));
        }
    }
    salts.publish(SaltSet::from_days(days), now);
    purge_expired(db, now).await?;
    Ok(())
}

fn missing(stored: &[(u16, Salt)], wanted: &[u16]) -> Vec<u16> {
    wanted
        .iter()
        .copied()
        .filter(|d| !stored.iter().any(|(s, _)| s == d))
        .collect()
}

/// Creates the missing salts of `wanted` one collector at a time, so that a day gets one salt
/// only: under the lock, with every replica's inserts fetched, the holder looks again before it
/// creates any. Without it, two collectors starting together would each create and use their
/// own salt until their next refresh, and a visitor moving between them would count twice.
async fn create_missing(
    db: &Client,
    layout: &Layout,
    wanted: &[u16],
) -> Result<Vec<(u16, Salt)>, StoreError> {
    let lock = Lock::acquire(db, layout, SALT_LOCK).await?;
    let created = async {
        if layout.cluster.is_some() {
            db.query(&format!("SYSTEM SYNC REPLICA {TABLE}"))
                .execute()
                .await?;
        }
        let stored = load(db, wanted).await?;
        let missing = missing(&stored, wanted);
        if missing.is_empty() {
            return Ok(stored);
        }
        for day in missing {
            insert(db, day, &Salt::random()).await?;
        }
        load(db, wanted).await
    }
    .await;
    lock.release_after(db, created).await
}

pub async fn insert(db: &Client, day: u16, salt: &Salt) -> Result<(), StoreError> {
    let hex = zeroize::Zeroizing::new(encode_hex(&salt.0));
    db.query(&format!(
        "INSERT INTO {TABLE} (day, salt) VALUES (toDate(?), ?)"
    ))
    .bind(day)
    .bind(hex.as_str())
    .execute()
    .await?;
    Ok(())
}

/// The salts are replicated to every node, so this node's parts are all of them.
pub(crate) async fn stored_days(db: &Client) -> Result<Vec<u16>, StoreError> {
    super::partition_days(db, None, "system.parts", TABLE).await
}

/// Drops the day's partition: the salt's data part is unlinked, not just hidden.
pub(crate) async fn destroy(db: &Client, day: u16) -> Result<(), StoreError> {
    super::drop_day_partition(db, TABLE, day).await?;
    tracing::info!(day = %crate::clock::date_string(day), "salt destroyed");
    Ok(())
}

fn encode_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let salt = Salt::random();
        assert_eq!(decode_hex(&encode_hex(&salt.0)), Some(salt.0));
        assert_eq!(decode_hex("zz"), None);
    }
}
