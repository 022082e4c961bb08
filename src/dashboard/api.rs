//! The stats API: parameters in, rendered `schema/queries/` out, results as JSON.
//!
//! - `GET /api/v1/sites` → `{"results": ["example.com", ...]}`
//! - `GET /api/v1/stats/aggregate?site_id=&period=&date=` → `{"results": {"visitors": {"value",
//!   "previous", "change"}, "pageviews", "events", "visits", "bounce_rate", "visit_duration",
//!   "pages_per_visit"}}`
//! - `GET /api/v1/stats/timeseries?site_id=&period=&date=&interval=date|hour` →
//!   `{"results": [{"date", "visitors", "pageviews", "events"}]}`
//! - `GET /api/v1/stats/breakdown?site_id=&period=&date=&property=&limit=` →
//!   `{"results": [{<property>: value, "visitors", "pageviews", "events"}]}` (`event:page`
//!   adds `scroll_depth`, %, and `time_on_page`, seconds, null without engagement); properties
//!   `event:page`, `event:hostname`, `event:name`, `event:props`, `visit:source`,
//!   `visit:referrer`, `visit:utm_source` … `visit:utm_term`, `visit:country`, `visit:region`,
//!   `visit:browser`, `visit:browser_version`, `visit:os`, `visit:os_version`, `visit:device`,
//!   `visit:entry_page`, `visit:exit_page`
//! - `GET /api/v1/stats/revenue` and `/api/v1/stats/dropped` (same site and period parameters)
//!
//! `period`: `day` (default), `7d`, `30d`, `month`, or `custom` with `date=YYYY-MM-DD,YYYY-MM-DD`;
//! `date` alone sets the last day of the other periods.

use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::Dashboard;
use crate::clock::{date_string, day_of, parse_date};
use crate::front::{self, Reply};
use crate::store::queries::{self, Params};

pub async fn answer(app: &Dashboard, endpoint: &str, query: &str) -> Reply {
    let q: Vec<(String, String)> = url_pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if endpoint == "sites" {
        return ok(json!(app.sites));
    }
    let params = match params(app, &get) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let result = match endpoint {
        "stats/aggregate" => aggregate(app, &params).await,
        "stats/timeseries" => {
            let name = match get("interval").unwrap_or("date") {
                "date" => "timeseries_daily",
                "hour" => "timeseries_hourly",
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("interval must be date or hour, got {other:?}"),
                    );
                }
            };
            rows(app, name, &params).await.map(|rows| {
                Value::Array(
                    rows.into_iter()
                        .map(|r| {
                            let mut r = r;
                            let date = r.remove("day").or_else(|| r.remove("hour"));
                            r.insert("date".into(), date.unwrap_or(Value::Null));
                            numbers(Value::Object(r))
                        })
                        .collect(),
                )
            })
        }
        "stats/breakdown" => {
            let property = get("property").unwrap_or("event:page");
            breakdown(app, property, params).await
        }
        "stats/revenue" => rows(app, "revenue", &params).await.map(array),
        "stats/dropped" => rows(app, "dropped", &params).await.map(array),
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
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

/// Why a stats request has no answer: the request (400) or the database (503).
enum ApiError {
    BadRequest(String),
    Database(String),
}

fn params<'q>(app: &Dashboard, get: &impl Fn(&str) -> Option<&'q str>) -> Result<Params, String> {
    let site = get("site_id").ok_or("site_id is required")?;
    if !app.sites.iter().any(|s| s == site) {
        return Err(format!("site_id {site:?} is not a configured site"));
    }
    let today = day_of(app.clock.now());
    let date = |s: &str| parse_date(s).ok_or(format!("date {s:?} is not like 2026-11-23"));
    let (from, to) = match get("period").unwrap_or("day") {
        "custom" => {
            let range = get("date").ok_or("period=custom needs date=FROM,TO")?;
            let (a, b) = range.split_once(',').ok_or("date must be FROM,TO")?;
            (date(a)?, date(b)?)
        }
        period => {
            let end = get("date").map(date).transpose()?.unwrap_or(today);
            let span = match period {
                "day" => 0,
                "7d" => 6,
                "30d" => 29,
                "month" => {
                    let first = date(&format!("{}-01", &date_string(end)[..7]))?;
                    end - first
                }
                other => return Err(format!("unknown period {other:?}")),
            };
            (end.saturating_sub(span), end)
        }
    };
    if to < from {
        return Err("the period ends before it starts".into());
    }
    if to - from > 3660 {
        return Err("periods are at most ten years".into());
    }
    let limit = get("limit")
        .map(|l| {
            l.parse::<u32>()
                .map_err(|_| format!("limit {l:?} is not a number"))
        })
        .transpose()?
        .unwrap_or(10)
        .clamp(1, 1000);
    Ok(Params {
        site: site.to_string(),
        from: date_string(from),
        to: date_string(to),
        dimension: String::new(),
        k: app.min_visitors,
        limit,
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

async fn aggregate(app: &Dashboard, p: &Params) -> Result<Value, ApiError> {
    let mut current = Map::new();
    let mut previous = Map::new();
    // Independent queries: ask both at once.
    let (totals, visits) = tokio::join!(rows(app, "totals", p), rows(app, "visits", p));
    for result in [totals, visits] {
        for row in result? {
            let target = if row.get("period").and_then(Value::as_str) == Some("current") {
                &mut current
            } else {
                &mut previous
            };
            for (k, v) in row {
                if MEASURES.contains(&k.as_str()) {
                    target.insert(k, number(&v));
                }
            }
        }
    }
    let metrics = [
        "visitors",
        "pageviews",
        "events",
        "visits",
        "bounce_rate",
        "visit_duration",
        "pages_per_visit",
    ];
    let mut out = Map::new();
    for m in metrics {
        let value = current.get(m).and_then(Value::as_f64).unwrap_or(0.0);
        let before = previous.get(m).and_then(Value::as_f64).unwrap_or(0.0);
        let change = if before == 0.0 {
            Value::Null
        } else {
            json!(((value - before) / before * 1000.0).round() / 10.0)
        };
        out.insert(
            m.into(),
            json!({ "value": plain(value), "previous": plain(before), "change": change }),
        );
    }
    Ok(Value::Object(out))
}

async fn breakdown(app: &Dashboard, property: &str, mut p: Params) -> Result<Value, ApiError> {
    let (query, dimension, key) = match property {
        "visit:entry_page" => ("entry_pages", "", "entry_page"),
        "visit:exit_page" => ("exit_pages", "", "exit_page"),
        "event:props" => ("event_props", "", ""),
        other => {
            let (short, dimension) = match other {
                "event:page" => ("page", "page"),
                "event:hostname" => ("hostname", "hostname"),
                "event:name" => ("name", "event"),
                p => match p.strip_prefix("visit:") {
                    Some(d) if queries::DIMENSIONS.contains(&d) => (d, d),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "unknown property {property:?}"
                        )));
                    }
                },
            };
            ("breakdown", dimension, short)
        }
    };
    p.dimension = dimension.to_string();
    let mut rows = rows(app, query, &p).await?;
    if property == "event:page" {
        add_engagement(app, &p, &mut rows).await?;
    }
    Ok(Value::Array(
        rows.into_iter()
            .map(|mut r| {
                if !key.is_empty() {
                    let v = r.remove("value").or_else(|| r.remove("page"));
                    r.insert(key.into(), v.unwrap_or(Value::Null));
                }
                numbers(Value::Object(r))
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
    "pages_per_visit",
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
