//! The daily stats of a segment, summed by the deliverer instead of by a view on the server.
//!
//! `stats_daily` holds, per site, UTC day, dimension and value, the page views, the other
//! events and a sketch of the visitors. Its view used to fan every inserted row out into
//! seventeen (dimension, value) rows and group them, which was half of the server's work per
//! event. The deliverer now sends one row per group of a segment, with the group's distinct
//! visitor ids, and a view turns those into the same states (`schema/0011_daily_rollup.sql`).
//! The groups and the values are exactly the old view's, so no answer changes.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::encode::{Head, Unreadable, put_str, read_heads};

/// The dimensions of `stats_daily`, in the old view's order.
pub(crate) const DIMENSIONS: [&str; 17] = [
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

pub(crate) fn insert_sql(table: &str) -> String {
    let cols: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    format!("INSERT INTO {table} ({}) FORMAT RowBinary", cols.join(", "))
}

#[derive(Default)]
struct Group {
    pageviews: u64,
    events: u64,
    visitors: Vec<u64>,
}

/// The (dimension, value) pairs a row counts under, as the old view's `ARRAY JOIN` listed them:
/// pages only for page views, regions and versions qualified, an event's name unless it is a
/// page view. Engagement reports count nowhere here.
fn values<'a>(h: &Head<'a>) -> Option<[Option<Cow<'a, str>>; 17]> {
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
    let b = Cow::Borrowed;
    Some([
        pageview.then(|| b(pathname)),
        Some(b(hostname)),
        Some(b(referrer_source)),
        Some(b(referrer)),
        Some(b(utm_source)),
        Some(b(utm_medium)),
        Some(b(utm_campaign)),
        Some(b(utm_content)),
        Some(b(utm_term)),
        Some(b(country_code)),
        Some(if region.is_empty() {
            b("")
        } else {
            Cow::Owned(format!("{country_code}-{region}"))
        }),
        Some(b(browser)),
        Some(Cow::Owned(format!("{browser} {browser_version}"))),
        Some(b(os)),
        Some(Cow::Owned(format!("{os} {os_version}"))),
        Some(b(device)),
        Some(if pageview { b("") } else { b(h.name) }),
    ])
}

/// The rollup rows (RowBinary, [`COLUMNS`]) of `data`, rows of `format`; empty when no row
/// counts. The same rows always give the same bytes, in a fixed order, so that a retried insert
/// is recognised as one where the server deduplicates by content.
pub(crate) fn daily(data: &[u8], format: u32) -> Result<Vec<u8>, Unreadable> {
    let heads = read_heads(data, format)?;
    let mut groups: HashMap<(&str, u16, u8, Cow<'_, str>), Group> = HashMap::new();
    for h in &heads {
        let Some(values) = values(h) else { continue };
        // Days since 1970 fit a Date (UInt16) until 2149.
        let day = (h.timestamp / 86_400) as u16;
        let pageview = h.name == "pageview";
        for (dim, value) in values.into_iter().enumerate() {
            let Some(value) = value else { continue };
            let g = groups.entry((h.site, day, dim as u8, value)).or_default();
            if pageview {
                g.pageviews += 1;
            } else {
                g.events += 1;
            }
            g.visitors.push(h.visitor_id);
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(groups.len() * 64);
    for ((site, day, dim, value), mut g) in groups {
        g.visitors.sort_unstable();
        g.visitors.dedup();
        put_str(&mut out, site);
        out.extend_from_slice(&day.to_le_bytes());
        put_str(&mut out, DIMENSIONS[usize::from(dim)]);
        put_str(&mut out, &value);
        out.extend_from_slice(&g.pageviews.to_le_bytes());
        out.extend_from_slice(&g.events.to_le_bytes());
        crate::encode::put_varint(&mut out, g.visitors.len() as u64);
        for v in g.visitors {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
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
            let n = usize::from(take(&mut b, 1)[0]);
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
