//! The daily stats of a segment, summed by the deliverer instead of by a view on the server.
//!
//! `stats_daily` holds, per site, UTC day, dimension and value, the page views, the other
//! events and a sketch of the visitors. Its view used to fan every inserted row out into
//! seventeen (dimension, value) rows and group them, about half of the insert work per event on
//! 18.16. The deliverer now sends one row per group of each chunk of a segment, with the
//! group's distinct visitor ids, and a view turns those into the same states
//! (`schema/0011_daily_rollup.sql`).
//! The groups and the values are exactly the old view's, so no answer changes.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::insert::{Failure, classify};
use crate::encode::{Head, Heads, Unreadable, heads, put_str, put_varint};

/// The dimensions of `stats_daily`, in the old view's order (the stats APIs read the same list).
pub const DIMENSIONS: [&str; 17] = [
    "page",
    "hostname",
    "source",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "country",
    "region",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "device",
    "event",
];

/// Columns of the rollup's insert table, in RowBinary order.
pub const COLUMNS: &[(&str, &str)] = &[
    ("site", "String"),
    ("day", "Date"),
    ("dimension", "String"),
    ("value", "String"),
    ("pageviews", "UInt64"),
    ("events", "UInt64"),
    ("visitors", "Array(UInt64)"),
];

/// The insert statement of the rollup's rows, which are sent as Native blocks
/// (`super::native`).
pub(crate) fn insert_sql(table: &str) -> String {
    let cols: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    format!("INSERT INTO {table} ({}) FORMAT Native", cols.join(", "))
}

/// Groups a chunk holds before it is written: with the next bound, what bounds the rollup's
/// memory whatever a segment holds (32 bytes a group, a 4-byte slot of its index, and at most
/// two new texts). A chunk is as many rows as fit, so rows that group well are summed over a
/// whole segment and the server gets few rows, and rows that do not (thousands of small sites,
/// long-tail pages) cost no more memory than rows that do. Long-tailed traffic of a few hundred
/// sites makes about two thirds of a group per row over a whole segment of 50 000 rows, so such
/// a segment fits one chunk; over chunks of 15 000 rows it made two groups per row.
const CHUNK_GROUPS: usize = 65_536;
/// (group, visitor) pairs a chunk holds before it is written (8 bytes each): a row adds one per
/// dimension, so this bounds a chunk to about 61 700 rows, more than a segment of the default
/// `batch.max_rows` (50 000).
const CHUNK_VISITS: usize = 1_048_576;
// A group's texts (site and value parts) are numbered in 18 bits of its packed key.
const _: () = assert!(3 * CHUNK_GROUPS + 1 < 1 << 18);
/// Distinct UTC days in a chunk (a key holds 5 bits of day); a chunk with more is written early.
const CHUNK_DAYS: usize = 32;
/// Rows summed between two yields to the runtime (about half a millisecond), so that a segment
/// does not hold a worker thread, and the requests queued on it, for long.
const STEP_ROWS: usize = 256;
/// Bytes of a full chunk's rows written between two yields (one group more at most): the
/// collector holds a piece of a chunk's rows, never the whole.
const PIECE_BYTES: usize = 256 * 1024;

/// What joins a value's two parts (`None`: the value is `a` alone). A version is always
/// "browser version", even " " when both are unknown; a region only when there is one.
fn separator(dim: u8, b: &str) -> Option<&'static str> {
    match DIMENSIONS[usize::from(dim)] {
        "region" if !b.is_empty() => Some("-"),
        "browser_version" | "os_version" => Some(" "),
        _ => None,
    }
}

/// The (dimension, value) pairs a row counts under, as the old view's `ARRAY JOIN` listed them:
/// pages only for page views, regions and versions qualified, an event's name unless it is a
/// page view. Engagement reports count nowhere here. A value is (a, b), joined by the
/// dimension's [`separator`].
fn values<'a>(h: &Head<'a>) -> Option<[Option<(&'a str, &'a str)>; 17]> {
    if h.name == "engagement" {
        return None;
    }
    let pageview = h.name == "pageview";
    let [
        hostname,
        pathname,
        referrer,
        referrer_source,
        utm_source,
        utm_medium,
        utm_campaign,
        utm_content,
        utm_term,
        country_code,
        region,
        browser,
        browser_version,
        os,
        os_version,
        device,
    ] = h.texts;
    let one = |v| Some((v, ""));
    Some([
        pageview.then_some((pathname, "")),
        one(hostname),
        one(referrer_source),
        one(referrer),
        one(utm_source),
        one(utm_medium),
        one(utm_campaign),
        one(utm_content),
        one(utm_term),
        one(country_code),
        Some(if region.is_empty() {
            ("", "")
        } else {
            (country_code, region)
        }),
        one(browser),
        Some((browser, browser_version)),
        one(os),
        Some((os, os_version)),
        one(device),
        one(if pageview { "" } else { h.name }),
    ])
}

/// The rollup rows (RowBinary, [`COLUMNS`]) of `data`, rows of `format`; empty when no row
/// counts. The same rows always give the same bytes (groups in the order they first appear,
/// a group's visitors in an order that depends only on the rows), so that a retried insert is
/// recognised as one where the server deduplicates by content.
pub fn daily(data: &[u8], format: u32) -> Result<Vec<u8>, Unreadable> {
    let mut d = Daily::new(data, format);
    let mut out = Vec::new();
    loop {
        let more = d.step()?;
        out.append(&mut d.take());
        if !more {
            return Ok(out);
        }
    }
}

/// Sends the rollup of `data` (rows of `format`) as one INSERT of `sql`, a piece at a time: the
/// collector's memory holds one chunk's groups and a piece of their rows, not a segment's,
/// which with thousands of sites barely group and outweigh the segment. Other tasks run between
/// two steps ([`STEP_ROWS`] rows summed or [`PIECE_BYTES`] written). Nothing is sent when no
/// row counts. Returns the number of rows sent.
pub(crate) async fn insert(
    client: &clickhouse::Client,
    sql: &str,
    data: &[u8],
    format: u32,
) -> Result<u64, Failure> {
    let mut d = Daily::new(data, format);
    let mut insert = None;
    loop {
        let more = d.step().map_err(Failure::Unreadable)?;
        let rows = d.take();
        if !rows.is_empty() {
            let insert = insert.get_or_insert_with(|| client.insert_formatted_with(sql.to_owned()));
            super::insert::send_rows(insert, &rows, COLUMNS).await?;
        }
        if !more {
            break;
        }
        tokio::task::yield_now().await;
    }
    match insert {
        Some(i) => i.end().await.map_err(classify).map(|()| d.written),
        None => Ok(0),
    }
}

/// [`daily`] a step at a time.
struct Daily<'a> {
    heads: Heads<'a>,
    chunk: Chunk<'a>,
    /// The row that did not fit the chunk being written; it starts the next.
    pending: Option<Head<'a>>,
    /// Every row has been read.
    read: bool,
    out: Vec<u8>,
    /// Rows written so far.
    written: u64,
}

impl<'a> Daily<'a> {
    fn new(data: &'a [u8], format: u32) -> Daily<'a> {
        Daily {
            heads: heads(data, format),
            chunk: Chunk::default(),
            pending: None,
            read: false,
            out: Vec::new(),
            written: 0,
        }
    }

    /// Sums the next [`STEP_ROWS`] rows, or writes the next [`PIECE_BYTES`] of a full chunk's
    /// rows, which [`Daily::take`] returns. False once every row is summed and written.
    fn step(&mut self) -> Result<bool, Unreadable> {
        if self.chunk.sealed {
            let (rows, done) = self.chunk.write(&mut self.out, PIECE_BYTES);
            self.written += rows;
            if done {
                match self.pending.take() {
                    // An empty chunk holds any row.
                    Some(h) => _ = self.chunk.add(&h),
                    None if self.read => return Ok(false),
                    None => {}
                }
            }
            return Ok(true);
        }
        for _ in 0..STEP_ROWS {
            let Some(h) = self.heads.next() else {
                self.read = true;
                self.chunk.seal();
                return Ok(true);
            };
            let h = h?;
            if !self.chunk.add(&h) {
                self.pending = Some(h);
                self.chunk.seal();
                return Ok(true);
            }
        }
        Ok(true)
    }

    /// The rollup rows written since the last call.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

/// A group's visitor before its first (`Group::last`).
const NOBODY: u32 = u32::MAX;

/// One row of the rollup, by numbers: 32 bytes, so that a chunk of many groups stays small.
struct Group {
    /// Numbers of the site's text and of the value's parts in `Chunk::texts`.
    site: u32,
    a: u32,
    b: u32,
    /// Index in `Chunk::days`.
    day: u8,
    dim: u8,
    /// A chunk holds at most a segment's rows, far fewer than 2^32.
    pageviews: u32,
    events: u32,
    /// Entries in `Chunk::visits`, and the last visitor added (a visitor's events in a row
    /// are added once; the server's sketch ignores any other repeat).
    visits: u32,
    last: u32,
}

impl Group {
    /// The numbers that make the group, in one word: a chunk's text numbers fit 18 bits (every
    /// text is part of a group, at most three a group), its day numbers 5.
    fn packed(&self) -> u64 {
        u64::from(self.site)
            | u64::from(self.a) << 18
            | u64::from(self.b) << 36
            | u64::from(self.dim) << 54
            | u64::from(self.day) << 59
    }
}

/// The groups of as many rows as fit [`CHUNK_GROUPS`], [`CHUNK_VISITS`] and [`CHUNK_DAYS`].
#[derive(Default)]
struct Chunk<'a> {
    /// Every distinct non-empty text of the chunk, numbered from 1: a group is found by
    /// numbers, and each text is hashed once per row rather than once per group it counts in.
    /// The three tables below hold only numbers (4 bytes a slot) and find the key they stand
    /// for in the vectors, so that a chunk of a whole segment stays small.
    numbers: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// The texts by number; 0 is the empty text.
    texts: Vec<&'a str>,
    days: Vec<u16>,
    /// The groups by their numbers (site, value parts, dimension, day), packed and mixed.
    index: HashTable<u32>,
    groups: Vec<Group>,
    /// (group, visitor number) of each row in each group it counts in.
    visits: Vec<(u32, u32)>,
    /// The chunk's distinct visitor ids, numbered in order of arrival.
    visitors: Vec<u64>,
    visitor_no: HashTable<u32>,
    /// Full: its rows are being written, from `groups[cursor]` and `visits[visit_cursor]`.
    sealed: bool,
    cursor: usize,
    visit_cursor: usize,
}

impl<'a> Chunk<'a> {
    /// The number of a text; the empty text, most of a row's, is 0 without a lookup.
    fn text(&mut self, s: &'a str) -> u64 {
        if s.is_empty() {
            return 0;
        }
        let texts = &mut self.texts;
        let hasher = &self.hasher;
        let n = match self.numbers.entry(
            hasher.hash_one(s),
            |&n| texts[n as usize] == s,
            |&n| hasher.hash_one(texts[n as usize]),
        ) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let n = texts.len() as u32;
                e.insert(n);
                texts.push(s);
                n
            }
        };
        u64::from(n)
    }

    /// Adds a row's groups; false (and nothing added) when they or its day might not fit the
    /// chunk.
    fn add(&mut self, h: &Head<'a>) -> bool {
        let n = DIMENSIONS.len();
        if self.groups.len() + n > CHUNK_GROUPS || self.visits.len() + n > CHUNK_VISITS {
            return false;
        }
        // Days since 1970 fit a Date (UInt16) until 2149.
        let day = (h.timestamp / 86_400) as u16;
        let day_no = match self.days.iter().position(|d| *d == day) {
            Some(i) => i,
            None if self.days.len() == CHUNK_DAYS => return false,
            None => {
                self.days.push(day);
                self.days.len() - 1
            }
        };
        let Some(values) = values(h) else {
            return true;
        };
        let pageview = h.name == "pageview";
        let visitors = &mut self.visitors;
        // Mixed like the group keys: test rows' ids are small numbers, not hashes.
        let visitor = match self.visitor_no.entry(
            mix(h.visitor_id),
            |&v| visitors[v as usize] == h.visitor_id,
            |&v| mix(visitors[v as usize]),
        ) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let v = visitors.len() as u32;
                e.insert(v);
                visitors.push(h.visitor_id);
                v
            }
        };
        if self.texts.is_empty() {
            // Text 0, the empty one: a row whose every text is empty (no real row, but a
            // damaged one can be) still makes groups that name it.
            self.texts.push("");
        }
        let site = self.text(h.site);
        for (dim, value) in values.into_iter().enumerate() {
            let Some((a, b)) = value else { continue };
            let (a, b) = (self.text(a), self.text(b));
            let new = Group {
                site: site as u32,
                a: a as u32,
                b: b as u32,
                day: day_no as u8,
                dim: dim as u8,
                pageviews: 0,
                events: 0,
                visits: 0,
                last: NOBODY,
            };
            let packed = new.packed();
            let groups = &mut self.groups;
            let g = match self.index.entry(
                mix(packed),
                |&g| groups[g as usize].packed() == packed,
                |&g| mix(groups[g as usize].packed()),
            ) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    let g = groups.len() as u32;
                    e.insert(g);
                    groups.push(new);
                    g
                }
            };
            let group = &mut self.groups[g as usize];
            if pageview {
                group.pageviews += 1;
            } else {
                group.events += 1;
            }
            if group.last != visitor {
                group.last = visitor;
                group.visits += 1;
                self.visits.push((g, visitor));
            }
        }
        true
    }

    /// Stops adding rows: what the chunk holds is written next.
    fn seal(&mut self) {
        // The visitors by group, in place and in one pass: each group's run starts where the
        // runs of the groups before it end (their sizes are counted), and every pair is
        // swapped into its group's run (a comparison sort of the pairs took a sixth of the
        // deliverer's time). Within a run the order is what the swaps leave, the same for the
        // same rows; the server's sketch does not depend on it. A group's `last` visitor is
        // not needed any more: it holds where the run's next pair goes.
        let mut run = 0u32;
        for g in &mut self.groups {
            g.last = run;
            run += g.visits;
        }
        let mut end = 0usize;
        for g in 0..self.groups.len() {
            end += self.groups[g].visits as usize;
            while (self.groups[g].last as usize) < end {
                let at = self.groups[g].last as usize;
                let owner = self.visits[at].0 as usize;
                if owner != g {
                    let to = self.groups[owner].last as usize;
                    self.visits.swap(at, to);
                }
                self.groups[owner].last += 1;
            }
        }
        self.sealed = true;
    }

    /// Appends the sealed chunk's next rows to `out`, until it has grown by `budget` bytes or
    /// more; says how many rows it wrote and whether that was the last (the chunk is then
    /// empty and takes rows again).
    fn write(&mut self, out: &mut Vec<u8>, budget: usize) -> (u64, bool) {
        let start = out.len();
        let first = self.cursor;
        while out.len() - start < budget {
            let Some(g) = self.groups.get(self.cursor) else {
                break;
            };
            let dim = g.dim;
            let (a, b) = (self.texts[g.a as usize], self.texts[g.b as usize]);
            put_str(out, self.texts[g.site as usize]);
            out.extend_from_slice(&self.days[usize::from(g.day)].to_le_bytes());
            put_str(out, DIMENSIONS[usize::from(dim)]);
            match separator(dim, b) {
                Some(sep) => {
                    put_varint(out, (a.len() + sep.len() + b.len()) as u64);
                    out.extend_from_slice(a.as_bytes());
                    out.extend_from_slice(sep.as_bytes());
                    out.extend_from_slice(b.as_bytes());
                }
                None => put_str(out, a),
            }
            out.extend_from_slice(&u64::from(g.pageviews).to_le_bytes());
            out.extend_from_slice(&u64::from(g.events).to_le_bytes());
            put_varint(out, u64::from(g.visits));
            let end = self.visit_cursor + g.visits as usize;
            for &(_, v) in &self.visits[self.visit_cursor..end] {
                out.extend_from_slice(&self.visitors[v as usize].to_le_bytes());
            }
            self.visit_cursor = end;
            self.cursor += 1;
        }
        let written = (self.cursor - first) as u64;
        if self.cursor < self.groups.len() {
            return (written, false);
        }
        self.numbers.clear();
        self.texts.clear();
        self.days.clear();
        self.index.clear();
        self.groups.clear();
        self.visits.clear();
        self.visitors.clear();
        self.visitor_no.clear();
        self.sealed = false;
        self.cursor = 0;
        self.visit_cursor = 0;
        (written, true)
    }
}

#[cfg(test)]
impl Chunk<'_> {
    /// Bytes the chunk holds on the heap: what its bounds bound.
    fn footprint(&self) -> usize {
        use std::mem::size_of;
        self.numbers.allocation_size()
            + self.index.allocation_size()
            + self.visitor_no.allocation_size()
            + self.texts.capacity() * size_of::<&str>()
            + self.days.capacity() * size_of::<u16>()
            + self.groups.capacity() * size_of::<Group>()
            + self.visits.capacity() * size_of::<(u32, u32)>()
            + self.visitors.capacity() * size_of::<u64>()
    }
}

/// A bijection of 64 bits that spreads packed numbers over the whole range, so that a map can
/// use them as their own hash.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Event, ROW_FORMAT};

    /// Reads rollup rows back: (site, day, dimension, value, page views, events, visitors).
    type Row = (String, u16, String, String, u64, u64, Vec<u64>);

    fn rows_of(mut b: &[u8]) -> Vec<Row> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
            let (h, t) = b.split_at(n);
            *b = t;
            h
        }
        fn text(b: &mut &[u8]) -> String {
            let n = usize::from(take(b, 1)[0]);
            String::from_utf8(take(b, n).to_vec()).unwrap()
        }
        let u64_of = |b: &mut &[u8]| u64::from_le_bytes(take(b, 8).try_into().unwrap());
        let mut out = Vec::new();
        while !b.is_empty() {
            let site = text(&mut b);
            let day = u16::from_le_bytes(take(&mut b, 2).try_into().unwrap());
            let dim = text(&mut b);
            let value = text(&mut b);
            let (pv, ev) = (u64_of(&mut b), u64_of(&mut b));
            let mut n = 0;
            for shift in (0..).step_by(7) {
                let byte = take(&mut b, 1)[0];
                n |= usize::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    break;
                }
            }
            let visitors = (0..n).map(|_| u64_of(&mut b)).collect();
            out.push((site, day, dim, value, pv, ev, visitors));
        }
        out
    }

    fn row(name: &str, path: &str, visitor: u64, timestamp: u32) -> Vec<u8> {
        let mut out = Vec::new();
        Event {
            timestamp,
            site: "a.com",
            name,
            hostname: "a.com",
            pathname: path,
            country_code: "DE",
            region: "Berlin",
            browser: "Firefox",
            browser_version: "125",
            os: "Linux",
            device: "desktop",
            visitor_id: visitor,
            ..Default::default()
        }
        .encode(&mut out);
        out
    }

    fn find<'a>(rows: &'a [Row], dim: &str, value: &str) -> Vec<&'a Row> {
        rows.iter().filter(|r| r.2 == dim && r.3 == value).collect()
    }

    /// `n` page views of one visitor on one day, each of a page of its own.
    fn a_new_page_on_every_row(n: u64) -> Vec<u8> {
        (0..n)
            .flat_map(|i| row("pageview", &format!("/page/{i:08}"), 7, 86_400 * 20_000))
            .collect()
    }

    fn find_dim<'a>(rows: &'a [Row], dim: &str) -> Vec<&'a Row> {
        rows.iter().filter(|r| r.2 == dim).collect()
    }

    #[test]
    fn groups_are_the_views_groups() {
        let day = 20_000 * 86_400;
        let data = [
            row("pageview", "/a", 1, day + 10),
            row("pageview", "/a", 1, day + 20),
            row("pageview", "/a", 2, day + 30),
            row("Signup", "/a", 2, day + 40),
            row("engagement", "/a", 2, day + 50),
            row("pageview", "/a", 3, day + 86_400),
        ]
        .concat();
        let rows = rows_of(&daily(&data, ROW_FORMAT).unwrap());
        // Page views of /a on the first day: three, by two visitors; the custom event on the
        // page is not a page-dimension row and the engagement report counts nowhere.
        let a = find(&rows, "page", "/a");
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].1, a[0].4, a[0].5, &a[0].6),
            (20_000, 3, 0, &vec![1, 2])
        );
        assert_eq!((a[1].1, a[1].4, &a[1].6), (20_001, 1, &vec![3]));
        let signup = find(&rows, "event", "Signup");
        assert_eq!((signup[0].4, signup[0].5, &signup[0].6), (0, 1, &vec![2]));
        // Page views count under the event dimension's empty value, as in the view.
        assert_eq!(find(&rows, "event", "")[0].4, 3);
        assert_eq!(find(&rows, "region", "DE-Berlin")[0].5, 1);
        assert_eq!(find(&rows, "browser_version", "Firefox 125")[0].4, 3);
        assert_eq!(find(&rows, "os_version", "Linux ")[0].6, vec![1, 2]);
        // Seventeen dimensions of page views on each day, plus the custom event's name.
        assert_eq!(rows.len(), 17 + 1 + 17);
    }

    #[test]
    fn unknown_values_are_the_views_too() {
        let mut data = Vec::new();
        Event {
            timestamp: 86_400,
            site: "a.com",
            name: "pageview",
            visitor_id: 1,
            ..Default::default()
        }
        .encode(&mut data);
        let rows = rows_of(&daily(&data, ROW_FORMAT).unwrap());
        // concat('', ' ', '') is one space; an empty region stays empty.
        assert_eq!(find(&rows, "browser_version", " ").len(), 1);
        assert_eq!(find(&rows, "os_version", " ").len(), 1);
        assert_eq!(find(&rows, "region", "").len(), 1);
        assert_eq!(rows.len(), 17);
    }

    /// No real row has an empty site, but a damaged one read from the spool can: a row whose
    /// every text is empty is summed like any other (found by fuzzing, where it panicked).
    #[test]
    fn a_row_whose_every_text_is_empty() {
        let mut data = Vec::new();
        Event {
            timestamp: 86_400,
            visitor_id: 1,
            ..Default::default()
        }
        .encode(&mut data);
        let rows = rows_of(&daily(&data, ROW_FORMAT).unwrap());
        // Not a page view: every dimension but pages, each with the empty value (the versions
        // with their space), the event named by its empty name.
        assert_eq!(rows.len(), 16);
        assert!(rows.iter().all(|r| r.0.is_empty() && r.5 == 1), "{rows:?}");
        assert_eq!(find(&rows, "event", "").len(), 1);
    }

    #[test]
    fn a_large_segment_is_summed_in_chunks_that_add_up() {
        // Rows that group into the same seventeen groups fill a chunk with visitor pairs: each
        // row adds one per dimension (its visitor differs from the row before).
        let per_chunk = (CHUNK_VISITS / DIMENSIONS.len()) as u64;
        let n = per_chunk * 2 + 100;
        let data: Vec<u8> = (0..n)
            .flat_map(|i| row("pageview", "/a", i % 1000, 86_400 * 20_000))
            .collect();
        let rows = rows_of(&daily(&data, ROW_FORMAT).unwrap());
        let a = find(&rows, "page", "/a");
        assert_eq!(a.len(), 3, "one row per chunk");
        assert_eq!(a[0].4, per_chunk);
        assert_eq!(a.iter().map(|r| r.4).sum::<u64>(), n);
        let mut visitors: Vec<u64> = a.iter().flat_map(|r| r.6.clone()).collect();
        visitors.sort_unstable();
        visitors.dedup();
        assert_eq!(visitors.len(), 1000);
    }

    #[test]
    fn rows_that_do_not_group_fill_a_chunk_with_groups() {
        // A new page on every row: each adds a group of its own, and a chunk holds as many rows
        // as fit its groups. The device, the same on every row, has one row per chunk.
        let n = 150_000u64;
        let data = a_new_page_on_every_row(n);
        let rows = rows_of(&daily(&data, ROW_FORMAT).unwrap());
        let device = find(&rows, "device", "desktop");
        let chunks = n.div_ceil((CHUNK_GROUPS - DIMENSIONS.len()) as u64);
        assert_eq!(device.len() as u64, chunks);
        assert_eq!(device.iter().map(|r| r.4).sum::<u64>(), n);
        assert_eq!(rows.len() as u64, n + 16 * chunks);
    }

    #[test]
    fn a_full_chunk_is_written_in_pieces() {
        // A new page on every row, one visitor: megabytes of small rows, which leave a step a
        // piece at a time.
        let n = 40_000u64;
        let data = a_new_page_on_every_row(n);
        let mut d = Daily::new(&data, ROW_FORMAT);
        let (mut all, mut largest, mut steps) = (Vec::new(), 0, 0);
        loop {
            let more = d.step().unwrap();
            let piece = d.take();
            largest = largest.max(piece.len());
            all.extend_from_slice(&piece);
            steps += 1;
            if !more {
                break;
            }
        }
        // One group more than a piece at most; each of these holds one visitor.
        assert!(largest <= PIECE_BYTES + 200, "{largest}");
        assert!(all.len() > 6 * PIECE_BYTES, "{}", all.len());
        assert!(steps > all.len() / PIECE_BYTES);
        let rows = rows_of(&all);
        assert_eq!(rows.len() as u64, d.written);
        let pages = find_dim(&rows, "page");
        assert_eq!(pages.len() as u64, n);
        assert!(pages.iter().all(|r| r.4 == 1 && r.6.len() == 1));
    }

    /// The largest a chunk gets over all of `data`'s steps.
    fn peak_footprint(data: &[u8]) -> usize {
        let mut d = Daily::new(data, ROW_FORMAT);
        let mut peak = 0;
        while d.step().unwrap() {
            peak = peak.max(d.chunk.footprint());
            d.take();
        }
        peak
    }

    #[test]
    fn a_chunk_stays_small_however_rows_group() {
        // Rows that group nowhere: every text of every row new, each row from a new visitor,
        // so that groups and texts fill first.
        let nowhere: Vec<u8> = (0..20_000u64)
            .flat_map(|i| {
                let t = |k: &str| format!("{k}{i}");
                let (h, p, r, s) = (t("h"), t("/p"), t("https://r/"), t("s"));
                let u: Vec<String> = (0..5).map(|k| t(&format!("u{k}-"))).collect();
                let (c, g, b, bv, o, ov, d) =
                    (t("c"), t("g"), t("b"), t("v"), t("o"), t("w"), t("d"));
                let mut out = Vec::new();
                Event {
                    timestamp: 86_400 * 20_000,
                    site: "a.com",
                    name: "pageview",
                    hostname: &h,
                    pathname: &p,
                    referrer: &r,
                    referrer_source: &s,
                    utm_source: &u[0],
                    utm_medium: &u[1],
                    utm_campaign: &u[2],
                    utm_content: &u[3],
                    utm_term: &u[4],
                    country_code: &c,
                    region: &g,
                    browser: &b,
                    browser_version: &bv,
                    os: &o,
                    os_version: &ov,
                    device: &d,
                    visitor_id: i,
                    ..Default::default()
                }
                .encode(&mut out);
                out
            })
            .collect();
        // Rows that each add one group and a visitor pair per dimension: the pairs fill first.
        let pairs: Vec<u8> = (0..150_000u64)
            .flat_map(|i| row("pageview", &format!("/page/{i:08}"), i, 86_400 * 20_000))
            .collect();
        for data in [nowhere, pairs] {
            let peak = peak_footprint(&data);
            assert!(peak > 4 << 20, "the bounds were reached: {peak}");
            assert!(peak < 16 << 20, "{peak}");
        }
    }

    #[test]
    fn a_segment_spanning_many_days_is_summed_whole() {
        // Replayed segments can hold rows of many days; a chunk holds 32 of them.
        let data: Vec<u8> = (0..100u32)
            .flat_map(|d| row("pageview", "/a", 7, 86_400 * (20_000 + d)))
            .collect();
        let rows = rows_of(&daily(&data, ROW_FORMAT).unwrap());
        let a = find(&rows, "page", "/a");
        assert_eq!(a.len(), 100);
        let days: std::collections::BTreeSet<u16> = a.iter().map(|r| r.1).collect();
        assert_eq!(days.len(), 100);
        assert!(a.iter().all(|r| r.4 == 1 && r.6 == vec![7]));
    }

    #[test]
    fn the_same_rows_give_the_same_bytes() {
        let data: Vec<u8> = (0..200)
            .flat_map(|i| {
                row(
                    "pageview",
                    &format!("/p{}", i % 7),
                    i % 13,
                    86_400 * 20_000 + i as u32,
                )
            })
            .collect();
        assert_eq!(daily(&data, ROW_FORMAT), daily(&data, ROW_FORMAT));
        assert!(daily(b"", ROW_FORMAT).unwrap().is_empty());
    }

    #[test]
    fn unreadable_rows_are_an_error() {
        let data = row("pageview", "/a", 1, 0);
        assert!(daily(&data[..data.len() - 1], ROW_FORMAT).is_err());
        assert!(daily(&data[..10], ROW_FORMAT).is_err());
    }
}
