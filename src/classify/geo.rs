//! Coarse location: ISO country code and first-level region, nothing finer.
//!
//! Reads MaxMind-format databases in either the official GeoIP2/GeoLite2/DB-IP schema
//! (`country.iso_code`, `subdivisions[0]`) or the flat ip-location-db schema (`country_code`,
//! `state1`). Only those fields are decoded; city, postcode and coordinates are never read.
//! A missing database or a miss gives empty values, never an error.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

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
        let buckets = if readers.is_empty() {
            0
        } else {
            BUCKETS_PER_SHARD
        };
        Geo {
            readers,
            cache: Cache::new(buckets),
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
        if let Some(location) = self.cache.get(ip) {
            return location;
        }
        let location = self.find(ip);
        self.cache.put(ip, location);
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
const BUCKETS_PER_SHARD: usize = 512;
const WAYS: usize = 4;

/// A cached location: the hash of its address (0: empty) and the numbers of its names.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    tag: u64,
    country: u32,
    region: u32,
}

/// Four entries in one cache line, most recently used first: a lookup reads one line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Bucket([Entry; WAYS]);

/// The locations of recent addresses, keyed by a keyed hash of the address. Finding an
/// address walks some thirty nodes of a tree spread over tens of megabytes, a likely cache miss
/// at every step; a visitor whose next event comes from the same address soon finds it here.
/// Four-way buckets in 64 independently locked shards: memory is fixed (131 072 entries of
/// 16 bytes, 2 MiB), a lock is held for one bucket's read or write, and addresses that share a
/// bucket do not evict each other until a fifth arrives. The addresses themselves are not kept,
/// only their hashes, under a key that is random per process.
struct Cache {
    key: foldhash::quality::RandomState,
    shards: Vec<Mutex<Vec<Bucket>>>,
    names: NameTable,
}

impl Cache {
    fn new(buckets_per_shard: usize) -> Cache {
        Cache {
            key: foldhash::quality::RandomState::default(),
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(vec![Bucket::default(); buckets_per_shard]))
                .collect(),
            names: NameTable::new(MAX_NAMES),
        }
    }

    /// The shard, the bucket in it and the tag of `ip`. The shard is chosen by the hash itself:
    /// by the tag, whose lowest bit is always set, half the shards would stay empty.
    fn place(&self, ip: IpAddr) -> (&Mutex<Vec<Bucket>>, usize, u64) {
        let hash = self.key.hash_one(ip);
        let shard = &self.shards[hash as usize % CACHE_SHARDS];
        (shard, (hash >> 32) as usize % BUCKETS_PER_SHARD, hash | 1)
    }

    fn get(&self, ip: IpAddr) -> Option<Location<'_>> {
        let (shard, bucket, tag) = self.place(ip);
        let mut buckets = shard.lock().ok()?;
        let ways = &mut buckets.get_mut(bucket)?.0;
        let at = ways.iter().position(|e| e.tag == tag)?;
        let entry = ways[at];
        // Most recently used first, so the least recently used goes when a new one comes.
        ways[..=at].rotate_right(1);
        drop(buckets);
        Some(Location {
            country_code: self.names.name(entry.country)?,
            region: self.names.name(entry.region)?,
        })
    }

    fn put(&self, ip: IpAddr, location: Location<'_>) {
        let Some((country, region)) = self.names.numbers(location) else {
            return; // a name past the bound: looked up each time
        };
        let (shard, bucket, tag) = self.place(ip);
        if let Ok(mut buckets) = shard.lock()
            && let Some(Bucket(ways)) = buckets.get_mut(bucket)
        {
            ways.rotate_right(1);
            ways[0] = Entry {
                tag,
                country,
                region,
            };
        }
    }
}

/// Distinct names a cached location may use. A database holds a few hundred countries and a
/// few thousand regions; a location with a name past this bound is looked up each time
/// instead of cached.
const MAX_NAMES: usize = 1 << 16;

/// Names come from the operator's database, not from requests: a fast hash will do.
type NameHash = foldhash::fast::RandomState;

/// Names in chunks of this many, each made when its first name arrives.
const NAMES_PER_CHUNK: usize = 256;

/// One chunk: each name is set once, under the lock, and then read without it.
type Chunk = Box<[OnceLock<Box<str>>]>;

/// The names of cached locations, at most `max`, numbered from 1 so that an entry holds two
/// small numbers rather than two strings; 0 is the empty name. A number's name is read on every
/// hit without a lock; the lock is taken only to number a new name, on a miss.
struct NameTable {
    numbers: Mutex<HashMap<Box<str>, u32, NameHash>>,
    chunks: Box<[OnceLock<Chunk>]>,
    max: usize,
}

impl NameTable {
    fn new(max: usize) -> NameTable {
        NameTable {
            numbers: Mutex::new(HashMap::default()),
            chunks: (0..(max + 1).div_ceil(NAMES_PER_CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            max,
        }
    }

    /// The numbers of a location's names; `None` when one is new and there is no room.
    fn numbers(&self, location: Location<'_>) -> Option<(u32, u32)> {
        let mut numbers = self.numbers.lock().ok()?;
        Some((
            self.number(&mut numbers, location.country_code)?,
            self.number(&mut numbers, location.region)?,
        ))
    }

    fn number(&self, numbers: &mut HashMap<Box<str>, u32, NameHash>, name: &str) -> Option<u32> {
        if name.is_empty() {
            return Some(0);
        }
        if let Some(n) = numbers.get(name) {
            return Some(*n);
        }
        let n = numbers.len() + 1;
        if n > self.max {
            return None;
        }
        let chunk = self
            .chunks
            .get(n / NAMES_PER_CHUNK)?
            .get_or_init(|| (0..NAMES_PER_CHUNK).map(|_| OnceLock::new()).collect());
        chunk.get(n % NAMES_PER_CHUNK)?.set(name.into()).ok()?;
        let n = u32::try_from(n).ok()?;
        numbers.insert(name.into(), n);
        Some(n)
    }

    fn name(&self, n: u32) -> Option<&str> {
        if n == 0 {
            return Some("");
        }
        let n = n as usize;
        let chunk = self.chunks.get(n / NAMES_PER_CHUNK)?.get()?;
        chunk.get(n % NAMES_PER_CHUNK)?.get().map(|s| &**s)
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
        for x in crate::prehashed::scattered(0x9e37_79b9).take(20_000) {
            ips.push(IpAddr::from(x.to_be_bytes()));
            ips.push(IpAddr::from([81, 2, 69, (x >> 24) as u8]));
        }
        for round in 0..2 {
            for ip in &ips {
                assert_eq!(geo.lookup(*ip), geo.find(*ip), "{ip}, round {round}");
            }
        }
        // About 20 000 distinct addresses, spread over every shard (some 300 each), and in four
        // ways to a bucket almost all of them are kept (one way per bucket would keep some 18 500,
        // by calculation, in 131 072 slots).
        let kept: Vec<usize> = geo
            .cache
            .shards
            .iter()
            .map(|s| {
                let buckets = s.lock().unwrap();
                buckets
                    .iter()
                    .flat_map(|b| b.0)
                    .filter(|e| e.tag != 0)
                    .count()
            })
            .collect();
        assert!(kept.iter().all(|n| *n > 100), "{kept:?}");
        assert!(kept.iter().sum::<usize>() > 19_900, "{kept:?}");
    }

    /// Threads that look up, fill and evict the same buckets at once, and number names while
    /// others read them, each get the database's answer every time.
    #[test]
    fn concurrent_lookups_get_the_databases_answer() {
        let geo = fixture("geoip2-city-test.mmdb");
        let mut ips: Vec<IpAddr> = ["81.2.69.10", "2001:db8:1::1", "10.0.0.1"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        for x in crate::prehashed::scattered(0x2545_f491).take(5_000) {
            ips.push(IpAddr::from(x.to_be_bytes()));
            ips.push(IpAddr::from([81, 2, 69, (x >> 24) as u8]));
            ips.push(IpAddr::from([175, 16, 199, (x >> 16) as u8]));
        }
        std::thread::scope(|s| {
            for t in 0..4 {
                let (geo, ips) = (&geo, &ips);
                s.spawn(move || {
                    for round in 0..3 {
                        // Each thread walks the addresses from its own starting point.
                        for ip in ips.iter().cycle().skip(t * ips.len() / 4).take(ips.len()) {
                            assert_eq!(geo.lookup(*ip), geo.find(*ip), "{ip}, round {round}");
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn names_are_bounded() {
        let names = NameTable::new(2);
        let at = |country_code, region| Location {
            country_code,
            region,
        };
        let (gb, england) = names.numbers(at("GB", "England")).unwrap();
        assert_eq!(names.numbers(at("JP", "Tokyo")), None, "full");
        assert_eq!(names.numbers(at("GB", "")), Some((gb, 0)));
        assert_eq!(names.name(gb), Some("GB"));
        assert_eq!(names.name(england), Some("England"));
        assert_eq!(names.name(0), Some(""));
        assert_eq!(names.name(3), None);
        assert_eq!(names.numbers.lock().unwrap().len(), 2);
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
