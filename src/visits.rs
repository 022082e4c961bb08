//! Visits (sessions), decided as events arrive: a visit is a visitor's run of events on one site
//! with no gap over the timeout (30 minutes by default). Each event row carries what it changes
//! about its visit (`encode::VisitStep`): whether it starts one, the seconds since the visit's
//! previous event, +1/-1 to the bounce count, and the exit page it replaces. Aggregates only sum
//! those, so visits, bounce rate, duration, entry and exit pages work in aggregates-only mode and
//! no visit identifier is stored. The key is the daily visitor id, already per site and per day.
//!
//! Engagement reports (scroll depth, engaged time) attach to the open visit: the visit remembers
//! the deepest scroll and whether time was reported for its last few pages, so each report adds
//! only the rise of a visit-page's maximum and counts a visit-page once ([`Engaged`]). A report
//! also moves the visit's last-seen time, so a single page read for 40 s lasts 40 s.
//!
//! State is in memory, bounded: a collector restart, or a visitor reaching another collector,
//! starts a new visit (route by client address for several collectors); a visit crossing UTC
//! midnight becomes two, as the visitor id changes. When the table is full, events of visitors it
//! cannot hold count as visits of their own (`glimpse_visits_untracked_total`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use crate::metrics::Gauge;
use crate::prehashed;
use crate::settings::Reader;

const SHARDS: usize = 64;
/// A full shard is swept for ended visits at most this often.
const SWEEP_EVERY_SECS: u32 = 1;

/// The `[visits]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A visit ends after this long without an event.
    pub timeout: Duration,
    /// Open visits held in memory (each a map entry and its exit page's path).
    pub max_open: usize,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            timeout: Duration::from_secs(60 * r.bounded("visits.timeout_minutes", 30, 1, 1440)),
            max_open: r.bounded("visits.max_open", 100_000, 64, 100_000_000) as usize,
        }
    }
}

/// What one event changes about its visit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    pub entry: bool,
    pub seconds: u32,
    pub bounce: i8,
    /// The visit's exit page before this page view (moved to this page); `None` for entries and
    /// custom events.
    pub exit_prev: Option<Box<str>>,
}

/// What one engagement report adds, given what its visit already reported for the page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Engaged {
    /// Seconds since the visit's previous event: visit duration grows to the report.
    pub seconds: u32,
    /// Rise of the visit-page's maximum scroll depth (the aggregates sum per-visit maxima).
    pub scroll_gain: u8,
    /// 1 for the visit-page's first report: the count the scroll average divides by.
    pub scroll_first: bool,
    pub engaged_ms: u32,
    /// 1 for the visit-page's first report with engaged time: the count time on page divides by.
    pub engaged_first: bool,
}

/// Pages of one visit that reported engagement, most recent last. A page that drops out of
/// this window and reports again counts as a visit-page of its own.
const PAGES_PER_VISIT: usize = 8;

#[derive(Debug, Clone, Copy)]
struct PageSeen {
    page: u64,
    max_scroll: u8,
    engaged: bool,
}

#[derive(Debug)]
struct Visit {
    last: u32,
    pageviews: u16,
    bounce: bool,
    exit: Box<str>,
    /// Allocated at the visit's first engagement report only.
    pages: Vec<PageSeen>,
}

#[derive(Default)]
struct Shard {
    open: prehashed::HashMap<Visit>,
    swept_at: u32,
}

pub struct Visits {
    timeout_secs: u32,
    max_open: usize,
    shards: Vec<Mutex<Shard>>,
    untracked: AtomicU64,
}

impl Visits {
    pub fn new(settings: Settings) -> Visits {
        Visits {
            timeout_secs: u32::try_from(settings.timeout.as_secs()).unwrap_or(u32::MAX),
            max_open: settings.max_open,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            untracked: AtomicU64::new(0),
        }
    }

    /// Events that started a visit only because the table was full.
    pub(crate) fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Visits currently open.
    pub fn open(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.open.len()))
            .sum()
    }

    /// Gauges for `/metrics`.
    pub(crate) fn gauges(&self, out: &mut Vec<Gauge>) {
        out.push(Gauge {
            name: "glimpse_visits_open",
            help: "Visits in progress held in memory.",
            value: self.open() as f64,
        });
        out.push(Gauge {
            name: "glimpse_visits_untracked",
            help: "Events counted as a visit of their own because the visit table was full.",
            value: self.untracked() as f64,
        });
    }

    /// Records an event of `visitor` at `now` (Unix seconds) and says what it changes.
    pub fn step(
        &self,
        visitor: u64,
        now: u32,
        pageview: bool,
        interactive: bool,
        page: &str,
    ) -> Step {
        let Ok(mut shard) = self.shards[(visitor >> 58) as usize % SHARDS].lock() else {
            return entry_step(pageview, interactive);
        };
        let timeout = self.timeout_secs;
        if let Some(v) = shard.open.get_mut(&visitor)
            && now.saturating_sub(v.last) < timeout
        {
            let seconds = now.saturating_sub(v.last);
            v.last = v.last.max(now);
            let mut bounce = 0;
            if pageview {
                v.pageviews = v.pageviews.saturating_add(1);
            }
            if v.bounce && (v.pageviews >= 2 || (interactive && !pageview)) {
                v.bounce = false;
                bounce = -1;
            }
            let exit_prev = pageview.then(|| std::mem::replace(&mut v.exit, page.into()));
            return Step {
                entry: false,
                seconds,
                bounce,
                exit_prev: exit_prev.filter(|p| !p.is_empty()),
            };
        }
        let per_shard = (self.max_open / SHARDS).max(1);
        if shard.open.len() >= per_shard && !shard.open.contains_key(&visitor) {
            if now.saturating_sub(shard.swept_at) >= SWEEP_EVERY_SECS {
                shard.swept_at = now;
                shard
                    .open
                    .retain(|_, v| now.saturating_sub(v.last) < timeout);
            }
            if shard.open.len() >= per_shard {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                return entry_step(pageview, interactive);
            }
        }
        let step = entry_step(pageview, interactive);
        shard.open.insert(
            visitor,
            Visit {
                last: now,
                pageviews: u16::from(pageview),
                bounce: step.bounce > 0,
                exit: if pageview { page.into() } else { "".into() },
                pages: Vec::new(),
            },
        );
        step
    }

    /// Records an engagement report of `visitor` for `page`. `None` when the visitor has no
    /// open visit: a report never starts one (it may come from a visit that ended, or from a
    /// visitor whose id changed at midnight).
    pub fn engage(
        &self,
        visitor: u64,
        now: u32,
        page: &str,
        scroll_depth: u8,
        engaged_ms: u32,
    ) -> Option<Engaged> {
        let mut shard = self.shards[(visitor >> 58) as usize % SHARDS].lock().ok()?;
        let v = shard.open.get_mut(&visitor)?;
        if now.saturating_sub(v.last) >= self.timeout_secs {
            return None;
        }
        let seconds = now.saturating_sub(v.last);
        v.last = v.last.max(now);
        let key = page_key(page);
        let scroll_depth = scroll_depth.min(100);
        let (i, new) = match v.pages.iter().position(|p| p.page == key) {
            Some(i) => (i, false),
            None => {
                if v.pages.len() == PAGES_PER_VISIT {
                    v.pages.remove(0);
                }
                v.pages.push(PageSeen {
                    page: key,
                    max_scroll: 0,
                    engaged: false,
                });
                (v.pages.len() - 1, true)
            }
        };
        let seen = &mut v.pages[i];
        let scroll_gain = scroll_depth.saturating_sub(seen.max_scroll);
        seen.max_scroll = seen.max_scroll.max(scroll_depth);
        let engaged_first = engaged_ms > 0 && !seen.engaged;
        seen.engaged |= engaged_ms > 0;
        Some(Engaged {
            seconds,
            scroll_gain,
            scroll_first: new,
            engaged_ms,
            engaged_first,
        })
    }
}

/// A page's key within one visit: collisions between two pages of the same visit are
/// negligible at 64 bits.
fn page_key(page: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(page)
}

/// A visit's first event: a bounce unless it is an interaction itself.
fn entry_step(pageview: bool, interactive: bool) -> Step {
    Step {
        entry: true,
        seconds: 0,
        bounce: if interactive && !pageview { 0 } else { 1 },
        exit_prev: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visits_holding(max_open: usize) -> Visits {
        Visits::new(Settings {
            timeout: Duration::from_secs(1800),
            max_open,
        })
    }

    fn visits() -> Visits {
        visits_holding(100_000)
    }

    #[test]
    fn engagement_adds_per_visit_page_maxima_and_extends_the_visit() {
        let v = visits();
        // No visit, no report: engagement never starts one.
        assert_eq!(v.engage(1, 100, "/a", 50, 1000), None);
        v.step(1, 100, true, true, "/a");
        let e = v.engage(1, 140, "/a", 30, 40_000).unwrap();
        assert_eq!(
            e,
            Engaged {
                seconds: 40,
                scroll_gain: 30,
                scroll_first: true,
                engaged_ms: 40_000,
                engaged_first: true
            }
        );
        // The page again: only the rise of its maximum, and no second count.
        let e = v.engage(1, 150, "/a", 80, 5_000).unwrap();
        assert_eq!(
            (e.seconds, e.scroll_gain, e.scroll_first, e.engaged_first),
            (10, 50, false, false)
        );
        let e = v.engage(1, 151, "/a", 60, 0).unwrap();
        assert_eq!((e.scroll_gain, e.engaged_ms), (0, 0));
        // Another page of the visit is a visit-page of its own.
        v.step(1, 160, true, true, "/b");
        let e = v.engage(1, 170, "/b", 0, 0).unwrap();
        assert_eq!(
            (e.scroll_gain, e.scroll_first, e.engaged_first),
            (0, true, false)
        );
        let e = v.engage(1, 171, "/b", 0, 2_000).unwrap();
        assert!(e.engaged_first && !e.scroll_first);
        // After the timeout the visit is over: nothing is attached to it.
        assert_eq!(v.engage(1, 171 + 1800, "/b", 90, 1000), None);
        // The window of pages per visit stays bounded.
        v.step(2, 0, true, true, "/0");
        for i in 0..100 {
            assert!(
                v.engage(2, 1, &format!("/{i}"), 10, 10)
                    .unwrap()
                    .scroll_first
            );
        }
        let shard = v.shards[(2u64 >> 58) as usize % SHARDS].lock().unwrap();
        assert_eq!(shard.open[&2].pages.len(), PAGES_PER_VISIT);
    }

    #[test]
    fn a_visit_with_three_pages_then_a_new_visit_after_the_timeout() {
        let v = visits();
        let a = 7u64;
        assert_eq!(
            v.step(a, 1000, true, true, "/"),
            Step {
                entry: true,
                seconds: 0,
                bounce: 1,
                exit_prev: None
            }
        );
        let s = v.step(a, 1600, true, true, "/pricing");
        assert_eq!(
            (s.entry, s.seconds, s.bounce, s.exit_prev.as_deref()),
            (false, 600, -1, Some("/"))
        );
        let s = v.step(a, 1700, true, true, "/pricing");
        assert_eq!(
            (s.seconds, s.bounce, s.exit_prev.as_deref()),
            (100, 0, Some("/pricing"))
        );
        // A custom event does not move the exit page.
        let s = v.step(a, 1750, false, true, "/pricing");
        assert_eq!((s.seconds, s.bounce, s.exit_prev), (50, 0, None));
        // 30 minutes of silence end the visit.
        assert!(v.step(a, 1750 + 1800, true, true, "/blog").entry);
    }

    #[test]
    fn bounce_rules() {
        let v = visits();
        // An interactive custom event on a one-page visit ends the bounce.
        v.step(1, 0, true, true, "/");
        assert_eq!(v.step(1, 10, false, true, "/").bounce, -1);
        // A non-interactive one does not.
        v.step(2, 0, true, true, "/");
        assert_eq!(v.step(2, 10, false, false, "/").bounce, 0);
        // A visit starting with an interaction is no bounce.
        assert_eq!(v.step(3, 0, false, true, "/").bounce, 0);
        // A non-interactive start, then one page view: still one page, still a bounce.
        assert_eq!(v.step(4, 0, false, false, "/").bounce, 1);
        assert_eq!(v.step(4, 5, true, true, "/").bounce, 0);
        assert_eq!(v.step(4, 9, true, true, "/x").bounce, -1);
    }

    #[test]
    fn memory_is_bounded() {
        let v = visits_holding(SHARDS * 2);
        for i in 0..10_000u64 {
            v.step(i << 40 | i, 100, true, true, "/");
        }
        assert!(v.open() <= SHARDS * 2);
        assert!(v.untracked() > 9_000);
        // Once visits have ended, a sweep makes room again.
        let before = v.untracked();
        v.step(5, 100 + 1800, true, true, "/");
        assert_eq!(v.untracked(), before);
    }
}
