//! Filters and dimensions of the stats APIs: Plausible's v1 filter strings
//! (`event:page==/blog/**;visit:country==US|DE`) and v2 filter trees (`["is",
//! "visit:country", ["US"]]`, nested `and`/`or`/`not`) parsed into one [`Filter`] tree, and
//! each dimension's raw-events expression. Values never reach SQL unquoted: [`condition`]
//! quotes every one.

use serde_json::Value;

use crate::store::queries::quote;

/// A dimension a question can be asked by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// `event:page`, `event:hostname`, `event:name`: a property of each event.
    Event(&'static str),
    /// `event:props:<key>`.
    Prop(String),
    /// `event:goal`: the site's configured goals.
    Goal,
    /// `visit:*` that every event of a visitor's day shares (country, browser, ...).
    Visitor(&'static str),
    /// `visit:*` set by how a visit began (source, referrer, UTM tags, entry page): the value
    /// of the visitor's first visit that day.
    Entry(&'static str),
}

/// Raw `events` expressions of the dimensions, by name.
const EVENT_DIMS: &[(&str, &str)] = &[
    ("event:page", "pathname"),
    ("event:hostname", "hostname"),
    ("event:name", "name"),
];
const VISITOR_DIMS: &[(&str, &str)] = &[
    ("visit:country", "country_code"),
    (
        "visit:region",
        "if(region = '', '', concat(country_code, '-', region))",
    ),
    ("visit:browser", "browser"),
    (
        "visit:browser_version",
        "concat(browser, ' ', browser_version)",
    ),
    ("visit:os", "os"),
    ("visit:os_version", "concat(os, ' ', os_version)"),
    ("visit:device", "device"),
];
const ENTRY_DIMS: &[(&str, &str)] = &[
    ("visit:source", "referrer_source"),
    ("visit:referrer", "referrer"),
    ("visit:utm_source", "utm_source"),
    ("visit:utm_medium", "utm_medium"),
    ("visit:utm_campaign", "utm_campaign"),
    ("visit:utm_content", "utm_content"),
    ("visit:utm_term", "utm_term"),
    ("visit:entry_page", "pathname"),
];

impl Dim {
    pub fn parse(name: &str) -> Result<Dim, String> {
        if let Some(key) = name.strip_prefix("event:props:") {
            if key.is_empty() || key.len() > 300 {
                return Err(format!("{name:?}: a property name is 1 to 300 bytes"));
            }
            return Ok(Dim::Prop(key.to_string()));
        }
        if name == "event:goal" {
            return Ok(Dim::Goal);
        }
        let find = |list: &[(&'static str, &'static str)]| {
            list.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
        };
        if let Some(n) = find(EVENT_DIMS) {
            return Ok(Dim::Event(n));
        }
        if let Some(n) = find(VISITOR_DIMS) {
            return Ok(Dim::Visitor(n));
        }
        if let Some(n) = find(ENTRY_DIMS) {
            return Ok(Dim::Entry(n));
        }
        let why = match name {
            "visit:city" | "visit:city_name" => ": Glimpse never stores cities",
            "visit:exit_page" => ": exit pages are answered unfiltered, as a breakdown only",
            _ => "",
        };
        Err(format!("unknown dimension {name:?}{why}"))
    }

    pub fn name(&self) -> String {
        match self {
            Dim::Event(n) | Dim::Visitor(n) | Dim::Entry(n) => n.to_string(),
            Dim::Prop(k) => format!("event:props:{k}"),
            Dim::Goal => "event:goal".into(),
        }
    }

    /// Whether the dimension belongs to events rather than to visits.
    pub(crate) fn of_events(&self) -> bool {
        matches!(self, Dim::Event(_) | Dim::Prop(_) | Dim::Goal)
    }

    /// The raw `events` expression (a column of the visitor's first visit for entry dims,
    /// which the planner joins as `entry.<column>`). Goals have none: the planner expands them.
    pub fn expression(&self) -> String {
        let lookup = |list: &[(&str, &'static str)], n: &str| {
            list.iter()
                .find(|(k, _)| *k == n)
                .map_or("''", |(_, e)| *e)
                .to_string()
        };
        match self {
            Dim::Event(n) => lookup(EVENT_DIMS, n),
            Dim::Visitor(n) => lookup(VISITOR_DIMS, n),
            Dim::Entry(n) => format!("entry_{}", entry_column(n)),
            Dim::Prop(k) => format!(
                "if(has(prop_keys, {q}), prop_values[indexOf(prop_keys, {q})], '(none)')",
                q = quote(k)
            ),
            Dim::Goal => "''".into(),
        }
    }
}

/// The alias an entry dimension's column gets in the planner's entry join.
pub(crate) fn entry_column(name: &str) -> &'static str {
    match name {
        "visit:source" => "source",
        "visit:referrer" => "referrer",
        "visit:utm_source" => "utm_source",
        "visit:utm_medium" => "utm_medium",
        "visit:utm_campaign" => "utm_campaign",
        "visit:utm_content" => "utm_content",
        "visit:utm_term" => "utm_term",
        _ => "page",
    }
}

/// Columns of the entry join: (alias, raw expression).
pub(crate) fn entry_columns() -> Vec<(&'static str, &'static str)> {
    ENTRY_DIMS
        .iter()
        .map(|(n, e)| (entry_column(n), *e))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Is,
    IsNot,
    Contains,
    ContainsNot,
    Matches,
    MatchesNot,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cond {
        op: Op,
        dim: Dim,
        values: Vec<String>,
        case_insensitive: bool,
    },
}

const MAX_VALUES: usize = 100;
const MAX_VALUE_LEN: usize = 2000;
const MAX_CONDITIONS: usize = 30;

/// Plausible's v1 syntax: conditions joined by `;` (all must hold), each `dim==a|b` (any of
/// the values), `dim!=a|b`, `dim~text` (contains), `dim!~text`. In `==` and `!=` values of
/// `event:page` and the entry page, `*` is one path segment and `**` anything.
pub fn parse_v1(text: &str) -> Result<Filter, String> {
    let mut all = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, op, rest) = ["!=", "==", "!~", "~"]
            .iter()
            .filter_map(|op| part.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .map(|(i, op)| (&part[..i], op, &part[i + op.len()..]))
            .ok_or(format!(
                "`filters`: {part:?} has no operator (==, !=, ~ or !~)"
            ))?;
        let dim = Dim::parse(name.trim()).map_err(|e| format!("`filters`: {e}"))?;
        let values = split_values(rest);
        // Wildcards are for pages; a goal or a source may well contain a star.
        let paged = matches!(
            dim,
            Dim::Event("event:page") | Dim::Entry("visit:entry_page")
        );
        let globs = paged && values.iter().any(|v| v.contains('*'));
        let op = match op {
            "==" if globs => Op::Matches,
            "!=" if globs => Op::MatchesNot,
            "==" => Op::Is,
            "!=" => Op::IsNot,
            "~" => Op::Contains,
            _ => Op::ContainsNot,
        };
        let values = if matches!(op, Op::Matches | Op::MatchesNot) {
            values.iter().map(|v| glob(v)).collect()
        } else {
            values
        };
        all.push(cond(op, dim, values, false)?);
    }
    if all.is_empty() {
        return Err("`filters`: empty".into());
    }
    check_size(&Filter::And(all))
}

/// `a|b\|c` → `a`, `b|c`: values split at the pipes that no backslash escapes.
fn split_values(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(v) = out.last_mut() {
                    v.push('|');
                }
            }
            '|' => out.push(String::new()),
            c => {
                if let Some(v) = out.last_mut() {
                    v.push(c);
                }
            }
        }
    }
    out
}

/// A v2 filter: `[op, dimension, [values], {"case_sensitive": false}]`, `["and", [..]]`,
/// `["or", [..]]`, `["not", filter]`; a list of filters at the top means all of them.
pub fn parse_v2(value: &Value) -> Result<Filter, String> {
    let list = value.as_array().ok_or("`filters`: a list of filters")?;
    let all = list.iter().map(v2_one).collect::<Result<Vec<_>, _>>()?;
    check_size(&Filter::And(all))
}

fn v2_one(v: &Value) -> Result<Filter, String> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("`filters`: {v} is not a filter"))?;
    let op = items[0]
        .as_str()
        .ok_or_else(|| format!("`filters`: {v}: the operator is a string"))?;
    match op {
        "and" | "or" => {
            let inner = items
                .get(1)
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty() && items.len() == 2)
                .ok_or_else(|| format!("`filters`: {v}: {op} takes one non-empty list"))?;
            let inner = inner.iter().map(v2_one).collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" {
                Filter::And(inner)
            } else {
                Filter::Or(inner)
            })
        }
        "not" => {
            let inner = items
                .get(1)
                .filter(|_| items.len() == 2)
                .ok_or_else(|| format!("`filters`: {v}: not takes one filter"))?;
            Ok(Filter::Not(Box::new(v2_one(inner)?)))
        }
        _ => {
            let op = match op {
                "is" => Op::Is,
                "is_not" => Op::IsNot,
                "contains" => Op::Contains,
                "contains_not" => Op::ContainsNot,
                "matches" => Op::Matches,
                "matches_not" => Op::MatchesNot,
                other => {
                    return Err(format!(
                        "`filters`: unknown operator {other:?}; one of: is, is_not, contains, \
                         contains_not, matches, matches_not, and, or, not"
                    ));
                }
            };
            let dim = items
                .get(1)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("`filters`: {v}: the dimension is a string"))?;
            let dim = Dim::parse(dim).map_err(|e| format!("`filters`: {e}"))?;
            let values = items
                .get(2)
                .and_then(Value::as_array)
                .ok_or_else(|| format!("`filters`: {v}: the values are a list"))?
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(format!("`filters`: {v}: values are strings")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut case_insensitive = false;
            match items.get(3) {
                None => {}
                Some(Value::Object(m)) => {
                    for (k, x) in m {
                        match (k.as_str(), x) {
                            ("case_sensitive", Value::Bool(b)) => case_insensitive = !b,
                            _ => {
                                return Err(format!(
                                    "`filters`: {v}: unknown modifier {k:?}; only case_sensitive"
                                ));
                            }
                        }
                    }
                }
                Some(_) => return Err(format!("`filters`: {v}: modifiers are an object")),
            }
            if items.len() > 4 {
                return Err(format!("`filters`: {v}: too many parts"));
            }
            cond(op, dim, values, case_insensitive)
        }
    }
}

fn cond(op: Op, dim: Dim, values: Vec<String>, case_insensitive: bool) -> Result<Filter, String> {
    if values.is_empty() || values.len() > MAX_VALUES {
        return Err(format!(
            "`filters`: {} takes 1 to {MAX_VALUES} values",
            dim.name()
        ));
    }
    if let Some(v) = values.iter().find(|v| v.len() > MAX_VALUE_LEN) {
        return Err(format!(
            "`filters`: a value is longer than {MAX_VALUE_LEN} bytes ({} bytes)",
            v.len()
        ));
    }
    if matches!(op, Op::Matches | Op::MatchesNot) {
        for v in &values {
            regex_syntax_ok(v)?;
        }
    }
    Ok(Filter::Cond {
        op,
        dim,
        values,
        case_insensitive,
    })
}

fn check_size(f: &Filter) -> Result<Filter, String> {
    fn count(f: &Filter) -> usize {
        match f {
            Filter::And(v) | Filter::Or(v) => v.iter().map(count).sum(),
            Filter::Not(x) => count(x),
            Filter::Cond { .. } => 1,
        }
    }
    if count(f) > MAX_CONDITIONS {
        return Err(format!("`filters`: at most {MAX_CONDITIONS} conditions"));
    }
    Ok(f.clone())
}

/// A page pattern as an anchored regular expression: `**` anything, `*` one path segment,
/// everything else literal.
pub(crate) fn glob(pattern: &str) -> String {
    let mut out = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            c if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out.push('$');
    out
}

/// ClickHouse's re2 refuses what it cannot compile, per query; refuse the obviously broken
/// early, with the pattern named.
fn regex_syntax_ok(pattern: &str) -> Result<(), String> {
    let mut depth = 0i32;
    let mut escaped = false;
    for c in pattern.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '(') => depth += 1,
            (false, ')') => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if depth != 0 || escaped {
        return Err(format!(
            "`filters`: {pattern:?} is not a valid regular expression"
        ));
    }
    Ok(())
}

/// The SQL condition of one leaf over `expr` (values quoted).
pub(crate) fn condition(op: Op, expr: &str, values: &[String], case_insensitive: bool) -> String {
    let (e, fold) = if case_insensitive {
        (format!("lower({expr})"), true)
    } else {
        (expr.to_string(), false)
    };
    let lit = |v: &str| {
        quote(&if fold {
            v.to_lowercase()
        } else {
            v.to_string()
        })
    };
    let any = |f: &dyn Fn(&str) -> String| {
        let parts: Vec<String> = values.iter().map(|v| f(v)).collect();
        format!("({})", parts.join(" OR "))
    };
    match op {
        Op::Is => {
            let list: Vec<String> = values.iter().map(|v| lit(v)).collect();
            format!("{e} IN ({})", list.join(", "))
        }
        Op::IsNot => {
            let list: Vec<String> = values.iter().map(|v| lit(v)).collect();
            format!("{e} NOT IN ({})", list.join(", "))
        }
        Op::Contains => any(&|v| format!("position({e}, {}) > 0", lit(v))),
        Op::ContainsNot => format!("NOT {}", any(&|v| format!("position({e}, {}) > 0", lit(v)))),
        Op::Matches => any(&|v| format!("match({e}, {})", quote(v))),
        Op::MatchesNot => format!("NOT {}", any(&|v| format!("match({e}, {})", quote(v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(op: Op, dim: &str, values: &[&str]) -> Filter {
        Filter::Cond {
            op,
            dim: Dim::parse(dim).unwrap(),
            values: values.iter().map(|v| v.to_string()).collect(),
            case_insensitive: false,
        }
    }

    #[test]
    fn v1_filters() {
        let f =
            parse_v1("event:page==/blog/**;visit:country==US|DE;visit:browser!=Safari").unwrap();
        assert_eq!(
            f,
            Filter::And(vec![
                leaf(Op::Matches, "event:page", &["^/blog/.*$"]),
                leaf(Op::Is, "visit:country", &["US", "DE"]),
                leaf(Op::IsNot, "visit:browser", &["Safari"]),
            ])
        );
        assert_eq!(
            parse_v1("event:name==a\\|b|c").unwrap(),
            Filter::And(vec![leaf(Op::Is, "event:name", &["a|b", "c"])])
        );
        assert_eq!(
            parse_v1("visit:source~oo").unwrap(),
            Filter::And(vec![leaf(Op::Contains, "visit:source", &["oo"])])
        );
        assert_eq!(
            parse_v1("event:props:plan!~pr").unwrap(),
            Filter::And(vec![leaf(Op::ContainsNot, "event:props:plan", &["pr"])])
        );
        for (bad, want) in [
            ("visit:country", "no operator"),
            ("visit:shoe==42", "unknown dimension"),
            ("visit:city==Berlin", "never stores cities"),
            ("", "empty"),
        ] {
            let e = parse_v1(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn v2_filters() {
        let v: Value = serde_json::json!([
            ["is", "visit:country", ["US", "DE"]],
            ["or", [["contains", "event:page", ["blog"], {"case_sensitive": false}],
                    ["not", ["is", "visit:device", ["mobile"]]]]]
        ]);
        let f = parse_v2(&v).unwrap();
        let Filter::And(parts) = f else { panic!() };
        assert_eq!(parts[0], leaf(Op::Is, "visit:country", &["US", "DE"]));
        assert!(matches!(&parts[1], Filter::Or(x) if x.len() == 2));
        for (bad, want) in [
            (
                serde_json::json!([["like", "visit:country", ["US"]]]),
                "unknown operator",
            ),
            (
                serde_json::json!([["is", "visit:country", "US"]]),
                "values are a list",
            ),
            (serde_json::json!([["and", []]]), "non-empty list"),
            (
                serde_json::json!([["is", "visit:country", ["US"], {"fuzzy": true}]]),
                "unknown modifier",
            ),
            (serde_json::json!({"is": 1}), "a list of filters"),
        ] {
            let e = parse_v2(&bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn conditions_quote_every_value() {
        let c = condition(Op::Is, "country_code", &["x' OR 1=1 --".into()], false);
        assert_eq!(c, "country_code IN ('x\\' OR 1=1 --')");
        let c = condition(Op::Contains, "pathname", &["a\\".into(), "B".into()], true);
        assert_eq!(
            c,
            "(position(lower(pathname), 'a\\\\') > 0 OR position(lower(pathname), 'b') > 0)"
        );
        assert_eq!(glob("/blog/*/x.html"), "^/blog/[^/]*/x\\.html$");
        assert_eq!(glob("/a/**"), "^/a/.*$");
    }
}
