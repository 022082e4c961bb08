//! Coarse location: ISO country code and first-level region, nothing finer.
//!
//! Reads MaxMind-format databases in either the official GeoIP2/GeoLite2/DB-IP schema
//! (`country.iso_code`, `subdivisions[0]`) or the flat ip-location-db schema (`country_code`,
//! `state1`). Only those fields are decoded; city, postcode and coordinates are never read.
//! A missing database or a miss gives empty values, never an error.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use maxminddb::{MaxMindDbError, Reader};
use serde::Deserialize;

/// The `[geoip]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// MaxMind-format databases (GeoIP2/GeoLite2/DB-IP or the flat ip-location-db schema);
    /// DB-IP Lite ships IPv4 and IPv6 as two files, so this is a list.
    pub database: Vec<PathBuf>,
}

impl Settings {
    pub(crate) fn read(r: &mut crate::settings::Reader) -> Settings {
        Settings {
            database: r
                .list("geoip.database")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// The location stored with an event. Empty strings mean unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location<'a> {
    pub country_code: &'a str,
    pub region: &'a str,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open geo database {path}: {source}")]
pub struct GeoError {
    pub path: PathBuf,
    #[source]
    pub source: MaxMindDbError,
}

/// One or more databases (DB-IP Lite ships IPv4 and IPv6 as separate files), and the
/// locations of recent addresses.
pub struct Geo {
    readers: Vec<Reader<maxminddb::Mmap>>,
    cache: Cache,
}

impl Geo {
    /// No database: every lookup is empty.
    pub fn empty() -> Geo {
        Geo::with(Vec::new())
    }

    fn with(readers: Vec<Reader<maxminddb::Mmap>>) -> Geo {
        // Without a database every lookup is empty at once: no cache to fill.
        let slots = if readers.is_empty() {
            0
        } else {
            CACHE_SLOTS_PER_SHARD
        };
        Geo {
            readers,
            cache: Cache::new(slots),
        }
    }

    pub fn open(paths: &[PathBuf]) -> Result<Geo, GeoError> {
        let readers = paths
            .iter()
            .map(|p| open_one(p))
            .collect::<Result<_, _>>()?;
        Ok(Geo::with(readers))
    }

    /// Opens what it can: a missing or unreadable file only costs locations, never events, so
    /// start-up goes on with the databases that did open and reports the others.
    pub(crate) fn open_available(paths: &[PathBuf]) -> (Geo, Vec<GeoError>) {
        let (mut readers, mut errors) = (Vec::new(), Vec::new());
        for p in paths {
            match open_one(p) {
                Ok(r) => readers.push(r),
                Err(e) => errors.push(e),
            }
        }
        (Geo::with(readers), errors)
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    pub fn lookup(&self, ip: IpAddr) -> Location<'_> {
        if self.readers.is_empty() {
            return Location::default();
        }
        let hash = self.cache.key.hash_one(ip);
        let shard = &self.cache.shards[hash as usize % CACHE_SHARDS];
        let slot = (hash >> 32) as usize % CACHE_SLOTS_PER_SHARD;
        // The tag is never 0, which marks an empty slot. The shard is chosen by the hash
        // itself: by the tag, whose lowest bit is always set, half the shards would stay empty.
        let tag = hash | 1;
        if let Ok(slots) = shard.lock()
            && let Some((t, location)) = slots.get(slot)
            && *t == tag
        {
            return *location;
        }
        let location = self.find(ip);
        if let Some(kept) = interned(location)
            && let Ok(mut slots) = shard.lock()
            && let Some(entry) = slots.get_mut(slot)
        {
            *entry = (tag, kept);
        }
        location
    }

    /// The location of `ip` in the first database that knows it.
    fn find(&self, ip: IpAddr) -> Location<'_> {
        for reader in &self.readers {
            // An IPv4-only tree cannot answer IPv6 lookups.
            if ip.is_ipv6() && reader.metadata().ip_version == 4 {
                continue;
            }
            let Ok(found) = reader.lookup(ip) else {
                continue;
            };
            let Ok(Some(record)) = found.decode::<Record<'_>>() else {
                continue;
            };
            let location = record.location();
            if !location.country_code.is_empty() {
                return location;
            }
        }
        Location::default()
    }
}

const CACHE_SHARDS: usize = 64;
const CACHE_SLOTS_PER_SHARD: usize = 1024;

/// A cached location and the hash of its address (0: an empty slot).
type Slot = (u64, Location<'static>);

/// The locations of recent addresses, keyed by a keyed hash of the address. Finding an
/// address walks some thirty nodes of a tree spread over tens of megabytes, a likely cache miss
/// at every step; a visitor whose next event comes from the same address soon finds it here.
/// Direct-mapped slots in 64 independently locked shards, as in the user-agent cache: memory is
/// fixed (65 536 entries of 40 bytes), and a lock is held for one slot's read or write. The
/// addresses themselves are not kept, only their hashes, under a key that is random per
/// process.
struct Cache {
    key: RandomState,
    shards: Vec<Mutex<Vec<Slot>>>,
}

impl Cache {
    fn new(slots_per_shard: usize) -> Cache {
        Cache {
            key: RandomState::new(),
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(vec![(0, Location::default()); slots_per_shard]))
                .collect(),
        }
    }
}

/// Distinct names a cached location may use. A database holds a few hundred countries and a
/// few thousand regions; a location with a name past this bound is looked up each time
/// instead of cached.
const MAX_NAMES: usize = 1 << 16;

/// The names of cached locations. A name is kept for the life of the process, as the
/// databases are, so that a cached location can hand it out; there are at most
/// [`MAX_NAMES`].
static NAMES: LazyLock<Mutex<Interner>> = LazyLock::new(|| Mutex::new(Interner::new(MAX_NAMES)));

/// `location` with names that live as long as the process, if [`NAMES`] holds them or has room.
fn interned(location: Location<'_>) -> Option<Location<'static>> {
    let mut names = NAMES.lock().ok()?;
    Some(Location {
        country_code: names.get(location.country_code)?,
        region: names.get(location.region)?,
    })
}

/// A bounded set of names that are never freed.
struct Interner {
    set: HashSet<&'static str>,
    max: usize,
}

impl Interner {
    fn new(max: usize) -> Interner {
        Interner {
            set: HashSet::new(),
            max,
        }
    }

    /// `name`, kept; `None` when it is new and the set is full.
    fn get(&mut self, name: &str) -> Option<&'static str> {
        if name.is_empty() {
            return Some("");
        }
        if let Some(kept) = self.set.get(name) {
            return Some(kept);
        }
        if self.set.len() >= self.max {
            return None;
        }
        let kept: &'static str = Box::leak(name.into());
        self.set.insert(kept);
        Some(kept)
    }
}

fn open_one(path: &Path) -> Result<Reader<maxminddb::Mmap>, GeoError> {
    // SAFETY: the file is mapped read-only; operators replace it by renaming a new file into
    // place (as scripts/fetch-geo-db.sh does), never by rewriting it, so the mapping stays valid.
    unsafe { Reader::open_mmap(path) }.map_err(|source| GeoError {
        path: path.to_owned(),
        source,
    })
}

/// The few fields we read, in both schemas. Everything else in a record is skipped undecoded.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(borrow, default)]
    subdivisions: Option<Vec<Subdivision<'a>>>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(borrow, default)]
    state1: Option<&'a str>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Subdivision<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

impl<'a> Record<'a> {
    fn location(&self) -> Location<'a> {
        let country = self
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(self.country_code)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
            .unwrap_or("");
        if country.is_empty() {
            return Location::default();
        }
        let region = match &self.subdivisions {
            Some(subs) => subs
                .first()
                .and_then(|s| s.names.as_ref().and_then(|n| n.en).or(s.iso_code))
                .unwrap_or(""),
            None => self.state1.unwrap_or(""),
        };
        Location {
            country_code: country,
            region,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Geo {
        Geo::open(&[PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)])
        .unwrap()
    }

    fn at<'a>(geo: &'a Geo, ip: &str) -> Location<'a> {
        geo.lookup(ip.parse().unwrap())
    }

    #[test]
    fn geoip2_schema_country_and_first_region_only() {
        let geo = fixture("geoip2-city-test.mmdb");
        assert_eq!(
            at(&geo, "81.2.69.10"),
            Location {
                country_code: "GB",
                region: "England"
            }
        );
        assert_eq!(
            at(&geo, "203.0.113.5"),
            Location {
                country_code: "US",
                region: "California"
            }
        );
        assert_eq!(
            at(&geo, "198.51.100.7"),
            Location {
                country_code: "FR",
                region: ""
            }
        );
        assert_eq!(
            at(&geo, "192.0.2.1"),
            Location {
                country_code: "JP",
                region: "Tokyo"
            },
            "first level only"
        );
        assert_eq!(
            at(&geo, "2001:db8:1::1"),
            Location {
                country_code: "DE",
                region: "Berlin"
            }
        );
        assert_eq!(at(&geo, "10.0.0.1"), Location::default());
    }

    #[test]
    fn flat_schema() {
        let geo = fixture("flat-city-test.mmdb");
        assert_eq!(
            at(&geo, "81.2.69.10"),
            Location {
                country_code: "GB",
                region: "England"
            }
        );
        assert_eq!(
            at(&geo, "203.0.113.5"),
            Location {
                country_code: "US",
                region: "California"
            }
        );
        assert_eq!(
            at(&geo, "198.51.100.7"),
            Location {
                country_code: "FR",
                region: ""
            }
        );
        assert_eq!(
            at(&geo, "2001:db8:1::1"),
            Location {
                country_code: "DE",
                region: "Berlin"
            }
        );
        assert_eq!(at(&geo, "2001:db8:2::1"), Location::default());
    }

    #[test]
    fn a_remembered_location_is_the_databases() {
        let geo = fixture("geoip2-city-test.mmdb");
        let listed = [
            "81.2.69.10",
            "203.0.113.5",
            "198.51.100.7",
            "192.0.2.1",
            "10.0.0.1",
        ];
        let mut ips: Vec<IpAddr> = listed.iter().map(|ip| ip.parse().unwrap()).collect();
        ips.push("2001:db8:1::1".parse().unwrap());
        // Addresses all over the space, most of them misses, some in the fixture's networks.
        let mut x = 0x9e37_79b9_u32;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ips.push(IpAddr::from(x.to_be_bytes()));
            ips.push(IpAddr::from([81, 2, 69, (x >> 24) as u8]));
        }
        for round in 0..2 {
            for ip in &ips {
                assert_eq!(geo.lookup(*ip), geo.find(*ip), "{ip}, round {round}");
            }
        }
        // About 20 000 distinct addresses, spread over every shard (some 300 each).
        let kept: Vec<usize> = geo
            .cache
            .shards
            .iter()
            .map(|s| s.lock().unwrap().iter().filter(|slot| slot.0 != 0).count())
            .collect();
        assert!(kept.iter().all(|n| *n > 100), "{kept:?}");
        assert!(kept.iter().sum::<usize>() > 15_000, "{kept:?}");
    }

    #[test]
    fn names_are_bounded() {
        let mut names = Interner::new(2);
        assert_eq!(names.get("GB"), Some("GB"));
        assert_eq!(names.get("England"), Some("England"));
        assert_eq!(names.get("Tokyo"), None, "full");
        assert_eq!(names.get("GB"), Some("GB"));
        assert_eq!(names.get(""), Some(""));
        assert_eq!(names.set.len(), 2);
    }

    #[test]
    fn no_database_and_bad_path() {
        assert_eq!(at(&Geo::empty(), "81.2.69.10"), Location::default());
        assert!(
            Geo::empty()
                .cache
                .shards
                .iter()
                .all(|s| s.lock().unwrap().is_empty())
        );
        let err = Geo::open(&[PathBuf::from("/nonexistent/geo.mmdb")])
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/geo.mmdb"));
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let (geo, errors) = Geo::open_available(&[
            PathBuf::from("/nonexistent/geo.mmdb"),
            root.join("tests/fixtures/flat-city-test.mmdb"),
        ]);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            at(&geo, "81.2.69.10").country_code,
            "GB",
            "the readable file still serves"
        );
    }
}
