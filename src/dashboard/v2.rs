//! Plausible's Stats API v2: `POST /api/v2/query` with a JSON question, answered by the same
//! planner as v1. Every key of the request is checked: an unknown one, or a combination no
//! source can answer, is a 400 that names it.
//!
//! Request: `site_id`, `metrics`, `date_range` (`day`, `7d`, `28d`, `30d`, `91d`, `month`,
//! `6mo`, `12mo`, `year`, `all`, or `[from, to]`), `dimensions` (`event:*`, `visit:*`, `time`,
//! `time:hour|day|week|month`), `filters`, `order_by`, `include` (`time_labels`,
//! `total_rows`), `pagination` (`limit`, `offset`). Answer: `{results: [{dimensions, metrics}],
//! meta, query}`.

use serde_json::{Map, Value, json};

use super::Dashboard;
use super::api::{self, ApiError};
use super::filters::{self, Dim};
use super::params::{self, Interval};
use super::plan::{self, Question};
use crate::clock::{date_string, day_of, parse_date};
use crate::store::queries::Params;

const KEYS: &[&str] = &[
    "site_id",
    "metrics",
    "date_range",
    "dimensions",
    "filters",
    "order_by",
    "include",
    "pagination",
];
const MAX_DIMENSIONS: usize = 5;
const MAX_LIMIT: u64 = 10_000;

/// A checked v2 request.
struct Request {
    q: Question,
    /// The requested dimensions in order; `None` stands for the time dimension.
    dims: Vec<Option<Dim>>,
    dim_names: Vec<String>,
    order_by: Vec<(String, bool)>,
    time_labels: bool,
    total_rows: bool,
    limit: usize,
    offset: usize,
    echo: Map<String, Value>,
}

pub(super) async fn query(app: &Dashboard, body: &[u8]) -> Result<Value, ApiError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let r = request(app, &body)?;
    let q = &r.q;
    let p = Params {
        site: q.site.clone(),
        from: date_string(q.from),
        to: date_string(q.to),
        dimension: String::new(),
        k: app.min_visitors,
        limit: plan::MAX_RAW_ROWS,
        offset: 0,
    };
    let time = q.time;
    let plain_dims: Vec<&Dim> = r.dims.iter().flatten().collect();
    // Rows of (dimension values in request order, metric values).
    let mut rows: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    let metric_values = |row: &Map<String, Value>| -> Vec<Value> {
        q.metrics
            .iter()
            .map(|m| row.get(m.name()).cloned().unwrap_or(Value::Null))
            .collect()
    };
    let dims_of = |row: &Map<String, Value>| -> Vec<Value> {
        let mut n = 0;
        r.dims
            .iter()
            .map(|d| match d {
                None => row.get("time").cloned().unwrap_or(Value::Null),
                Some(_) => {
                    n += 1;
                    row.get(&format!("d{}", n - 1))
                        .cloned()
                        .unwrap_or(Value::Null)
                }
            })
            .collect()
    };
    match (plain_dims.len(), time) {
        (0, None) => {
            let row = api::totals_row(app, &p, q).await?;
            rows.push((Vec::new(), metric_values(&row)));
        }
        (0, Some(interval)) => {
            for (label, values) in api::series(app, &p, q, interval).await? {
                // Plausible lists only buckets with data; time_labels has them all.
                let empty = values
                    .values()
                    .all(|v| v.is_null() || v.as_f64() == Some(0.0));
                if !empty {
                    rows.push((vec![json!(label)], metric_values(&values)));
                }
            }
        }
        (1, None) if q.aggregates_answer() => {
            let name = plain_dims[0].name();
            let mut q = q.clone();
            for row in api::breakdown_rows(app, p.clone(), &name, &mut q).await? {
                rows.push((dims_of(&row), metric_values(&row)));
            }
        }
        _ => {
            api::source(app, q)?;
            for row in api::raw_rows_finished(app, q).await? {
                rows.push((dims_of(&row), metric_values(&row)));
            }
        }
    }
    // Order: as asked, else the first metric, largest first (time ascending when present).
    let position = |name: &str| -> Option<(bool, usize)> {
        r.dim_names
            .iter()
            .position(|d| d == name)
            .map(|i| (true, i))
            .or_else(|| {
                q.metrics
                    .iter()
                    .position(|m| m.name() == name)
                    .map(|i| (false, i))
            })
    };
    let mut order: Vec<((bool, usize), bool)> = r
        .order_by
        .iter()
        .filter_map(|(name, desc)| position(name).map(|p| (p, *desc)))
        .collect();
    if order.is_empty() {
        if let Some(i) = r.dims.iter().position(Option::is_none) {
            order.push(((true, i), false));
        } else if !q.metrics.is_empty() && !rows.is_empty() && !r.dims.is_empty() {
            order.push(((false, 0), true));
        }
    }
    let cmp = |a: &Value, b: &Value| -> std::cmp::Ordering {
        match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            _ => a.to_string().cmp(&b.to_string()),
        }
    };
    rows.sort_by(|a, b| {
        for ((is_dim, i), desc) in &order {
            let (x, y) = if *is_dim {
                (&a.0[*i], &b.0[*i])
            } else {
                (&a.1[*i], &b.1[*i])
            };
            let o = cmp(x, y);
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        a.0.iter()
            .map(Value::to_string)
            .cmp(b.0.iter().map(Value::to_string))
    });
    let total = rows.len();
    let results: Vec<Value> = rows
        .into_iter()
        .skip(r.offset)
        .take(r.limit)
        .map(|(d, m)| json!({"dimensions": d, "metrics": m}))
        .collect();
    let mut meta = Map::new();
    if r.time_labels {
        let interval = time.ok_or_else(|| {
            ApiError::BadRequest("`include.time_labels` needs a time dimension".into())
        })?;
        meta.insert(
            "time_labels".into(),
            json!(api::bucket_labels(interval, q.from, q.to)),
        );
    }
    if r.total_rows {
        meta.insert("total_rows".into(), json!(total));
    }
    Ok(json!({"results": results, "meta": meta, "query": r.echo}))
}

fn request(app: &Dashboard, body: &Value) -> Result<Request, String> {
    let obj = body.as_object().ok_or("the body is a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{k}`; a query has: {}",
            KEYS.join(", ")
        ));
    }
    let site = obj
        .get("site_id")
        .and_then(Value::as_str)
        .ok_or("`site_id` is required, a string")?;
    if !app.sites.iter().any(|s| s == site) {
        return Err(format!("`site_id`: {site:?} is not a configured site"));
    }
    let names: Vec<&str> = obj
        .get("metrics")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("`metrics` is required, a non-empty list")?
        .iter()
        .map(|m| m.as_str().ok_or("`metrics`: names are strings"))
        .collect::<Result<_, _>>()?;
    let metrics = params::metrics(Some(&names.join(",")))?;
    let today = day_of(app.clock.now());
    let (from, to) = date_range(obj.get("date_range"), today)?;
    let mut dims = Vec::new();
    let mut dim_names = Vec::new();
    let mut time = None;
    if let Some(list) = obj.get("dimensions") {
        let list = list.as_array().ok_or("`dimensions` is a list")?;
        if list.len() > MAX_DIMENSIONS {
            return Err(format!("`dimensions`: at most {MAX_DIMENSIONS}"));
        }
        for d in list {
            let name = d.as_str().ok_or("`dimensions`: names are strings")?;
            if dim_names.iter().any(|n| n == name) {
                return Err(format!("`dimensions`: {name} is named twice"));
            }
            let interval = match name {
                "time" => Some(auto_interval(from, to)),
                "time:hour" => Some(Interval::Hour),
                "time:day" => Some(Interval::Date),
                "time:week" => Some(Interval::Week),
                "time:month" => Some(Interval::Month),
                _ => None,
            };
            match interval {
                Some(i) => {
                    if time.is_some() {
                        return Err("`dimensions`: one time dimension at most".into());
                    }
                    time = Some(i);
                    dims.push(None);
                }
                None => dims.push(Some(
                    Dim::parse(name).map_err(|e| format!("`dimensions`: {e}"))?,
                )),
            }
            dim_names.push(name.to_string());
        }
    }
    let filter = match obj.get("filters") {
        None => None,
        Some(f) if f.as_array().is_some_and(Vec::is_empty) => None,
        Some(f) => Some(filters::parse_v2(f)?),
    };
    let mut order_by = Vec::new();
    if let Some(list) = obj.get("order_by") {
        for o in list.as_array().ok_or("`order_by` is a list")? {
            let pair = o
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| format!("`order_by`: {o} is not [name, \"asc\" | \"desc\"]"))?;
            let name = pair[0].as_str().unwrap_or("");
            let desc = match pair[1].as_str() {
                Some("asc") => false,
                Some("desc") => true,
                _ => return Err(format!("`order_by`: {o}: the direction is asc or desc")),
            };
            if !dim_names.iter().any(|d| d == name) && !names.contains(&name) {
                return Err(format!(
                    "`order_by`: {name:?} is neither a requested metric nor a dimension"
                ));
            }
            order_by.push((name.to_string(), desc));
        }
    }
    let (mut time_labels, mut total_rows) = (false, false);
    if let Some(inc) = obj.get("include") {
        let inc = inc.as_object().ok_or("`include` is an object")?;
        for (k, v) in inc {
            let flag = v
                .as_bool()
                .ok_or_else(|| format!("`include.{k}` is true or false"))?;
            match k.as_str() {
                "time_labels" => time_labels = flag,
                "total_rows" => total_rows = flag,
                "imports" if !flag => {}
                "imports" => return Err("`include.imports`: Glimpse has no imported data".into()),
                other => {
                    return Err(format!(
                        "`include`: unknown key {other:?}; one of: time_labels, total_rows, imports"
                    ));
                }
            }
        }
    }
    let (mut limit, mut offset) = (MAX_LIMIT, 0);
    if let Some(pg) = obj.get("pagination") {
        let pg = pg.as_object().ok_or("`pagination` is an object")?;
        for (k, v) in pg {
            let n = v
                .as_u64()
                .ok_or_else(|| format!("`pagination.{k}` is a whole number"))?;
            match k.as_str() {
                "limit" if (1..=MAX_LIMIT).contains(&n) => limit = n,
                "limit" => return Err(format!("`pagination.limit`: 1 to {MAX_LIMIT}")),
                "offset" => offset = n,
                other => {
                    return Err(format!(
                        "`pagination`: unknown key {other:?}; one of: limit, offset"
                    ));
                }
            }
        }
    }
    let q = Question {
        site: site.to_string(),
        from,
        to,
        metrics,
        dims: dims.iter().flatten().cloned().collect(),
        time,
        filter,
        goals: app.goals.get(site).cloned().unwrap_or_default(),
    };
    q.check()?;
    let mut echo = obj.clone();
    echo.insert(
        "date_range".into(),
        json!([
            format!("{}T00:00:00+00:00", date_string(from)),
            format!("{}T23:59:59+00:00", date_string(to))
        ]),
    );
    echo.insert("dimensions".into(), json!(dim_names));
    echo.entry("filters").or_insert(json!([]));
    echo.insert(
        "order_by".into(),
        json!(
            order_by
                .iter()
                .map(|(n, d)| json!([n, if *d { "desc" } else { "asc" }]))
                .collect::<Vec<_>>()
        ),
    );
    echo.insert(
        "include".into(),
        json!({"time_labels": time_labels, "total_rows": total_rows, "imports": false}),
    );
    echo.insert(
        "pagination".into(),
        json!({"limit": limit, "offset": offset}),
    );
    Ok(Request {
        q,
        dims,
        dim_names,
        order_by,
        time_labels,
        total_rows,
        limit: limit as usize,
        offset: offset as usize,
        echo,
    })
}

/// `date_range`: a shortcut or `[from, to]` (dates, or date-times of which the date counts).
fn date_range(v: Option<&Value>, today: u16) -> Result<(u16, u16), String> {
    let v = v.ok_or("`date_range` is required")?;
    if let Some(list) = v.as_array() {
        let day = |x: &Value| {
            x.as_str()
                .and_then(|s| parse_date(s.get(..10)?))
                .ok_or_else(|| format!("`date_range`: {x} is not a date like 2026-11-23"))
        };
        if list.len() != 2 {
            return Err("`date_range`: [from, to]".into());
        }
        let (from, to) = (day(&list[0])?, day(&list[1])?);
        if to < from {
            return Err("`date_range`: it ends before it starts".into());
        }
        return Ok((from, to));
    }
    let shortcut = v
        .as_str()
        .ok_or("`date_range` is a shortcut like \"7d\" or [from, to]")?;
    match shortcut {
        "28d" => Ok((today.saturating_sub(27), today)),
        "91d" => Ok((today.saturating_sub(90), today)),
        "all" => Ok((0, today)),
        "custom" => Err("`date_range`: give [from, to]".into()),
        other => params::period(Some(other), None, today).map_err(|e| {
            e.replace("`period`", "`date_range`")
                .replace("custom", "28d, 91d, all or [from, to]")
        }),
    }
}

/// The buckets `time` means: hours for a day, months beyond about three months, else days.
fn auto_interval(from: u16, to: u16) -> Interval {
    match to - from {
        0 => Interval::Hour,
        1..=92 => Interval::Date,
        _ => Interval::Month,
    }
}
