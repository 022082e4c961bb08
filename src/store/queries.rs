//! The dashboard queries in `schema/queries/`, embedded, and their parameters. Every query reads
//! aggregate tables only. Placeholders (`{site}`, `{from}`, ...) are replaced by validated,
//! quoted literals, because ClickHouse 18.16 has no server-side query parameters.

use std::fmt::Write as _;

/// (name, SQL) of every dashboard query.
pub const QUERIES: &[(&str, &str)] = &[
    ("totals", include_str!("../../schema/queries/totals.sql")),
    (
        "timeseries_hourly",
        include_str!("../../schema/queries/timeseries_hourly.sql"),
    ),
    (
        "timeseries_daily",
        include_str!("../../schema/queries/timeseries_daily.sql"),
    ),
    (
        "breakdown",
        include_str!("../../schema/queries/breakdown.sql"),
    ),
    (
        "event_props",
        include_str!("../../schema/queries/event_props.sql"),
    ),
    ("revenue", include_str!("../../schema/queries/revenue.sql")),
    ("dropped", include_str!("../../schema/queries/dropped.sql")),
    ("visits", include_str!("../../schema/queries/visits.sql")),
    (
        "visits_timeseries",
        include_str!("../../schema/queries/visits_timeseries.sql"),
    ),
    (
        "entry_pages",
        include_str!("../../schema/queries/entry_pages.sql"),
    ),
    (
        "exit_pages",
        include_str!("../../schema/queries/exit_pages.sql"),
    ),
    (
        "page_engagement",
        include_str!("../../schema/queries/page_engagement.sql"),
    ),
];

/// The values `stats_daily.dimension` takes; `breakdown` accepts only these.
pub const DIMENSIONS: &[&str] = &crate::deliver::rollup::DIMENSIONS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub site: String,
    /// First and last day, `YYYY-MM-DD`, inclusive.
    pub from: String,
    pub to: String,
    pub dimension: String,
    /// Breakdown rows with fewer visitors are folded into "(other)"; 0 folds nothing.
    pub k: u32,
    pub limit: u32,
    /// Rows skipped before the first one returned (pagination).
    pub offset: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("no query named {0:?}")]
    Unknown(String),
    #[error("{0} must be a date like 2026-11-23, got {1:?}")]
    BadDate(&'static str, String),
    #[error("`to` is before `from`")]
    Reversed,
    #[error("unknown dimension {0:?}; one of: {list}", list = DIMENSIONS.join(", "))]
    BadDimension(String),
    #[error("site must be a host name, got {0:?}")]
    BadSite(String),
}

/// The SQL of query `name` with `params` filled in.
pub fn render(name: &str, params: &Params) -> Result<String, QueryError> {
    let sql = QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
        .ok_or_else(|| QueryError::Unknown(name.to_string()))?;
    check_date("from", &params.from)?;
    check_date("to", &params.to)?;
    if params.to < params.from {
        return Err(QueryError::Reversed);
    }
    let site_ok = !params.site.is_empty()
        && params.site.len() <= 253
        && params
            .site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !site_ok {
        return Err(QueryError::BadSite(params.site.clone()));
    }
    if sql.contains("{dimension}") && !DIMENSIONS.contains(&params.dimension.as_str()) {
        return Err(QueryError::BadDimension(params.dimension.clone()));
    }
    // Files end with ";" for psql-style tools; over HTTP a query must not.
    let sql = sql.trim_end().trim_end_matches(';');
    Ok(sql
        .replace("{site}", &quote(&params.site))
        .replace("{from}", &quote(&params.from))
        .replace("{to}", &quote(&params.to))
        .replace("{dimension}", &quote(&params.dimension))
        .replace("{k}", &params.k.to_string())
        .replace("{limit}", &params.limit.to_string())
        .replace("{offset}", &params.offset.to_string()))
}

fn check_date(which: &'static str, d: &str) -> Result<(), QueryError> {
    let b = d.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (1..=12).contains(&d[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&d[8..10].parse::<u32>().unwrap_or(0));
    if ok {
        Ok(())
    } else {
        Err(QueryError::BadDate(which, d.to_string()))
    }
}

/// A ClickHouse string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => {
                let _ = write!(out, "{c}");
            }
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            site: "example.com".into(),
            from: "2026-11-01".into(),
            to: "2026-11-21".into(),
            dimension: "country".into(),
            k: 0,
            limit: 10,
            offset: 0,
        }
    }

    #[test]
    fn every_query_renders_without_placeholders_and_reads_aggregates_only() {
        for (name, _) in QUERIES {
            let sql = render(name, &params()).unwrap();
            assert!(!sql.contains('{'), "{name}: {sql}");
            for raw in [
                "FROM events\n",
                "FROM events ",
                "FROM events_in",
                "glimpse_salts",
            ] {
                assert!(!sql.contains(raw), "{name} reads {raw}");
            }
        }
    }

    #[test]
    fn parameters_are_validated_and_quoted() {
        let mut p = params();
        p.dimension = "x' OR 1".into();
        assert_eq!(
            render("breakdown", &p),
            Err(QueryError::BadDimension("x' OR 1".into()))
        );
        let mut p = params();
        p.from = "2026-11-1".into();
        assert!(matches!(
            render("totals", &p),
            Err(QueryError::BadDate("from", _))
        ));
        let mut p = params();
        p.site = "a.com'--".into();
        assert!(matches!(render("totals", &p), Err(QueryError::BadSite(_))));
        let mut p = params();
        p.to = "2026-10-01".into();
        assert_eq!(render("totals", &p), Err(QueryError::Reversed));
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
        assert!(render("nope", &params()).is_err());
    }
}
