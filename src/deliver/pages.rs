//! The entry and exit pages of a segment, summed by the deliverer instead of by views on the
//! server.
//!
//! `visit_pages_daily` counts, per site, UTC day and page, the visits that entered there and
//! the visits whose last page it is: a row that starts a visit adds one entry to its page, a
//! page view adds one exit to its page and takes one from the exit page it replaces. Three
//! views made those rows of every inserted row, and grouped them, on every insert. Over a
//! segment the additions and subtractions of a visit cancel but for its last page, so the
//! deliverer sends their sums, leaving out those that come to zero: the same states, from far
//! fewer rows (`schema/0015_visit_pages_rollup.sql`).

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::insert::{Failure, classify};
use crate::encode::{Head, Heads, Unreadable, heads, put_str};

/// Columns of the insert table, in RowBinary order.
pub const COLUMNS: &[(&str, &str)] = &[
    ("site", "String"),
    ("day", "Date"),
    ("kind", "String"),
    ("page", "String"),
    ("visits", "Int64"),
];

/// The insert statement of these rows, which are sent as Native blocks (`super::native`).
pub(crate) fn insert_sql(table: &str) -> String {
    let cols: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    format!("INSERT INTO {table} ({}) FORMAT Native", cols.join(", "))
}

/// Groups a chunk holds before it is written (about 40 bytes each with its slot): what bounds
/// this rollup's memory, whatever a segment holds. A segment of the default 50 000 rows makes
/// at most three groups a row, and most rows of a visit add none.
const CHUNK_GROUPS: usize = 65_536;
/// Rows read between two yields to the runtime.
const STEP_ROWS: usize = 256;
/// Bytes of rows written between two sends, so a chunk of long pages is never held whole.
const PIECE_BYTES: usize = 256 * 1024;

/// One row to send: a page's entries or exits on a day, by the numbers of its texts.
struct Group<'a> {
    site: &'a str,
    page: &'a str,
    day: u16,
    exit: bool,
    visits: i64,
}

impl Group<'_> {
    fn same(&self, site: &str, page: &str, day: u16, exit: bool) -> bool {
        self.day == day && self.exit == exit && self.page == page && self.site == site
    }
}

#[derive(Default)]
struct Chunk<'a> {
    /// Numbers of `groups`, found by the hash of their key.
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// In the order they first appear: the same rows always give the same bytes, so that a
    /// retried insert is recognised as one where the server deduplicates by content.
    groups: Vec<Group<'a>>,
}

impl<'a> Chunk<'a> {
    fn hash(&self, site: &str, page: &str, day: u16, exit: bool) -> u64 {
        self.hasher.hash_one((site, page, day, exit))
    }

    fn count(&mut self, site: &'a str, page: &'a str, day: u16, exit: bool, n: i64) {
        let hash = self.hash(site, page, day, exit);
        let (groups, hasher) = (&mut self.groups, &self.hasher);
        let g = match self.index.entry(
            hash,
            |&g| groups[g as usize].same(site, page, day, exit),
            |&g| {
                let g = &groups[g as usize];
                hasher.hash_one((g.site, g.page, g.day, g.exit))
            },
        ) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let g = groups.len() as u32;
                e.insert(g);
                groups.push(Group {
                    site,
                    page,
                    day,
                    exit,
                    visits: 0,
                });
                g
            }
        };
        self.groups[g as usize].visits += n;
    }

    /// Adds what a row counts: an entry where it starts a visit, for a page view an exit on
    /// its page and one less on the exit page it replaces (as the views of migration 0014).
    /// False, with nothing added, when its groups might not fit.
    fn add(&mut self, h: &Head<'a>) -> bool {
        if self.groups.len() + 3 > CHUNK_GROUPS {
            return false;
        }
        // Days since 1970 fit a Date (UInt16) until 2149.
        let day = (h.timestamp / 86_400) as u16;
        let page = h.texts[1];
        if h.visit_entry {
            self.count(h.site, page, day, false, 1);
        }
        if h.name == "pageview" {
            self.count(h.site, page, day, true, 1);
            if !h.exit_prev.is_empty() {
                self.count(h.site, h.exit_prev, day, true, -1);
            }
        }
        true
    }
}

/// Writes the groups from `*cursor` on that count anything, until `out` has grown by `budget`
/// bytes or more; returns how many rows it wrote.
fn write(groups: &[Group<'_>], cursor: &mut usize, out: &mut Vec<u8>, budget: usize) -> u64 {
    let start = out.len();
    let mut rows = 0;
    while out.len() - start < budget {
        let Some(g) = groups.get(*cursor) else { break };
        *cursor += 1;
        if g.visits == 0 {
            continue;
        }
        put_str(out, g.site);
        out.extend_from_slice(&g.day.to_le_bytes());
        put_str(out, if g.exit { "exit" } else { "entry" });
        put_str(out, g.page);
        out.extend_from_slice(&g.visits.to_le_bytes());
        rows += 1;
    }
    rows
}

/// [`rows`] a step at a time: each call reads [`STEP_ROWS`] rows or writes [`PIECE_BYTES`] of
/// a full chunk's rows.
struct Pages<'a> {
    heads: Heads<'a>,
    chunk: Chunk<'a>,
    /// The chunk is full (or every row read) and being written from here.
    writing: Option<usize>,
    pending: Option<Head<'a>>,
    read: bool,
    written: u64,
}

impl<'a> Pages<'a> {
    fn new(data: &'a [u8], format: u32) -> Pages<'a> {
        Pages {
            heads: heads(data, format),
            chunk: Chunk::default(),
            writing: None,
            pending: None,
            read: false,
            written: 0,
        }
    }

    /// Appends the next rows to `out`, if any are due; false once everything is written.
    fn step(&mut self, out: &mut Vec<u8>) -> Result<bool, Unreadable> {
        if let Some(mut cursor) = self.writing {
            self.written += write(&self.chunk.groups, &mut cursor, out, PIECE_BYTES);
            if cursor < self.chunk.groups.len() {
                self.writing = Some(cursor);
                return Ok(true);
            }
            self.writing = None;
            self.chunk.index.clear();
            self.chunk.groups.clear();
            match self.pending.take() {
                // An empty chunk holds any row.
                Some(h) => _ = self.chunk.add(&h),
                None if self.read => return Ok(false),
                None => {}
            }
            return Ok(true);
        }
        for _ in 0..STEP_ROWS {
            let Some(h) = self.heads.next() else {
                self.read = true;
                self.writing = Some(0);
                return Ok(true);
            };
            let h = h?;
            if !self.chunk.add(&h) {
                self.pending = Some(h);
                self.writing = Some(0);
                return Ok(true);
            }
        }
        Ok(true)
    }
}

/// The rows (RowBinary, [`COLUMNS`]) of `data`, rows of `format`: one per site, day, kind and
/// page of each chunk whose sum is not zero. Empty when no row counts.
pub fn rows(data: &[u8], format: u32) -> Result<Vec<u8>, Unreadable> {
    let mut p = Pages::new(data, format);
    let mut out = Vec::new();
    while p.step(&mut out)? {}
    Ok(out)
}

/// Sends the entry and exit pages of `data` (rows of `format`) as one INSERT of `sql`, a piece
/// at a time, with other tasks running between two steps. Nothing is sent when no row counts.
/// Returns the number of rows sent.
pub(crate) async fn insert(
    client: &clickhouse::Client,
    sql: &str,
    data: &[u8],
    format: u32,
) -> Result<u64, Failure> {
    let mut p = Pages::new(data, format);
    let mut insert = None;
    let mut out = Vec::new();
    loop {
        let more = p.step(&mut out).map_err(Failure::Unreadable)?;
        if out.len() >= PIECE_BYTES || (!more && !out.is_empty()) {
            let insert = insert.get_or_insert_with(|| client.insert_formatted_with(sql.to_owned()));
            super::insert::send_rows(insert, &out, COLUMNS).await?;
            out.clear();
        }
        if !more {
            break;
        }
        tokio::task::yield_now().await;
    }
    match insert {
        Some(i) => i.end().await.map_err(classify).map(|()| p.written),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Event, ROW_FORMAT, VisitStep};

    fn row(out: &mut Vec<u8>, name: &str, page: &str, entry: bool, exit_prev: &str) {
        Event {
            timestamp: 1_800_000_000,
            site: "a.com",
            name,
            pathname: page,
            visitor_id: 1,
            visit: VisitStep {
                entry,
                exit_prev,
                ..Default::default()
            },
            ..Default::default()
        }
        .encode(out);
    }

    /// (kind, page, visits) of the rows, in order.
    fn read(rows: &[u8]) -> Vec<(String, String, i64)> {
        let mut r = crate::encode::Reader::new(rows, 0);
        let mut out = Vec::new();
        while r.at < rows.len() {
            let site = r.text().unwrap();
            assert_eq!(site, "a.com");
            let day = u16::from_le_bytes(r.fixed::<2>().unwrap());
            assert_eq!(day, (1_800_000_000u32 / 86_400) as u16);
            let kind = r.text().unwrap().to_owned();
            let page = r.text().unwrap().to_owned();
            let visits = i64::from_le_bytes(r.fixed::<8>().unwrap());
            out.push((kind, page, visits));
        }
        out
    }

    #[test]
    fn a_visit_within_a_segment_leaves_its_entry_and_its_last_page() {
        let mut data = Vec::new();
        row(&mut data, "pageview", "/a", true, "");
        row(&mut data, "pageview", "/b", false, "/a");
        row(&mut data, "Signup", "/b", false, "");
        row(&mut data, "pageview", "/c", false, "/b");
        let rows = rows(&data, ROW_FORMAT).unwrap();
        let s = |k: &str, p: &str, n| (k.to_owned(), p.to_owned(), n);
        assert_eq!(read(&rows), [s("entry", "/a", 1), s("exit", "/c", 1)]);
    }

    #[test]
    fn a_visit_begun_in_an_earlier_segment_moves_its_exit() {
        let mut data = Vec::new();
        row(&mut data, "pageview", "/b", false, "/a");
        let s = |k: &str, p: &str, n| (k.to_owned(), p.to_owned(), n);
        assert_eq!(
            read(&rows(&data, ROW_FORMAT).unwrap()),
            [s("exit", "/b", 1), s("exit", "/a", -1)]
        );
    }

    #[test]
    fn rows_before_visits_count_no_visit_pages_but_their_page_views() {
        // Format 1 has no visit columns: no entry and nothing replaced.
        let mut data = Vec::new();
        row(&mut data, "pageview", "/a", true, "/z");
        let cut = data.len() - (1 + 4 + 1 + 3 + 7 + 2);
        let s = |k: &str, p: &str, n| (k.to_owned(), p.to_owned(), n);
        assert_eq!(read(&rows(&data[..cut], 1).unwrap()), [s("exit", "/a", 1)]);
    }

    /// More groups than a chunk holds: the sums over every chunk are those of one pass, and
    /// the same rows give the same bytes.
    #[test]
    fn chunks_sum_to_the_whole() {
        let mut data = Vec::new();
        let pages: Vec<String> = (0..60_000).map(|i| format!("/p{i}")).collect();
        for (i, p) in pages.iter().enumerate() {
            let prev = if i % 3 == 0 { "" } else { &pages[i - 1] };
            row(&mut data, "pageview", p, i % 3 == 0, prev);
        }
        let out = rows(&data, ROW_FORMAT).unwrap();
        assert_eq!(out, rows(&data, ROW_FORMAT).unwrap());
        let mut sums = std::collections::BTreeMap::<(String, String), i64>::new();
        let got = read(&out);
        for (k, p, n) in &got {
            *sums.entry((k.clone(), p.clone())).or_default() += n;
        }
        sums.retain(|_, n| *n != 0);
        // A visit of three pages: one entry, one exit on its last page.
        assert_eq!(sums.len(), 40_000);
        assert!(sums.iter().all(|((k, p), n)| {
            let i: usize = p[2..].parse().unwrap();
            *n == 1 && (k == "entry") == i.is_multiple_of(3) && (k == "exit") == (i % 3 == 2)
        }));
        // Chunks were written apart: some rows cancel only across them.
        assert!(got.len() > sums.len(), "{} rows", got.len());
    }
}
