#!/usr/bin/env python3
"""Generate the tiny MaxMind DB (.mmdb) test fixtures used by the geo tests.

Writes:
  tests/fixtures/geoip2-city-test.mmdb  GeoIP2-City schema (nested country /
                                        subdivisions / city / postal / location)
  tests/fixtures/flat-city-test.mmdb    flat schema of the ip-location-db
                                        dbip-city mmdb files (country_code,
                                        state1, state2, city, postcode,
                                        latitude, longitude, timezone)

Both are IPv6 trees with IPv4 networks stored under ::/96, so a standard
reader finds plain IPv4 addresses. Every record deliberately carries city,
postal code and coordinates so tests can prove the collector drops them.
Output is byte-for-byte deterministic (fixed build_epoch).

Requires the `mmdb-writer` package (pip install mmdb-writer). Rerun with:

    python3 scripts/make-geo-fixtures.py
"""

from pathlib import Path

from mmdb_writer import MMDBWriter, MmdbF32
from netaddr import IPSet

# Fixed so the files are reproducible (2024-01-01T00:00:00Z).
BUILD_EPOCH = 1704067200

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


class FixedEpochWriter(MMDBWriter):
    def _build_meta(self):
        meta = super()._build_meta()
        meta["build_epoch"] = BUILD_EPOCH
        return meta


def names(en):
    return {"en": en}


GEOIP2_CITY = [
    ("81.2.69.0/24", {
        "country": {"iso_code": "GB", "names": names("United Kingdom")},
        "subdivisions": [{"iso_code": "ENG", "names": names("England")}],
        "city": {"names": names("London")},
        "postal": {"code": "EC1A"},
        "location": {"latitude": 51.5142, "longitude": -0.0931},
    }),
    ("203.0.113.0/24", {
        "country": {"iso_code": "US", "names": names("United States")},
        "subdivisions": [{"iso_code": "CA", "names": names("California")}],
        "city": {"names": names("San Francisco")},
        "postal": {"code": "94107"},
        "location": {"latitude": 37.77, "longitude": -122.41},
    }),
    # Country without names and without a "subdivisions" key.
    ("198.51.100.0/24", {
        "country": {"iso_code": "FR"},
        "city": {"names": names("Paris")},
        "postal": {"code": "75001"},
        "location": {"latitude": 48.8566, "longitude": 2.3522},
    }),
    ("2001:db8:1::/48", {
        "country": {"iso_code": "DE", "names": names("Germany")},
        "subdivisions": [{"iso_code": "BE", "names": names("Berlin")}],
        "city": {"names": names("Berlin")},
        "postal": {"code": "10115"},
        "location": {"latitude": 52.52, "longitude": 13.405},
    }),
    # Two subdivision levels: only the first one is the region.
    ("192.0.2.0/24", {
        "country": {"iso_code": "JP"},
        "subdivisions": [
            {"iso_code": "13", "names": names("Tokyo")},
            {"iso_code": "X", "names": names("Second level")},
        ],
        "city": {"names": names("Tokyo")},
        "postal": {"code": "100-0001"},
        "location": {"latitude": 35.6895, "longitude": 139.6917},
    }),
]


def flat(cc, state1, city, postcode, lat, lon):
    # Same keys and types as dbip-city-ipv{4,6}.mmdb: every key is always
    # present, missing values are "", latitude/longitude are 32-bit floats.
    return {
        "city": city,
        "country_code": cc,
        "latitude": MmdbF32(lat),
        "longitude": MmdbF32(lon),
        "postcode": postcode,
        "state1": state1,
        "state2": "",
        "timezone": "",
    }


FLAT_CITY = [
    ("81.2.69.0/24", flat("GB", "England", "London", "EC1A", 51.5142, -0.0931)),
    ("203.0.113.0/24",
     flat("US", "California", "San Francisco", "94107", 37.77, -122.41)),
    ("2001:db8:1::/48", flat("DE", "Berlin", "Berlin", "10115", 52.52, 13.405)),
    # Country-only row, shaped like the real DB's (city/state1 are "").
    ("198.51.100.0/24", flat("FR", "", "", "", 46.2276, 2.2137)),
]


def write(path, database_type, description, records):
    w = FixedEpochWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description={"en": description},
    )
    for cidr, record in records:
        w.insert_network(IPSet([cidr]), record)
    w.to_db_file(str(path))


def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write(OUT_DIR / "geoip2-city-test.mmdb", "GeoIP2-City",
          "Glimpse test fixture (GeoIP2-City schema)", GEOIP2_CITY)
    write(OUT_DIR / "flat-city-test.mmdb", "city ipv6",
          "Glimpse test fixture (ip-location-db dbip-city flat schema)",
          FLAT_CITY)


if __name__ == "__main__":
    main()
