//! Per-client rate limiting, in memory, before a request costs anything.
//!
//! Clients are told apart by a keyed hash of their address, an IPv4 address or an IPv6 /64 (one
//! subscriber's network: a host picks any of its 2^64 addresses at will): the key is random per
//! process
//! and never stored, so the table holds no address and cannot be reversed. Token buckets live
//! in a fixed number of shards, each with a bounded number of entries, so memory does not grow
//! with the number of clients; a full shard first forgets clients whose bucket has refilled,
//! then, if still full, admits newcomers without tracking them (fail open, never fail closed
//! for real visitors).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::metrics::Gauge;
use crate::prehashed;
use crate::settings::Reader;

const SHARDS: usize = 32;

/// The `[rate_limit]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Sustained events per second per client; 0 disables the limiter.
    pub events_per_second: u32,
    pub burst: u32,
    /// Whether a trusted proxy's own requests (no visitor address) are limited too; `false`
    /// exempts them, so anything that reaches the proxy without a forwarding header is unlimited.
    pub trusted_proxies: bool,
}

/// Clients tracked at most (about 40 bytes each).
pub(crate) const MAX_CLIENTS: usize = 100_000;

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            events_per_second: r.bounded("rate_limit.events_per_second", 20, 0, 1_000_000) as u32,
            burst: r.bounded("rate_limit.burst", 200, 1, 1_000_000) as u32,
            trusted_proxies: r.boolean("rate_limit.trusted_proxies", true),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            per_second: f64::from(self.events_per_second),
            burst: f64::from(self.burst),
            max_clients: MAX_CLIENTS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Sustained events per second per client; 0 disables the limiter.
    pub per_second: f64,
    pub burst: f64,
    /// Entries kept across all shards.
    pub max_clients: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f32,
    /// Milliseconds since the limiter started.
    at_ms: u64,
}

/// How often a full shard may be swept for clients whose bucket has refilled. Between sweeps a
/// full shard's newcomers share its overflow bucket, so many distinct clients never cost a scan
/// each.
const SWEEP_EVERY_MS: u64 = 1000;

/// The overflow bucket of a full shard refills this many times faster, and holds this many
/// bursts, than one client's: newcomers that cannot be tracked (an attacker with many
/// addresses, or a crowd) are limited together rather than not at all.
const OVERFLOW_FACTOR: f32 = 10.0;

#[derive(Default)]
struct Shard {
    buckets: prehashed::HashMap<Bucket>,
    swept_at_ms: Option<u64>,
    /// Shared by the newcomers that arrive while the shard is full.
    overflow: Option<Bucket>,
}

pub struct RateLimiter {
    settings: Limits,
    key: std::collections::hash_map::RandomState,
    started: Instant,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    pub fn new(settings: Limits) -> RateLimiter {
        RateLimiter {
            settings,
            key: std::collections::hash_map::RandomState::new(),
            started: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.settings.per_second > 0.0
    }

    /// Takes one token for `ip`; false when its bucket is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&self, ip: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let key = self.key.hash_one(client(ip));
        // 64-bit milliseconds: no wrap in any process lifetime (a u32 wrapped after 49.7 days).
        let now_ms =
            u64::try_from(now.duration_since(self.started).as_millis()).unwrap_or(u64::MAX);
        let per_shard = (self.settings.max_clients / SHARDS).max(1);
        let Ok(mut shard) = self.shards[(key as usize) % SHARDS].lock() else {
            return true;
        };
        let rate = self.settings.per_second as f32;
        let burst = self.settings.burst as f32;
        let refill = |b: &Bucket| {
            let elapsed = now_ms.saturating_sub(b.at_ms) as f32 / 1000.0;
            (b.tokens + elapsed * rate).min(burst)
        };
        if let Some(b) = shard.buckets.get_mut(&key) {
            let tokens = refill(b);
            *b = Bucket {
                tokens: tokens - 1.0,
                at_ms: now_ms,
            };
            if tokens >= 1.0 {
                return true;
            }
            b.tokens = tokens; // refused requests cost nothing
            return false;
        }
        if shard.buckets.len() >= per_shard {
            let due = shard
                .swept_at_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= SWEEP_EVERY_MS);
            if due {
                shard.swept_at_ms = Some(now_ms);
                shard.buckets.retain(|_, b| refill(b) < burst);
            }
            if shard.buckets.len() >= per_shard {
                let (rate, burst) = (rate * OVERFLOW_FACTOR, burst * OVERFLOW_FACTOR);
                let b = shard.overflow.get_or_insert(Bucket {
                    tokens: burst,
                    at_ms: now_ms,
                });
                let elapsed = now_ms.saturating_sub(b.at_ms) as f32 / 1000.0;
                let tokens = (b.tokens + elapsed * rate).min(burst);
                let allowed = tokens >= 1.0;
                *b = Bucket {
                    tokens: if allowed { tokens - 1.0 } else { tokens },
                    at_ms: now_ms,
                };
                return allowed;
            }
        }
        shard.buckets.insert(
            key,
            Bucket {
                tokens: burst - 1.0,
                at_ms: now_ms,
            },
        );
        true
    }

    /// Clients currently tracked.
    pub(crate) fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.buckets.len()))
            .sum()
    }

    /// Gauges for `/metrics`.
    pub(crate) fn gauges(&self, out: &mut Vec<Gauge>) {
        out.push(Gauge {
            name: "glimpse_rate_limited_clients",
            help: "Clients the rate limiter currently tracks.",
            value: self.tracked() as f64,
        });
    }
}

/// What a client is limited as: an IPv4 address, or the /64 network of an IPv6 address
/// (IPv4-mapped IPv6 counts as IPv4).
fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(per_second: f64, burst: f64, max_clients: usize) -> RateLimiter {
        RateLimiter::new(Limits {
            per_second,
            burst,
            max_clients,
        })
    }

    #[test]
    fn burst_then_refill() {
        let l = limiter(10.0, 5.0, 1000);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let t0 = l.started;
        assert!((0..5).all(|_| l.allow_at(ip, t0)));
        assert!(!l.allow_at(ip, t0));
        assert!(!l.allow_at(ip, t0 + Duration::from_millis(50)));
        assert!(l.allow_at(ip, t0 + Duration::from_millis(150)));
        // Another client is unaffected.
        assert!(l.allow_at("203.0.113.10".parse().unwrap(), t0));
    }

    #[test]
    fn memory_is_bounded_and_untracked_newcomers_share_a_bucket() {
        let l = limiter(1.0, 2.0, SHARDS * 4);
        let t0 = l.started;
        let admitted = (0..10_000u32)
            .filter(|i| l.allow_at(IpAddr::from(i.to_be_bytes()), t0))
            .count();
        assert!(l.tracked() <= SHARDS * 4);
        // Each full shard admits one overflow burst (10 × 2) and no more until it refills.
        let most = SHARDS * 4 + SHARDS * 20;
        assert!(
            admitted <= most,
            "{admitted} of 10 000 distinct clients admitted"
        );
        assert!(
            admitted >= SHARDS * 4,
            "every tracked newcomer was admitted"
        );
        // Half a second later (no sweep is due yet), each overflow bucket has 5 tokens more.
        let t1 = t0 + Duration::from_millis(500);
        let later = (10_000..20_000u32)
            .filter(|i| l.allow_at(IpAddr::from(i.to_be_bytes()), t1))
            .count();
        assert!(later <= SHARDS * 6, "{later}");
    }

    #[test]
    fn full_shards_are_swept_at_most_once_a_second() {
        let l = limiter(1.0, 2.0, SHARDS * 4);
        let t0 = l.started;
        for i in 0..10_000u32 {
            l.allow_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        let full = l.tracked();
        // Buckets refill after 2 s; a sweep before then frees nothing, and none is tried again
        // for a second, however many newcomers arrive.
        let swept: Vec<Option<u64>> = l
            .shards
            .iter()
            .map(|s| s.lock().unwrap().swept_at_ms)
            .collect();
        assert!(swept.iter().all(|t| *t == Some(0)));
        let t3 = t0 + Duration::from_secs(3);
        let newcomer = IpAddr::from(4_000_000_000u32.to_be_bytes());
        assert!(l.allow_at(newcomer, t3));
        assert!(l.tracked() < full, "refilled buckets were forgotten");
    }

    #[test]
    fn disabled_admits_everything() {
        let l = limiter(0.0, 0.0, 10);
        let ip: IpAddr = "::1".parse().unwrap();
        assert!((0..1000).all(|_| l.allow(ip)));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn the_table_holds_no_address() {
        let l = limiter(1.0, 1.0, 100);
        let ip: IpAddr = "198.51.100.77".parse().unwrap();
        l.allow(ip);
        let keys: Vec<u64> = l
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap()
                    .buckets
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(keys.len(), 1);
        assert_ne!(keys[0], u64::from(u32::from_be_bytes([198, 51, 100, 77])));
    }

    #[test]
    fn an_ipv6_network_is_one_client() {
        let l = limiter(1.0, 3.0, 1000);
        let t0 = l.started;
        // Every address of one /64 draws from the same bucket.
        let same: Vec<IpAddr> = (1..=4)
            .map(|i| format!("2001:db8:1:2::{i:x}").parse().unwrap())
            .collect();
        let answers: Vec<bool> = same.iter().map(|ip| l.allow_at(*ip, t0)).collect();
        assert_eq!(answers, [true, true, true, false]);
        // The next /64, and an IPv4 client, are others.
        assert!(l.allow_at("2001:db8:1:3::1".parse().unwrap(), t0));
        assert!(l.allow_at("192.0.2.1".parse().unwrap(), t0));
        assert_eq!(
            client("::ffff:192.0.2.1".parse().unwrap()),
            client("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn keeps_working_across_fifty_days() {
        // The injected clock runs from 49 to 50 days past the limiter's start: across the point
        // where 32-bit milliseconds wrapped (49.7 days).
        let l = limiter(1.0, 2.0, SHARDS * 4);
        let before = l.started + Duration::from_secs(49 * 86_400);
        let after = l.started + Duration::from_secs(50 * 86_400);
        let flooder: IpAddr = "203.0.113.50".parse().unwrap();
        let answers: Vec<bool> = (0..4).map(|_| l.allow_at(flooder, before)).collect();
        assert_eq!(answers, [true, true, false, false]);
        for i in 0..10_000u32 {
            l.allow_at(IpAddr::from(i.to_be_bytes()), before);
        }
        let full = l.tracked();
        // A day later every bucket has refilled: the flooder may send again, and a full
        // shard's sweep forgets the refilled clients, so newcomers are tracked.
        assert!(l.allow_at(flooder, after), "refilled after a day");
        let newcomer = IpAddr::from(4_000_000_000u32.to_be_bytes());
        assert!(l.allow_at(newcomer, after));
        assert!(l.tracked() < full, "refilled buckets were forgotten");
    }
}
