//! The built-in dashboard: its stats API against the real server with known data, its token,
//! and the page in headless Chromium showing what ClickHouse holds (with a screenshot in
//! `target/artifacts/dashboard.png`).

use glimpse::model::{Goal, GoalKind};
use serde_json::Value;
use support::{Chromium, ClickHouse, StatsApi, seed_known_traffic};

const DB: &str = "glimpse";
const TOKEN: &str = "test-token-0123456789";

async fn start(ch: &ClickHouse, min_visitors: u32) -> StatsApi {
    let mut cfg = support::test_config(ch, DB);
    // Goals of the shapes the configuration takes (seeded visitors sign up, read the blog, and
    // one scrolls a blog post 80 % down).
    let goal = |name: &str, kind: GoalKind| Goal {
        name: name.into(),
        kind,
    };
    cfg.sites[0].goals = vec![
        goal("Signup", GoalKind::Event("Signup".into())),
        goal("Visit /blog/**", GoalKind::Page("/blog/**".into())),
        goal(
            "Scroll 70% /blog/*",
            GoalKind::Scroll {
                page: "/blog/*".into(),
                percent: 70,
            },
        ),
    ];
    // The dashboard reads as the read-only user dashboards are meant to get.
    let (user, password) = support::DASHBOARDS_USER;
    cfg.clickhouse.user = user.into();
    cfg.clickhouse.password = password.into();
    cfg.dashboard.min_visitors = min_visitors;
    StatsApi::start(cfg, TOKEN).await
}

fn raw(ch: &ClickHouse, sql: &str) -> Vec<Vec<String>> {
    ch.rows(DB, sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_api_answers_from_aggregates_behind_a_token() {
    let ch = ClickHouse::start();
    let today = seed_known_traffic(&ch).await;
    let d = start(&ch, 0).await;
    let api = |path: &str| format!("/api/v1/{path}");

    let (status, body) = d
        .get_json(&api("stats/aggregate?site_id=a.com"), None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = d
        .get_json(
            &api("stats/aggregate?site_id=a.com"),
            Some("wrong-token-0123456"),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = d
        .get_json(&api("stats/aggregate?site_id=evil.com"), Some(TOKEN))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a configured site")
    );
    let msg = refused(&d, &api("stats/aggregate?site_id=a.com&period=fortnight")).await;
    assert!(
        msg.starts_with("`period`: unknown period \"fortnight\""),
        "{msg}"
    );
    // Whatever Glimpse cannot answer is refused by name, never answered for everyone.
    for (path, names) in [
        (
            "stats/aggregate?site_id=a.com&filters=visit:city==Berlin",
            "never stores cities",
        ),
        (
            "stats/breakdown?site_id=a.com&property=event:page&metrics=bounce_rate",
            "cannot be broken down by the event dimension",
        ),
        (
            "stats/aggregate?site_id=a.com&metrics=conversion_rate",
            "needs event:goal",
        ),
        (
            "stats/aggregate?site_id=a.com&interval=date",
            "unknown parameter `interval`",
        ),
        (
            "stats/aggregate?site_id=a.com&metrics=visitors,shoe_size",
            "unknown metric \"shoe_size\"",
        ),
        (
            "stats/aggregate?site_id=a.com&compare=year_over_year",
            "`compare`",
        ),
        ("stats/timeseries?site_id=a.com&interval=week", "`interval`"),
        (
            "stats/breakdown?site_id=a.com&property=event:props&filters=visit:country==GB",
            "answered from the aggregates, unfiltered",
        ),
        (
            "stats/breakdown?site_id=a.com&property=event:page&page=0",
            "`page`",
        ),
        ("stats/breakdown?site_id=a.com", "`property` is required"),
        (
            "stats/breakdown?site_id=a.com&property=event:page&limit=5&limit=6",
            "`limit` is given twice",
        ),
    ] {
        let msg = refused(&d, &api(path)).await;
        assert!(msg.contains(names), "{path}: {msg}");
    }

    let all = "visitors,pageviews,events,visits,bounce_rate,visit_duration,views_per_visit";
    let (status, body) = d
        .get_json(
            &api(&format!(
                "stats/aggregate?site_id=a.com&period=day&metrics={all}&compare=previous_period"
            )),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let want = raw(
        &ch,
        "SELECT uniqExact(visitor_id), countIf(name = 'pageview'), count(), \
         sum(visit_entry) FROM events WHERE site = 'a.com' AND name != 'engagement'",
    );
    let r = &body["results"];
    let got = [
        r["visitors"]["value"].to_string(),
        r["pageviews"]["value"].to_string(),
        r["events"]["value"].to_string(),
        r["visits"]["value"].to_string(),
    ];
    assert_eq!(got.to_vec(), want[0]);
    // Plausible's shape: value and, when compared, the change (from nothing: 100 %).
    assert_eq!(
        r["visitors"],
        serde_json::json!({"value": r["visitors"]["value"], "change": 100})
    );
    let sessions = raw(
        &ch,
        "SELECT round(100 * sum(visit_bounce) / sum(visit_entry)),          round(sum(visit_seconds) / sum(visit_entry)),          round(countIf(name = 'pageview') / sum(visit_entry), 2) FROM events WHERE site = 'a.com'",
    );
    assert_eq!(
        [
            r["bounce_rate"]["value"].to_string(),
            r["visit_duration"]["value"].to_string(),
            r["views_per_visit"]["value"].to_string(),
        ]
        .to_vec(),
        sessions[0]
    );
    let (_, body) = d
        .get_json(
            &api("stats/aggregate?site_id=a.com&period=day"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        body["results"],
        serde_json::json!({"visitors": {"value": r["visitors"]["value"]}}),
        "metrics default to visitors; no change without compare"
    );

    // What a data-pipeline connector asks: every metric it names, for every day.
    let (status, body) = d
        .get_json(
            &api(&format!(
                "stats/timeseries?site_id=a.com&period=custom&date={today},{today}\
             &metrics=visitors,pageviews,bounce_rate,visit_duration,visits"
            )),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let day = &body["results"][0];
    assert_eq!(day["date"], today.as_str());
    assert_eq!(day["visitors"].to_string(), want[0][0]);
    assert_eq!(day["visits"].to_string(), want[0][3]);
    assert_eq!(day["bounce_rate"], r["bounce_rate"]["value"]);
    assert_eq!(day["visit_duration"], r["visit_duration"]["value"]);
    assert_eq!(day.as_object().unwrap().len(), 6, "{day}");
    // A day by hours: 24 rows that add up to the day's page views.
    let (_, body) = d
        .get_json(
            &api("stats/timeseries?site_id=a.com&period=day&metrics=pageviews"),
            Some(TOKEN),
        )
        .await;
    let hours = body["results"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert!(hours[0]["date"].as_str().unwrap().ends_with(" 00:00:00"));
    let sum: u64 = hours.iter().map(|h| h["pageviews"].as_u64().unwrap()).sum();
    assert_eq!(sum.to_string(), want[0][1]);

    let (_, body) = d
        .get_json(
            &api("stats/breakdown?site_id=a.com&property=visit:country&limit=50"),
            Some(TOKEN),
        )
        .await;
    let got: Vec<Vec<String>> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["country"].as_str().unwrap().to_string(),
                r["visitors"].to_string(),
            ]
        })
        .collect();
    let want = raw(
        &ch,
        "SELECT country_code, uniqExact(visitor_id) AS v FROM events WHERE site = 'a.com' AND name != 'engagement' \
         GROUP BY country_code ORDER BY v DESC, countIf(name = 'pageview') DESC, country_code",
    );
    assert_eq!(got, want);

    let (_, body) = d
        .get_json(
            &api("stats/breakdown?site_id=a.com&property=visit:entry_page"),
            Some(TOKEN),
        )
        .await;
    assert!(body["results"][0]["entry_page"].is_string(), "{body}");

    // Pages carry scroll depth (%) and time on page (s): the seeded visitors' last pages
    // reported (i+1)·20 % and (i+1)·3 s, one visit each. (/checkout saw custom events only, so
    // it is no page here.)
    let (_, body) = d.get_json(
        &api("stats/breakdown?site_id=a.com&property=event:page&limit=50&metrics=visitors,scroll_depth,time_on_page"),
        Some(TOKEN),
    )
    .await;
    let engagement: std::collections::BTreeMap<String, (String, String)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["page"].as_str().unwrap().to_string(),
                (r["scroll_depth"].to_string(), r["time_on_page"].to_string()),
            )
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        engagement,
        [
            ("/".to_string(), pair("20", "3")),
            ("/blog/one".to_string(), pair("60", "9")),
            ("/blog/two".to_string(), pair("80", "12")),
            ("/docs".to_string(), pair("100", "15")),
            ("/pricing".to_string(), pair("40", "6")),
        ]
        .into_iter()
        .collect(),
        "{body}"
    );
    let (_, body) = d
        .get_json(&api("stats/revenue?site_id=a.com"), Some(TOKEN))
        .await;
    assert_eq!(body["results"][0]["revenue"], 37.5);
    let (_, body) = d
        .get_json(&api("stats/dropped?site_id=a.com"), Some(TOKEN))
        .await;
    assert_eq!(body["results"][0]["reason"], "http_client");
    let (status, _) = d
        .get_json(
            &api("stats/breakdown?site_id=a.com&property=visit:shoe_size"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 400);

    // k-anonymity: with min_visitors = 3, no page under 3 visitors is shown by name.
    let k = start(&ch, 3).await;
    let (_, body) = k
        .get_json(
            "/api/v1/stats/breakdown?site_id=a.com&property=event:page",
            Some(TOKEN),
        )
        .await;
    for row in body["results"].as_array().unwrap() {
        assert!(
            row["page"] == "(other)" || row["visitors"].as_u64().unwrap() >= 3,
            "{row}"
        );
    }
    // And in every other breakdown: properties, entry and exit pages, revenue.
    for (path, label, count) in [
        (
            "stats/breakdown?site_id=a.com&property=event:props",
            "value",
            "visitors",
        ),
        (
            "stats/breakdown?site_id=a.com&property=visit:entry_page",
            "entry_page",
            "visits",
        ),
        (
            "stats/breakdown?site_id=a.com&property=visit:exit_page",
            "exit_page",
            "visits",
        ),
        ("stats/revenue?site_id=a.com", "event", "events"),
    ] {
        let (status, body) = k.get_json(&format!("/api/v1/{path}"), Some(TOKEN)).await;
        assert_eq!(status, 200, "{path}: {body}");
        let rows = body["results"].as_array().unwrap();
        assert!(!rows.is_empty(), "{path}");
        for row in rows {
            assert!(
                row[label] == "(other)" || row[count].as_u64().unwrap() >= 3,
                "{path}: {row}"
            );
        }
    }
    // A filter cannot single out fewer than k visitors either: /docs had one visitor, so its
    // filtered totals and series show nothing, while / (five visitors) is shown.
    let total = |body: &serde_json::Value, m: &str| body["results"][m]["value"].as_f64();
    let (_, few) = k
        .get_json(
            "/api/v1/stats/aggregate?site_id=a.com&filters=event:page==/docs&metrics=visitors,pageviews,visit_duration",
            Some(TOKEN),
        )
        .await;
    assert_eq!(total(&few, "visitors"), Some(0.0), "{few}");
    assert_eq!(total(&few, "pageviews"), Some(0.0), "{few}");
    let (_, many) = k
        .get_json(
            "/api/v1/stats/aggregate?site_id=a.com&filters=event:page==/&metrics=visitors",
            Some(TOKEN),
        )
        .await;
    assert_eq!(total(&many, "visitors"), Some(5.0), "{many}");
    let (_, series) = k
        .get_json(
            "/api/v1/stats/timeseries?site_id=a.com&filters=event:page==/docs&metrics=visitors,pageviews",
            Some(TOKEN),
        )
        .await;
    for bucket in series["results"].as_array().unwrap() {
        assert_eq!(bucket["visitors"], 0, "{series}");
        assert_eq!(bucket["pageviews"], 0, "{series}");
    }
    let v2 = serde_json::json!({
        "site_id": "a.com",
        "metrics": ["visitors", "pageviews"],
        "date_range": "day",
        "filters": [["is", "event:page", ["/docs"]]],
    });
    let (status, body) = k.query_v2(&v2).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0]["metrics"],
        serde_json::json!([0, 0]),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_what_clickhouse_holds() {
    let ch = ClickHouse::start();
    seed_known_traffic(&ch).await;
    let d = start(&ch, 0).await;
    let chromium = Chromium::start();
    let browser = chromium.session().await;
    browser.set_window_size(1280, 1400).await.unwrap();
    browser
        .goto(&format!("{}/#token={TOKEN}&site=a.com&period=day", d.url))
        .await
        .unwrap();
    // Wait for every panel to load.
    wait_ready(&browser).await;
    let tiles = browser
        .execute(
            "const v = (m) => document.querySelector(`.tile[data-metric=${m}] .value`).textContent;\
             return [v('visitors'), v('pageviews'), v('events'), v('visits')];",
            vec![],
        )
        .await
        .unwrap();
    let want = raw(
        &ch,
        "SELECT uniqExact(visitor_id), countIf(name = 'pageview'), count(), \
         sum(visit_entry) FROM events WHERE site = 'a.com' AND name != 'engagement'",
    );
    let tiles: Vec<String> = serde_json::from_value(tiles).unwrap();
    assert_eq!(tiles, want[0]);
    let pages = panel_rows(&browser, "event:page", 2).await;
    let want = raw(
        &ch,
        "SELECT pathname, uniqExact(visitor_id) AS v FROM events WHERE site = 'a.com' AND name = 'pageview' \
         GROUP BY pathname ORDER BY v DESC, count() DESC, pathname LIMIT 10",
    );
    assert_eq!(pages, want);
    // Pages count page views, as Plausible's do.
    // The chart has one bar pair per hour with visits, and its visitors add up to the total.
    let bars = browser
        .execute(
            "return [...document.querySelectorAll('#chart rect[data-metric=pageviews]')]\
             .map(b => Number(b.dataset.value)).reduce((a, b) => a + b, 0);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(bars.to_string(), tiles[1], "page views in the chart");
    // The token was read, then taken out of the address (and so of the history entry); the
    // other parts of the fragment stay.
    let url = browser.current_url().await.unwrap();
    assert!(!url.as_str().contains("token"), "{url}");
    assert!(url.as_str().contains("site=a.com"), "{url}");
    // The goals panel, with conversion rates.
    let goals = panel_rows(&browser, "event:goal", 1).await.concat();
    assert!(goals.contains(&"Signup".to_string()), "{goals:?}");

    // Click a country: every panel is filtered by it, a removable chip shows it, and the
    // address keeps it (not the token).
    let clicked = browser
        .execute(
            "const row = [...document.querySelectorAll('section[data-panel=\"visit:country\"] tr.pick')]\
             .find(r => r.cells[0].textContent === 'GB'); row.click(); return true;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(clicked, Value::Bool(true));
    wait_ready(&browser).await;
    let chip = browser
        .execute(
            "return document.getElementById('chips').textContent",
            vec![],
        )
        .await
        .unwrap();
    assert!(chip.as_str().unwrap().contains("country is GB"), "{chip}");
    let url = browser.current_url().await.unwrap();
    assert!(url.as_str().contains("f=visit%3Acountry%3D%3DGB"), "{url}");
    assert!(!url.as_str().contains("token"), "{url}");
    let tiles = browser
        .execute(
            "const v = (m) => document.querySelector(`.tile[data-metric=${m}] .value`).textContent;\
             return [v('visitors'), v('pageviews'), v('events')];",
            vec![],
        )
        .await
        .unwrap();
    let tiles: Vec<String> = serde_json::from_value(tiles).unwrap();
    let want = raw(
        &ch,
        "SELECT uniqExact(visitor_id), countIf(name = 'pageview'), count() FROM events \
         WHERE site = 'a.com' AND name != 'engagement' AND country_code = 'GB'",
    );
    assert_eq!(tiles, want[0]);
    let pages = panel_rows(&browser, "event:page", 2).await;
    let want = raw(
        &ch,
        "SELECT pathname, uniqExact(visitor_id) AS v FROM events WHERE site = 'a.com' \
         AND name = 'pageview' AND country_code = 'GB' GROUP BY pathname ORDER BY v DESC, pathname LIMIT 10",
    );
    assert_eq!(pages, want);
    let browsers = {
        let mut names = panel_rows(&browser, "visit:browser", 1).await.concat();
        names.sort();
        names
    };
    let want: Vec<String> = raw(
        &ch,
        "SELECT DISTINCT browser FROM events WHERE site = 'a.com' AND country_code = 'GB' ORDER BY browser",
    )
    .concat();
    assert_eq!(browsers, want);
    // What the CSV export would hold: totals, the series and every panel.
    let blocks = browser
        .execute("return shown.map(b => b[0])", vec![])
        .await
        .unwrap();
    assert!(blocks.as_array().unwrap().len() >= 15, "{blocks}");
    // Removing the chip shows everyone again.
    browser
        .execute("document.querySelector('#chips button').click()", vec![])
        .await
        .unwrap();
    wait_ready(&browser).await;
    let visitors = browser
        .execute(
            "return document.querySelector('.tile[data-metric=visitors] .value').textContent",
            vec![],
        )
        .await
        .unwrap();
    let all = raw(
        &ch,
        "SELECT uniqExact(visitor_id) FROM events WHERE name != 'engagement'",
    );
    assert_eq!(visitors.as_str().unwrap(), all[0][0]);

    let png = browser.screenshot().await.unwrap();
    let dir = support::repo_path("target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    browser.close().await.unwrap();
}

/// Filtered questions, answered from the raw events, agree with the same questions asked of
/// the raw events by hand; an always-true filter (which forces the raw path) gives what the
/// aggregates give unfiltered; goals count conversions; aggregates-only mode refuses filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_questions_agree_with_raw_events() {
    let ch = ClickHouse::start();
    seed_known_traffic(&ch).await;
    let d = start(&ch, 0).await;
    let api = |path: &str| format!("/api/v1/stats/{path}");
    let stats = &d;
    let ask = |path: String| {
        let url = api(&path);
        async move {
            let (status, body) = stats.get_json(&url, Some(TOKEN)).await;
            assert_eq!(status, 200, "{path}: {body}");
            body["results"].clone()
        }
    };
    let one = |sql: &str| -> Vec<String> { raw(&ch, sql).remove(0) };
    let site = "site = 'a.com' AND name != 'engagement'";

    // Aggregate: visitor dimensions select rows; visit metrics count the matching visitors'
    // visits.
    for (filter, cond) in [
        ("visit:country==GB", "country_code = 'GB'"),
        ("visit:country!=GB", "country_code != 'GB'"),
        (
            "visit:browser==Firefox|Safari",
            "browser IN ('Firefox', 'Safari')",
        ),
        ("visit:os~Win", "position(os, 'Win') > 0"),
        ("visit:device!~mob", "position(device, 'mob') = 0"),
        // Empty values: visitors with no known country, and the others.
        ("visit:country==", "country_code = ''"),
        ("visit:country!=", "country_code != ''"),
    ] {
        let r = ask(format!(
            "aggregate?site_id=a.com&period=day&filters={filter}&metrics=visitors,pageviews,events,visits,bounce_rate"
        ))
        .await;
        let want = one(&format!(
            "SELECT uniqExact(visitor_id), countIf(name = 'pageview'), count(), \
             sum(visit_entry), if(sum(visit_entry) = 0, 0, round(100 * sum(visit_bounce) / sum(visit_entry))) \
             FROM events WHERE site = 'a.com' AND ({cond}) AND name != 'engagement'"
        ));
        let got: Vec<String> = ["visitors", "pageviews", "events", "visits", "bounce_rate"]
            .iter()
            .map(|m| r[m]["value"].to_string())
            .collect();
        assert_eq!(got, want, "{filter}");
    }

    // Event filters: the matching events, with page wildcards.
    let r = ask("aggregate?site_id=a.com&period=day&filters=event:page==/blog/**&metrics=visitors,pageviews,events".into()).await;
    let want = one(&format!(
        "SELECT uniqExact(visitor_id), countIf(name = 'pageview'), count() FROM events \
         WHERE {site} AND match(pathname, '^/blog/.*$')"
    ));
    assert_eq!(
        ["visitors", "pageviews", "events"]
            .map(|m| r[m]["value"].to_string())
            .to_vec(),
        want
    );
    let r = ask("aggregate?site_id=a.com&period=day&filters=event:name==Signup;visit:country==GB&metrics=visitors,events".into()).await;
    let want = one(&format!(
        "SELECT uniqExact(visitor_id), count() FROM events \
         WHERE {site} AND name = 'Signup' AND country_code = 'GB'"
    ));
    assert_eq!(
        ["visitors", "events"]
            .map(|m| r[m]["value"].to_string())
            .to_vec(),
        want
    );
    // An entry filter: the visitors who began a visit from a source (each seeded visitor has one
    // visit, so this is also their first).
    let source = one(
        "SELECT referrer_source FROM events WHERE visit_entry = 1 AND referrer_source != '' \
         GROUP BY referrer_source ORDER BY count() DESC, referrer_source LIMIT 1",
    )
    .remove(0);
    let r = ask(format!(
        "aggregate?site_id=a.com&period=day&filters=visit:source=={source}&metrics=visitors,pageviews,visits"
    ))
    .await;
    let firsts = format!(
        "SELECT visitor_id FROM (SELECT visitor_id, referrer_source FROM events WHERE site = 'a.com' \
         AND visit_entry = 1 ORDER BY timestamp LIMIT 1 BY visitor_id) WHERE referrer_source = '{source}'"
    );
    let want = one(&format!(
        "SELECT uniqExactIf(visitor_id, name != 'engagement'), countIf(name = 'pageview'), \
         sum(visit_entry) FROM events WHERE site = 'a.com' AND visitor_id IN ({firsts})"
    ));
    assert_eq!(
        ["visitors", "pageviews", "visits"]
            .map(|m| r[m]["value"].to_string())
            .to_vec(),
        want,
        "source {source}"
    );
    assert_ne!(want[0], "0");
    // Sources (of the visitors' first visits) of those who read the blog, with their visits.
    let rows = ask("breakdown?site_id=a.com&period=day&property=visit:source&filters=event:page==/blog/**&metrics=visitors,visits".into()).await;
    let mut got: Vec<Vec<String>> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["source"].as_str().unwrap().to_string(),
                r["visitors"].to_string(),
                r["visits"].to_string(),
            ]
        })
        .collect();
    got.sort();
    let blog = "match(pathname, '^/blog/.*$')";
    let want = raw(
        &ch,
        &format!(
            "SELECT src, uniqExactIf(visitor_id, name != 'engagement' AND {blog}), sum(visit_entry) \
             FROM events ANY LEFT JOIN (SELECT visitor_id, referrer_source AS src FROM events \
             WHERE site = 'a.com' AND visit_entry = 1 ORDER BY timestamp LIMIT 1 BY visitor_id) \
             USING visitor_id WHERE site = 'a.com' AND visitor_id IN \
             (SELECT visitor_id FROM events WHERE site = 'a.com' AND {blog}) \
             GROUP BY src ORDER BY src"
        ),
    );
    assert_eq!(got, want);
    // A property filter.
    let r = ask(
        "aggregate?site_id=a.com&period=day&filters=event:props:plan==pro&metrics=events".into(),
    )
    .await;
    let want = one(&format!(
        "SELECT count() FROM events WHERE {site} AND has(prop_keys, 'plan') \
         AND prop_values[indexOf(prop_keys, 'plan')] = 'pro'"
    ));
    assert_eq!(r["events"]["value"].to_string(), want[0]);

    // A breakdown by page, filtered by country, paged.
    let rows = ask("breakdown?site_id=a.com&period=day&property=event:page&filters=visit:country==GB&metrics=visitors,pageviews&limit=2&page=1".into()).await;
    let rest = ask("breakdown?site_id=a.com&period=day&property=event:page&filters=visit:country==GB&metrics=visitors,pageviews&limit=2&page=2".into()).await;
    let got: Vec<Vec<String>> = rows
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.as_array().unwrap())
        .map(|r| {
            vec![
                r["page"].as_str().unwrap().to_string(),
                r["visitors"].to_string(),
                r["pageviews"].to_string(),
            ]
        })
        .collect();
    let want = raw(
        &ch,
        &format!(
            "SELECT pathname AS p, uniqExact(visitor_id) AS v, count() AS c FROM events \
             WHERE {site} AND name = 'pageview' AND country_code = 'GB' \
             GROUP BY p ORDER BY v DESC, p LIMIT 4"
        ),
    );
    assert_eq!(got, want);

    // An always-true filter takes the raw path: it must agree with the aggregates.
    for property in [
        "event:page",
        "event:hostname",
        "event:name",
        "visit:country",
        "visit:region",
        "visit:browser",
        "visit:browser_version",
        "visit:os",
        "visit:device",
    ] {
        let q = format!(
            "breakdown?site_id=a.com&period=day&property={property}&metrics=visitors,pageviews,events&limit=100"
        );
        let aggregates = ask(q.clone()).await;
        let raw_path = ask(format!("{q}&filters=visit:country!=ZZ")).await;
        let sorted = |v: &Value| {
            let mut rows: Vec<String> =
                v.as_array().unwrap().iter().map(Value::to_string).collect();
            rows.sort();
            rows
        };
        assert_eq!(sorted(&raw_path), sorted(&aggregates), "{property}");
    }
    let all = "visitors,pageviews,events,visits,bounce_rate,visit_duration,views_per_visit";
    let aggregates = ask(format!("aggregate?site_id=a.com&period=day&metrics={all}")).await;
    let raw_path = ask(format!(
        "aggregate?site_id=a.com&period=day&metrics={all}&filters=visit:country!=ZZ"
    ))
    .await;
    assert_eq!(raw_path, aggregates);
    let aggregates = ask(format!("timeseries?site_id=a.com&period=day&metrics={all}")).await;
    let raw_path = ask(format!(
        "timeseries?site_id=a.com&period=day&metrics={all}&filters=visit:country!=ZZ"
    ))
    .await;
    assert_eq!(raw_path, aggregates);

    // Goals: conversions as a dimension and as a filter, with conversion rates over all
    // visitors.
    let rows = ask("breakdown?site_id=a.com&period=day&property=event:goal&metrics=visitors,events,conversion_rate".into()).await;
    let total: f64 = one(&format!(
        "SELECT uniqExact(visitor_id) FROM events WHERE {site}"
    ))[0]
        .parse()
        .unwrap();
    let want = raw(
        &ch,
        &format!(
            "SELECT g, v, e FROM ( \
             SELECT 'Signup' AS g, uniqExactIf(visitor_id, name = 'Signup') AS v, countIf(name = 'Signup') AS e FROM events WHERE {site} \
             UNION ALL SELECT 'Visit /blog/**', uniqExactIf(visitor_id, name = 'pageview' AND match(pathname, '^/blog/.*$')), \
               countIf(name = 'pageview' AND match(pathname, '^/blog/.*$')) FROM events WHERE {site} \
             UNION ALL SELECT 'Scroll 70% /blog/*', uniqExact(visitor_id), count() FROM events WHERE site = 'a.com' \
               AND name = 'engagement' AND (visitor_id, pathname) IN (SELECT visitor_id, pathname FROM events \
               WHERE name = 'engagement' AND match(pathname, '^/blog/[^/]*$') GROUP BY visitor_id, pathname \
               HAVING sum(scroll_gain) >= 70)) ORDER BY v DESC, g"
        ),
    );
    let got: Vec<Vec<String>> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let v: f64 = r["visitors"].as_f64().unwrap();
            assert_eq!(
                r["conversion_rate"].as_f64().unwrap(),
                (v / total * 1000.0).round() / 10.0,
                "{r}"
            );
            vec![
                r["goal"].as_str().unwrap().to_string(),
                r["visitors"].to_string(),
                r["events"].to_string(),
            ]
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 3, "each goal was completed: {got:?}");
    // Each goal as a filter: the visitors and events of its row (a scroll goal's events are
    // the engagement reports that reached it).
    for row in &got {
        let goal = row[0].replace('%', "%25").replace(' ', "%20");
        let r = ask(format!(
            "aggregate?site_id=a.com&period=day&metrics=visitors,events&filters=event:goal=={goal}"
        ))
        .await;
        assert_eq!(
            [
                r["visitors"]["value"].to_string(),
                r["events"]["value"].to_string()
            ],
            [row[1].clone(), row[2].clone()],
            "{goal}"
        );
    }
    // Revenue per goal: the seeded purchases (12.50 EUR each) are no goal; a Signup carries
    // none, so its revenue is 0 and its average null.
    let rows = ask("breakdown?site_id=a.com&period=day&property=event:name&metrics=events,total_revenue,average_revenue&filters=visit:country!=ZZ".into()).await;
    let purchase = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Purchase")
        .unwrap();
    let bought = one(&format!(
        "SELECT count(), sum(revenue_micros) / 1000000 FROM events WHERE {site} AND name = 'Purchase'"
    ));
    assert_eq!(
        [
            purchase["events"].to_string(),
            purchase["total_revenue"].to_string()
        ]
        .to_vec(),
        bought
    );
    assert_eq!(purchase["average_revenue"], 12.5);
    let rows = ask("breakdown?site_id=a.com&period=day&property=event:goal&metrics=total_revenue,average_revenue".into()).await;
    let signup = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["goal"] == "Signup")
        .unwrap();
    assert_eq!(
        (
            signup["total_revenue"].clone(),
            signup["average_revenue"].clone()
        ),
        (serde_json::json!(0), Value::Null)
    );
    let r = ask("aggregate?site_id=a.com&period=day&filters=event:goal==Visit /blog/**&metrics=visitors,conversion_rate".into()).await;
    assert_eq!(
        r["visitors"]["value"].to_string(),
        want.iter().find(|w| w[0] == "Visit /blog/**").unwrap()[1]
    );
    let msg = refused(&d, &api("aggregate?site_id=a.com&filters=event:goal==Nope")).await;
    assert!(msg.contains("no goal named \"Nope\""), "{msg}");

    // Visit metrics by a visit dimension come from the raw events too.
    let rows = ask(
        "breakdown?site_id=a.com&period=day&property=visit:device&metrics=visits,bounce_rate"
            .into(),
    )
    .await;
    let want = raw(
        &ch,
        "SELECT device AS d, sum(visit_entry) AS v, round(100 * sum(visit_bounce) / sum(visit_entry)) \
         FROM events WHERE site = 'a.com' GROUP BY d ORDER BY v DESC, d",
    );
    let got: Vec<Vec<String>> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["device"].as_str().unwrap().to_string(),
                r["visits"].to_string(),
                r["bounce_rate"].to_string(),
            ]
        })
        .collect();
    assert_eq!(got, want);
}

/// The v2 query API: every key checked, several dimensions with time, nested filters,
/// ordering, pagination and the meta Plausible gives, each answer against raw SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_queries_agree_with_raw_events() {
    let ch = ClickHouse::start();
    let today = seed_known_traffic(&ch).await;
    let d = start(&ch, 0).await;
    let post = |body: Value| {
        let d = &d;
        async move { d.query_v2(&body).await }
    };
    use serde_json::json;
    for (body, want) in [
        (
            json!({"site_id": "a.com", "metrics": ["visitors"], "date_range": "day", "colour": 1}),
            "unknown key `colour`",
        ),
        (
            json!({"site_id": "a.com", "metrics": ["bounce_rate"], "date_range": "day", "dimensions": ["event:page"]}),
            "cannot be broken down by the event dimension",
        ),
        (
            json!({"site_id": "a.com", "metrics": ["visitors"], "date_range": "fortnight"}),
            "`date_range`",
        ),
        (
            json!({"site_id": "a.com", "metrics": ["visitors"], "date_range": "day", "filters": [["like", "visit:country", ["GB"]]]}),
            "unknown operator",
        ),
        (
            json!({"site_id": "a.com", "metrics": ["visitors"], "date_range": "day", "order_by": [["pageviews", "desc"]]}),
            "neither a requested metric nor a dimension",
        ),
        (
            json!({"site_id": "a.com", "metrics": ["visitors"], "date_range": "day", "dimensions": ["time:day", "time:hour"]}),
            "one time dimension",
        ),
        (
            json!({"site_id": "a.com", "metrics": ["visitors"], "date_range": "day", "include": {"imports": true}}),
            "no imported data",
        ),
        (
            json!({"metrics": ["visitors"], "date_range": "day"}),
            "`site_id` is required",
        ),
    ] {
        let (status, answer) = post(body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let msg = answer["error"].as_str().unwrap();
        assert!(msg.contains(want), "{body}: {msg}");
    }

    // Country by day for Firefox or Safari users, outside /docs: nested filters.
    let (status, answer) = post(json!({
        "site_id": "a.com",
        "metrics": ["visitors", "pageviews", "events"],
        "date_range": [today, today],
        "dimensions": ["visit:country", "time:day"],
        "filters": [["or", [["is", "visit:browser", ["Firefox"]], ["is", "visit:browser", ["safari"], {"case_sensitive": false}]]],
                    ["not", ["contains", "event:page", ["docs"]]]],
        "order_by": [["visit:country", "asc"]],
        "include": {"total_rows": true, "time_labels": true}
    }))
    .await;
    assert_eq!(status, 200, "{answer}");
    let got: Vec<Vec<String>> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let d = r["dimensions"].as_array().unwrap();
            let m = r["metrics"].as_array().unwrap();
            [
                d[0].as_str().unwrap().to_string(),
                d[1].as_str().unwrap().to_string(),
            ]
            .into_iter()
            .chain(m.iter().map(Value::to_string))
            .collect()
        })
        .collect();
    let want = raw(
        &ch,
        "SELECT country_code AS c, toString(toDate(timestamp)), uniqExact(visitor_id), \
         countIf(name = 'pageview'), count() FROM events WHERE site = 'a.com' AND name != 'engagement' \
         AND browser IN ('Firefox', 'Safari') AND position(pathname, 'docs') = 0 \
         GROUP BY c, toDate(timestamp) ORDER BY c",
    );
    assert_eq!(got, want);
    assert_eq!(answer["meta"]["total_rows"], want.len());
    assert_eq!(answer["meta"]["time_labels"], json!([today]));
    assert_eq!(
        answer["query"]["dimensions"],
        json!(["visit:country", "time:day"])
    );

    // One dimension the aggregates hold: the same rows as v1's breakdown, paged.
    let (_, v1) = d
        .get_json(
            "/api/v1/stats/breakdown?site_id=a.com&period=day&property=visit:browser&metrics=visitors,pageviews",
            Some(TOKEN),
        )
        .await;
    let v1: Vec<Value> = v1["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"dimensions": [r["browser"]], "metrics": [r["visitors"], r["pageviews"]]}))
        .collect();
    let mut pages = Vec::new();
    for offset in [0, 2] {
        let (status, answer) = post(json!({
            "site_id": "a.com", "metrics": ["visitors", "pageviews"], "date_range": "day",
            "dimensions": ["visit:browser"], "pagination": {"limit": 2, "offset": offset}
        }))
        .await;
        assert_eq!(status, 200, "{answer}");
        pages.extend(answer["results"].as_array().unwrap().clone());
    }
    assert_eq!(pages, v1);

    // Totals and a time series without dimensions.
    let (_, answer) = post(json!({"site_id": "a.com", "metrics": ["visitors", "visits", "bounce_rate"], "date_range": "day"})).await;
    let want = raw(
        &ch,
        "SELECT uniqExactIf(visitor_id, name != 'engagement'), sum(visit_entry), \
         round(100 * sum(visit_bounce) / sum(visit_entry)) FROM events WHERE site = 'a.com'",
    );
    let got: Vec<String> = answer["results"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(got, want[0]);
    let (_, answer) = post(json!({"site_id": "a.com", "metrics": ["pageviews"], "date_range": "day", "dimensions": ["time"]})).await;
    let total: u64 = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"][0].as_u64().unwrap())
        .sum();
    assert_eq!(
        total.to_string(),
        raw(&ch, "SELECT countIf(name = 'pageview') FROM events")[0][0]
    );
}

/// Waits until the page says every panel loaded (after a short settle, so a refresh that just
/// started is not mistaken for the previous one).
async fn wait_ready(browser: &fantoccini::Client) {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let start = std::time::Instant::now();
    loop {
        let state = browser
            .execute("return document.body.dataset.state || ''", vec![])
            .await
            .unwrap();
        match state.as_str() {
            Some("ready") => break,
            Some("error") => {
                let msg = browser
                    .execute(
                        "return document.getElementById('error').textContent",
                        vec![],
                    )
                    .await
                    .unwrap();
                panic!("the page reported an error: {msg}");
            }
            _ => {}
        }
        assert!(
            start.elapsed().as_secs() < 20,
            "the page did not finish loading"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The v1 requests a data-pipeline connector makes (a daily time series with its visit
/// metrics, totals, and breakdowns with filters): every metric it names is in every row, as a
/// number or, for page engagement, null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_gets_every_metric_it_asks_for() {
    let ch = ClickHouse::start();
    let today = seed_known_traffic(&ch).await;
    let d = start(&ch, 0).await;
    let range = format!("period=custom&date={today},{today}");
    let sessions = "visitors,pageviews,bounce_rate,visit_duration,visits";
    for (path, rows_at) in [
        (
            format!("timeseries?site_id=a.com&{range}&metrics={sessions}"),
            true,
        ),
        (
            format!("timeseries?site_id=a.com&{range}&metrics={sessions}&interval=month"),
            true,
        ),
        (
            format!(
                "aggregate?site_id=a.com&{range}&metrics={sessions},views_per_visit,events&compare=previous_period"
            ),
            false,
        ),
        (
            format!("aggregate?site_id=a.com&{range}&metrics={sessions}&filters=visit:country==GB"),
            false,
        ),
        (
            format!("breakdown?site_id=a.com&{range}&property=visit:source&metrics={sessions}"),
            true,
        ),
        (
            format!(
                "breakdown?site_id=a.com&{range}&property=visit:country&metrics={sessions}&filters=event:page==/pricing"
            ),
            true,
        ),
        (
            format!(
                "breakdown?site_id=a.com&{range}&property=event:page&metrics=visitors,pageviews,scroll_depth,time_on_page&filters=visit:device!=tablet"
            ),
            true,
        ),
        (
            format!(
                "breakdown?site_id=a.com&{range}&property=event:goal&metrics=visitors,events,conversion_rate"
            ),
            true,
        ),
    ] {
        let (status, body) = d
            .get_json(&format!("/api/v1/stats/{path}"), Some(TOKEN))
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        let metrics: Vec<&str> = path
            .split("metrics=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .split(',')
            .collect();
        let rows: Vec<&Value> = if rows_at {
            body["results"].as_array().unwrap().iter().collect()
        } else {
            vec![&body["results"]]
        };
        assert!(!rows.is_empty(), "{path}");
        for row in rows {
            for m in &metrics {
                let v = if rows_at { &row[m] } else { &row[m]["value"] };
                let engagement = matches!(*m, "scroll_depth" | "time_on_page");
                assert!(
                    v.is_number() || (engagement && v.is_null()),
                    "{path}: {m} missing in {row}"
                );
            }
        }
    }
}

/// The rows of a dashboard panel as shown: the first `cells` cells of each.
async fn panel_rows(
    browser: &fantoccini::Client,
    property: &str,
    cells: usize,
) -> Vec<Vec<String>> {
    let js = format!(
        "return [...document.querySelectorAll('section[data-panel=\"{property}\"] tr')]\
         .slice(1).map(r => [...r.cells].slice(0, {cells}).map(c => c.textContent));"
    );
    serde_json::from_value(browser.execute(&js, vec![]).await.unwrap()).unwrap()
}

/// The error of a request the API must refuse with a 400.
async fn refused(d: &StatsApi, path: &str) -> String {
    let (status, body) = d.get_json(path, Some(TOKEN)).await;
    assert_eq!(status, 400, "{path}: {body}");
    body["error"].as_str().unwrap().to_string()
}
