//! The built-in dashboard: its stats API against the real server with known data, its token,
//! and the page in headless Chromium showing what ClickHouse holds (with a screenshot in
//! `target/artifacts/dashboard.png`).

use std::sync::Arc;

use glimpse::clock::Clock;
use glimpse::dashboard::{self, Dashboard};
use serde_json::Value;
use support::{Chromium, ClickHouse, seed_known_traffic};

const DB: &str = "glimpse";
const TOKEN: &str = "test-token-0123456789";

struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn start(ch: &ClickHouse, min_visitors: u32) -> Running {
    let mut cfg = support::test_config(ch, DB);
    // The dashboard reads as the read-only user dashboards are meant to get.
    let (user, password) = support::DASHBOARDS_USER;
    cfg.clickhouse.user = user.into();
    cfg.clickhouse.password = password.into();
    let (_, db) = glimpse::store::clients(&cfg.clickhouse);
    let app = Arc::new(Dashboard {
        db,
        token: TOKEN.into(),
        sites: cfg.sites.iter().map(|s| s.domain.clone()).collect(),
        min_visitors,
        clock: Clock::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dashboard::run(
        listener,
        async move {
            let _ = rx.await;
        },
        app,
        cfg.server,
    ));
    Running {
        url,
        stop: Some(tx),
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

fn raw(ch: &ClickHouse, sql: &str) -> Vec<Vec<String>> {
    ch.rows(DB, sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_api_answers_from_aggregates_behind_a_token() {
    let ch = ClickHouse::start();
    let today = seed_known_traffic(&ch).await;
    let d = start(&ch, 0).await;
    let api = |path: &str| format!("{}/api/v1/{path}", d.url);

    let (status, body) = get(&api("stats/aggregate?site_id=a.com"), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = get(
        &api("stats/aggregate?site_id=a.com"),
        Some("wrong-token-0123456"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = get(&api("stats/aggregate?site_id=evil.com"), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a configured site")
    );
    let (status, body) = get(
        &api("stats/aggregate?site_id=a.com&period=fortnight"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("`period`: unknown period \"fortnight\""),
        "{body}"
    );
    // Whatever Glimpse cannot answer is refused by name, never answered for everyone.
    for (path, names) in [
        (
            "stats/aggregate?site_id=a.com&filters=visit:country==GB",
            "`filters`",
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
            "stats/aggregate?site_id=a.com&metrics=conversion_rate",
            "conversion_rate is not available",
        ),
        (
            "stats/aggregate?site_id=a.com&compare=year_over_year",
            "`compare`",
        ),
        ("stats/timeseries?site_id=a.com&interval=week", "`interval`"),
        (
            "stats/breakdown?site_id=a.com&property=visit:country&metrics=bounce_rate",
            "bounce_rate is not available for the visit:country breakdown",
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
        let (status, body) = get(&api(path), Some(TOKEN)).await;
        assert_eq!(status, 400, "{path}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(names), "{path}: {msg}");
    }

    let all = "visitors,pageviews,events,visits,bounce_rate,visit_duration,views_per_visit";
    let (status, body) = get(
        &api(&format!(
            "stats/aggregate?site_id=a.com&period=day&metrics={all}&compare=previous_period"
        )),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let want = raw(
        &ch,
        "SELECT uniqExact(visitor_id), countIf(name = 'pageview'), countIf(name != 'pageview'), \
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
    let (_, body) = get(
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
    let (status, body) = get(
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
    let (_, body) = get(
        &api("stats/timeseries?site_id=a.com&period=day&metrics=pageviews"),
        Some(TOKEN),
    )
    .await;
    let hours = body["results"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert!(hours[0]["date"].as_str().unwrap().ends_with(" 00:00:00"));
    let sum: u64 = hours.iter().map(|h| h["pageviews"].as_u64().unwrap()).sum();
    assert_eq!(sum.to_string(), want[0][1]);

    let (_, body) = get(
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

    let (_, body) = get(
        &api("stats/breakdown?site_id=a.com&property=visit:entry_page"),
        Some(TOKEN),
    )
    .await;
    assert!(body["results"][0]["entry_page"].is_string(), "{body}");

    // Pages carry scroll depth (%) and time on page (s): the seeded visitors' last pages
    // reported (i+1)·20 % and (i+1)·3 s, one visit each.
    let (_, body) = get(
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
            ("/checkout".to_string(), pair("null", "null")),
            ("/docs".to_string(), pair("100", "15")),
            ("/pricing".to_string(), pair("40", "6")),
        ]
        .into_iter()
        .collect(),
        "{body}"
    );
    let (_, body) = get(&api("stats/revenue?site_id=a.com"), Some(TOKEN)).await;
    assert_eq!(body["results"][0]["revenue"], 37.5);
    let (_, body) = get(&api("stats/dropped?site_id=a.com"), Some(TOKEN)).await;
    assert_eq!(body["results"][0]["reason"], "http_client");
    let (status, _) = get(
        &api("stats/breakdown?site_id=a.com&property=visit:shoe_size"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400);

    // k-anonymity: with min_visitors = 3, no page under 3 visitors is shown by name.
    let k = start(&ch, 3).await;
    let (_, body) = get(
        &format!(
            "{}/api/v1/stats/breakdown?site_id=a.com&property=event:page",
            k.url
        ),
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
        let (status, body) = get(&format!("{}/api/v1/{path}", k.url), Some(TOKEN)).await;
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
        "SELECT uniqExact(visitor_id), countIf(name = 'pageview'), countIf(name != 'pageview'), \
         sum(visit_entry) FROM events WHERE site = 'a.com' AND name != 'engagement'",
    );
    let tiles: Vec<String> = serde_json::from_value(tiles).unwrap();
    assert_eq!(tiles, want[0]);
    let pages = browser
        .execute(
            "return [...document.querySelectorAll('section[data-panel=\"event:page\"] tr')]\
             .slice(1).map(r => [r.cells[0].textContent, r.cells[1].textContent]);",
            vec![],
        )
        .await
        .unwrap();
    let pages: Vec<Vec<String>> = serde_json::from_value(pages).unwrap();
    let want = raw(
        &ch,
        "SELECT pathname, uniqExact(visitor_id) AS v FROM events WHERE site = 'a.com' AND name != 'engagement' \
         GROUP BY pathname ORDER BY v DESC, countIf(name = 'pageview') DESC, pathname LIMIT 10",
    );
    assert_eq!(pages, want);
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

    let png = browser.screenshot().await.unwrap();
    let dir = support::repo_path("target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    browser.close().await.unwrap();
}
