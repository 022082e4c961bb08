//! The dashboard queries in `schema/queries/`, run against the real server with known data:
//! each must give what the same question asked of the raw events gives.

use glimpse::clock::{SECS_PER_DAY, date_string, day_of};
use glimpse::store::queries::{self, DIMENSIONS, Params};
use glimpse::store::{Layout, closing};
use support::{ClickHouse, Glimpse, UA_FIREFOX, seed_known_traffic, test_config};

const DB: &str = "glimpse";

/// The expression over raw `events` columns that each `stats_daily` dimension stores.
fn raw_expression(dimension: &str) -> &'static str {
    match dimension {
        "page" => "pathname",
        "hostname" => "hostname",
        "source" => "referrer_source",
        "referrer" => "referrer",
        "utm_source" => "utm_source",
        "utm_medium" => "utm_medium",
        "utm_campaign" => "utm_campaign",
        "utm_content" => "utm_content",
        "utm_term" => "utm_term",
        "country" => "country_code",
        "region" => "if(region = '', '', concat(country_code, '-', region))",
        "browser" => "browser",
        "browser_version" => "concat(browser, ' ', browser_version)",
        "os" => "os",
        "os_version" => "concat(os, ' ', os_version)",
        "device" => "device",
        "event" => "if(name = 'pageview', '', name)",
        other => panic!("no raw expression for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_agree_with_raw_events() {
    let ch = ClickHouse::start();
    let today = seed_known_traffic(&ch).await;
    check_against_raw(&ch, &today, "open day (sketches)");
    check_visits_against_raw(&ch, &today, "open day (raw events)", false);

    // Close the day as if it were over: the queries then read the exact copies.
    let (_, db) = glimpse::store::clients(&test_config(&ch, DB).clickhouse);
    let day = glimpse::clock::parse_date(&today).unwrap();
    let after = (u64::from(day) + 1) * SECS_PER_DAY + closing::CLOSE_AFTER_SECS;
    let closed = closing::close_days(&db, &Layout::single(DB), after * 1000)
        .await
        .unwrap();
    assert_eq!(
        closed
            .iter()
            .map(|d| (d.site.as_str(), d.day))
            .collect::<Vec<_>>(),
        [("a.com", day)]
    );
    assert!(
        closing::days_to_close(&db, &Layout::single(DB), after)
            .await
            .unwrap()
            .is_empty()
    );
    check_against_raw(&ch, &today, "closed day (copies)");
    check_visits_against_raw(&ch, &today, "closed day (visitor days)", true);

    // A late row for the closed day (a spool delivered after an outage): until the day is copied
    // again the copy answers, so the totals lag the raw rows; the next check sees the change.
    // It comes from a visitor not seen that day: the day's sketches are gone, so a returning
    // visitor's late row would count them a second time (README, "Closed days").
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let late = g
        .send(
            &support::pageview("https://a.com/late"),
            UA_FIREFOX,
            "81.2.69.250",
        )
        .await;
    assert_eq!(late.status, 202);
    ch.wait_count(DB, "SELECT count() FROM events WHERE pathname = '/late'", 1);
    g.stop().await;
    let pageviews = |ch: &ClickHouse| {
        ch.rows(
            DB,
            &queries::render("totals", &params(&today, "page", 0)).unwrap(),
        )[0][1]
            .clone()
    };
    let raw_pageviews = ch.count(
        DB,
        "SELECT countIf(name = 'pageview') FROM events WHERE site = 'a.com' AND name != 'engagement'",
    );
    assert_eq!(
        pageviews(&ch),
        (raw_pageviews - 1).to_string(),
        "the copy answers"
    );
    let again = closing::close_days(&db, &Layout::single(DB), after * 1000)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the late row reopens the day");
    check_against_raw(&ch, &today, "closed day copied again");
    check_visits_against_raw(&ch, &today, "closed day copied again", true);

    // A day copied by a release before visitor days (its copy says it made none): the next
    // check copies it again with its visitor days, and every answer stays the same.
    ch.sql(
        DB,
        "ALTER TABLE closed_days UPDATE visitor_days = 0 WHERE 1",
    );
    ch.sql(DB, "TRUNCATE TABLE visitor_days");
    ch.wait_count(
        DB,
        "SELECT count() = 0 FROM system.mutations WHERE database = 'glimpse' AND NOT is_done",
        1,
    );
    assert_eq!(ch.count(DB, "SELECT max(visitor_days) FROM closed_days"), 0);
    let again = closing::close_days(&db, &Layout::single(DB), after * 1000)
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        1,
        "the day is copied again for its visitor days"
    );
    check_against_raw(&ch, &today, "closed day copied for its visitor days");
    check_visits_against_raw(&ch, &today, "closed day copied for its visitor days", true);
    assert!(
        closing::days_to_close(&db, &Layout::single(DB), after)
            .await
            .unwrap()
            .is_empty()
    );
    // The superseded copy is deleted (by a mutation, so eventually).
    for table in [
        "closed_days",
        "stats_hourly_closed",
        "stats_daily_closed",
        "visitor_days",
    ] {
        let generations = format!("SELECT uniqExact(generation) FROM {table}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while ch.count(DB, &generations) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(ch.count(DB, &generations), 1, "{table} keeps one copy");
    }
}

/// Breakdowns by how visits began, with visit metrics, unfiltered and filtered by what the
/// visitors did, as the stats APIs' planner writes them: read from `visitor_days` once the day
/// is closed (`closed`), from the raw events before. Each must give what hand-written SQL over
/// the raw events gives (a visitor's first visit of the day decides; a filter chooses the
/// visitors with a matching event other than an engagement report).
fn check_visits_against_raw(ch: &ClickHouse, today: &str, stage: &str, closed: bool) {
    use glimpse::dashboard::{filters, params, plan};
    let day = glimpse::clock::parse_date(today).unwrap();
    let metrics = "visitors,visits,bounce_rate,visit_duration,views_per_visit";
    let cases = [
        ("visit:source", None, "1"),
        (
            "visit:source",
            Some("event:page==/blog/**"),
            "match(pathname, '^/blog/.*$')",
        ),
        (
            "visit:utm_source",
            Some("event:page!=/pricing;event:name==pageview"),
            "pathname != '/pricing' AND name = 'pageview'",
        ),
        (
            "visit:entry_page",
            Some("event:page~blog|docs"),
            "(position(pathname, 'blog') > 0 OR position(pathname, 'docs') > 0)",
        ),
        (
            "visit:referrer",
            Some("event:goal!=Visit /docs"),
            "NOT (name = 'pageview' AND pathname = '/docs')",
        ),
    ];
    for (dim, filter, cond) in cases {
        let q = plan::Question {
            site: "a.com".into(),
            from: day,
            to: day,
            metrics: params::metrics(Some(metrics)).unwrap(),
            dims: vec![filters::Dim::parse(dim).unwrap()],
            time: None,
            filter: filter.map(|f| filters::parse_v1(f).unwrap()),
            goals: vec![glimpse::model::Goal {
                name: "Visit /docs".into(),
                kind: glimpse::model::GoalKind::Page("/docs".into()),
            }],
        };
        let sql = plan::raw_sql(&q).unwrap();
        assert!(
            sql.contains("visitor_days"),
            "{stage}, {dim} {filter:?}: {sql}"
        );
        let got = ch.rows(DB, &sql);
        let chosen = match filter {
            Some(_) => format!("name != 'engagement' AND {cond}"),
            None => cond.to_string(),
        };
        let entry = match dim {
            "visit:source" => "referrer_source",
            "visit:referrer" => "referrer",
            "visit:utm_source" => "utm_source",
            _ => "pathname",
        };
        let want = ch.rows(
            DB,
            &format!(
                "SELECT e, uniqExactIf(visitor_id, name != 'engagement') AS visitors, \
                 sum(visit_entry) AS v, if(v = 0, 0, round(100 * sum(visit_bounce) / v)), \
                 if(v = 0, 0, round(sum(visit_seconds) / v)), \
                 if(v = 0, 0, round(countIf(name = 'pageview') / v, 2)) \
                 FROM events ANY LEFT JOIN (SELECT visitor_id, {entry} AS e FROM events \
                 WHERE site = 'a.com' AND visit_entry = 1 ORDER BY timestamp \
                 LIMIT 1 BY visitor_id) USING visitor_id \
                 WHERE site = 'a.com' AND visitor_id IN (SELECT visitor_id FROM events \
                 WHERE site = 'a.com' AND {chosen}) \
                 GROUP BY e ORDER BY visitors DESC, e"
            ),
        );
        assert!(
            want.len() > 1,
            "{stage}, {dim} {filter:?}: the data tells sources apart"
        );
        assert_eq!(got, want, "{stage}, {dim} {filter:?}");
    }
    let rows = ch.count(DB, "SELECT count() FROM visitor_days");
    assert_eq!(rows > 0, closed, "{stage}: {rows} visitor days");
}

/// A clock set to noon today (so that scripted visits cannot cross midnight, which ends a
/// visit), and today's date.
fn noon_today() -> (glimpse::clock::Clock, String) {
    let clock = glimpse::clock::Clock::default();
    let now = clock.now();
    let noon = now - now % SECS_PER_DAY + 12 * 3600;
    clock.advance(noon as i64 - now as i64);
    (clock, date_string(day_of(noon)))
}

fn params(today: &str, dimension: &str, k: u32) -> Params {
    Params {
        site: "a.com".into(),
        from: today.into(),
        to: today.into(),
        dimension: dimension.into(),
        k,
        limit: 1000,
        offset: 0,
    }
}

/// Every query file against the same question asked of the raw events, for a.com on `today`.
fn check_against_raw(ch: &ClickHouse, today: &str, stage: &str) {
    let params = |dimension: &str, k: u32| params(today, dimension, k);
    let run = |name: &str, p: &Params| ch.rows(DB, &queries::render(name, p).unwrap());
    let raw = |sql: &str| ch.rows(DB, sql);

    // Totals: today against the (empty) day before.
    let totals = run("totals", &params("page", 0));
    let want = raw(
        "SELECT 'current', countIf(name = 'pageview'), countIf(name != 'pageview'), \
         uniqExact(visitor_id) FROM events WHERE site = 'a.com' AND name != 'engagement'",
    );
    assert_eq!(totals, want, "{stage}: totals");

    let daily = run("timeseries_daily", &params("page", 0));
    let want = raw(&format!(
        "SELECT '{today}', countIf(name = 'pageview'), countIf(name != 'pageview'), \
         uniqExact(visitor_id) FROM events WHERE site = 'a.com' AND name != 'engagement'"
    ));
    assert_eq!(daily, want, "{stage}: timeseries_daily");
    let hourly = run("timeseries_hourly", &params("page", 0));
    let want = raw(
        "SELECT toStartOfHour(timestamp) AS h, countIf(name = 'pageview'), \
         countIf(name != 'pageview'), uniqExact(visitor_id) FROM events WHERE site = 'a.com' AND name != 'engagement' \
         GROUP BY h ORDER BY h",
    );
    assert_eq!(hourly, want, "{stage}: timeseries_hourly");
    // Visit sums per hour, engagement reports' seconds included.
    let visits = run("visits_timeseries", &params("page", 0));
    let want = raw(
        "SELECT toStartOfHour(timestamp) AS h, sum(visit_entry), sum(visit_bounce), \
         sum(visit_seconds), countIf(name = 'pageview') FROM events WHERE site = 'a.com' \
         GROUP BY h ORDER BY h",
    );
    assert_eq!(visits, want, "{stage}: visits_timeseries");

    for dimension in DIMENSIONS {
        let got = run("breakdown", &params(dimension, 0));
        let want = raw(&format!(
            "SELECT value, v, p, e FROM (SELECT {} AS value, uniqExact(visitor_id) AS v, \
             countIf(name = 'pageview') AS p, countIf(name != 'pageview') AS e FROM events \
             WHERE site = 'a.com' AND name != 'engagement' {} GROUP BY value) \
             ORDER BY v DESC, p DESC, value",
            raw_expression(dimension),
            // Pages count page views only.
            if *dimension == "page" {
                "AND name = 'pageview'"
            } else {
                ""
            }
        ));
        assert_eq!(got, want, "{stage}: breakdown by {dimension}");
        assert!(!got.is_empty(), "{dimension}");
    }
    // k-anonymity: pages seen by fewer than 3 visitors (/blog/two: 2, /docs: 1) fold into one
    // "(other)" row; every row shown has at least 3.
    let folded = run("breakdown", &params("page", 3));
    let mut values: Vec<&str> = folded.iter().map(|r| r[0].as_str()).collect();
    values.sort();
    assert_eq!(
        values,
        ["(other)", "/", "/blog/one", "/pricing"],
        "{folded:?}"
    );
    assert!(folded.iter().all(|r| r[1].parse::<u32>().unwrap() >= 3));

    let props = run("event_props", &params("page", 0));
    let want = raw(
        "SELECT name, k, v, count(), uniqExact(visitor_id) FROM events \
         ARRAY JOIN prop_keys AS k, prop_values AS v WHERE site = 'a.com' \
         GROUP BY name, k, v ORDER BY count() DESC, name, k, v",
    );
    assert_eq!(props, want, "{stage}: event_props");
    assert_eq!(props.len(), 3, "{stage}: plan=pro, plan=team, trial=yes");

    let revenue = run("revenue", &params("page", 0));
    assert_eq!(
        revenue,
        [["Purchase", "EUR", "37.5", "3"].map(String::from)]
    );

    let dropped = run("dropped", &params("page", 0));
    assert_eq!(dropped, [["http_client", "1"].map(String::from)]);

    // k-anonymity everywhere, not only in breakdowns: with k = 4, every row shown by name
    // counts at least 4 (visitors for properties, visits for entry and exit pages, events for
    // revenue), and what is folded still adds up.
    for (name, label, count) in [
        ("event_props", 2, 4),
        ("entry_pages", 0, 1),
        ("exit_pages", 0, 1),
        ("revenue", 0, 3),
    ] {
        let all = run(name, &params("page", 0));
        let folded = run(name, &params("page", 4));
        let small = all
            .iter()
            .filter(|r| r[count].parse::<u64>().unwrap() < 4)
            .count();
        assert!(small > 0, "{stage}: {name} has rows to fold: {all:?}");
        for row in &folded {
            assert!(
                row[label] == "(other)" || row[count].parse::<u64>().unwrap() >= 4,
                "{stage}: {name} shows {row:?} with k = 4"
            );
        }
        let total = |rows: &[Vec<String>]| -> u64 {
            rows.iter().map(|r| r[count].parse::<u64>().unwrap()).sum()
        };
        assert_eq!(total(&folded), total(&all), "{stage}: {name} adds up");
    }
}

/// A variable as Grafana's `:percentencode` format writes it: everything but letters, digits and
/// `-._~` percent-encoded (encodeURIComponent, strict).
fn percentencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A panel's SQL with Grafana's macros and variables filled in as Grafana fills them.
fn grafana_fill(raw: &str, today: &str, site: &str, k: &str) -> String {
    raw.replace("${site:percentencode}", &percentencode(site))
        .replace("${k:percentencode}", &percentencode(k))
        .replace("$__fromTime", &format!("toDateTime('{today} 00:00:00')"))
        .replace("$__toTime", &format!("toDateTime('{today} 23:59:59')"))
}

/// Every panel of the shipped Grafana dashboard runs the query file it names: the SQL, with
/// Grafana's macros given the same values, answers as the query file does. And no variable
/// value a viewer can put in the URL changes what the SQL is: it stays one SELECT over the same
/// tables and never reads the salts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_runs_the_same_queries() {
    let ch = ClickHouse::start();
    let today = seed_known_traffic(&ch).await;
    let text =
        std::fs::read_to_string(support::repo_path("deploy/grafana/dashboards/glimpse.json"))
            .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 20);
    // Every variable is filled in encoded, never as typed.
    for (i, _) in text.match_indices("${") {
        let rest = &text[i + 2..];
        assert!(
            rest.starts_with("site:percentencode}") || rest.starts_with("k:percentencode}"),
            "a variable filled in as typed: {}",
            &rest[..rest.len().min(40)]
        );
    }
    let salt = ch.sql(DB, "SELECT any(salt) FROM glimpse_salts FORMAT TSV");
    let salt = salt.trim();
    assert_eq!(salt.len(), 64);
    let hostile = [
        "a.com' UNION ALL SELECT salt FROM glimpse_salts --",
        "a.com\\' UNION ALL SELECT salt FROM glimpse_salts --",
        "a.com\\",
        "0) UNION ALL SELECT salt, salt, salt FROM glimpse_salts --",
        "1; DROP TABLE events",
        "a.com'\nUNION ALL SELECT salt FROM glimpse_salts",
        "${site}",
        "%27 OR 1=1 --",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for panel in panels {
        let description = panel["description"].as_str().unwrap();
        let file = description.split_whitespace().next().unwrap();
        let name = file
            .strip_prefix("schema/queries/")
            .and_then(|f| f.strip_suffix(".sql"))
            .unwrap();
        let dimension = description
            .split("(dimension ")
            .nth(1)
            .map_or("page", |d| d.trim_end_matches(')'));
        seen.insert(name.to_string());
        let raw = panel["targets"][0]["rawSql"].as_str().unwrap();
        let sql = grafana_fill(raw, &today, "a.com", "0");
        let params = Params {
            site: "a.com".into(),
            from: today.clone(),
            to: today.clone(),
            dimension: dimension.into(),
            k: 0,
            limit: 100,
            offset: 0,
        };
        let want = ch.rows(DB, &queries::render(name, &params).unwrap());
        assert_eq!(ch.rows(DB, &sql), want, "panel {}", panel["title"]);

        let tables = tables_read(&sql);
        for value in hostile {
            for (site, k) in [(value, "0"), ("a.com", value)] {
                let filled = grafana_fill(raw, &today, site, k);
                assert_eq!(
                    tables_read(&filled),
                    tables,
                    "{}: {value:?}",
                    panel["title"]
                );
                assert!(!filled.contains(';'), "one statement: {filled}");
                // Whatever the server makes of it, the salts are not in the answer.
                let (_, answer) = ch.sql_as(("default", ""), DB, &format!("{filled} FORMAT TSV"));
                assert!(
                    !answer.contains(salt),
                    "{}: {value:?} read a salt",
                    panel["title"]
                );
            }
        }
    }
    let all: std::collections::BTreeSet<String> = queries::QUERIES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(seen, all, "every query has a panel");
}

/// Visits from known timings: the visit queries report visits, bounce rate, duration, pages
/// per visit, entry and exit pages as defined (30 minutes of silence end a visit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_from_known_timings() {
    let ch = ClickHouse::start();
    let (clock, today) = noon_today();
    let g = Glimpse::start_with_clock(test_config(&ch, DB), clock.clone()).await;
    let view = |path: &str| format!(r#"{{"n":"pageview","u":"https://a.com{path}"}}"#);
    let (a, b, c) = ("192.0.2.1", "192.0.2.2", "192.0.2.3");
    // (seconds after noon, visitor, body)
    let script = [
        (0, a, view("/")),
        (60, b, view("/")),
        (120, c, view("/blog")),
        (
            180,
            c,
            r#"{"n":"Signup","u":"https://a.com/blog"}"#.to_string(),
        ),
        (600, a, view("/pricing")),
        (1200, a, view("/docs")),
        // 31 minutes after a's last event: a new visit.
        (1200 + 1860, a, view("/blog")),
    ];
    let mut at = 0;
    for (t, ip, body) in script {
        clock.advance(t - at);
        at = t;
        assert_eq!(g.send(&body, UA_FIREFOX, ip).await.status, 202);
    }
    g.stop().await;

    let p = params(&today, "page", 0);
    let run = |name: &str| ch.rows(DB, &queries::render(name, &p).unwrap());
    // 4 visits (a twice, b, c); b's and a's second are bounces; 1200 + 60 s in all; 6 page
    // views.
    assert_eq!(
        run("visits"),
        [["current", "4", "50", "315", "1.5"].map(String::from)]
    );
    let pages = |rows: Vec<Vec<String>>| -> Vec<(String, String)> {
        rows.into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect()
    };
    let pair = |p: &str, n: &str| (p.to_string(), n.to_string());
    assert_eq!(
        pages(run("entry_pages")),
        [pair("/", "2"), pair("/blog", "2")]
    );
    assert_eq!(
        pages(run("exit_pages")),
        [pair("/blog", "2"), pair("/", "1"), pair("/docs", "1")]
    );
}

/// Engagement from known reports: scroll depth is the average of each visit's deepest scroll
/// of a page, time on page the average engaged time of the visits that had any; a report
/// extends its visit's duration, is never a page view, an event or a visit of its own, and is
/// dropped when no visit is open. The same with raw events kept and in aggregates-only mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engagement_from_known_reports() {
    for events_days in [30, 0] {
        let ch = ClickHouse::start();
        let (clock, today) = noon_today();
        let mut cfg = test_config(&ch, DB);
        cfg.retention.events_days = events_days;
        let g = Glimpse::start_with_clock(cfg, clock.clone()).await;
        let view = |path: &str| format!(r#"{{"n":"pageview","u":"https://a.com{path}"}}"#);
        let engage = |path: &str, sd: u32, e: u32| {
            format!(r#"{{"n":"engagement","u":"https://a.com{path}","sd":{sd},"e":{e},"v":29}}"#)
        };
        let (a, b, c) = ("192.0.2.1", "192.0.2.2", "192.0.2.3");
        // (seconds after noon, visitor, body, dropped)
        let script = [
            (0, a, view("/"), None),
            (10, b, view("/"), None),
            (25, b, engage("/", 100, 0), None),
            (30, b, view("/docs"), None),
            // a reads its one page for 40 s ...
            (40, a, engage("/", 50, 40_000), None),
            (90, b, engage("/docs", 30, 60_000), None),
            // ... scrolls further and reads 20 s more.
            (100, a, engage("/", 80, 20_000), None),
            // c has no visit to report on.
            (
                200,
                c,
                engage("/", 90, 1_000),
                Some("engagement_without_visit"),
            ),
        ];
        let mut at = 0;
        for (t, ip, body, dropped) in script {
            clock.advance(t - at);
            at = t;
            let r = g.send(&body, UA_FIREFOX, ip).await;
            assert_eq!((r.status, r.dropped.as_deref()), (202, dropped), "{body}");
        }
        g.stop().await;

        let p = params(&today, "event", 0);
        let run = |name: &str| ch.rows(DB, &queries::render(name, &p).unwrap());
        let stage = format!("events_days = {events_days}");
        // "/": maxima 80 (a) and 100 (b); only a had engaged time (60 s). "/docs": b alone.
        assert_eq!(
            run("page_engagement"),
            [["/", "90", "60"], ["/docs", "30", "60"]].map(|r| r.map(String::from)),
            "{stage}"
        );
        // 2 visits, a's a bounce of 100 s (0 s without engagement), b's 80 s; 3 page views. The
        // test clock runs on from its set time, so a second may slip in.
        let visits = run("visits");
        let duration: u64 = visits[0][3].parse().unwrap();
        assert!((90..=91).contains(&duration), "{stage}: {visits:?}");
        assert_eq!(
            [&visits[0][..3], &visits[0][4..]].concat(),
            ["current", "2", "50", "1.5"].map(String::from),
            "{stage}"
        );
        assert_eq!(
            run("totals"),
            [["current", "3", "0", "2"].map(String::from)],
            "{stage}"
        );
        assert_eq!(
            run("breakdown"),
            [["", "2", "3", "0"].map(String::from)],
            "{stage}: no event named engagement"
        );
        assert_eq!(run("entry_pages").len(), 1, "{stage}");
        let raw = ch.count(DB, "SELECT count() FROM events");
        assert_eq!(raw, if events_days == 0 { 0 } else { 7 }, "{stage}");
    }
}

/// The tables a statement reads: the names after FROM and JOIN, outside comments.
fn tables_read(sql: &str) -> std::collections::BTreeSet<String> {
    let words: Vec<&str> = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .collect();
    words
        .windows(2)
        .filter(|w| w[0].eq_ignore_ascii_case("FROM") || w[0].eq_ignore_ascii_case("JOIN"))
        .map(|w| w[1].trim_end_matches([')', ',', ';']))
        .filter(|t| t.starts_with(|c: char| c.is_ascii_alphabetic()))
        .map(String::from)
        .collect()
}

/// The dashboards recipe (`deploy/clickhouse/grants.sql`) grants exactly the tables the query
/// files read, which are neither the salts nor the raw events; and a read-only user (what
/// ClickHouse 18.16 offers instead of grants) runs every query and cannot change anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_user_reads_the_aggregates_and_nothing_else() {
    let ch = ClickHouse::start();
    let today = seed_known_traffic(&ch).await;
    let recipe =
        std::fs::read_to_string(support::repo_path("deploy/clickhouse/grants.sql")).unwrap();
    let granted: std::collections::BTreeSet<String> = recipe
        .lines()
        .filter_map(|l| l.strip_prefix("GRANT SELECT ON glimpse."))
        .filter_map(|l| l.strip_suffix(" TO glimpse_dashboards;"))
        .map(String::from)
        .collect();

    let mut read = std::collections::BTreeSet::new();
    for (name, _) in queries::QUERIES {
        for dimension in ["page", "country"] {
            let sql = queries::render(name, &params(&today, dimension, 0)).unwrap();
            read.extend(tables_read(&sql));
            let (status, answer) = ch.sql_as(support::DASHBOARDS_USER, DB, &sql);
            assert_eq!(status, 200, "{name} as the dashboards user: {answer}");
            assert_eq!(answer, ch.sql(DB, &sql), "{name}");
        }
    }
    assert_eq!(granted, read, "the role grants what the queries read");
    for secret in [
        "glimpse_salts",
        "events",
        "events_in",
        "events_intake",
        "visitor_days",
    ] {
        assert!(!granted.contains(secret), "{secret} is granted");
    }
    let tables: std::collections::BTreeSet<String> = ch
        .rows(
            "system",
            "SELECT name FROM tables WHERE database = 'glimpse' AND engine NOT LIKE '%View'",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(
        granted.is_subset(&tables),
        "{granted:?} not all in {tables:?}"
    );
    assert!(tables.contains("glimpse_salts") && tables.contains("events"));

    for change in [
        "INSERT INTO dropped_daily (day, site, reason, events) VALUES (today(), 'a.com', 'x', 1)",
        "ALTER TABLE stats_daily DELETE WHERE 1",
        "DROP TABLE glimpse_salts",
        "CREATE TABLE t (x UInt8) ENGINE = Memory",
    ] {
        let (status, answer) = ch.sql_as(support::DASHBOARDS_USER, DB, change);
        assert_ne!(status, 200, "{change}");
        assert!(answer.contains("readonly mode"), "{change}: {answer}");
    }
}
