//! Any text as a stats filter, in the v1 syntax and as a v2 JSON tree: parsing returns a
//! filter or an error, never panics; a parsed filter renders to SQL in which every value stays
//! inside its quotes (the literals balance and no statement separator escapes them).
#![no_main]

use glimpse::dashboard::filters::{self, Dim};
use glimpse::dashboard::params::Metric;
use glimpse::dashboard::plan::{self, Question};
use glimpse::model::{Goal, GoalKind};
use libfuzzer_sys::fuzz_target;

fn check(filter: filters::Filter) {
    let q = Question {
        site: "example.com".into(),
        from: 20_000,
        to: 20_010,
        metrics: vec![Metric::Visitors, Metric::Events, Metric::Visits],
        dims: vec![Dim::parse("visit:country").unwrap()],
        time: None,
        filter: Some(filter),
        goals: vec![Goal {
            name: "Signup".into(),
            kind: GoalKind::Page("/a/**".into()),
        }],
    };
    if let Ok(sql) = plan::raw_sql(&q) {
        // Outside quoted literals, no semicolon and no comment can appear.
        let mut in_quote = false;
        let mut escaped = false;
        let mut outside = String::new();
        for c in sql.chars() {
            match (in_quote, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '\'') => in_quote = false,
                (true, false, _) => {}
                (false, _, '\'') => in_quote = true,
                (false, _, c) => outside.push(c),
            }
        }
        assert!(!in_quote, "unbalanced quotes: {sql}");
        assert!(!outside.contains(';') && !outside.contains("--"), "{sql}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = filters::parse_v1(text) {
        check(f);
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text)
        && let Ok(f) = filters::parse_v2(&json)
    {
        check(f);
    }
});
