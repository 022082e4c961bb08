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
use super::filters::{self, Dim};
use super::params::{self, Endpoint, Interval, Metric};
use super::plan::{self, Question, Source};
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
        return reply(Ok(json!({ "results": app.sites })));
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
    reply(result.map(|results| json!({ "results": results })))
}

/// The answer (the whole JSON object), or its error, as a response.
pub(super) fn reply(result: Result<Value, ApiError>) -> Reply {
    match result {
        Ok(v) => no_store(front::json(StatusCode::OK, v.to_string())),
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
pub(super) enum ApiError {
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
    query(app, &sql).await
}

/// The question a v1 request asks: its site, period, metrics and filters.
fn question<'q>(
    app: &Dashboard,
    p: &Params,
    get: &impl Fn(&str) -> Option<&'q str>,
    dims: Vec<Dim>,
    time: Option<Interval>,
) -> Result<Question, ApiError> {
    let filter = get("filters").map(filters::parse_v1).transpose()?;
    Ok(Question {
        site: p.site.clone(),
        from: crate::clock::parse_date(&p.from).unwrap_or(0),
        to: crate::clock::parse_date(&p.to).unwrap_or(0),
        metrics: params::metrics(get("metrics"))?,
        dims,
        time,
        filter,
        goals: app.goals.get(&p.site).cloned().unwrap_or_default(),
    })
}

/// Raw rows of `q` as the APIs give them (dimension values `d0`, ..., `time`, metrics).
pub(super) async fn raw_rows_finished(
    app: &Dashboard,
    q: &Question,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut q = q.clone();
    let rows = raw_breakdown(app, &mut q).await?;
    let metrics = &q.metrics;
    Ok(rows
        .into_iter()
        .map(|r| finish(r, metrics, q.dims.len(), false))
        .collect())
}

/// The site's totals for `q` (no dimension), as the APIs give them.
pub(super) async fn totals_row(
    app: &Dashboard,
    p: &Params,
    q: &Question,
) -> Result<Map<String, Value>, ApiError> {
    let (row, from_aggregates) = match source(app, q)? {
        Source::Aggregates => (totals(app, p, &q.metrics).await?.0, true),
        Source::Raw => (raw_rows(app, q).await?.pop().unwrap_or_default(), false),
    };
    Ok(finish(row, &q.metrics, 0, from_aggregates))
}

/// Where `q`'s answer comes from, or why there is none.
pub(super) fn source(app: &Dashboard, q: &Question) -> Result<Source, ApiError> {
    q.check()?;
    Ok(q.source(app.events_days, day_of(app.clock.now()))?)
}

/// [`raw_rows_exact`] with k-anonymity for filtered totals and time series: a filter can
/// select a handful of visitors, so a total (or time bucket) of fewer than `min_visitors`
/// visitors is shown as zero counts and null rates. Breakdowns fold their small rows instead
/// ([`raw_breakdown`]).
async fn raw_rows(app: &Dashboard, q: &Question) -> Result<Vec<Map<String, Value>>, ApiError> {
    let k = f64::from(app.min_visitors);
    if k == 0.0 || q.filter.is_none() || !q.dims.is_empty() {
        return raw_rows_exact(app, q).await;
    }
    let mut counted = q.clone();
    if !counted.metrics.contains(&Metric::Visitors) {
        counted.metrics.push(Metric::Visitors);
    }
    let mut rows = raw_rows_exact(app, &counted).await?;
    for r in &mut rows {
        if metric(r, Metric::Visitors, false) < k {
            for m in &counted.metrics {
                let hidden = match m {
                    Metric::Visitors | Metric::Visits | Metric::Pageviews | Metric::Events => {
                        json!(0)
                    }
                    _ => Value::Null,
                };
                r.insert(m.name().into(), hidden);
            }
        }
    }
    Ok(rows)
}

/// Rows of `q` answered from the raw events, each dimension's value as `d0`, `d1`, ..., and,
/// when asked, each row's conversion rate (its visitors over those of the same dimension
/// values without the goal conditions, in %).
async fn raw_rows_exact(
    app: &Dashboard,
    q: &Question,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    if q.metrics.contains(&Metric::ConversionRate) {
        let base_q = q.without_goals();
        // Both at once: the server runs them side by side, and the answer waits for one
        // pass less.
        let (sql, base_sql) = (plan::raw_sql(q)?, plan::raw_sql(&base_q)?);
        let (mut rows, base) = tokio::try_join!(query(app, &sql), query(app, &base_sql))?;
        let key = |r: &Map<String, Value>, dims: usize| -> Vec<String> {
            (0..dims)
                .map(|i| {
                    r.get(&format!("d{i}"))
                        .map(Value::to_string)
                        .unwrap_or_default()
                })
                .chain(r.get("time").map(Value::to_string))
                .collect()
        };
        let base: std::collections::HashMap<Vec<String>, f64> = base
            .iter()
            .map(|r| {
                let v = r
                    .get("visitors")
                    .map(number)
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0);
                (key(r, base_q.dims.len()), v)
            })
            .collect();
        let goal_at = q.dims.iter().position(|d| *d == Dim::Goal);
        for r in &mut rows {
            // The base has no goal column: drop it from the key.
            let mut k = key(r, q.dims.len());
            if let Some(i) = goal_at {
                k.remove(i);
            }
            let converted = r
                .get("conversion_rate")
                .map(number)
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0);
            let total = base.get(&k).copied().unwrap_or(0.0);
            let rate = if total == 0.0 {
                0.0
            } else {
                (converted / total * 1000.0).round() / 10.0
            };
            r.insert("conversion_rate".into(), plain(rate));
        }
        return Ok(rows);
    }
    query(app, &plan::raw_sql(q)?).await
}

/// Runs SQL (a rendered query file, or what the planner built); each row as a JSON object.
async fn query(app: &Dashboard, sql: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let bytes = app
        .db
        .query(sql)
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

/// A metric of a row as a number; Plausible's `events` counts page views too, which the
/// aggregates keep apart from custom events.
fn metric(row: &Map<String, Value>, m: Metric, from_aggregates: bool) -> f64 {
    let get = |k: &str| {
        row.get(k)
            .map(number)
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
    };
    if m == Metric::Events && from_aggregates {
        get("events") + get("pageviews")
    } else {
        get(m.name())
    }
}

async fn aggregate<'q>(
    app: &Dashboard,
    p: &Params,
    get: &impl Fn(&str) -> Option<&'q str>,
) -> Result<Value, ApiError> {
    let q = question(app, p, get, Vec::new(), None)?;
    let compare = match get("compare") {
        None => false,
        Some("previous_period") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`compare`: {other:?} is not supported; only previous_period"
            )));
        }
    };
    let (current, previous, from_aggregates) = match source(app, &q)? {
        Source::Aggregates => {
            let (current, previous) = totals(app, p, &q.metrics).await?;
            (current, previous, true)
        }
        Source::Raw => {
            let current = raw_rows(app, &q).await?.pop().unwrap_or_default();
            let previous = if compare {
                let days = q.to - q.from + 1;
                let before = Question {
                    from: q.from.saturating_sub(days),
                    to: q.from.saturating_sub(1),
                    ..q.clone()
                };
                source(app, &before)?;
                raw_rows(app, &before).await?.pop().unwrap_or_default()
            } else {
                Map::new()
            };
            (current, previous, false)
        }
    };
    let mut out = Map::new();
    for m in q.metrics {
        let value = metric(&current, m, from_aggregates);
        let mut entry = Map::new();
        entry.insert("value".into(), plain(value));
        if compare {
            let before = metric(&previous, m, from_aggregates);
            // A rate changes by points, everything else by percent.
            let change = if matches!(m, Metric::BounceRate | Metric::ConversionRate) {
                ((value - before) * 10.0).round() / 10.0
            } else {
                params::percent_change(before, value)
            };
            entry.insert("change".into(), plain(change));
        }
        out.insert(m.name().into(), Value::Object(entry));
    }
    Ok(Value::Object(out))
}

/// The rows of an event query and of a visit query, each only when `metrics` need it; the two
/// are independent, so they are asked at once.
async fn events_and_visits(
    app: &Dashboard,
    p: &Params,
    metrics: &[Metric],
    events_query: &'static str,
    visits_query: &'static str,
) -> Result<(Vec<Map<String, Value>>, Vec<Map<String, Value>>), ApiError> {
    let ask = |name: &'static str, needed: bool| async move {
        if needed {
            rows(app, name, p).await
        } else {
            Ok(Vec::new())
        }
    };
    let (events, visits) = tokio::join!(
        ask(events_query, metrics.iter().any(|m| !m.of_visits())),
        ask(visits_query, metrics.iter().any(|m| m.of_visits()))
    );
    Ok((events?, visits?))
}

/// The site's totals from the aggregates, for the period and the one before.
async fn totals(
    app: &Dashboard,
    p: &Params,
    metrics: &[Metric],
) -> Result<(Map<String, Value>, Map<String, Value>), ApiError> {
    let (mut current, mut previous) = (Map::new(), Map::new());
    let (totals, visits) = events_and_visits(app, p, metrics, "totals", "visits").await?;
    for row in totals.into_iter().chain(visits) {
        let target = if row.get("period").and_then(Value::as_str) == Some("current") {
            &mut current
        } else {
            &mut previous
        };
        target.extend(row);
    }
    Ok((current, previous))
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
    let interval = params::interval(get("interval"), get("period"))?;
    let q = question(app, p, get, Vec::new(), Some(interval))?;
    let rows = series(app, p, &q, interval).await?;
    Ok(Value::Array(
        rows.into_iter()
            .map(|(date, values)| {
                let mut row = Map::new();
                row.insert("date".into(), json!(date));
                row.extend(values);
                Value::Object(row)
            })
            .collect(),
    ))
}

/// The label of the bucket holding `time` ("2026-11-27 10:00:00" or "2026-11-27").
fn bucket_label(interval: Interval, time: &str) -> String {
    let date = &time[..time.len().min(10)];
    match interval {
        Interval::Hour => time.to_string(),
        Interval::Date => date.to_string(),
        Interval::Week => {
            let day = crate::clock::parse_date(date).unwrap_or(0);
            // 1970-01-01 was a Thursday.
            date_string(day - (day + 3) % 7)
        }
        Interval::Month => format!("{}-01", &time[..time.len().min(7)]),
    }
}

/// Every bucket of the period, in order.
pub(super) fn bucket_labels(interval: Interval, from: u16, to: u16) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for day in from..=to {
        let date = date_string(day);
        if interval == Interval::Hour {
            out.extend((0..24).map(|h| format!("{date} {h:02}:00:00")));
        } else {
            let label = bucket_label(interval, &date);
            if out.last() != Some(&label) {
                out.push(label);
            }
        }
    }
    out
}

/// Each bucket of the period with the metrics of `q` (which has no dimension), from the
/// aggregates or the raw events; empty buckets included.
pub(super) async fn series(
    app: &Dashboard,
    p: &Params,
    q: &Question,
    interval: Interval,
) -> Result<Vec<(String, Map<String, Value>)>, ApiError> {
    let metrics = &q.metrics;
    let labels = bucket_labels(interval, q.from, q.to);
    if source(app, q)? == Source::Raw {
        let mut found: std::collections::HashMap<String, Map<String, Value>> = raw_rows(app, q)
            .await?
            .into_iter()
            .map(|r| {
                let time = r
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                (time, r)
            })
            .collect();
        return Ok(labels
            .into_iter()
            .map(|label| {
                let row = found.remove(&label).unwrap_or_default();
                let values = metrics
                    .iter()
                    .map(|m| {
                        let v = match row.get(m.name()) {
                            Some(Value::Null) => Value::Null,
                            _ => plain(metric(&row, *m, false)),
                        };
                        (m.name().to_string(), v)
                    })
                    .collect();
                (label, values)
            })
            .collect());
    }
    let mut buckets: BTreeMap<String, Bucket> = labels
        .iter()
        .map(|l| (l.clone(), Bucket::default()))
        .collect();
    // Visitors are distinct per day (per hour for hours): weeks and months add up their days,
    // as the totals do.
    let events_query = if interval == Interval::Hour {
        "timeseries_hourly"
    } else {
        "timeseries_daily"
    };
    let (events, visits) =
        events_and_visits(app, p, metrics, events_query, "visits_timeseries").await?;
    let field = |r: &Map<String, Value>, k: &str| {
        r.get(k).map(number).and_then(|v| v.as_f64()).unwrap_or(0.0)
    };
    for r in events {
        let time = r
            .get("day")
            .or_else(|| r.get("hour"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(b) = buckets.get_mut(&bucket_label(interval, time)) {
            b.visitors += field(&r, "visitors");
            b.pageviews += field(&r, "pageviews");
            b.events += field(&r, "events");
        }
    }
    for r in visits {
        let time = r.get("hour").and_then(Value::as_str).unwrap_or("");
        if let Some(b) = buckets.get_mut(&bucket_label(interval, time)) {
            b.visits += field(&r, "visits");
            b.bounces += field(&r, "bounces");
            b.duration += field(&r, "duration");
            b.visit_pageviews += field(&r, "pageviews");
        }
    }
    let per_visit = |x: f64, visits: f64| if visits == 0.0 { 0.0 } else { x / visits };
    Ok(labels
        .into_iter()
        .map(|label| {
            let b = buckets.remove(&label).unwrap_or_default();
            let values = metrics
                .iter()
                .map(|m| {
                    let v = match m {
                        Metric::Visitors => b.visitors,
                        Metric::Pageviews => b.pageviews,
                        Metric::Events => b.events + b.pageviews,
                        Metric::Visits => b.visits,
                        Metric::BounceRate => (100.0 * per_visit(b.bounces, b.visits)).round(),
                        Metric::VisitDuration => per_visit(b.duration, b.visits).round(),
                        Metric::ViewsPerVisit => {
                            (per_visit(b.visit_pageviews, b.visits) * 100.0).round() / 100.0
                        }
                        _ => 0.0,
                    };
                    (m.name().to_string(), plain(v))
                })
                .collect();
            (label, values)
        })
        .collect())
}

async fn breakdown<'q>(
    app: &Dashboard,
    p: Params,
    get: &impl Fn(&str) -> Option<&'q str>,
) -> Result<Value, ApiError> {
    let property = get("property")
        .ok_or_else(|| ApiError::BadRequest("`property` is required, e.g. event:page".into()))?;
    // Glimpse's all-properties breakdown and exit pages exist in the aggregates only.
    let (dim, key) = match property {
        "event:props" | "visit:exit_page" => {
            if get("filters").is_some() {
                return Err(ApiError::BadRequest(format!(
                    "`filters`: the {property} breakdown is answered from the aggregates, \
                     unfiltered"
                )));
            }
            (
                None,
                if property == "event:props" {
                    ""
                } else {
                    "exit_page"
                },
            )
        }
        _ => {
            let dim = Dim::parse(property).map_err(|e| format!("`property`: {e}"))?;
            // Plausible names the column by the property's last part ("page", "plan").
            let key = property.rsplit(':').next().unwrap_or(property);
            (Some(dim), key)
        }
    };
    let mut q = question(app, &p, get, dim.iter().cloned().collect(), None)?;
    // Entry and exit pages count visits unless asked otherwise.
    if get("metrics").is_none() && key.ends_with("_page") {
        q.metrics = vec![Metric::Visits];
    }
    let rows = breakdown_rows(app, p, property, &mut q).await?;
    Ok(Value::Array(
        rows.into_iter()
            .map(|mut r| {
                if let Some(v) = r.remove("d0") {
                    r.insert(key.into(), v);
                }
                Value::Object(r)
            })
            .collect(),
    ))
}

/// The rows of a one-dimension breakdown, one page of them: the value as `d0` (event:props
/// keeps `event`, `key` and `value`), then each metric, from the aggregates when they hold it.
pub(super) async fn breakdown_rows(
    app: &Dashboard,
    mut p: Params,
    property: &str,
    q: &mut Question,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let metrics = q.metrics.clone();
    let dim = q.dims.first().cloned();
    if dim.is_some() && source(app, q)? == Source::Raw {
        let rows = raw_breakdown(app, q).await?;
        let (limit, offset) = (p.limit as usize, p.offset as usize);
        return Ok(rows
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|r| finish(r, &metrics, 1, false))
            .collect());
    }
    let (name, dimension, supported) = aggregate_breakdown(property, dim.as_ref());
    params::only(&metrics, supported, &format!("the {property} breakdown"))?;
    p.dimension = dimension.to_string();
    let mut rows = rows(app, name, &p).await?;
    if metrics
        .iter()
        .any(|m| matches!(m, Metric::ScrollDepth | Metric::TimeOnPage))
    {
        add_engagement(app, &p, &mut rows).await?;
    }
    let labelled = property != "event:props";
    for r in rows.iter_mut().filter(|_| labelled) {
        if let Some(mut v) = r.remove("value").or_else(|| r.remove("page")) {
            // The aggregates keep page views under the event name "".
            if property == "event:name" && v == "" {
                v = json!("pageview");
            }
            r.insert("d0".into(), v);
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| finish(r, &metrics, usize::from(labelled), true))
        .collect())
}

/// A row as the APIs give it: its `dims` dimension values (`d0`, ...), `time`, event:props'
/// labels, then each metric as a number (null where it has none).
fn finish(
    mut r: Map<String, Value>,
    metrics: &[Metric],
    dims: usize,
    from_aggregates: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    let labels = (0..dims)
        .map(|i| format!("d{i}"))
        .chain(["time", "event", "key", "value"].map(String::from));
    for label in labels {
        if let Some(v) = r.remove(&label) {
            out.insert(label, v);
        }
    }
    for m in metrics {
        let v = match r.get(m.name()) {
            None | Some(Value::Null) if *m != Metric::Events || !from_aggregates => Value::Null,
            _ => plain(metric(&r, *m, from_aggregates)),
        };
        out.insert(m.name().into(), v);
    }
    out
}

/// The query file, `stats_daily` dimension and metrics of a breakdown the aggregates answer.
fn aggregate_breakdown(
    property: &str,
    dim: Option<&Dim>,
) -> (&'static str, &'static str, &'static [Metric]) {
    match (property, dim) {
        ("event:props", _) => ("event_props", "", &[Metric::Visitors, Metric::Events]),
        ("visit:exit_page", _) => ("exit_pages", "", &[Metric::Visits]),
        (_, Some(Dim::Entry("visit:entry_page"))) => ("entry_pages", "", &[Metric::Visits]),
        (_, Some(d)) => {
            let dimension = match d.name().as_str() {
                "event:page" => "page",
                "event:hostname" => "hostname",
                "event:name" => "event",
                other => queries::DIMENSIONS
                    .iter()
                    .find(|x| other.strip_prefix("visit:") == Some(**x))
                    .copied()
                    .unwrap_or(""),
            };
            ("breakdown", dimension, plan::aggregate_metrics(d))
        }
        _ => ("breakdown", "", &[]),
    }
}

/// A raw breakdown with k-anonymity applied: rows of fewer visitors than `min_visitors`
/// are summed into one "(other)" row (rates are not summed: null there).
async fn raw_breakdown(
    app: &Dashboard,
    q: &mut Question,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let k = f64::from(app.min_visitors);
    if k > 0.0 && !q.metrics.contains(&Metric::Visitors) {
        q.metrics.push(Metric::Visitors);
    }
    let rows = raw_rows(app, q).await?;
    if k == 0.0 {
        return Ok(rows);
    }
    let summed = [
        Metric::Visitors,
        Metric::Pageviews,
        Metric::Events,
        Metric::Visits,
    ];
    let mut kept = Vec::new();
    let mut other: Option<Map<String, Value>> = None;
    for r in rows {
        if metric(&r, Metric::Visitors, false) >= k {
            kept.push(r);
            continue;
        }
        let o = other.get_or_insert_with(|| {
            let mut o = Map::new();
            o.insert("d0".into(), json!("(other)"));
            for m in &q.metrics {
                o.insert(
                    m.name().into(),
                    if summed.contains(m) {
                        json!(0)
                    } else {
                        Value::Null
                    },
                );
            }
            o
        });
        for m in &summed {
            if let Some(v) = o.get(m.name()).and_then(Value::as_f64) {
                o.insert(m.name().into(), plain(v + metric(&r, *m, false)));
            }
        }
    }
    kept.extend(other);
    Ok(kept)
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

/// `{"error": "..."}`, never cached.
pub fn error(status: StatusCode, msg: &str) -> Reply {
    no_store(front::error(status, msg))
}

fn no_store(mut r: Reply) -> Reply {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
