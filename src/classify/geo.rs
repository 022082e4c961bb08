//! Coarse location: ISO country code and first-level region, nothing finer.
//!
//! Reads MaxMind-format databases in either the official GeoIP2/GeoLite2/DB-IP schema
//! (`country.iso_code`, `subdivisions[0]`) or the flat ip-location-db schema (`country_code`,
//! `state1`). Only those fields are decoded; city, postcode and coordinates are never read.
//! A missing database or a miss gives empty values, never an error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

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

/// One or more databases (DB-IP Lite ships IPv4 and IPv6 as separate files).
pub struct Geo {
    readers: Vec<Reader<maxminddb::Mmap>>,
}

impl Geo {
    /// No database: every lookup is empty.
    pub fn empty() -> Geo {
        Geo {
            readers: Vec::new(),
        }
    }

    pub fn open(paths: &[PathBuf]) -> Result<Geo, GeoError> {
        let readers = paths
            .iter()
            .map(|p| open_one(p))
            .collect::<Result<_, _>>()?;
        Ok(Geo { readers })
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
        (Geo { readers }, errors)
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    pub fn lookup(&self, ip: IpAddr) -> Location<'_> {
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
    fn no_database_and_bad_path() {
        assert_eq!(at(&Geo::empty(), "81.2.69.10"), Location::default());
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
