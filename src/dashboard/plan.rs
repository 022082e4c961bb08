//! The query planner behind the stats APIs and the dashboard page. A question (metrics,
//! dimensions, filters, period) is answered from the aggregates when they hold it exactly (no
//! filters, one dimension they keep), otherwise from the raw `events` within their retention;
//! when neither can, the error says why.
//!
//! On raw events a visitor's day stands in for their visits: as a dimension, what a visit's
//! start decides (source, referrer, UTM tags, entry page) is that of the visitor's first visit
//! that day; as a filter, it selects the visitors who began a visit that way that day; any
//! other filter selects the visitors who had a matching event. Event metrics count the
//! matching events; visit metrics count the whole visits of the matching visitors.

use crate::clock::date_string;
use crate::model::{Goal, GoalKind};
use crate::store::queries::quote;

use super::filters::{self, Dim, Filter, Op};
use super::params::{Interval, Metric};

/// Rows a raw answer may have before k-anonymity folding and pagination.
pub(crate) const MAX_RAW_ROWS: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct Question {
    pub site: String,
    /// First and last day, inclusive.
    pub from: u16,
    pub to: u16,
    pub metrics: Vec<Metric>,
    pub dims: Vec<Dim>,
    pub time: Option<Interval>,
    pub filter: Option<Filter>,
    pub goals: Vec<Goal>,
}

/// Where an answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Aggregates,
    Raw,
}

/// Metrics the aggregates hold for the whole site (totals and time series).
const TOTALS: &[Metric] = &[
    Metric::Visitors,
    Metric::Pageviews,
    Metric::Events,
    Metric::Visits,
    Metric::BounceRate,
    Metric::VisitDuration,
    Metric::ViewsPerVisit,
];

/// What the aggregates can give for a single dimension.
pub(crate) fn aggregate_metrics(dim: &Dim) -> &'static [Metric] {
    match dim {
        Dim::Event("event:page") => &[
            Metric::Visitors,
            Metric::Pageviews,
            Metric::Events,
            Metric::ScrollDepth,
            Metric::TimeOnPage,
        ],
        Dim::Entry("visit:entry_page") => &[Metric::Visits],
        Dim::Event(_) | Dim::Visitor(_) => &[Metric::Visitors, Metric::Pageviews, Metric::Events],
        Dim::Entry(_) => &[Metric::Visitors, Metric::Pageviews, Metric::Events],
        Dim::Prop(_) | Dim::Goal => &[],
    }
}

impl Question {
    /// Whether the aggregates hold this question exactly.
    pub(crate) fn aggregates_answer(&self) -> bool {
        if self.filter.is_some() {
            return false;
        }
        match (self.dims.as_slice(), self.time) {
            ([], _) => self.metrics.iter().all(|m| TOTALS.contains(m)),
            ([d], None) => {
                let held = aggregate_metrics(d);
                !held.is_empty() && self.metrics.iter().all(|m| held.contains(m))
            }
            _ => false,
        }
    }

    /// Where the answer comes from, given the raw events' retention and today's day.
    pub fn source(&self, events_days: u32, today: u16) -> Result<Source, String> {
        if self.aggregates_answer() {
            return Ok(Source::Aggregates);
        }
        let what = self.what();
        if events_days == 0 {
            return Err(format!(
                "{what} needs the raw events, and this Glimpse keeps aggregates only \
                 (retention.events_days = 0)"
            ));
        }
        let oldest = today.saturating_sub(u16::try_from(events_days - 1).unwrap_or(u16::MAX));
        if self.from < oldest {
            return Err(format!(
                "{what} needs the raw events, which are kept {events_days} days: the period \
                 starts on {}, before the oldest kept day, {}",
                date_string(self.from),
                date_string(oldest)
            ));
        }
        Ok(Source::Raw)
    }

    /// The question in words, for errors.
    fn what(&self) -> String {
        let mut parts = Vec::new();
        if self.filter.is_some() {
            parts.push("a filter".to_string());
        }
        for d in &self.dims {
            parts.push(format!("the {} dimension", d.name()));
        }
        for m in &self.metrics {
            if !TOTALS.contains(m) {
                parts.push(format!("the {} metric", m.name()));
            }
        }
        if parts.is_empty() {
            parts.push("this question".into());
        }
        parts.join(" with ")
    }

    /// Refuses combinations no source can answer, as Plausible does: visit metrics by an
    /// event dimension, conversion rates without goals.
    pub fn check(&self) -> Result<(), String> {
        for d in &self.dims {
            if d.of_events()
                && let Some(m) = self.metrics.iter().find(|m| m.of_visits())
            {
                return Err(format!(
                    "`metrics`: {} is a metric of visits and cannot be broken down by the event \
                     dimension {}",
                    m.name(),
                    d.name()
                ));
            }
            if *d == Dim::Goal && self.goals.is_empty() {
                return Err("event:goal: this site has no goals configured".into());
            }
        }
        if self.metrics.contains(&Metric::ConversionRate) && !self.about_goals() {
            return Err(
                "`metrics`: conversion_rate needs event:goal as a dimension or a filter".into(),
            );
        }
        Ok(())
    }

    /// Whether event:goal is a dimension or appears in the filter.
    pub(crate) fn about_goals(&self) -> bool {
        self.dims.contains(&Dim::Goal)
            || self
                .filter
                .as_ref()
                .is_some_and(|f| any_condition(f, &|dim, _| *dim == Dim::Goal))
    }

    /// The question without its goal conditions: the visitors a conversion rate divides by.
    pub(crate) fn without_goals(&self) -> Question {
        fn strip(f: &Filter) -> Option<Filter> {
            match f {
                Filter::And(v) => {
                    let v: Vec<Filter> = v.iter().filter_map(strip).collect();
                    (!v.is_empty()).then_some(Filter::And(v))
                }
                Filter::Or(v) => {
                    let kept: Vec<Filter> = v.iter().filter_map(strip).collect();
                    // An or with a goal branch removed would widen to anything; drop it whole.
                    (kept.len() == v.len()).then_some(Filter::Or(kept))
                }
                Filter::Not(x) => strip(x).map(|x| Filter::Not(Box::new(x))),
                Filter::Cond { dim, .. } if *dim == Dim::Goal => None,
                other => Some(other.clone()),
            }
        }
        Question {
            dims: self
                .dims
                .iter()
                .filter(|d| **d != Dim::Goal)
                .cloned()
                .collect(),
            metrics: vec![Metric::Visitors],
            filter: self.filter.as_ref().and_then(strip),
            ..self.clone()
        }
    }
}

/// The SQL that answers `q` from the raw events: one column per dimension (`d0`, `d1`, ...),
/// `time` when the question is over time, then one per metric (named as the metric), at most
/// [`MAX_RAW_ROWS`] rows ordered by the first metric, largest first (by time for a series).
pub fn raw_sql(q: &Question) -> Result<String, String> {
    q.check()?;
    let site = quote(&q.site);
    let from = quote(&date_string(q.from));
    let to = quote(&date_string(q.to));
    let range = format!(
        "site = {site} AND timestamp >= toDateTime(toDate({from})) \
         AND timestamp < toDateTime(toDate({to}) + 1)"
    );
    let cond = match &q.filter {
        Some(f) => sql_filter(f, q, &range)?,
        None => "1".into(),
    };
    if by_visitor_days(q) {
        return Ok(visitor_days_sql(q, &range, &cond));
    }
    // The entry attributes the question breaks down by, joined per visitor: only for the
    // visitors a filter selects, which keeps the join small.
    let used = entry_columns_used(q);
    let entry_join = (!used.is_empty()).then(|| {
        let columns: Vec<String> = used
            .iter()
            .map(|(alias, expr)| format!("argMin({expr}, timestamp) AS entry_{alias}"))
            .collect();
        let selected = match &q.filter {
            Some(_) => format!(
                " AND visitor_id IN (SELECT visitor_id FROM events WHERE {range} AND ({cond}))"
            ),
            None => String::new(),
        };
        format!(
            " ANY LEFT JOIN (SELECT visitor_id, {} FROM events WHERE {range} AND visit_entry = 1\
             {selected} GROUP BY visitor_id) AS entry USING visitor_id",
            columns.join(", ")
        )
    });
    let join = entry_join.unwrap_or_default();
    // Visitors with at least one matching event; their whole visits count for visit metrics.
    // A filter on visit dimensions alone holds for all of a visitor's events or none, and event
    // metrics count only matching events anyway: then the rows themselves are filtered, and the
    // metrics need not test the filter again (on 18.16 each repeat of a visitor-set filter is
    // another pass over its set, and it tripled the time of a filtered breakdown).
    let by_event = q
        .filter
        .as_ref()
        .is_some_and(|f| any_condition(f, &|dim, _| dim.of_events()));
    let reports_count = q
        .filter
        .as_ref()
        .is_some_and(|f| names_scroll_goal(f, &q.goals));
    // `row_cond`: what the metrics must still test per row, `None` when every row passes.
    let (matched, row_cond) = match &q.filter {
        None => (String::new(), None),
        Some(_) if by_event && q.metrics.iter().any(|m| m.of_visits()) => (
            format!(
                " AND visitor_id IN (SELECT visitor_id FROM events WHERE {range} AND ({cond}){})",
                if reports_count {
                    ""
                } else {
                    " AND name != 'engagement'"
                }
            ),
            Some(cond.clone()),
        ),
        Some(_) => (format!(" AND ({cond})"), None),
    };
    let when = |x: &str| match &row_cond {
        None => x.to_string(),
        Some(c) => format!("({c}) AND {x}"),
    };
    let page_dim = q.dims.contains(&Dim::Event("event:page"));
    let goal_dim = q.dims.contains(&Dim::Goal);
    // Events that count, per metric family; a page counts its page views, as the aggregates'
    // page dimension does.
    let viewed = when("name = 'pageview'");
    // A scroll-goal filter counts the reports that match it, as the goal's breakdown row does.
    let counted = if goal_dim {
        when("goal != ''")
    } else if page_dim {
        viewed.clone()
    } else if reports_count {
        when("1")
    } else {
        when("name != 'engagement'")
    };
    let engaged = when("name = 'engagement'");
    let visitors_of = &counted;
    let visits = "sum(visit_entry)";
    let mut select = Vec::new();
    let mut group = Vec::new();
    for (i, d) in q.dims.iter().enumerate() {
        let expr = if *d == Dim::Goal {
            "goal".to_string()
        } else {
            d.expression()
        };
        select.push(format!("{expr} AS d{i}"));
        group.push(format!("d{i}"));
    }
    if let Some(interval) = q.time {
        let bucket = match interval {
            Interval::Hour => "toString(toStartOfHour(timestamp))",
            Interval::Date => "toString(toDate(timestamp))",
            Interval::Week => "toString(toMonday(timestamp))",
            Interval::Month => "toString(toStartOfMonth(timestamp))",
        };
        select.push(format!("{bucket} AS time"));
        group.push("time".into());
    }
    for m in &q.metrics {
        let expr = match m {
            Metric::Visitors | Metric::ConversionRate => {
                // The aggregates' function, so both sources agree, and cheaper than an exact
                // count over millions of rows.
                format!("uniqIf(visitor_id, {visitors_of})")
            }
            Metric::Pageviews => format!("countIf({viewed})"),
            Metric::Events => format!("countIf({counted})"),
            Metric::Visits => visits.to_string(),
            Metric::BounceRate => {
                format!("if({visits} = 0, 0, round(100 * sum(visit_bounce) / {visits}))")
            }
            Metric::VisitDuration => {
                format!("if({visits} = 0, 0, round(sum(visit_seconds) / {visits}))")
            }
            Metric::ViewsPerVisit => {
                format!("if({visits} = 0, 0, round(countIf(name = 'pageview') / {visits}, 2))")
            }
            Metric::ScrollDepth => format!(
                "if(sumIf(scroll_first, {engaged}) = 0, NULL, \
                 round(sumIf(scroll_gain, {engaged}) / sumIf(scroll_first, {engaged})))"
            ),
            Metric::TotalRevenue => format!(
                "round(sumIf(revenue_micros, {counted} AND revenue_currency != '') / 1000000, 2)"
            ),
            Metric::AverageRevenue => format!(
                "if(countIf({counted} AND revenue_currency != '') = 0, NULL, \
                 round(sumIf(revenue_micros, {counted} AND revenue_currency != '') \
                 / countIf({counted} AND revenue_currency != '') / 1000000, 2))"
            ),
            Metric::TimeOnPage => format!(
                "if(sumIf(engaged_first, {engaged}) = 0, NULL, \
                 round(sumIf(engaged_ms, {engaged}) / sumIf(engaged_first, {engaged}) / 1000))"
            ),
        };
        select.push(format!("{expr} AS {}", m.name()));
    }
    let (goals, completing) = if goal_dim {
        let conditions: Vec<String> = q
            .goals
            .iter()
            .map(|g| goal_condition(g, &range))
            .collect::<Result<_, String>>()?;
        let names: Vec<String> = q
            .goals
            .iter()
            .zip(&conditions)
            .map(|(g, c)| format!("if({c}, {}, '')", quote(&g.name)))
            .collect();
        // Only the goals each event completes: events that complete none drop out here. The
        // same test in WHERE lets the server drop them before the ARRAY JOIN (a third faster
        // on 18.16 for a month of a busy site).
        (
            format!(
                " ARRAY JOIN arrayFilter(g -> g != '', [{}]) AS goal",
                names.join(", ")
            ),
            format!(" AND ({})", conditions.join(" OR ")),
        )
    } else {
        (String::new(), String::new())
    };
    let order = if q.time.is_some() {
        "time".to_string()
    } else {
        let first = q.metrics.first().map_or("d0", |m| m.name());
        let mut keys = vec![format!("{first} DESC")];
        keys.extend(group.iter().cloned());
        keys.join(", ")
    };
    let group_by = if group.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", group.join(", "))
    };
    // A goal breakdown keeps only the goals completed; pages, only those viewed.
    let mut having = Vec::new();
    if goal_dim {
        having.push("d0 != ''".to_string());
    }
    if page_dim {
        having.push(format!("countIf({viewed}) > 0"));
    }
    // With a filter, a group exists only where matching events are (already so when the
    // rows themselves are filtered).
    if let Some(c) = row_cond.as_ref().filter(|_| !q.dims.is_empty()) {
        having.push(format!("countIf({c}) > 0"));
    }
    // Engagement reports are no events.
    if let Some(i) = q.dims.iter().position(|d| *d == Dim::Event("event:name")) {
        having.push(format!("d{i} != 'engagement'"));
    }
    let having = if having.is_empty() {
        String::new()
    } else {
        format!(" HAVING {}", having.join(" AND "))
    };
    Ok(format!(
        "SELECT {} FROM events{goals}{join} WHERE {range}{matched}{completing}{group_by}{having} \
         ORDER BY {order} LIMIT {MAX_RAW_ROWS}",
        select.join(", ")
    ))
}

/// Metrics a visitor's day holds (`visitor_days`).
const VISITOR_DAY_METRICS: &[Metric] = &[
    Metric::Visitors,
    Metric::Visits,
    Metric::BounceRate,
    Metric::VisitDuration,
    Metric::ViewsPerVisit,
];

/// Whether `q` is answered per visitor's day rather than per event: a breakdown by how visits
/// began, with visit metrics, unfiltered or filtered by event names, pages and goals that are
/// not scroll goals (what a visitor day's (name, page) pairs can tell). Grouping a month of raw
/// events by visitor is what such questions otherwise cost.
fn by_visitor_days(q: &Question) -> bool {
    let held = |dim: &Dim, values: &[String]| match dim {
        Dim::Goal => values.iter().all(|v| {
            q.goals
                .iter()
                .any(|g| &g.name == v && !matches!(g.kind, GoalKind::Scroll { .. }))
        }),
        _ => matches!(dim, Dim::Event("event:page") | Dim::Event("event:name")),
    };
    !q.dims.is_empty()
        && q.time.is_none()
        && q.dims.iter().all(|d| matches!(d, Dim::Entry(_)))
        && q.metrics.iter().all(|m| VISITOR_DAY_METRICS.contains(m))
        && q.filter
            .as_ref()
            .is_none_or(|f| !any_condition(f, &|dim, values| !held(dim, values)))
}

/// The SQL of a question [`by_visitor_days`] holds, with the same answer as [`raw_sql`]'s
/// general form: closed days from `visitor_days` (the latest copy of each day that made them),
/// the other days of the period from the raw events grouped by visitor. `cond` is the filter
/// as a condition on one event, which reads the same on a visitor day's (name, pathname) pairs.
fn visitor_days_sql(q: &Question, range: &str, cond: &str) -> String {
    let site = quote(&q.site);
    let from = quote(&date_string(q.from));
    let to = quote(&date_string(q.to));
    let days = u32::from(q.to.saturating_sub(q.from)) + 1;
    // Closed days whose latest copy has visitor days, and those copies.
    let latest = format!(
        "FROM closed_days WHERE site = {site} AND day >= toDate({from}) AND day <= toDate({to}) \
         GROUP BY day HAVING argMax(visitor_days, generation) = 1"
    );
    // The other days: after the first of them (a bound the server can prune partitions by),
    // and not among those. Before the last closed day, only days closed without visitor days
    // can hold rows: a day with none is not closed, as the aggregate queries also assume.
    let first_open = format!(
        "(SELECT if(count() = 0, toDate({to}) + 1, min(d)) FROM (SELECT toDate({from}) + number \
         AS d FROM system.numbers LIMIT {days}) WHERE d NOT IN (SELECT day {latest}) \
         AND (d > (SELECT max(day) FROM closed_days WHERE site = {site}) \
         OR d IN (SELECT day FROM closed_days WHERE site = {site})))"
    );
    let open = format!("{range} AND timestamp >= toDateTime({first_open})");
    let used = entry_columns_used(q);
    let closed_columns: Vec<String> = used
        .iter()
        .map(|(alias, expr)| {
            // visitor_days names its columns as the raw events do, but for the entry page.
            let column = if *alias == "page" { "page" } else { expr };
            format!("{column} AS entry_{alias}")
        })
        .collect();
    let open_columns: Vec<String> = used
        .iter()
        .map(|(alias, expr)| {
            format!("argMinIf({expr}, timestamp, visit_entry = 1) AS entry_{alias}")
        })
        .collect();
    let (closed_match, open_match) = match &q.filter {
        None => (String::new(), String::new()),
        Some(_) => (
            // The lambda's parameters take the events' column names, so `cond` reads as is.
            format!(" AND arrayExists((name, pathname) -> {cond}, name, pathname)"),
            // GLOBAL: on a cluster the set is made once, where `closed_days` (which bounds
            // `open`) is known by its database; it holds the open days' visitors only.
            format!(
                " AND visitor_id GLOBAL IN (SELECT visitor_id FROM events WHERE {open} AND \
                 ({cond}) AND name != 'engagement')"
            ),
        ),
    };
    let visits = "sum(n_visits)";
    let mut select: Vec<String> = q
        .dims
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{} AS d{i}", d.expression()))
        .collect();
    for m in &q.metrics {
        let expr = match m {
            Metric::Visits => visits.to_string(),
            Metric::BounceRate => {
                format!("if({visits} = 0, 0, round(100 * sum(n_bounces) / {visits}))")
            }
            Metric::VisitDuration => {
                format!("if({visits} = 0, 0, round(sum(n_seconds) / {visits}))")
            }
            Metric::ViewsPerVisit => {
                format!("if({visits} = 0, 0, round(sum(n_pageviews) / {visits}, 2))")
            }
            // Visitors with events other than engagement reports, as the aggregates count.
            _ => "uniqIf(visitor_id, n_events > 0)".to_string(),
        };
        select.push(format!("{expr} AS {}", m.name()));
    }
    let group: Vec<String> = (0..q.dims.len()).map(|i| format!("d{i}")).collect();
    let first = q.metrics.first().map_or("d0", |m| m.name());
    format!(
        "SELECT {select} FROM (\
         SELECT visitor_id, {closed_columns}, visits AS n_visits, bounces AS n_bounces, \
         duration AS n_seconds, pageviews AS n_pageviews, events AS n_events FROM visitor_days \
         WHERE site = {site} AND day >= toDate({from}) AND day <= toDate({to}) \
         AND generation GLOBAL IN (SELECT max(generation) {latest}){closed_match} \
         UNION ALL \
         SELECT visitor_id, {open_columns}, toUInt32(sum(visit_entry)) AS n_visits, \
         toInt32(sum(visit_bounce)) AS n_bounces, sum(visit_seconds) AS n_seconds, \
         toUInt32(countIf(name = 'pageview')) AS n_pageviews, \
         toUInt32(countIf(name != 'engagement')) AS n_events FROM events \
         WHERE {open} AND toDate(timestamp) GLOBAL NOT IN (SELECT day {latest}){open_match} \
         GROUP BY toDate(timestamp), visitor_id) \
         GROUP BY {group} ORDER BY {first} DESC, {group} LIMIT {MAX_RAW_ROWS}",
        select = select.join(", "),
        closed_columns = closed_columns.join(", "),
        open_columns = open_columns.join(", "),
        group = group.join(", "),
    )
}

/// Whether a filter names a scroll goal. Engagement reports are no events, so they choose no
/// visitors and count in no metric, as in a visitor day's (name, page) pairs; but they are
/// what completes a scroll goal, so a filter naming one is matched and counted by them.
fn names_scroll_goal(f: &Filter, goals: &[Goal]) -> bool {
    any_condition(f, &|dim, values| {
        *dim == Dim::Goal
            && goals
                .iter()
                .any(|g| values.contains(&g.name) && matches!(g.kind, GoalKind::Scroll { .. }))
    })
}

/// Whether any condition of a filter, however nested, passes `hit` (its dimension, values).
fn any_condition(f: &Filter, hit: &dyn Fn(&Dim, &[String]) -> bool) -> bool {
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().any(|x| any_condition(x, hit)),
        Filter::Not(x) => any_condition(x, hit),
        Filter::Cond { dim, values, .. } => hit(dim, values),
    }
}

/// The entry columns, (alias, raw expression), of the entry dimensions a question breaks down
/// by (filters read them as sets).
fn entry_columns_used(q: &Question) -> Vec<(&'static str, &'static str)> {
    filters::entry_columns()
        .into_iter()
        .filter(|(alias, _)| {
            q.dims
                .iter()
                .any(|d| matches!(d, Dim::Entry(n) if filters::entry_column(n) == *alias))
        })
        .collect()
}

fn sql_filter(f: &Filter, q: &Question, range: &str) -> Result<String, String> {
    let join = |v: &[Filter], sep: &str| -> Result<String, String> {
        let parts = v
            .iter()
            .map(|x| sql_filter(x, q, range))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("({})", parts.join(sep)))
    };
    match f {
        Filter::And(v) => join(v, " AND "),
        Filter::Or(v) => join(v, " OR "),
        Filter::Not(x) => Ok(format!("NOT {}", sql_filter(x, q, range)?)),
        Filter::Cond {
            dim: Dim::Goal,
            op,
            values,
            ..
        } => {
            let mut parts = Vec::new();
            for v in values {
                let goal = q
                    .goals
                    .iter()
                    .find(|g| &g.name == v)
                    .ok_or_else(|| format!("`filters`: no goal named {v:?}"))?;
                parts.push(goal_condition(goal, range)?);
            }
            let any = format!("({})", parts.join(" OR "));
            match op {
                Op::Is => Ok(any),
                Op::IsNot => Ok(format!("NOT {any}")),
                _ => Err("`filters`: event:goal takes is and is_not".into()),
            }
        }
        // How a visit began: the visitors who began a visit that way that day, as a set read
        // off the visits' first events (no grouping, no join onto every row).
        Filter::Cond {
            op,
            dim: Dim::Entry(name),
            values,
            case_insensitive,
        } => {
            let expr = filters::entry_columns()
                .iter()
                .find(|(alias, _)| *alias == filters::entry_column(name))
                .map_or("''", |(_, e)| *e);
            Ok(format!(
                "visitor_id IN (SELECT visitor_id FROM events WHERE {range} AND visit_entry = 1 \
                 AND {})",
                filters::condition(*op, expr, values, *case_insensitive)
            ))
        }
        Filter::Cond {
            op,
            dim,
            values,
            case_insensitive,
        } => Ok(filters::condition(
            *op,
            &dim.expression(),
            values,
            *case_insensitive,
        )),
    }
}

/// The raw-row condition of a goal's completion.
fn goal_condition(goal: &Goal, range: &str) -> Result<String, String> {
    Ok(match &goal.kind {
        GoalKind::Event(e) => format!("name = {}", quote(e)),
        GoalKind::Page(p) => format!(
            "(name = 'pageview' AND match(pathname, {}))",
            quote(&filters::glob(p))
        ),
        // A visit-page's deepest scroll is the sum of its reports' gains.
        GoalKind::Scroll { page, percent } => {
            let g = quote(&filters::glob(page));
            format!(
                "(name = 'engagement' AND match(pathname, {g}) AND (visitor_id, pathname) IN \
                 (SELECT visitor_id, pathname FROM events WHERE {range} AND name = 'engagement' \
                 AND match(pathname, {g}) GROUP BY visitor_id, pathname \
                 HAVING sum(scroll_gain) >= {percent}))"
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> u16 {
        crate::clock::parse_date(s).unwrap()
    }

    fn question(metrics: &[Metric], dims: &[&str], filter: Option<&str>) -> Question {
        Question {
            site: "a.com".into(),
            from: day("2026-11-01"),
            to: day("2026-11-27"),
            metrics: metrics.to_vec(),
            dims: dims.iter().map(|d| Dim::parse(d).unwrap()).collect(),
            time: None,
            filter: filter.map(|f| filters::parse_v1(f).unwrap()),
            goals: vec![Goal {
                name: "Signup".into(),
                kind: GoalKind::Event("Signup".into()),
            }],
        }
    }

    #[test]
    fn aggregates_answer_what_they_hold_and_raw_events_the_rest() {
        let today = day("2026-11-27");
        let q = question(&[Metric::Visitors, Metric::BounceRate], &[], None);
        assert_eq!(q.source(30, today), Ok(Source::Aggregates));
        let q = question(&[Metric::Visitors], &["visit:country"], None);
        assert_eq!(q.source(0, today), Ok(Source::Aggregates));
        let q = question(&[Metric::Visitors], &[], Some("visit:country==GB"));
        assert_eq!(q.source(30, today), Ok(Source::Raw));
        let e = q.source(0, today).unwrap_err();
        assert!(e.contains("aggregates only"), "{e}");
        let e = q.source(10, today).unwrap_err();
        assert!(
            e.contains("kept 10 days") && e.contains("2026-11-01"),
            "{e}"
        );
        let q = question(&[Metric::BounceRate], &["visit:source"], None);
        assert_eq!(q.source(30, today), Ok(Source::Raw));
    }

    #[test]
    fn visit_questions_by_how_visits_began_read_visitor_days() {
        let mut q = question(
            &[Metric::Visitors, Metric::Visits, Metric::BounceRate],
            &["visit:source"],
            Some("event:page==/blog/**|/docs/*;event:goal==Signup"),
        );
        let sql = raw_sql(&q).unwrap();
        assert!(sql.contains("FROM visitor_days"), "{sql}");
        assert!(
            sql.contains("arrayExists((name, pathname) -> ((match(pathname, '^/blog/.*$')"),
            "{sql}"
        );
        assert!(sql.contains("referrer_source AS entry_source"), "{sql}");
        assert!(!sql.contains("JOIN"), "{sql}");
        // What a visitor day cannot tell: the raw events, grouped per event.
        for (dims, filter) in [
            (&["visit:source"][..], Some("visit:country==GB")),
            (&["visit:source"][..], Some("event:props:plan==pro")),
            (&["visit:country"][..], Some("event:page==/blog")),
            (&["event:page"][..], None),
        ] {
            let mut other = question(&[Metric::Visitors, Metric::Visits], dims, filter);
            if dims == ["event:page"] {
                other.metrics = vec![Metric::Visitors, Metric::Pageviews];
            }
            let sql = raw_sql(&other).unwrap();
            assert!(!sql.contains("visitor_days"), "{dims:?} {filter:?}: {sql}");
        }
        q.metrics.push(Metric::Pageviews);
        assert!(!raw_sql(&q).unwrap().contains("visitor_days"));
        q.metrics.pop();
        q.goals.push(Goal {
            name: "Scroll".into(),
            kind: GoalKind::Scroll {
                page: "/blog/**".into(),
                percent: 50,
            },
        });
        q.filter = Some(filters::parse_v1("event:goal==Scroll").unwrap());
        let sql = raw_sql(&q).unwrap();
        assert!(!sql.contains("visitor_days"), "{sql}");
        // Engagement reports complete scroll goals, so they choose the visitors here, and count.
        assert!(!sql.contains("name != 'engagement'"), "{sql}");
    }

    #[test]
    fn refused_combinations() {
        let q = question(&[Metric::BounceRate], &["event:page"], None);
        assert!(raw_sql(&q).unwrap_err().contains("cannot be broken down"));
        let q = question(&[Metric::ConversionRate], &["visit:country"], None);
        assert!(raw_sql(&q).unwrap_err().contains("needs event:goal"));
        let q = question(&[Metric::Visitors], &[], Some("event:goal==Nope"));
        assert!(raw_sql(&q).unwrap_err().contains("no goal named"));
    }

    #[test]
    fn raw_sql_quotes_and_joins() {
        let q = question(
            &[Metric::Visitors, Metric::Visits],
            &["visit:source"],
            Some("visit:country==x' OR 1=1;event:page==/blog/**"),
        );
        let sql = raw_sql(&q).unwrap();
        assert!(sql.contains("country_code IN ('x\\' OR 1=1')"), "{sql}");
        assert!(sql.contains("match(pathname, '^/blog/.*$')"), "{sql}");
        assert!(sql.contains("ANY LEFT JOIN"), "{sql}");
        assert!(sql.contains("entry_source AS d0"), "{sql}");
        let g = question(
            &[Metric::Visitors, Metric::ConversionRate],
            &["event:goal"],
            None,
        );
        let sql = raw_sql(&g).unwrap();
        assert!(
            sql.contains(
                "ARRAY JOIN arrayFilter(g -> g != '', [if(name = 'Signup', 'Signup', '')]) AS goal"
            ),
            "{sql}"
        );
        let stripped = g.without_goals();
        assert!(stripped.dims.is_empty() && stripped.metrics == [Metric::Visitors]);
    }
}
