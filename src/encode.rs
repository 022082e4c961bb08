//! Encode: the stored row, what survives anonymisation. It has no field that could hold an IP address or
//! a user-agent string, so neither can reach ClickHouse or the spool by construction.
//!
//! Rows are encoded straight to ClickHouse RowBinary, once, on the request's own thread; batches
//! are then plain byte buffers that need no further work to insert (or to spool).

use crate::cardinality::SiteValues;
use crate::filter::Accepted;
use crate::visits::{Engaged, Step};

/// Column names and types of the insert table, in RowBinary order. `schema/` must agree; an
/// integration test compares this list with the live table.
pub const COLUMNS: &[(&str, &str)] = &[
    ("timestamp", "DateTime"),
    ("site", "String"),
    ("name", "String"),
    ("hostname", "String"),
    ("pathname", "String"),
    ("referrer", "String"),
    ("referrer_source", "String"),
    ("utm_source", "String"),
    ("utm_medium", "String"),
    ("utm_campaign", "String"),
    ("utm_content", "String"),
    ("utm_term", "String"),
    ("country_code", "String"),
    ("region", "String"),
    ("browser", "String"),
    ("browser_version", "String"),
    ("os", "String"),
    ("os_version", "String"),
    ("device", "String"),
    ("visitor_id", "UInt64"),
    ("interactive", "UInt8"),
    ("revenue_micros", "Int64"),
    ("revenue_currency", "String"),
    ("prop_keys", "Array(String)"),
    ("prop_values", "Array(String)"),
    ("visit_entry", "UInt8"),
    ("visit_seconds", "UInt32"),
    ("visit_bounce", "Int8"),
    ("visit_exit_prev", "String"),
    ("scroll_gain", "UInt8"),
    ("scroll_first", "UInt8"),
    ("engaged_ms", "UInt32"),
    ("engaged_first", "UInt8"),
    ("rolled_up", "UInt8"),
];

/// The row format: which of [`COLUMNS`] a row holds. Spool segments record theirs, so segments
/// written by an older version are still inserted with their own column list after an upgrade.
pub const ROW_FORMAT: u32 = 4;

/// How many of [`COLUMNS`] each row format holds (format 1: before visits; 2: before
/// engagement; 3: before the collector summed the daily stats itself).
pub fn columns_of(format: u32) -> &'static [(&'static str, &'static str)] {
    match format {
        1 => &COLUMNS[..25],
        2 => &COLUMNS[..29],
        3 => &COLUMNS[..33],
        _ => COLUMNS,
    }
}

/// Whether the deliverer sends the daily stats of rows of `format` itself (`deliver::rollup`).
/// Older rows carry no `rolled_up` flag and go to the legacy insert table, whose view counts
/// them.
pub(crate) fn rolled_up(format: u32) -> bool {
    format >= 4
}

/// The insert statement for rows of `format`, which the deliverer sends as Native blocks
/// (`deliver::native`).
pub(crate) fn insert_sql(table: &str, format: u32) -> String {
    let cols: Vec<&str> = columns_of(format).iter().map(|(n, _)| *n).collect();
    format!("INSERT INTO {table} ({}) FORMAT Native", cols.join(", "))
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event<'a> {
    pub timestamp: u32,
    pub site: &'a str,
    pub name: &'a str,
    pub hostname: &'a str,
    pub pathname: &'a str,
    pub referrer: &'a str,
    pub referrer_source: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub utm_content: &'a str,
    pub utm_term: &'a str,
    pub country_code: &'a str,
    pub region: &'a str,
    pub browser: &'a str,
    pub browser_version: &'a str,
    pub os: &'a str,
    pub os_version: &'a str,
    pub device: &'a str,
    pub visitor_id: u64,
    pub interactive: bool,
    pub revenue_micros: i64,
    pub revenue_currency: &'a str,
    pub props: &'a [(std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)],
    pub visit: VisitStep<'a>,
    /// What an engagement report adds to its page (all zero for other events); its
    /// `seconds` travel in `visit`.
    pub engaged: Engaged,
}

/// What an event changes about its visit, as sums the aggregates add up (see `visits`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VisitStep<'a> {
    /// 1: this event starts a visit.
    pub entry: bool,
    /// Seconds since the visit's previous event.
    pub seconds: u32,
    /// +1: the visit is (so far) a bounce; -1: it just stopped being one.
    pub bounce: i8,
    /// The page this page view replaces as the visit's exit page; empty when none.
    pub exit_prev: &'a str,
}

impl<'a> Event<'a> {
    /// The row of an accepted event for one of its sites, with that site's `values`; an
    /// engagement report (`engaged`) carries no revenue.
    pub fn of(
        a: &'a Accepted<'_, '_, '_>,
        site: &'a str,
        values: &'a SiteValues<'_>,
        timestamp: u32,
        visitor_id: u64,
        step: &'a Step,
        engaged: Option<Engaged>,
    ) -> Event<'a> {
        let e = &a.event;
        let p = &e.payload;
        let (revenue_micros, revenue_currency) = match (&p.revenue, &engaged) {
            (Some(r), None) => (r.micros, std::str::from_utf8(&r.currency).unwrap_or("")),
            _ => (0, ""),
        };
        let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = &values.utm;
        Event {
            timestamp,
            site,
            name: &values.name,
            hostname: &values.hostname,
            pathname: &values.pathname,
            referrer: &values.referrer,
            referrer_source: &values.referrer_source,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_content,
            utm_term,
            country_code: e.location.country_code,
            region: &values.region,
            browser: &a.browser.browser,
            browser_version: &values.browser_version,
            os: &a.browser.os,
            os_version: &values.os_version,
            device: a.browser.device.as_str(),
            visitor_id,
            interactive: p.interactive,
            revenue_micros,
            revenue_currency,
            props: &values.props,
            visit: VisitStep {
                entry: step.entry,
                seconds: step.seconds,
                bounce: step.bounce,
                exit_prev: step.exit_prev.as_deref().unwrap_or(""),
            },
            engaged: engaged.unwrap_or_default(),
        }
    }

    /// Appends this row in RowBinary; the field order is [`COLUMNS`]'s.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        for s in [
            self.site,
            self.name,
            self.hostname,
            self.pathname,
            self.referrer,
            self.referrer_source,
            self.utm_source,
            self.utm_medium,
            self.utm_campaign,
            self.utm_content,
            self.utm_term,
            self.country_code,
            self.region,
            self.browser,
            self.browser_version,
            self.os,
            self.os_version,
            self.device,
        ] {
            put_str(out, s);
        }
        out.extend_from_slice(&self.visitor_id.to_le_bytes());
        out.push(u8::from(self.interactive));
        out.extend_from_slice(&self.revenue_micros.to_le_bytes());
        put_str(out, self.revenue_currency);
        put_varint(out, self.props.len() as u64);
        for (k, _) in self.props {
            put_str(out, k);
        }
        put_varint(out, self.props.len() as u64);
        for (_, v) in self.props {
            put_str(out, v);
        }
        out.push(u8::from(self.visit.entry));
        out.extend_from_slice(&self.visit.seconds.to_le_bytes());
        out.push(self.visit.bounce as u8);
        put_str(out, self.visit.exit_prev);
        out.push(self.engaged.scroll_gain);
        out.push(u8::from(self.engaged.scroll_first));
        out.extend_from_slice(&self.engaged.engaged_ms.to_le_bytes());
        out.push(u8::from(self.engaged.engaged_first));
        // The deliverer sends this row's daily stats (see `deliver::rollup`).
        out.push(1);
    }
}

/// The leading fields of a stored row: what the daily rollup reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    pub timestamp: u32,
    pub site: &'a str,
    pub name: &'a str,
    /// `hostname` to `device`, in [`COLUMNS`]'s order.
    pub texts: [&'a str; TEXTS],
    pub visitor_id: u64,
}

/// How many text columns lie between `name` and `visitor_id`.
pub(crate) const TEXTS: usize = 16;

/// Where RowBinary rows stop making sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row} cannot be read at byte {at}")]
pub struct Unreadable {
    pub row: usize,
    pub at: usize,
}

/// The rows of `data`, RowBinary rows of `format` as written by [`Event::encode`] (or an older
/// release's encoder), one at a time; after an unreadable row, nothing more.
pub(crate) fn heads(data: &[u8], format: u32) -> Heads<'_> {
    Heads {
        reader: Reader::new(data, 0),
        rest: columns_of(format)[3 + TEXTS + 1..]
            .iter()
            .map(|(_, ty)| layout(ty))
            .collect(),
        row: 0,
    }
}

pub(crate) struct Heads<'a> {
    reader: Reader<'a>,
    /// The layouts of the columns after `visitor_id`, which are stepped over; `None` for a
    /// type with no layout, which no row can be read past.
    rest: Vec<Option<Layout>>,
    row: usize,
}

impl<'a> Heads<'a> {
    fn head(&mut self) -> Option<Head<'a>> {
        let r = &mut self.reader;
        let timestamp = u32::from_le_bytes(r.fixed::<4>()?);
        let site = r.text()?;
        let name = r.text()?;
        let mut texts = [""; TEXTS];
        for t in &mut texts {
            *t = r.text()?;
        }
        let visitor_id = u64::from_le_bytes(r.fixed::<8>()?);
        for layout in &self.rest {
            r.skip((*layout)?)?;
        }
        Some(Head {
            timestamp,
            site,
            name,
            texts,
            visitor_id,
        })
    }
}

impl<'a> Iterator for Heads<'a> {
    type Item = Result<Head<'a>, Unreadable>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.at >= self.reader.data.len() {
            return None;
        }
        let row = self.row;
        self.row += 1;
        Some(match self.head() {
            Some(h) => Ok(h),
            None => {
                let at = self.reader.at;
                self.reader.at = self.reader.data.len();
                Err(Unreadable { row, at })
            }
        })
    }
}

/// How a value of a column type is laid out in RowBinary, for the types the insert tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    One(Item),
    /// A count (LEB128), then that many items.
    Array(Item),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// Little-endian, this many bytes.
    Fixed(usize),
    /// A length (LEB128), then that many bytes.
    Text,
}

/// The layout of ClickHouse type `ty`; `None` for a type the insert tables do not use.
pub(crate) fn layout(ty: &str) -> Option<Layout> {
    let item = |ty: &str| {
        Some(match ty {
            "UInt8" | "Int8" => Item::Fixed(1),
            "UInt16" | "Int16" | "Date" => Item::Fixed(2),
            "UInt32" | "Int32" | "DateTime" => Item::Fixed(4),
            "UInt64" | "Int64" => Item::Fixed(8),
            "String" => Item::Text,
            _ => return None,
        })
    };
    match ty.strip_prefix("Array(").and_then(|t| t.strip_suffix(')')) {
        Some(inner) => item(inner).map(Layout::Array),
        None => item(ty).map(Layout::One),
    }
}

/// Reads RowBinary values from the front of `data`; `None` where the data ends or cannot be
/// what was asked for.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `data` from byte `at`.
    pub(crate) fn new(data: &'a [u8], at: usize) -> Reader<'a> {
        Reader { data, at }
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let b = self.data.get(self.at..end)?;
        self.at = end;
        Some(b)
    }

    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bytes(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint()?).ok()?;
        std::str::from_utf8(self.bytes(len)?).ok()
    }

    /// One item as it is written (a text with its length), unchecked beyond its size.
    pub(crate) fn item(&mut self, item: Item) -> Option<&'a [u8]> {
        let start = self.at;
        match item {
            Item::Fixed(n) => self.bytes(n)?,
            Item::Text => {
                let len = usize::try_from(self.varint()?).ok()?;
                self.bytes(len)?
            }
        };
        Some(&self.data[start..self.at])
    }

    /// Steps over one value; its texts must be UTF-8, as those of the columns read are.
    fn skip(&mut self, layout: Layout) -> Option<()> {
        let one = |r: &mut Self, item| match item {
            Item::Fixed(n) => r.bytes(n).map(drop),
            Item::Text => r.text().map(drop),
        };
        match layout {
            Layout::One(item) => one(self, item),
            Layout::Array(item) => {
                for _ in 0..self.varint()? {
                    one(self, item)?;
                }
                Some(())
            }
        }
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Unsigned LEB128, as RowBinary uses for lengths.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn varint_matches_leb128() {
        let mut out = Vec::new();
        put_varint(&mut out, 0);
        put_varint(&mut out, 127);
        put_varint(&mut out, 128);
        put_varint(&mut out, 300);
        assert_eq!(out, [0x00, 0x7f, 0x80, 0x01, 0xac, 0x02]);
    }

    #[test]
    fn encoding_layout() {
        let props = [(Cow::Borrowed("plan"), Cow::Borrowed("pro"))];
        let e = Event {
            timestamp: 1,
            site: "a.com",
            visitor_id: 7,
            interactive: true,
            props: &props,
            visit: VisitStep {
                entry: true,
                seconds: 0,
                bounce: 1,
                exit_prev: "",
            },
            ..Default::default()
        };
        let mut out = Vec::new();
        e.encode(&mut out);
        let mut want = vec![1, 0, 0, 0, 5];
        want.extend_from_slice(b"a.com");
        want.extend_from_slice(&[0; 17]); // 17 empty strings
        want.extend_from_slice(&7u64.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&0i64.to_le_bytes());
        want.push(0); // currency
        want.extend_from_slice(&[1, 4]);
        want.extend_from_slice(b"plan");
        want.extend_from_slice(&[1, 3]);
        want.extend_from_slice(b"pro");
        want.push(1); // visit entry
        want.extend_from_slice(&0u32.to_le_bytes());
        want.push(1); // bounce +1
        want.push(0); // no previous exit page
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]); // no engagement
        want.push(1); // rolled up by the deliverer
        assert_eq!(out, want);
    }

    #[test]
    fn heads_are_read_back_from_every_format() {
        let props = [(Cow::Borrowed("plan"), Cow::Borrowed("pro"))];
        let e = Event {
            timestamp: 7,
            site: "a.com",
            name: "Signup",
            pathname: "/p",
            device: "mobile",
            visitor_id: u64::MAX,
            revenue_currency: "EUR",
            props: &props,
            visit: VisitStep {
                exit_prev: "/q",
                ..Default::default()
            },
            ..Default::default()
        };
        let mut rows = Vec::new();
        e.encode(&mut rows);
        e.encode(&mut rows);
        let read = |data, format| heads(data, format).collect::<Result<Vec<_>, _>>();
        let heads = read(&rows, ROW_FORMAT).unwrap();
        assert_eq!(heads.len(), 2);
        let h = &heads[1];
        assert_eq!((h.timestamp, h.site, h.name), (7, "a.com", "Signup"));
        assert_eq!(
            (h.texts[1], h.texts[15], h.visitor_id),
            ("/p", "mobile", u64::MAX)
        );
        // A format-1 row ends after the properties: the same bytes up to there.
        let mut one = Vec::new();
        e.encode(&mut one);
        let cut = one.len() - (1 + 4 + 1 + 3 + 7 + 1);
        assert_eq!(read(&one[..cut], 1).unwrap().len(), 1);
        // The extra bytes of a newer row do not read as an older one.
        assert!(read(&one, 1).is_err());
        assert!(read(&one[..one.len() - 1], ROW_FORMAT).is_err());
    }

    #[test]
    fn insert_sql_lists_the_columns_of_each_format() {
        let sql = insert_sql("events_in", ROW_FORMAT);
        assert!(sql.starts_with("INSERT INTO events_in (timestamp, site,"));
        assert!(sql.ends_with("engaged_first, rolled_up) FORMAT Native"));
        let engagement = insert_sql("events_in", 3);
        assert!(engagement.ends_with("engaged_first) FORMAT Native"));
        let visits = insert_sql("events_in", 2);
        assert!(
            visits.ends_with("visit_exit_prev) FORMAT Native"),
            "{visits}"
        );
        let old = insert_sql("events_in", 1);
        assert!(old.ends_with("prop_values) FORMAT Native"), "{old}");
    }
}
