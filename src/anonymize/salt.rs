//! Daily salts: 32 random bytes per UTC day, shared by every collector through ClickHouse.
//!
//! Life of a salt for day D:
//! - generated (from the OS's random source, never from the date or a secret) before D begins,
//!   when a collector first refreshes on D-1, or at start-up if missing;
//! - used for visitor ids of events received during D;
//! - replaced in memory by the first refresh after D ends (only today's and tomorrow's are
//!   held), and forgotten [`DESTROY_AFTER_SECS`] after D began even when no refresh succeeds;
//! - destroyed in ClickHouse [`DESTROY_AFTER_SECS`] after D began (its partition is dropped),
//!   so it is gone everywhere within 48 hours.
//!
//! This module holds the salts in memory and computes visitor ids; `store::salts` creates,
//! adopts and destroys them in ClickHouse.

use std::sync::Arc;

use arc_swap::ArcSwap;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::clock::SECS_PER_DAY;
use crate::metrics::Gauge;

/// Partitions are dropped 47 h after their day began; ClickHouse removes dropped parts from disk
/// within minutes (old_parts_lifetime, 8 min by default), inside the 48 h promise.
pub const DESTROY_AFTER_SECS: u64 = 47 * 3600;

#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Salt(pub [u8; 32]);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl Salt {
    pub fn random() -> Salt {
        let mut bytes = [0u8; 32];
        // The OS random source failing is not recoverable and must not fall back to anything weaker.
        getrandom::fill(&mut bytes).expect("operating system random source unavailable");
        Salt(bytes)
    }
}

/// The salts in force: at most today's and tomorrow's.
#[derive(Debug, Default)]
pub struct SaltSet {
    days: Vec<(u16, Salt)>,
}

/// Salts are destroyed in ClickHouse this long after their day began.
pub fn expired(day: u16, now: u64) -> bool {
    u64::from(day) * SECS_PER_DAY + DESTROY_AFTER_SECS <= now
}

impl SaltSet {
    pub fn from_days(days: Vec<(u16, Salt)>) -> SaltSet {
        SaltSet { days }
    }

    pub fn get(&self, day: u16) -> Option<&Salt> {
        self.days.iter().find(|(d, _)| *d == day).map(|(_, s)| s)
    }

    pub fn days(&self) -> Vec<u16> {
        self.days.iter().map(|(d, _)| *d).collect()
    }
}

/// Lock-free access for the request path; the keeper swaps in a new set.
#[derive(Debug, Default)]
pub struct Salts {
    current: ArcSwap<SaltSet>,
    /// Unix seconds of the last successful refresh, for monitoring.
    refreshed_at: std::sync::atomic::AtomicU64,
}

impl Salts {
    pub fn load(&self) -> arc_swap::Guard<Arc<SaltSet>> {
        self.current.load()
    }

    /// Seconds since the start of the oldest salt's day held in memory: stays under a day
    /// plus the refresh interval while rotation works.
    pub fn age(&self, now: u64) -> Option<u64> {
        let oldest = self.load().days().into_iter().min()?;
        Some(now.saturating_sub(u64::from(oldest) * SECS_PER_DAY))
    }

    /// Seconds since the salts were last read from ClickHouse.
    pub(crate) fn since_refresh(&self, now: u64) -> Option<u64> {
        match self.refreshed_at.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            at => Some(now.saturating_sub(at)),
        }
    }

    /// Adopts a new set of salts, read from the store; `now` is when they were read.
    pub fn publish(&self, set: SaltSet, now: u64) {
        self.current.store(Arc::new(set));
        self.refreshed_at
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops from memory every salt past its lifetime, whether or not ClickHouse can be reached
    /// to replace it. A dropped salt's bytes are zeroed once no request holds it.
    pub(crate) fn forget_expired(&self, now: u64) {
        let current = self.load();
        if current.days.iter().all(|(d, _)| !expired(*d, now)) {
            return;
        }
        let kept = current
            .days
            .iter()
            .filter(|(d, _)| !expired(*d, now))
            .cloned()
            .collect();
        self.current.store(Arc::new(SaltSet { days: kept }));
    }

    /// Gauges for `/metrics`.
    pub(crate) fn gauges(&self, now: u64, out: &mut Vec<Gauge>) {
        out.push(Gauge {
            name: "glimpse_salt_age_seconds",
            help: "Age of the oldest visitor salt in memory (-1: none loaded).",
            value: self.age(now).map_or(-1.0, |s| s as f64),
        });
        out.push(Gauge {
            name: "glimpse_salt_refresh_age_seconds",
            help: "Seconds since the salts were last read from ClickHouse (-1: never).",
            value: self.since_refresh(now).map_or(-1.0, |s| s as f64),
        });
    }
}

/// The visitor id: a keyed BLAKE3 hash of site, address and user agent under the day's salt,
/// cut to 64 bits. The site is part of the input, so one person gets unrelated ids on two sites;
/// the salt changes daily, so ids do not link days.
pub fn visitor_id(salt: &Salt, site: &str, ip: std::net::IpAddr, user_agent: &str) -> u64 {
    let ip16 = match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    let mut h = blake3::Hasher::new_keyed(&salt.0);
    // A site name never contains NUL, so the input splits back unambiguously.
    h.update(site.as_bytes());
    h.update(&[0]);
    h.update(&ip16);
    h.update(user_agent.as_bytes());
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

    #[test]
    fn salts_are_random_not_derived() {
        let a = Salt::random();
        let b = Salt::random();
        assert_ne!(a, b);
        assert_ne!(a.0, [0; 32]);
    }

    #[test]
    fn site_ip_ua_and_salt_all_matter() {
        let salt = Salt::random();
        let ip = "203.0.113.7".parse().unwrap();
        let base = visitor_id(&salt, "a.com", ip, UA);
        assert_eq!(
            base,
            visitor_id(&salt, "a.com", ip, UA),
            "deterministic within a day"
        );
        assert_ne!(
            base,
            visitor_id(&salt, "b.com", ip, UA),
            "site is part of the hash"
        );
        assert_ne!(
            base,
            visitor_id(&salt, "a.com", "203.0.113.8".parse().unwrap(), UA)
        );
        assert_ne!(base, visitor_id(&salt, "a.com", ip, "Mozilla/5.0 other"));
        assert_ne!(
            base,
            visitor_id(&Salt::random(), "a.com", ip, UA),
            "new salt, new id"
        );
    }

    #[test]
    fn mapped_and_plain_ipv4_hash_alike() {
        let salt = Salt::random();
        let v4 = visitor_id(&salt, "a.com", "203.0.113.7".parse().unwrap(), UA);
        let mapped = visitor_id(&salt, "a.com", "::ffff:203.0.113.7".parse().unwrap(), UA);
        assert_eq!(v4, mapped);
    }

    #[test]
    fn debug_never_prints_the_bytes() {
        assert_eq!(format!("{:?}", Salt([7; 32])), "Salt(..)");
    }

    #[test]
    fn salt_set_lookup() {
        let set = SaltSet {
            days: vec![(10, Salt([1; 32])), (11, Salt([2; 32]))],
        };
        assert_eq!(set.get(11).unwrap().0, [2; 32]);
        assert!(set.get(12).is_none());
        assert_eq!(set.days(), [10, 11]);
    }

    #[test]
    fn expired_salts_are_forgotten_in_memory() {
        let salts = Salts::default();
        let day = 20_000u16;
        let start = u64::from(day) * SECS_PER_DAY;
        salts.publish(
            SaltSet::from_days(vec![(day, Salt([1; 32])), (day + 1, Salt([2; 32]))]),
            start,
        );
        salts.forget_expired(start + DESTROY_AFTER_SECS - 1);
        assert_eq!(salts.load().days(), [day, day + 1]);
        salts.forget_expired(start + DESTROY_AFTER_SECS);
        assert_eq!(salts.load().days(), [day + 1]);
        assert!(expired(day, start + 47 * 3600) && !expired(day, start + 47 * 3600 - 1));
    }
}
