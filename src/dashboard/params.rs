//! The stats API's parameters, as Plausible's Stats API v1 names them, checked before any
//! query runs: an unknown or repeated parameter, an unknown metric, or a metric an endpoint
//! cannot answer is a 400 that names it, never a silently different answer.

use crate::clock::{date_string, parse_date};

/// The endpoints under `/api/v1/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Sites,
    Aggregate,
    Timeseries,
    Breakdown,
    /// Glimpse's own: revenue per event and currency.
    Revenue,
    /// Glimpse's own: events filtered out, by reason.
    Dropped,
}

impl Endpoint {
    pub fn parse(path: &str) -> Option<Endpoint> {
        Some(match path {
            "sites" => Endpoint::Sites,
            "stats/aggregate" => Endpoint::Aggregate,
            "stats/timeseries" => Endpoint::Timeseries,
            "stats/breakdown" => Endpoint::Breakdown,
            "stats/revenue" => Endpoint::Revenue,
            "stats/dropped" => Endpoint::Dropped,
            _ => return None,
        })
    }

    /// Every parameter the endpoint reads.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            Endpoint::Sites => &[],
            Endpoint::Aggregate => &["site_id", "period", "date", "metrics", "compare", "filters"],
            Endpoint::Timeseries => &[
                "site_id", "period", "date", "metrics", "interval", "filters",
            ],
            Endpoint::Breakdown => &[
                "site_id", "period", "date", "metrics", "property", "limit", "page", "filters",
            ],
            Endpoint::Revenue | Endpoint::Dropped => {
                &["site_id", "period", "date", "limit", "page"]
            }
        }
    }
}

/// The request's parameters: each known to the endpoint and given once.
pub fn check(endpoint: Endpoint, pairs: &[(String, String)]) -> Result<(), String> {
    let known = endpoint.parameters();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(if known.is_empty() {
                format!("unknown parameter `{name}`: this endpoint takes none")
            } else {
                format!(
                    "unknown parameter `{name}`; this endpoint takes: {}",
                    known.join(", ")
                )
            });
        }
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(format!("parameter `{name}` is given twice"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Visitors,
    Visits,
    Pageviews,
    ViewsPerVisit,
    BounceRate,
    VisitDuration,
    Events,
    ScrollDepth,
    TimeOnPage,
    ConversionRate,
    /// Revenue of the counted events, in the currency they were recorded in.
    TotalRevenue,
    AverageRevenue,
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::Visitors,
        Metric::Visits,
        Metric::Pageviews,
        Metric::ViewsPerVisit,
        Metric::BounceRate,
        Metric::VisitDuration,
        Metric::Events,
        Metric::ScrollDepth,
        Metric::TimeOnPage,
        Metric::ConversionRate,
        Metric::TotalRevenue,
        Metric::AverageRevenue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Visitors => "visitors",
            Metric::Visits => "visits",
            Metric::Pageviews => "pageviews",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
            Metric::Events => "events",
            Metric::ScrollDepth => "scroll_depth",
            Metric::TimeOnPage => "time_on_page",
            Metric::ConversionRate => "conversion_rate",
            Metric::TotalRevenue => "total_revenue",
            Metric::AverageRevenue => "average_revenue",
        }
    }

    /// Whether the metric is a property of visits (sessions) rather than of events.
    pub(crate) fn of_visits(self) -> bool {
        matches!(
            self,
            Metric::Visits | Metric::ViewsPerVisit | Metric::BounceRate | Metric::VisitDuration
        )
    }
}

/// The `metrics` parameter: a comma-separated list, `visitors` when absent.
pub fn metrics(value: Option<&str>) -> Result<Vec<Metric>, String> {
    let Some(value) = value else {
        return Ok(vec![Metric::Visitors]);
    };
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim) {
        let m = Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let all: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "`metrics`: unknown metric {name:?}; the metrics are: {}",
                    all.join(", ")
                )
            })?;
        if out.contains(&m) {
            return Err(format!("`metrics`: {name} is named twice"));
        }
        out.push(m);
    }
    Ok(out)
}

/// Refuses the first metric outside `supported`, saying where it can be had.
pub fn only(metrics: &[Metric], supported: &[Metric], what: &str) -> Result<(), String> {
    match metrics.iter().find(|m| !supported.contains(m)) {
        None => Ok(()),
        Some(m) => {
            let why = match m {
                Metric::ConversionRate => {
                    "conversion rates need goals, which Glimpse does not have yet"
                }
                Metric::ScrollDepth | Metric::TimeOnPage => {
                    "scroll depth and time on page are kept per page: ask the event:page breakdown"
                }
                _ => "no aggregate holds it",
            };
            let names: Vec<&str> = supported.iter().map(|m| m.name()).collect();
            Err(format!(
                "`metrics`: {} is not available for {what} ({why}); available: {}",
                m.name(),
                names.join(", ")
            ))
        }
    }
}

/// First and last day (inclusive) of `period`, ending at `date` (default: today), as Plausible
/// defines them: `day`, `7d` and `30d` end on the date; `month`, `6mo` and `12mo` are whole
/// calendar months up to the date's month; `year` is the date's calendar year; `custom` takes
/// `date=FROM,TO`.
pub fn period(period: Option<&str>, date: Option<&str>, today: u16) -> Result<(u16, u16), String> {
    let day = |s: &str| parse_date(s).ok_or(format!("`date`: {s:?} is not a date like 2026-11-23"));
    let period = period.unwrap_or("30d");
    if period == "custom" {
        let range = date.ok_or("`period=custom` needs `date=FROM,TO`")?;
        let (a, b) = range
            .split_once(',')
            .ok_or("`date`: with period=custom it is FROM,TO")?;
        let (from, to) = (day(a)?, day(b)?);
        if to < from {
            return Err("`date`: the period ends before it starts".into());
        }
        if to - from > 3660 {
            return Err("`date`: periods are at most ten years".into());
        }
        return Ok((from, to));
    }
    let end = date.map(day).transpose()?.unwrap_or(today);
    let months_back = |n: u32| -> Result<(u16, u16), String> {
        let first = add_months(first_of_month(end), -(n as i32))?;
        Ok((first, last_of_month(end)?))
    };
    Ok(match period {
        "day" => (end, end),
        "7d" => (end.saturating_sub(6), end),
        "30d" => (end.saturating_sub(29), end),
        "month" => months_back(0)?,
        "6mo" => months_back(5)?,
        "12mo" => months_back(11)?,
        "year" => {
            let jan = parse_date(&format!("{}-01-01", &date_string(end)[..4])).ok_or("bad year")?;
            let dec = parse_date(&format!("{}-12-31", &date_string(end)[..4])).ok_or("bad year")?;
            (jan, dec)
        }
        other => {
            return Err(format!(
                "`period`: unknown period {other:?}; one of: day, 7d, 30d, month, 6mo, 12mo, year, custom"
            ));
        }
    })
}

/// The first day of `day`'s month.
pub(crate) fn first_of_month(day: u16) -> u16 {
    parse_date(&format!("{}-01", &date_string(day)[..7])).unwrap_or(day)
}

/// The first day of the month `n` months after the one starting on `first`.
pub(crate) fn add_months(first: u16, n: i32) -> Result<u16, String> {
    let s = date_string(first);
    let (y, m): (i32, i32) = (
        s[..4].parse().map_err(|_| "bad date")?,
        s[5..7].parse().map_err(|_| "bad date")?,
    );
    let index = y * 12 + (m - 1) + n;
    let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    parse_date(&format!("{y:04}-{m:02}-01")).ok_or_else(|| "the period leaves the calendar".into())
}

fn last_of_month(day: u16) -> Result<u16, String> {
    Ok(add_months(first_of_month(day), 1)? - 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Date,
    /// Weeks from Monday (the v2 API's `time:week`).
    Week,
    Month,
}

/// The `interval` parameter; by default hours for a day, months for periods of months, days
/// otherwise.
pub fn interval(value: Option<&str>, period: Option<&str>) -> Result<Interval, String> {
    Ok(match value {
        Some("hour") => Interval::Hour,
        Some("date") => Interval::Date,
        Some("month") => Interval::Month,
        Some(other) => {
            return Err(format!(
                "`interval`: unknown interval {other:?}; one of: date, month, hour"
            ));
        }
        None => match period {
            Some("day") => Interval::Hour,
            Some("6mo" | "12mo" | "year") => Interval::Month,
            _ => Interval::Date,
        },
    })
}

/// `limit` (default 100, at most 1000) and `page` (from 1) as a row count and an offset.
pub fn pagination(limit: Option<&str>, page: Option<&str>) -> Result<(u32, u32), String> {
    let number = |name: &str, v: &str, max: u32| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or(format!(
                "`{name}`: {v:?} is not a whole number from 1 to {max}"
            ))
    };
    let limit = limit
        .map(|l| number("limit", l, 1000))
        .transpose()?
        .unwrap_or(100);
    let page = page
        .map(|p| number("page", p, 1_000_000))
        .transpose()?
        .unwrap_or(1);
    let offset = (page - 1).checked_mul(limit).ok_or("`page`: too far")?;
    Ok((limit, offset))
}

/// Plausible's change between two periods: percent, rounded; 100 from nothing to something.
pub(crate) fn percent_change(before: f64, now: f64) -> f64 {
    if before == 0.0 {
        if now > 0.0 { 100.0 } else { 0.0 }
    } else {
        ((now - before) / before * 100.0).round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> u16 {
        parse_date(s).unwrap()
    }

    fn range(p: &str, date: &str) -> (String, String) {
        let (a, b) = period(Some(p), Some(date), day("2026-11-27")).unwrap();
        (date_string(a), date_string(b))
    }

    #[test]
    fn periods_as_plausible_defines_them() {
        let r = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(range("day", "2026-11-27"), r("2026-11-27", "2026-11-27"));
        assert_eq!(range("7d", "2026-11-27"), r("2026-11-21", "2026-11-27"));
        assert_eq!(range("30d", "2026-11-27"), r("2026-10-29", "2026-11-27"));
        assert_eq!(range("month", "2026-02-10"), r("2026-02-01", "2026-02-28"));
        assert_eq!(range("6mo", "2026-03-15"), r("2025-10-01", "2026-03-31"));
        assert_eq!(range("12mo", "2026-11-27"), r("2025-12-01", "2026-11-30"));
        assert_eq!(range("year", "2024-06-01"), r("2024-01-01", "2024-12-31"));
        assert_eq!(
            range("custom", "2026-01-05,2026-01-07"),
            r("2026-01-05", "2026-01-07")
        );
        let today = day("2026-11-27");
        assert_eq!(period(None, None, today), Ok((today - 29, today)));
        for (p, d, want) in [
            ("fortnight", None, "unknown period"),
            ("custom", None, "needs `date=FROM,TO`"),
            (
                "custom",
                Some("2026-01-07,2026-01-05"),
                "ends before it starts",
            ),
            ("day", Some("yesterday"), "not a date"),
        ] {
            let e = period(Some(p), d, today).unwrap_err();
            assert!(e.contains(want), "{p} {d:?}: {e}");
        }
    }

    #[test]
    fn parameters_are_checked_by_name() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(
            check(
                Endpoint::Aggregate,
                &pairs(&[("site_id", "a"), ("metrics", "visits")])
            )
            .is_ok()
        );
        let e = check(
            Endpoint::Aggregate,
            &pairs(&[("site_id", "a"), ("interval", "date")]),
        )
        .unwrap_err();
        assert!(e.starts_with("unknown parameter `interval`"), "{e}");
        let e = check(
            Endpoint::Breakdown,
            &pairs(&[("limit", "1"), ("limit", "2")]),
        )
        .unwrap_err();
        assert!(e.contains("`limit` is given twice"), "{e}");
        assert!(
            check(
                Endpoint::Aggregate,
                &pairs(&[("filters", "visit:country==GB")])
            )
            .is_ok()
        );
        assert!(check(Endpoint::Sites, &pairs(&[("x", "1")])).is_err());
    }

    #[test]
    fn metrics_are_named_and_limited() {
        assert_eq!(metrics(None), Ok(vec![Metric::Visitors]));
        assert_eq!(
            metrics(Some("visitors,bounce_rate")),
            Ok(vec![Metric::Visitors, Metric::BounceRate])
        );
        assert!(
            metrics(Some("visitors,visitors"))
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            metrics(Some("shoe_size"))
                .unwrap_err()
                .contains("unknown metric")
        );
        let e = only(
            &[Metric::ConversionRate],
            &[Metric::Visitors],
            "the aggregate",
        )
        .unwrap_err();
        assert!(
            e.contains("conversion_rate is not available for the aggregate"),
            "{e}"
        );
    }

    #[test]
    fn intervals_pages_and_changes() {
        assert_eq!(interval(None, Some("day")), Ok(Interval::Hour));
        assert_eq!(interval(None, Some("12mo")), Ok(Interval::Month));
        assert_eq!(interval(None, None), Ok(Interval::Date));
        assert!(interval(Some("week"), None).is_err());
        assert_eq!(pagination(None, None), Ok((100, 0)));
        assert_eq!(pagination(Some("10"), Some("3")), Ok((10, 20)));
        assert!(pagination(Some("0"), None).is_err());
        assert!(pagination(Some("5000"), None).is_err());
        assert_eq!(percent_change(0.0, 5.0), 100.0);
        assert_eq!(percent_change(0.0, 0.0), 0.0);
        assert_eq!(percent_change(200.0, 150.0), -25.0);
        assert_eq!(add_months(day("2026-01-01"), -1), Ok(day("2025-12-01")));
    }
}
