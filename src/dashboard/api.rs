//! The stats API: Plausible's Stats API v1 over the aggregates. Parameters are checked first
//! (`params`); each answer is assembled from the rendered `schema/queries/`.
//!
//! - `GET /api/v1/sites` → `{"results": ["example.com", ...]}`
//! - `GET /api/v1/stats/aggregate?site_id=&period=&date=&metrics=&compare=previous_period` →
//!   `{"results": {<metric>: {"value"[, "change"]}}}`; metrics `visitors`, `pageviews`,
//!   `events`, `visits`, `bounce_rate`, `visit_duration`, `views_per_visit`
//! - `GET /api/v1/stats/timeseries?site_id=&period=&date=&metrics=&interval=hour|date|month` →
//!   `{"results": [{"date", <metric>...}]}`, one row per hour, day or month of the period
//! - `GET /api/v1/stats/breakdown?site_id=&period=&date=&property=&metrics=&limit=&page=` →
//!   `{"results": [{<property>: value, <metric>...}]}`; properties `event:page` (also
//!   `scroll_depth`, %, and `time_on_page`, s, null without engagement), `event:hostname`,
//!   `event:name`, `visit:source`, `visit:referrer`, `visit:utm_source` … `visit:utm_term`,
//!   `visit:country`, `visit:region`, `visit:browser`, `visit:browser_version`, `visit:os`,
//!   `visit:os_version`, `visit:device` (`visitors`, `pageviews`, `events`),
//!   `visit:entry_page`, `visit:exit_page` (`visits`), and Glimpse's `event:props`
//! - `GET /api/v1/stats/revenue` and `/api/v1/stats/dropped` (same site and period parameters)
//!
//! `period`: `day`, `7d`, `30d` (default), `month`, `6mo`, `12mo`, `year`, or `custom` with
//! `date=YYYY-MM-DD,YYYY-MM-DD`; `date` alone sets the day the other periods end on.

use std::collections::BTreeMap;

use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::Dashboard;
use super::params::{self, Endpoint, Interval, Metric};
use crate::clock::{date_string, day_of};
use crate::front::{self, Reply};
use crate::store::queries::{self, Params};

pub async fn answer(app: &Dashboard, endpoint: &str, query: &str) -> Reply {
    let q: Vec<(String, String)> = url_pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(endpoint) = Endpoint::parse(endpoint) else {
        return error(StatusCode::NOT_FOUND, "no such endpoint");
    };
    if let Err(msg) = params::check(endpoint, &q) {
        return error(StatusCode::BAD_REQUEST, &msg);
    }
    if endpoint == Endpoint::Sites {
        return ok(json!(app.sites));
    }
    let result = match request(app, &get) {
        Err(msg) => Err(ApiError::BadRequest(msg)),
        Ok(p) => match endpoint {
            Endpoint::Aggregate => aggregate(app, &p, &get).await,
            Endpoint::Timeseries => timeseries(app, &p, &get).await,
            Endpoint::Breakdown => breakdown(app, p, &get).await,
            Endpoint::Revenue => rows(app, "revenue", &p).await.map(array),
            Endpoint::Dropped => rows(app, "dropped", &p).await.map(array),
            Endpoint::Sites => Ok(json!(app.sites)),
        },
    };
    match result {
        Ok(v) => ok(v),
        Err(ApiError::BadRequest(msg)) => error(StatusCode::BAD_REQUEST, &msg),
        Err(ApiError::Database(msg)) => {
            tracing::warn!(error = %msg, "dashboard query failed");
            error(
                StatusCode::BAD_GATEWAY,
                "the database did not answer the query",
            )
        }
    }
}

/// Why a stats request has no answer: the request (400) or the database (502).
enum ApiError {
    BadRequest(String),
    Database(String),
}

impl From<String> for ApiError {
    fn from(msg: String) -> ApiError {
        ApiError::BadRequest(msg)
    }
}

/// The site, period and page every stats endpoint shares.
fn request<'q>(app: &Dashboard, get: &impl Fn(&str) -> Option<&'q str>) -> Result<Params, String> {
    let site = get("site_id").ok_or("`site_id` is required")?;
    if !app.sites.iter().any(|s| s == site) {
        return Err(format!("`site_id`: {site:?} is not a configured site"));
    }
    let today = day_of(app.clock.now());
    let (from, to) = params::period(get("period"), get("date"), today)?;
    let (limit, offset) = params::pagination(get("limit"), get("page"))?;
    Ok(Params {
        site: site.to_string(),
        from: date_string(from),
        to: date_string(to),
        dimension: String::new(),
        k: app.min_visitors,
        limit,
        offset,
    })
}

async fn rows(
    app: &Dashboard,
    name: &str,
    p: &Params,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let sql = queries::render(name, p).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let bytes = app
        .db
        .query(&sql)
        .fetch_bytes("JSONEachRow")
        .map_err(|e| ApiError::Database(e.to_string()))?
        .collect()
        .await
        .map_err(|e| ApiError::Database(e.to_string()))?;
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Map<String, Value>>(l)
                .map_err(|e| ApiError::Database(format!("unexpected row: {e}")))
        })
        .collect()
}

/// Metrics the totals answer (`totals.sql`, `visits.sql`).
const TOTALS: &[Metric] = &[
    Metric::Visitors,
    Metric::Pageviews,
    Metric::Events,
    Metric::Visits,
    Metric::BounceRate,
    Metric::VisitDuration,
    Metric::ViewsPerVisit,
];

async fn aggregate<'q>(
    app: &Dashboard,
    p: &Params,
    get: &impl Fn(&str) -> Option<&'q str>,
) -> Result<Value, ApiError> {
    let metrics = params::metrics(get("metrics"))?;
    params::only(&metrics, TOTALS, "the aggregate")?;
    let compare = match get("compare") {
        None => false,
        Some("previous_period") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`compare`: {other:?} is not supported; only previous_period"
            )));
        }
    };
    let (mut current, mut previous) = (Map::new(), Map::new());
    let of_events = metrics.iter().any(|m| !m.of_visits());
    let of_visits = metrics.iter().any(|m| m.of_visits());
    // Independent queries: ask both at once.
    let (totals, visits) = tokio::join!(
        async {
            if of_events {
                rows(app, "totals", p).await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            if of_visits {
                rows(app, "visits", p).await
            } else {
                Ok(Vec::new())
            }
        }
    );
    for row in totals?.into_iter().chain(visits?) {
        let target = if row.get("period").and_then(Value::as_str) == Some("current") {
            &mut current
        } else {
            &mut previous
        };
        for (k, v) in row {
            target.insert(k, number(&v));
        }
    }
    let mut out = Map::new();
    for m in metrics {
        let value = current.get(m.name()).and_then(Value::as_f64).unwrap_or(0.0);
        let mut entry = Map::new();
        entry.insert("value".into(), plain(value));
        if compare {
            let before = previous
                .get(m.name())
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            // A rate changes by points, everything else by percent.
            let change = if m == Metric::BounceRate {
                value - before
            } else {
                params::percent_change(before, value)
            };
            entry.insert("change".into(), plain(change));
        }
        out.insert(m.name().into(), Value::Object(entry));
    }
    Ok(Value::Object(out))
}

/// Sums for one bucket of the time series.
#[derive(Default)]
struct Bucket {
    visitors: f64,
    pageviews: f64,
    events: f64,
    visits: f64,
    bounces: f64,
    duration: f64,
    visit_pageviews: f64,
}

async fn timeseries<'q>(
    app: &Dashboard,
    p: &Params,
    get: &impl Fn(&str) -> Option<&'q str>,
) -> Result<Value, ApiError> {
    let metrics = params::metrics(get("metrics"))?;
    params::only(&metrics, TOTALS, "the time series")?;
    let interval = params::interval(get("interval"), get("period"))?;
    let label = |time: &str| -> String {
        match interval {
            Interval::Hour => time.to_string(),
            Interval::Date => time[..time.len().min(10)].to_string(),
            Interval::Month => format!("{}-01", &time[..time.len().min(7)]),
        }
    };
    // Every bucket of the period, in order, even when nothing happened in it.
    let (from, to) = (
        crate::clock::parse_date(&p.from).unwrap_or(0),
        crate::clock::parse_date(&p.to).unwrap_or(0),
    );
    let mut buckets: BTreeMap<String, Bucket> = BTreeMap::new();
    for day in from..=to {
        let date = date_string(day);
        match interval {
            Interval::Hour => {
                for h in 0..24 {
                    buckets.insert(format!("{date} {h:02}:00:00"), Bucket::default());
                }
            }
            _ => {
                buckets.insert(label(&date), Bucket::default());
            }
        }
    }
    let of_events = metrics.iter().any(|m| !m.of_visits());
    let of_visits = metrics.iter().any(|m| m.of_visits());
    // Visitors are distinct per day (per hour for hours): a month adds up its days, as the
    // totals do.
    let events_query = if interval == Interval::Hour {
        "timeseries_hourly"
    } else {
        "timeseries_daily"
    };
    let (events, visits) = tokio::join!(
        async {
            if of_events {
                rows(app, events_query, p).await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            if of_visits {
                rows(app, "visits_timeseries", p).await
            } else {
                Ok(Vec::new())
            }
        }
    );
    let field = |r: &Map<String, Value>, k: &str| {
        r.get(k).map(number).and_then(|v| v.as_f64()).unwrap_or(0.0)
    };
    for r in events? {
        let time = r
            .get("day")
            .or_else(|| r.get("hour"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(b) = buckets.get_mut(&label(time)) {
            b.visitors += field(&r, "visitors");
            b.pageviews += field(&r, "pageviews");
            b.events += field(&r, "events");
        }
    }
    for r in visits? {
        let time = r.get("hour").and_then(Value::as_str).unwrap_or("");
        if let Some(b) = buckets.get_mut(&label(time)) {
            b.visits += field(&r, "visits");
            b.bounces += field(&r, "bounces");
            b.duration += field(&r, "duration");
            b.visit_pageviews += field(&r, "pageviews");
        }
    }
    let per_visit = |x: f64, visits: f64| if visits == 0.0 { 0.0 } else { x / visits };
    Ok(Value::Array(
        buckets
            .into_iter()
            .map(|(date, b)| {
                let mut row = Map::new();
                row.insert("date".into(), json!(date));
                for m in &metrics {
                    let v = match m {
                        Metric::Visitors => b.visitors,
                        Metric::Pageviews => b.pageviews,
                        Metric::Events => b.events,
                        Metric::Visits => b.visits,
                        Metric::BounceRate => (100.0 * per_visit(b.bounces, b.visits)).round(),
                        Metric::VisitDuration => per_visit(b.duration, b.visits).round(),
                        Metric::ViewsPerVisit => {
                            (per_visit(b.visit_pageviews, b.visits) * 100.0).round() / 100.0
                        }
                        _ => 0.0,
                    };
                    row.insert(m.name().into(), plain(v));
                }
                Value::Object(row)
            })
            .collect(),
    ))
}

async fn breakdown<'q>(
    app: &Dashboard,
    mut p: Params,
    get: &impl Fn(&str) -> Option<&'q str>,
) -> Result<Value, ApiError> {
    let property = get("property")
        .ok_or_else(|| ApiError::BadRequest("`property` is required, e.g. event:page".into()))?;
    let metrics = params::metrics(get("metrics"))?;
    const COUNTS: &[Metric] = &[Metric::Visitors, Metric::Pageviews, Metric::Events];
    const PAGES: &[Metric] = &[
        Metric::Visitors,
        Metric::Pageviews,
        Metric::Events,
        Metric::ScrollDepth,
        Metric::TimeOnPage,
    ];
    let (query, dimension, key, supported): (_, _, _, &[Metric]) = match property {
        "visit:entry_page" => ("entry_pages", "", "entry_page", &[Metric::Visits]),
        "visit:exit_page" => ("exit_pages", "", "exit_page", &[Metric::Visits]),
        "event:props" => ("event_props", "", "", &[Metric::Visitors, Metric::Events]),
        "event:page" => ("breakdown", "page", "page", PAGES),
        "event:hostname" => ("breakdown", "hostname", "hostname", COUNTS),
        "event:name" => ("breakdown", "event", "name", COUNTS),
        other => match other.strip_prefix("visit:") {
            Some(d) if queries::DIMENSIONS.contains(&d) && d != "page" && d != "event" => {
                ("breakdown", d, d, COUNTS)
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`property`: unknown property {property:?}"
                )));
            }
        },
    };
    let metrics = if get("metrics").is_none() && !supported.contains(&Metric::Visitors) {
        supported.to_vec()
    } else {
        metrics
    };
    params::only(&metrics, supported, &format!("the {property} breakdown"))?;
    p.dimension = dimension.to_string();
    let mut rows = rows(app, query, &p).await?;
    if metrics
        .iter()
        .any(|m| matches!(m, Metric::ScrollDepth | Metric::TimeOnPage))
    {
        add_engagement(app, &p, &mut rows).await?;
    }
    Ok(Value::Array(
        rows.into_iter()
            .map(|mut r| {
                let mut out = Map::new();
                if key.is_empty() {
                    // event:props keeps its own columns (event, key, value).
                    for label in ["event", "key", "value"] {
                        if let Some(v) = r.remove(label) {
                            out.insert(label.into(), v);
                        }
                    }
                } else {
                    let v = r.remove("value").or_else(|| r.remove("page"));
                    out.insert(key.into(), v.unwrap_or(Value::Null));
                }
                for m in &metrics {
                    let v = r.get(m.name()).map_or(Value::Null, number);
                    out.insert(m.name().into(), v);
                }
                Value::Object(out)
            })
            .collect(),
    ))
}

/// Each page's scroll depth and time on page; null where no engagement was reported (and for
/// the folded "(other)" row, which is no page).
async fn add_engagement(
    app: &Dashboard,
    p: &Params,
    rows: &mut [Map<String, Value>],
) -> Result<(), ApiError> {
    let mut by_page: std::collections::HashMap<String, Map<String, Value>> =
        self::rows(app, "page_engagement", p)
            .await?
            .into_iter()
            .filter_map(|mut r| match r.remove("page") {
                Some(Value::String(page)) => Some((page, r)),
                _ => None,
            })
            .collect();
    for row in rows {
        let found = row
            .get("value")
            .and_then(Value::as_str)
            .and_then(|page| by_page.remove(page));
        for m in ["scroll_depth", "time_on_page"] {
            let v = found
                .as_ref()
                .and_then(|f| f.get(m))
                .map_or(Value::Null, number);
            row.insert(m.into(), v);
        }
    }
    Ok(())
}

fn array(rows: Vec<Map<String, Value>>) -> Value {
    Value::Array(
        rows.into_iter()
            .map(|r| numbers(Value::Object(r)))
            .collect(),
    )
}

/// Columns that hold counts or measures (everything else is a label, even when it looks like
/// a number, such as a campaign named "2026").
const MEASURES: &[&str] = &[
    "visitors",
    "pageviews",
    "events",
    "visits",
    "bounce_rate",
    "visit_duration",
    "views_per_visit",
    "revenue",
    "scroll_depth",
    "time_on_page",
];

/// ClickHouse quotes 64-bit integers in JSON; the API gives numbers.
fn numbers(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if MEASURES.contains(&k.as_str()) {
                        number(&v)
                    } else {
                        v
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

fn number(v: &Value) -> Value {
    match v {
        Value::String(s) => s.parse::<f64>().map(plain).unwrap_or(Value::Null),
        Value::Number(n) => n.as_f64().map(plain).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Whole numbers as integers.
fn plain(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn ok(results: Value) -> Reply {
    no_store(front::json(
        StatusCode::OK,
        json!({ "results": results }).to_string(),
    ))
}

/// `{"error": "..."}`, never cached.
pub fn error(status: StatusCode, msg: &str) -> Reply {
    no_store(front::error(status, msg))
}

fn no_store(mut r: Reply) -> Reply {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
