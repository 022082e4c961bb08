//! Cardinality: the free-text values of an event as one site stores them ([`SiteValues`]):
//! long opaque tokens replaced unless the site keeps them, then each value within the site's
//! daily bound. Per site and UTC day, each free-text dimension of the stored row keeps at most
//! `limits.values_per_day` distinct values; later new values are stored as [`OTHER`] and counted.
//! Every distinct value becomes an aggregate row that is kept, so without this bound a client
//! that sends unique paths (or property values, event names, host names ...) grows storage
//! without limit. Values already seen that day are always kept, so real traffic is unaffected
//! until a site really has that many distinct values in a day.
//!
//! Memory is bounded too: values are tracked by 32 bits of a keyed hash, and once
//! `limits.tracked_values` are tracked over all sites, new values fold everywhere until the day
//! changes. The bound is per collector: several collectors each admit up to the limit.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::classify::redact;
use crate::filter::Accepted;
use crate::metrics::{Counter, Gauge};
use crate::model::Site;
use crate::prehashed;
use crate::settings::Reader;

/// What a value past the bound is stored as.
pub(crate) const OTHER: &str = "(other)";

/// The dimensions whose values come from the request and are unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Page,
    Hostname,
    Referrer,
    Source,
    Utm,
    Event,
    Prop,
    Version,
    Region,
}

impl Dim {
    pub const ALL: [Dim; 9] = [
        Dim::Page,
        Dim::Hostname,
        Dim::Referrer,
        Dim::Source,
        Dim::Utm,
        Dim::Event,
        Dim::Prop,
        Dim::Version,
        Dim::Region,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Page => "page",
            Dim::Hostname => "hostname",
            Dim::Referrer => "referrer",
            Dim::Source => "source",
            Dim::Utm => "utm",
            Dim::Event => "event",
            Dim::Prop => "prop",
            Dim::Version => "version",
            Dim::Region => "region",
        }
    }
}

/// The `[limits]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Distinct values per site, day and dimension.
    pub values_per_day: usize,
    /// Distinct values tracked in memory over all sites and dimensions (32 bits of a keyed
    /// hash each in an open-addressed array: 5.3 to 10.7 bytes).
    pub tracked_values: usize,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            values_per_day: r.bounded("limits.values_per_day", 10_000, 10, 10_000_000) as usize,
            tracked_values: r.bounded("limits.tracked_values", 1_000_000, 1_000, 1_000_000_000)
                as usize,
        }
    }
}

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    day: u16,
    /// 32-bit tags of the keyed hashes of the (site, dimension, value) triples seen today. The
    /// hash is already keyed and uniform, so the set does not hash it again, and one probe
    /// answers the common case, a value seen before (a map of sets cost two hashes and two
    /// probes per value). A tag is half a whole hash's memory. A new value finds its tag taken
    /// with odds of the shard's tags in 2^32: at the default bound, one in 70 000 spread over
    /// the shards, one in 4 300 were it all in one. Such a value is kept uncounted: the bound
    /// is off by that much, and no value is lost.
    seen: prehashed::TagSet,
    /// Distinct values per site and dimension today, for the bound; touched by new values only.
    /// Site indexes and counts fit 32 bits (sites are configured; a count stops at
    /// `values_per_day`), which halves an entry.
    counts: HashMap<(u32, Dim), u32>,
}

pub struct Bounds {
    settings: Settings,
    key: RandomState,
    shards: Vec<Mutex<Shard>>,
    tracked: AtomicUsize,
    folded: [Counter; Dim::ALL.len()],
}

impl Bounds {
    pub fn new(settings: Settings) -> Bounds {
        Bounds {
            settings,
            key: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            tracked: AtomicUsize::new(0),
            folded: Default::default(),
        }
    }

    /// The bound for one row of site `site` on `day`: all its values are checked under one
    /// lock.
    pub fn row(&self, site: usize, day: u16) -> RowBound<'_> {
        // A poisoned lock only means a panic elsewhere mid-update; the sets are still sets.
        let mut shard = self.shards[site % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.day != day {
            self.tracked.fetch_sub(shard.seen.len(), Ordering::Relaxed);
            shard.seen.clear();
            shard.counts.clear();
            shard.day = day;
        }
        RowBound {
            bounds: self,
            site,
            shard,
        }
    }

    /// `value` if site `site` may store it on `day` in `dim`, else [`OTHER`].
    pub fn keep<'v>(&self, site: usize, day: u16, dim: Dim, value: &'v str) -> &'v str {
        self.row(site, day).keep(dim, value)
    }

    /// Values stored as [`OTHER`] so far, per dimension.
    pub fn folded(&self) -> impl Iterator<Item = (Dim, u64)> + '_ {
        Dim::ALL
            .iter()
            .map(|d| (*d, self.folded[*d as usize].get()))
    }

    /// Distinct values tracked now.
    pub(crate) fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Gauges for `/metrics`: values tracked, and values stored as "(other)" since start.
    pub(crate) fn gauges(&self, out: &mut Vec<Gauge>) {
        out.push(Gauge {
            name: "glimpse_values_tracked",
            help: "Distinct values of today tracked for the per-site bound.",
            value: self.tracked() as f64,
        });
        out.push(Gauge {
            name: "glimpse_values_folded",
            help: "Values stored as (other) because their site had too many distinct ones that day.",
            value: self.folded().map(|(_, n)| n).sum::<u64>() as f64,
        });
    }
}

/// The free-text values of one event's row for one site, final before the row is encoded.
#[derive(Debug)]
pub struct SiteValues<'a> {
    pub name: Cow<'a, str>,
    pub hostname: Cow<'a, str>,
    pub pathname: Cow<'a, str>,
    pub referrer: Cow<'a, str>,
    pub referrer_source: Cow<'a, str>,
    /// Source, medium, campaign, content, term.
    pub utm: [Cow<'a, str>; 5],
    pub browser_version: Cow<'a, str>,
    pub os_version: Cow<'a, str>,
    pub region: Cow<'a, str>,
    pub props: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> SiteValues<'a> {
    /// `a`'s values as `site` stores them. An engagement report is no event: its name is not
    /// counted against the bound, and it has no properties.
    pub fn of(
        a: &'a Accepted<'_, '_, '_>,
        site: &Site,
        bound: &mut RowBound<'_>,
        engagement: bool,
    ) -> SiteValues<'a> {
        let e = &a.event;
        let secret = |v: &'a str| -> Cow<'a, str> {
            if site.redact_tokens {
                redact::tokens(v)
            } else {
                Cow::Borrowed(v)
            }
        };
        let u = &e.page.utm;
        // The order in which they have always been checked: when the bound fills up mid-row,
        // the same value takes the last place. An engagement report's name is not counted
        // (an empty value is no value).
        let mut texts: [(Dim, Cow<'a, str>); 13] = [
            (
                Dim::Event,
                Cow::Borrowed(if engagement { "" } else { &e.payload.name }),
            ),
            (Dim::Hostname, Cow::Borrowed(&e.page.hostname)),
            (Dim::Page, secret(&e.page.pathname)),
            (Dim::Referrer, secret(&e.referrer)),
            (Dim::Source, secret(&e.referrer_source)),
            (Dim::Utm, secret(&u.source)),
            (Dim::Utm, secret(&u.medium)),
            (Dim::Utm, secret(&u.campaign)),
            (Dim::Utm, secret(&u.content)),
            (Dim::Utm, secret(&u.term)),
            (Dim::Version, Cow::Borrowed(&a.browser.browser_version)),
            (Dim::Version, Cow::Borrowed(&a.browser.os_version)),
            (Dim::Region, Cow::Borrowed(e.location.region)),
        ];
        let folded = bound
            .keep_all::<13>(std::array::from_fn(|i| (texts[i].0, &*texts[i].1)))
            .map(|kept| kept == OTHER);
        for ((_, text), folded) in texts.iter_mut().zip(folded) {
            if folded {
                *text = Cow::Borrowed(OTHER);
            }
        }
        let [
            name,
            hostname,
            pathname,
            referrer,
            referrer_source,
            source,
            medium,
            campaign,
            content,
            term,
            browser_version,
            os_version,
            region,
        ] = texts.map(|(_, text)| text);
        let mut values = SiteValues {
            name: if engagement {
                Cow::Borrowed(&*e.payload.name)
            } else {
                name
            },
            hostname,
            pathname,
            referrer,
            referrer_source,
            utm: [source, medium, campaign, content, term],
            browser_version,
            os_version,
            region,
            props: Vec::new(),
        };
        if !engagement {
            values.props = e
                .payload
                .props
                .iter()
                .map(|(k, v)| {
                    let (k, v) = (secret(k), secret(v));
                    let (fold_key, fold_value) = {
                        let (kk, vv) = bound.keep_prop(&k, &v);
                        (kk == OTHER, vv == OTHER)
                    };
                    let other = || Cow::Borrowed(OTHER);
                    (
                        if fold_key { other() } else { k },
                        if fold_value { other() } else { v },
                    )
                })
                .collect();
        }
        values
    }
}

/// One row's view of the bound, holding its site's lock.
pub struct RowBound<'b> {
    bounds: &'b Bounds,
    site: usize,
    shard: std::sync::MutexGuard<'b, Shard>,
}

impl RowBound<'_> {
    /// `value` if the site may store it in `dim`, else [`OTHER`].
    pub fn keep<'v>(&mut self, dim: Dim, value: &'v str) -> &'v str {
        let [kept] = self.keep_all([(dim, value)]);
        kept
    }

    /// Each of a row's values if the site may store it in its dimension, else [`OTHER`]: what
    /// `keep` gives for each in turn. The slots of all of them are read before any is
    /// checked: a busy day's tags are far more than the processor's caches hold, and a row
    /// then waits for memory about once instead of once per value.
    pub fn keep_all<'v, const N: usize>(&mut self, values: [(Dim, &'v str); N]) -> [&'v str; N] {
        let hashes = values.map(|(dim, v)| (!v.is_empty()).then(|| self.hash(dim, 0, &[v])));
        let warm = hashes
            .iter()
            .flatten()
            .fold(0, |acc, h| acc ^ self.shard.seen.warm(*h as u32));
        std::hint::black_box(warm);
        std::array::from_fn(|i| {
            let (dim, value) = values[i];
            match hashes[i] {
                None => value,
                Some(h) if self.admit(dim, h) => value,
                Some(_) => {
                    self.bounds.folded[dim as usize].inc();
                    OTHER
                }
            }
        })
    }

    /// A custom property as the site may store it: itself; its value as [`OTHER`] when the key
    /// is known but the value past the bound; both as [`OTHER`] when the key is.
    pub(crate) fn keep_prop<'v>(&mut self, key: &'v str, value: &'v str) -> (&'v str, &'v str) {
        let key_hash = self.hash(Dim::Prop, 1, &[key]);
        if !self.admit(Dim::Prop, key_hash) {
            self.bounds.folded[Dim::Prop as usize].inc();
            return (OTHER, OTHER);
        }
        let pair_hash = self.hash(Dim::Prop, 2, &[key, value]);
        if self.admit(Dim::Prop, pair_hash) {
            (key, value)
        } else {
            self.bounds.folded[Dim::Prop as usize].inc();
            (key, OTHER)
        }
    }

    /// The keyed hash of this row's site, `dim`, what kind of value it is, and its `parts`.
    /// Site, dimension and kind go in as one integer and each part but the last is preceded by
    /// its length, so distinct inputs stay distinct: each write to the hasher costs its own
    /// buffering, and hashing a tuple field by field wrote four or five times per value.
    fn hash(&self, dim: Dim, kind: u8, parts: &[&str]) -> u64 {
        let mut h = self.bounds.key.build_hasher();
        h.write_u64(((self.site as u64) << 16) | (u64::from(dim as u8) << 8) | u64::from(kind));
        if let Some((last, rest)) = parts.split_last() {
            for part in rest {
                h.write_u64(part.len() as u64);
                h.write(part.as_bytes());
            }
            h.write(last.as_bytes());
        }
        h.finish()
    }

    /// `hash`: the keyed hash of the site, the dimension and the value.
    fn admit(&mut self, dim: Dim, hash: u64) -> bool {
        let settings = &self.bounds.settings;
        let tracked = &self.bounds.tracked;
        let shard = &mut *self.shard;
        // Any 32 bits of a keyed hash are as uniform as the whole.
        let tag = hash as u32;
        if shard.seen.contains(tag) {
            return true;
        }
        let count = shard.counts.entry((self.site as u32, dim)).or_default();
        if *count as usize >= settings.values_per_day
            || tracked.load(Ordering::Relaxed) >= settings.tracked_values
        {
            return false;
        }
        *count += 1;
        shard.seen.insert(tag);
        tracked.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(per_day: usize, tracked: usize) -> Bounds {
        Bounds::new(Settings {
            values_per_day: per_day,
            tracked_values: tracked,
        })
    }

    #[test]
    fn new_values_past_the_bound_fold_and_known_ones_stay() {
        let b = bounds(3, 1000);
        for p in ["/a", "/b", "/c"] {
            assert_eq!(b.keep(0, 10, Dim::Page, p), p);
        }
        assert_eq!(b.keep(0, 10, Dim::Page, "/d"), OTHER);
        assert_eq!(b.keep(0, 10, Dim::Page, "/a"), "/a", "seen today: kept");
        assert_eq!(b.keep(0, 10, Dim::Page, ""), "", "empty is no value");
        // Per site and per dimension.
        assert_eq!(b.keep(1, 10, Dim::Page, "/d"), "/d");
        assert_eq!(b.keep(0, 10, Dim::Event, "/d"), "/d");
        // A new day starts empty.
        assert_eq!(b.keep(0, 11, Dim::Page, "/d"), "/d");
        let folded: Vec<(Dim, u64)> = b.folded().filter(|(_, n)| *n > 0).collect();
        assert_eq!(folded, [(Dim::Page, 1)]);
    }

    #[test]
    fn a_row_kept_together_is_kept_as_value_by_value() {
        // Rows whose values repeat within the row and across rows, fill the bound mid-row,
        // and include empty values: both ways agree on every value and every count.
        let (together, one_by_one) = (bounds(3, 20), bounds(3, 20));
        let texts = ["/a", "/b", "", "/c", "/a", "/d", "/e", "/b", "/f"];
        let dims = [Dim::Page, Dim::Page, Dim::Utm, Dim::Version, Dim::Version];
        for n in 0..60usize {
            let (site, day) = (n % 4, 10 + (n / 40) as u16);
            let row: [(Dim, &str); 5] =
                std::array::from_fn(|i| (dims[i], texts[(n * 7 + i * 5) % texts.len()]));
            let kept = together.row(site, day).keep_all(row);
            let mut single = one_by_one.row(site, day);
            let expected = row.map(|(dim, v)| single.keep(dim, v));
            assert_eq!(kept, expected, "row {n}: {row:?}");
        }
        assert!(
            together.folded().any(|(_, n)| n > 0),
            "the bound was reached"
        );
        assert!(together.folded().eq(one_by_one.folded()));
        assert_eq!(together.tracked(), one_by_one.tracked());
    }

    #[test]
    fn properties_fold_by_value_then_by_key() {
        let b = bounds(4, 1000);
        let mut row = b.row(0, 1);
        assert_eq!(row.keep_prop("plan", "pro"), ("plan", "pro"));
        assert_eq!(row.keep_prop("plan", "team"), ("plan", "team"));
        assert_eq!(row.keep_prop("plan", "free"), ("plan", "free"));
        // One key and three pairs are four values: the next new pair folds its value...
        assert_eq!(row.keep_prop("plan", "basic"), ("plan", OTHER));
        // ...and a new key folds whole.
        assert_eq!(row.keep_prop("user", "x"), (OTHER, OTHER));
        assert_eq!(row.keep_prop("plan", "pro"), ("plan", "pro"));
    }

    #[test]
    fn memory_is_bounded_over_all_sites() {
        let b = bounds(1_000_000, 100);
        for site in 0..50 {
            for i in 0..10 {
                b.keep(site, 1, Dim::Page, &format!("/{i}"));
            }
        }
        assert_eq!(b.tracked(), 100);
        assert_eq!(b.keep(99, 1, Dim::Page, "/new"), OTHER);
        // The day changes: memory is given back as shards see the new day.
        for site in 0..200 {
            b.keep(site, 2, Dim::Hostname, "a.com");
        }
        assert!(b.tracked() <= 100, "{}", b.tracked());
    }
}
