//! The other aggregates of a segment, summed by the deliverer like the daily stats (`rollup`):
//! the hourly totals and visits, entry and exit pages, engagement, revenue and properties.
//!
//! Their views used to group every inserted row on the server (`schema/0012_intake.sql`). The
//! deliverer sends one row per group of each chunk instead, into `aggregates_in`, whose views
//! turn those into the same states (`schema/0014_aggregates_rollup.sql`). Each kind's groups,
//! sums and visitors are exactly what its old view made of the same rows, so no answer changes.

use std::collections::HashMap;

use crate::encode::{Head, put_str, put_varint};

/// Columns of `aggregates_in`, in RowBinary order.
pub const COLUMNS: &[(&str, &str)] = &[
    ("target", "String"),
    ("site", "String"),
    ("day", "Date"),
    ("hour", "DateTime"),
    ("k1", "String"),
    ("k2", "String"),
    ("k3", "String"),
    ("s1", "Int64"),
    ("s2", "Int64"),
    ("s3", "Int64"),
    ("s4", "Int64"),
    ("s5", "Int64"),
    ("visitors", "Array(UInt64)"),
];

/// What a group counts toward; its name is the `target` the views select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Per site and hour. s1: page views; s2: other events but engagement reports; s3:
    /// visits begun; s4: bounces; s5: visit seconds. Visitors: of the rows but engagement
    /// reports.
    Hour,
    /// k1: `entry` or `exit`; k2: the page. s1: visits begun or ended there.
    VisitPage,
    /// k1: the page of engagement reports. s1-s4: scroll gain, first scroll reports, engaged
    /// milliseconds, first engaged reports.
    Engagement,
    /// k1: the event; k2: the currency. s1: revenue in micro-units; s2: events.
    Revenue,
    /// k1: the event; k2, k3: a property's name and value. s1: events. Visitors.
    Prop,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hour => "hour",
            Kind::VisitPage => "visit_page",
            Kind::Engagement => "engagement",
            Kind::Revenue => "revenue",
            Kind::Prop => "prop",
        }
    }
}

/// A group: its kind, site, time (the hour for [`Kind::Hour`], else the day's first second)
/// and text keys.
type Key<'a> = (Kind, &'a str, u32, [&'a str; 3]);

struct Group<'a> {
    key: Key<'a>,
    sums: [i64; 5],
    /// Entries in `Chunk::visits`, and the last visitor added (the server's sketch ignores
    /// repeats; this only spares sending a visitor's consecutive rows).
    visits: u32,
    last: Option<u64>,
}

/// The groups of a chunk of rows.
#[derive(Default)]
pub(super) struct Chunk<'a> {
    pub rows: usize,
    index: HashMap<Key<'a>, u32>,
    groups: Vec<Group<'a>>,
    visits: Vec<(u32, u64)>,
}

impl<'a> Chunk<'a> {
    /// Adds a row's groups, as the views of `events_intake` grouped it.
    pub fn add(&mut self, h: &Head<'a>) {
        self.rows += 1;
        let t = &h.tail;
        let pageview = h.name == "pageview";
        let engagement = h.name == "engagement";
        let day = h.timestamp - h.timestamp % 86_400;
        let hour = h.timestamp - h.timestamp % 3_600;
        let pathname = h.texts[1];

        let g = self.group((Kind::Hour, h.site, hour, ["", "", ""]));
        let s = &mut self.groups[g].sums;
        s[0] += i64::from(pageview);
        s[1] += i64::from(!pageview && !engagement);
        s[2] += i64::from(t.visit_entry);
        s[3] += i64::from(t.visit_bounce);
        s[4] += i64::from(t.visit_seconds);
        if !engagement {
            self.visitor(g, h.visitor_id);
        }

        if t.visit_entry != 0 {
            let g = self.group((Kind::VisitPage, h.site, day, ["entry", pathname, ""]));
            self.groups[g].sums[0] += i64::from(t.visit_entry);
        }
        if pageview {
            let g = self.group((Kind::VisitPage, h.site, day, ["exit", pathname, ""]));
            self.groups[g].sums[0] += 1;
            if !t.visit_exit_prev.is_empty() {
                let key = (
                    Kind::VisitPage,
                    h.site,
                    day,
                    ["exit", t.visit_exit_prev, ""],
                );
                let g = self.group(key);
                self.groups[g].sums[0] -= 1;
            }
        }

        if engagement {
            let g = self.group((Kind::Engagement, h.site, day, [pathname, "", ""]));
            let s = &mut self.groups[g].sums;
            s[0] += i64::from(t.scroll_gain);
            s[1] += i64::from(t.scroll_first);
            s[2] += i64::from(t.engaged_ms);
            s[3] += i64::from(t.engaged_first);
        }

        if !t.revenue_currency.is_empty() {
            let key = (Kind::Revenue, h.site, day, [h.name, t.revenue_currency, ""]);
            let g = self.group(key);
            let s = &mut self.groups[g].sums;
            s[0] += t.revenue_micros;
            s[1] += 1;
        }

        for (k, v) in t.props.iter() {
            let g = self.group((Kind::Prop, h.site, day, [h.name, k, v]));
            self.groups[g].sums[0] += 1;
            self.visitor(g, h.visitor_id);
        }
    }

    fn group(&mut self, key: Key<'a>) -> usize {
        let next = self.groups.len() as u32;
        let g = *self.index.entry(key).or_insert(next);
        if g == next {
            self.groups.push(Group {
                key,
                sums: [0; 5],
                visits: 0,
                last: None,
            });
        }
        g as usize
    }

    fn visitor(&mut self, g: usize, visitor: u64) {
        let group = &mut self.groups[g];
        if group.last != Some(visitor) {
            group.last = Some(visitor);
            group.visits += 1;
            self.visits.push((g as u32, visitor));
        }
    }

    /// Appends the chunk's rows (RowBinary, [`COLUMNS`]) to `out` and empties it.
    pub fn write(&mut self, out: &mut Vec<u8>) {
        let (at, visitors) = by_group(self.groups.iter().map(|g| g.visits), &self.visits);
        for (i, g) in self.groups.iter().enumerate() {
            let (kind, site, time, keys) = g.key;
            put_str(out, kind.name());
            put_str(out, site);
            out.extend_from_slice(&((time / 86_400) as u16).to_le_bytes());
            out.extend_from_slice(&time.to_le_bytes());
            for k in keys {
                put_str(out, k);
            }
            for s in g.sums {
                out.extend_from_slice(&s.to_le_bytes());
            }
            let mine = &visitors[at[i]..at[i + 1]];
            put_varint(out, mine.len() as u64);
            for v in mine {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.rows = 0;
        self.index.clear();
        self.groups.clear();
        self.visits.clear();
    }
}

/// The visitors of `visits` ((group, visitor) pairs) grouped by a counting sort, arrival order
/// within a group: group `i`'s are `visitors[at[i]..at[i + 1]]`. `counts` holds each group's
/// number of pairs.
pub(super) fn by_group(
    counts: impl ExactSizeIterator<Item = u32>,
    visits: &[(u32, u64)],
) -> (Vec<usize>, Vec<u64>) {
    let mut at = Vec::with_capacity(counts.len() + 1);
    let mut total = 0usize;
    for n in counts {
        at.push(total);
        total += n as usize;
    }
    at.push(total);
    let mut visitors = vec![0u64; total];
    let mut fill = at.clone();
    for &(g, v) in visits {
        visitors[fill[g as usize]] = v;
        fill[g as usize] += 1;
    }
    (at, visitors)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::super::rollup::{Rollup, sum};
    use crate::encode::{Event, ROW_FORMAT, VisitStep};
    use crate::visits::Engaged;

    /// An `aggregates_in` row read back: (kind, site, day, hour, keys, sums, visitors).
    type Row = (String, String, u16, u32, [String; 3], [i64; 5], Vec<u64>);

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
        let mut out = Vec::new();
        while !b.is_empty() {
            let kind = text(&mut b);
            let site = text(&mut b);
            let day = u16::from_le_bytes(take(&mut b, 2).try_into().unwrap());
            let hour = u32::from_le_bytes(take(&mut b, 4).try_into().unwrap());
            let keys = [text(&mut b), text(&mut b), text(&mut b)];
            let sums = [0; 5].map(|_| i64::from_le_bytes(take(&mut b, 8).try_into().unwrap()));
            let n = usize::from(take(&mut b, 1)[0]);
            let visitors = (0..n)
                .map(|_| u64::from_le_bytes(take(&mut b, 8).try_into().unwrap()))
                .collect();
            out.push((kind, site, day, hour, keys, sums, visitors));
        }
        out
    }

    fn find<'a>(rows: &'a [Row], kind: &str, keys: [&str; 3]) -> Vec<&'a Row> {
        rows.iter()
            .filter(|r| r.0 == kind && r.4 == keys.map(String::from))
            .collect()
    }

    const DAY: u32 = 20_000 * 86_400;

    fn encode(e: Event<'_>, out: &mut Vec<u8>) {
        Event { site: "a.com", ..e }.encode(out);
    }

    #[test]
    fn every_kind_is_summed_as_its_view_grouped_it() {
        let props = [(Cow::Borrowed("plan"), Cow::Borrowed("pro"))];
        let mut data = Vec::new();
        // Visitor 1 enters on /a (a bounce so far), then views /b: /a stops being the exit.
        let entry = VisitStep {
            entry: true,
            seconds: 0,
            bounce: 1,
            exit_prev: "",
        };
        let view = |ts, path, visitor, visit| Event {
            timestamp: ts,
            name: "pageview",
            pathname: path,
            visitor_id: visitor,
            visit,
            ..Default::default()
        };
        encode(view(DAY + 10, "/a", 1, entry.clone()), &mut data);
        let next = VisitStep {
            entry: false,
            seconds: 30,
            bounce: -1,
            exit_prev: "/a",
        };
        encode(view(DAY + 40, "/b", 1, next), &mut data);
        // An engagement report on /b: it extends the visit, and counts in no total.
        encode(
            Event {
                timestamp: DAY + 50,
                name: "engagement",
                pathname: "/b",
                visitor_id: 1,
                visit: VisitStep {
                    seconds: 10,
                    ..Default::default()
                },
                engaged: Engaged {
                    scroll_gain: 60,
                    scroll_first: true,
                    engaged_ms: 9_000,
                    engaged_first: true,
                    ..Default::default()
                },
                ..Default::default()
            },
            &mut data,
        );
        // Visitor 2: a purchase with a property, in the next hour.
        encode(
            Event {
                timestamp: DAY + 3_700,
                name: "Purchase",
                pathname: "/buy",
                visitor_id: 2,
                revenue_micros: 12_500_000,
                revenue_currency: "EUR",
                props: &props,
                visit: entry,
                ..Default::default()
            },
            &mut data,
        );
        let rows = rows_of(&sum(Rollup::Aggregates, &data, ROW_FORMAT).unwrap());

        let hours: Vec<_> = rows.iter().filter(|r| r.0 == "hour").collect();
        assert_eq!(hours.len(), 2);
        let (h0, h1) = (hours[0], hours[1]);
        assert_eq!((h0.1.as_str(), h0.2, h0.3), ("a.com", 20_000, DAY));
        // Page views, events, visits, bounces, seconds; the report's visitor is not added.
        assert_eq!(h0.5, [2, 0, 1, 0, 40]);
        assert_eq!(h0.6, vec![1]);
        assert_eq!(
            (h1.3, h1.5, &h1.6),
            (DAY + 3_600, [0, 1, 1, 1, 0], &vec![2])
        );

        let pages = |kind: &str, page: &str| find(&rows, "visit_page", [kind, page, ""]);
        assert_eq!(pages("entry", "/a")[0].5[0], 1);
        assert_eq!(
            pages("exit", "/a")[0].5[0],
            0,
            "+1 then -1, as the view's rows"
        );
        assert_eq!(pages("exit", "/b")[0].5[0], 1);
        assert_eq!(pages("entry", "/buy")[0].5[0], 1);
        assert!(
            pages("exit", "/buy").is_empty(),
            "a custom event ends no page"
        );

        let e = find(&rows, "engagement", ["/b", "", ""]);
        assert_eq!((e.len(), e[0].5), (1, [60, 1, 9_000, 1, 0]));
        assert!(e[0].6.is_empty());

        let r = find(&rows, "revenue", ["Purchase", "EUR", ""]);
        assert_eq!(
            (r[0].2, r[0].3, r[0].5[..2].to_vec()),
            (20_000, DAY, vec![12_500_000, 1])
        );
        let p = find(&rows, "prop", ["Purchase", "plan", "pro"]);
        assert_eq!((p[0].5[0], &p[0].6), (1, &vec![2]));
        assert_eq!(rows.len(), 2 + 4 + 1 + 1 + 1);
    }

    #[test]
    fn rows_of_older_formats_have_no_aggregates_here() {
        // They go to the legacy insert table, whose views sum them: only format 4 on is
        // rolled up, and its rows read back whole.
        assert!(crate::encode::rolled_up(ROW_FORMAT));
        assert!(!crate::encode::rolled_up(3));
        assert!(sum(Rollup::Aggregates, b"", ROW_FORMAT).unwrap().is_empty());
        let mut data = Vec::new();
        encode(Event::default(), &mut data);
        assert!(sum(Rollup::Aggregates, &data[..data.len() - 1], ROW_FORMAT).is_err());
    }
}
