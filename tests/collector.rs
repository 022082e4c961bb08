//! End-to-end: HTTP event in, anonymized rows and aggregates out, against a real ClickHouse.

use std::time::Duration;

use glimpse::anonymize::Salts;
use glimpse::clock::{Clock, SECS_PER_DAY, day_of};
use glimpse::store::{self, Layout, salts};
use support::{ClickHouse, Glimpse, UA_CHROME_WIN, UA_FIREFOX, UA_IPHONE, pageview, test_config};

const DB: &str = "glimpse";

fn visitor_ids(ch: &ClickHouse, filter: &str) -> Vec<String> {
    ch.rows(
        DB,
        &format!("SELECT visitor_id FROM events WHERE {filter} ORDER BY timestamp, site"),
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pageview_lands_with_the_right_enrichment() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let body = r#"{"n":"pageview","u":"https://www.a.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring&email=jo@x.io#plans","r":"https://www.google.com/search?q=private"}"#;
    let r = g.send(body, UA_IPHONE, "81.2.69.10").await;
    assert_eq!((r.status, r.body.as_str(), r.dropped), (202, "ok", None));
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    let custom = r#"{"n":"Signup","u":"https://a.com/register","d":"a.com","p":{"plan":"pro","seats":3},"revenue":{"amount":9.99,"currency":"EUR"},"i":false}"#;
    assert_eq!(
        g.send(custom, UA_CHROME_WIN, "2001:db8:1::5").await.status,
        202
    );
    g.stop().await;

    let rows = ch.rows(
        DB,
        "SELECT site, name, hostname, pathname, referrer, referrer_source, utm_source, utm_medium, utm_campaign, \
         country_code, region, browser, browser_version, os, device, interactive, visitor_id != 0 \
         FROM events WHERE name = 'pageview'",
    );
    let want = [
        "a.com",
        "pageview",
        "a.com",
        "/pricing",
        "google.com/search",
        "newsletter",
        "newsletter",
        "email",
        "spring",
        "GB",
        "England",
        "Safari",
        "17",
        "iPhone",
        "mobile",
        "1",
        "1",
    ];
    assert_eq!(rows, vec![want.map(String::from).to_vec()]);

    let rows = ch.rows(
        DB,
        "SELECT name, pathname, referrer, country_code, region, browser, os, device, interactive, \
         revenue_micros, revenue_currency, prop_keys, prop_values FROM events WHERE name = 'Signup'",
    );
    let want = [
        "Signup",
        "/register",
        "",
        "DE",
        "Berlin",
        "Chrome",
        "Windows 10",
        "desktop",
        "0",
        "9990000",
        "EUR",
        "['plan','seats']",
        "['pro','3']",
    ];
    assert_eq!(rows, vec![want.map(String::from).to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_unknown_sites_and_bad_input_are_not_recorded() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let page = pageview("https://a.com/");
    let cases = [
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "crawler",
        ),
        ("curl/8.5.0", "http_client"),
        ("python-requests/2.31.0", "http_client"),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
            "headless_browser",
        ),
        ("", "no_user_agent"),
    ];
    for (ua, reason) in cases {
        let r = g.send(&page, ua, "203.0.113.5").await;
        assert_eq!(
            (r.status, r.dropped.as_deref()),
            (202, Some(reason)),
            "{ua:?}"
        );
    }
    let r = g
        .send(&pageview("https://unknown.net/"), UA_FIREFOX, "203.0.113.5")
        .await;
    assert_eq!(
        (r.status, r.dropped.as_deref()),
        (202, Some("unknown_site"))
    );

    let r = g.send("{not json", UA_FIREFOX, "203.0.113.5").await;
    assert_eq!(r.status, 400);
    let err: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("not valid JSON"),
        "{}",
        r.body
    );
    let r = g
        .send(r#"{"n":"pageview"}"#, UA_FIREFOX, "203.0.113.5")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("missing field `u`"), "{}", r.body);

    assert_eq!(g.send(&page, UA_FIREFOX, "203.0.113.5").await.status, 202);
    let metrics = g.metrics().await;
    assert!(
        metrics.contains("glimpse_events_dropped_total{reason=\"http_client\"} 2"),
        "{metrics}"
    );
    g.stop().await;
    assert_eq!(
        ch.count(DB, "SELECT count() FROM events"),
        1,
        "only the real browser's page view is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_gets_unrelated_ids_per_site_and_per_day() {
    let ch = ClickHouse::start();
    let clock = Clock::default();
    let g = Glimpse::start_with_clock(test_config(&ch, DB), clock.clone()).await;
    let ip = "198.51.100.23";
    g.send(&pageview("https://a.com/"), UA_FIREFOX, ip).await;
    g.send(&pageview("https://b.org/"), UA_FIREFOX, ip).await;
    // One event for two sites records two rows, each with its own site's id.
    g.send(
        r#"{"n":"pageview","u":"https://a.com/x","d":"a.com,b.org"}"#,
        UA_FIREFOX,
        ip,
    )
    .await;
    g.send(&pageview("https://a.com/again"), UA_FIREFOX, ip)
        .await;

    // Next day: the keeper moves to tomorrow's salt.
    clock.advance(SECS_PER_DAY as i64);
    salts::refresh(&g.salts, &g.db, &Layout::single(DB), clock.now())
        .await
        .unwrap();
    g.send(&pageview("https://a.com/tomorrow"), UA_FIREFOX, ip)
        .await;
    g.stop().await;

    let a = visitor_ids(&ch, "site = 'a.com' AND pathname != '/tomorrow'");
    let b = visitor_ids(&ch, "site = 'b.org'");
    assert_eq!(a.len(), 3);
    assert!(
        a.iter().all(|id| *id == a[0]),
        "same site, same day, same id: {a:?}"
    );
    assert_eq!(b.len(), 2);
    assert!(b.iter().all(|id| *id == b[0]));
    assert_ne!(
        a[0], b[0],
        "same person on two sites must get unrelated ids"
    );
    let tomorrow = visitor_ids(&ch, "pathname = '/tomorrow'");
    assert_eq!(tomorrow.len(), 1);
    assert_ne!(tomorrow[0], a[0], "a new day gives a new id");
    assert_eq!(
        ch.count(DB, "SELECT uniqExact(toDate(timestamp)) FROM events"),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ip_address_or_user_agent_is_stored_anywhere() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let ua = format!("{UA_FIREFOX} GlimpseMarker/7391");
    let ips = ["203.0.113.77", "2001:db8:1::77", "81.2.69.77"];
    for ip in ips {
        for page in ["/", "/a?ip=x", "/b"] {
            let body = format!(
                r#"{{"n":"pageview","u":"https://a.com{page}","r":"https://ref.example/"}}"#
            );
            assert_eq!(g.send(&body, &ua, ip).await.status, 202);
        }
    }
    g.stop().await;
    assert_eq!(ch.count(DB, "SELECT count() FROM events"), 9);

    let tables = ch.rows(
        DB,
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View%'",
    );
    assert!(tables.len() >= 6, "{tables:?}");
    let mut needles: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
    needles.extend([
        "GlimpseMarker".into(),
        "rv:125.0".into(),
        "X11; Linux".into(),
        "203.0.113".into(),
        "2001:db8:1:".into(),
    ]);
    for t in tables {
        let dump = ch.sql(DB, &format!("SELECT * FROM `{}` FORMAT TSV", t[0]));
        for n in &needles {
            assert!(!dump.contains(n.as_str()), "table {} contains {n:?}", t[0]);
        }
    }
    // Aggregates: states are binary; compare the hex form too.
    for n in &needles {
        let hex: String = n.bytes().map(|b| format!("{b:02X}")).collect();
        for t in ["stats_hourly", "stats_daily"] {
            let dump = ch.sql(
                DB,
                &format!("SELECT hex(toString(tuple(*))) FROM {t} FORMAT TSV"),
            );
            assert!(!dump.contains(&hex), "{t} contains {n:?}");
        }
    }
}

/// Query strings, e-mail addresses and tokens smuggled into every stored string, however
/// encoded, reach no table, raw or aggregate; a site that keeps tokens keeps them, and nothing
/// else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_email_or_token_is_stored_anywhere() {
    let ch = ClickHouse::start();
    let mut cfg = test_config(&ch, DB);
    cfg.sites[1].redact_tokens = false;
    let g = Glimpse::start(cfg).await;
    let token = "3f9a1c0b7e2d4a6f8b1c3d5e7f9a0b2c";
    let pages = [
        "/reset%3Femail%3Dvictim%40example.com".to_string(),
        "/reset%253Femail%253Dvictim%2540example.com".to_string(),
        "/u/victim@example.com/inbox".to_string(),
        format!("/reset/{token}"),
        "/app;jsessionid=SECRET1".to_string(),
        "/#/callback?access_token=SECRET2".to_string(),
        "/#access_token=SECRET3".to_string(),
    ];
    for page in &pages {
        for site in ["a.com", "b.org"] {
            let body = serde_json::json!({
                "n": "pageview",
                "u": format!("https://user:SECRET4@{site}{page}?utm_source=victim%40example.com"),
                "r": format!("https://ref.example{page}"),
                "h": true,
            })
            .to_string();
            assert_eq!(g.send(&body, UA_FIREFOX, "203.0.113.80").await.status, 202);
        }
    }
    let outbound = serde_json::json!({
        "n": "Outbound Link: Click",
        "u": "https://a.com/",
        "p": {"url": "https://user:SECRET5@out.example/x?token=SECRET6", "who": "victim@example.com"},
    })
    .to_string();
    assert_eq!(
        g.send(&outbound, UA_FIREFOX, "203.0.113.80").await.status,
        202
    );
    // A lower-case session id in a campaign tag, the traffic source and a property: a token
    // for a.com, kept by b.org, which turned token redaction off.
    let session = "k3j9x0qa7m2v8w1z5b6n4c0p9r7t2y1u";
    for site in ["a.com", "b.org"] {
        let body = serde_json::json!({
            "n": "Signup",
            "u": format!("https://{site}/?ref={session}&utm_campaign=c.{session}"),
            "p": {"session": session},
        })
        .to_string();
        assert_eq!(g.send(&body, UA_FIREFOX, "203.0.113.80").await.status, 202);
    }
    g.stop().await;
    assert_eq!(ch.count(DB, "SELECT count() FROM events"), 17);
    let tagged = |site: &str| {
        ch.rows(
            DB,
            &format!(
                "SELECT referrer_source, utm_campaign, prop_values[1] FROM events \
                 WHERE site = '{site}' AND name = 'Signup'"
            ),
        )
    };
    assert_eq!(tagged("a.com"), [["(token)", "c.(token)", "(token)"]]);
    let c = format!("c.{session}");
    assert_eq!(tagged("b.org"), [[session, c.as_str(), session]]);

    // Every string column of every table, raw and aggregate.
    let columns = ch.rows(
        DB,
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() \
         AND type LIKE '%String%' AND type NOT LIKE 'AggregateFunction%' AND table NOT IN ('glimpse_salts', 'glimpse_migrations')",
    );
    assert!(columns.len() >= 20, "{columns:?}");
    for col in &columns {
        let (table, column) = (&col[0], &col[1]);
        let sql = format!("SELECT DISTINCT toString(`{column}`) FROM `{table}` FORMAT TSV");
        let values = ch.sql(DB, &sql);
        for bad in ["victim", "SECRET", "@", "?", "access_token", "jsessionid"] {
            assert!(
                !values.contains(bad),
                "{table}.{column} holds {bad:?}:\n{values}"
            );
        }
    }
    let paths = |site: &str| {
        ch.rows(
            DB,
            &format!(
                "SELECT DISTINCT pathname FROM events WHERE site = '{site}' ORDER BY pathname"
            ),
        )
        .concat()
    };
    let a = paths("a.com");
    assert!(a.contains(&"/reset".to_string()), "{a:?}");
    assert!(a.contains(&"/u/(email)/inbox".to_string()), "{a:?}");
    assert!(a.contains(&"/reset/(token)".to_string()), "{a:?}");
    assert!(a.contains(&"/#/callback".to_string()), "{a:?}");
    assert!(!a.concat().contains(token), "{a:?}");
    let b = paths("b.org");
    assert!(
        b.contains(&format!("/reset/{token}")),
        "b.org keeps tokens: {b:?}"
    );
    let props = ch.rows(
        DB,
        "SELECT prop_values FROM events WHERE name = 'Outbound Link: Click'",
    );
    assert_eq!(props, [["['https://out.example/x','(email)']"]]);
}

/// A flood of unique values (paths, event names, property values, host names) from one client:
/// without a bound every one becomes an aggregate row that is kept forever; with
/// `limits.values_per_day` the long tail is stored as "(other)" and counted, and the aggregate
/// tables stop growing. Prints both measurements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_value_flood_is_bounded_per_site_and_day() {
    let ch = ClickHouse::start();
    let mut measured = Vec::new();
    for (db, per_day) in [("glimpse_unbounded", 10_000_000), ("glimpse_bounded", 50)] {
        let mut cfg = test_config(&ch, db);
        cfg.limits.values_per_day = per_day;
        let g = Glimpse::start(cfg).await;
        for n in 0..400 {
            let body = if n % 2 == 0 {
                serde_json::json!({"n": "pageview", "u": format!("https://x{n}.a.com/flood/{n}"), "d": "a.com"})
            } else {
                serde_json::json!({"n": format!("ev{n}"), "u": "https://a.com/", "p": {"k": format!("v{n}")}})
            };
            let r = g.send(&body.to_string(), UA_FIREFOX, "203.0.113.90").await;
            assert_eq!((r.status, r.dropped), (202, None), "{body}");
        }
        // A value seen before the bound was reached is still stored by name.
        let again =
            serde_json::json!({"n": "pageview", "u": "https://x0.a.com/flood/0", "d": "a.com"});
        let again = g.send(&again.to_string(), UA_FIREFOX, "203.0.113.90").await;
        assert_eq!((again.status, again.dropped), (202, None));
        let metrics = g.metrics().await;
        g.stop().await;
        assert_eq!(
            ch.count(db, "SELECT count() FROM events"),
            401,
            "every event is stored"
        );
        for t in ["stats_daily", "props_daily"] {
            ch.sql(db, &format!("OPTIMIZE TABLE {t} FINAL"));
        }
        let keys = ch.count(
            db,
            "SELECT (SELECT count() FROM stats_daily) + (SELECT count() FROM props_daily)",
        );
        let bytes = ch.count(
            db,
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() \
             AND active AND table IN ('stats_daily', 'props_daily')",
        );
        let pages = ch.count(
            db,
            "SELECT uniqExact(value) FROM stats_daily WHERE dimension = 'page'",
        );
        measured.push((db, keys, bytes, pages, metrics));
    }
    let (_, keys_free, bytes_free, pages_free, _) = &measured[0];
    let (_, keys_bound, bytes_bound, pages_bound, metrics) = &measured[1];
    println!(
        "unique-value flood of 400 events: {keys_free} aggregate rows ({bytes_free} bytes) \
         unbounded, {keys_bound} rows ({bytes_bound} bytes) with 50 values per site, day and \
         dimension"
    );
    assert!(*pages_free >= 200, "{pages_free}");
    // 50 pages by name and (other); one of the 50 is "/", whose events here are custom events,
    // which the page dimension does not count.
    assert_eq!(*pages_bound, 50, "49 viewed pages by name and (other)");
    assert!(keys_bound * 3 < *keys_free, "{keys_bound} vs {keys_free}");
    let folded = support::metric(metrics, "glimpse_values_folded");
    assert!(folded >= 150.0, "{folded}");
    let stored_again = ch.count(
        "glimpse_bounded",
        "SELECT count() FROM events WHERE pathname = '/flood/0'",
    );
    assert_eq!(stored_again, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_match_raw_counts() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let uas = [UA_FIREFOX, UA_IPHONE, UA_CHROME_WIN];
    let ips = [
        "81.2.69.1",
        "203.0.113.2",
        "198.51.100.3",
        "2001:db8:1::4",
        "192.0.2.5",
        "10.9.9.9",
    ];
    let pages = ["/", "/pricing", "/blog/one", "/blog/two"];
    let mut sent = 0;
    for (i, ip) in ips.iter().enumerate() {
        for (j, page) in pages.iter().enumerate() {
            let ua = uas[(i + j) % uas.len()];
            let referrer = ["", "https://news.ycombinator.com/", "https://t.co/x"][(i * j) % 3];
            let body = format!(
                r#"{{"n":"pageview","u":"https://a.com{page}?utm_source=s{j}","r":"{referrer}"}}"#
            );
            assert_eq!(g.send(&body, ua, ip).await.status, 202);
            sent += 1;
            if j % 2 == 0 {
                let body = format!(r#"{{"n":"Download","u":"https://b.org{page}"}}"#);
                assert_eq!(g.send(&body, ua, ip).await.status, 202);
                sent += 1;
            }
        }
    }
    g.stop().await;
    assert_eq!(ch.count(DB, "SELECT count() FROM events"), sent);

    let raw = ch.rows(
        DB,
        "SELECT site, countIf(name = 'pageview'), countIf(name != 'pageview'), uniqExact(visitor_id) \
         FROM events GROUP BY site ORDER BY site",
    );
    let agg = ch.rows(
        DB,
        "SELECT site, sumMerge(pageviews), sumMerge(events), uniqMerge(visitors) \
         FROM stats_hourly GROUP BY site ORDER BY site",
    );
    assert_eq!(raw, agg);
    assert_eq!(raw.len(), 2);

    for (dimension, column) in [
        ("page", "pathname"),
        ("country", "country_code"),
        ("browser", "browser"),
        ("device", "device"),
        ("source", "referrer_source"),
        ("utm_source", "utm_source"),
        ("os", "os"),
        (
            "region",
            "if(region = '', '', concat(country_code, '-', region))",
        ),
    ] {
        let raw = ch.rows(
            DB,
            &format!(
                "SELECT site, {column} AS v, countIf(name = 'pageview'), countIf(name != 'pageview'), uniqExact(visitor_id) \
                 FROM events WHERE name = 'pageview' OR '{dimension}' != 'page' \
                 GROUP BY site, v ORDER BY site, v"
            ),
        );
        let agg = ch.rows(
            DB,
            &format!(
                "SELECT site, value, sumMerge(pageviews), sumMerge(events), uniqMerge(visitors) FROM stats_daily \
                 WHERE dimension = '{dimension}' GROUP BY site, value ORDER BY site, value"
            ),
        );
        assert_eq!(raw, agg, "dimension {dimension}");
    }
    let countries = ch.rows(
        DB,
        "SELECT DISTINCT value FROM stats_daily WHERE dimension = 'country' ORDER BY value",
    );
    assert_eq!(countries.concat(), ["", "DE", "FR", "GB", "JP", "US"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_todays_salt_and_collectors_share_it() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    g.send(&pageview("https://a.com/first"), UA_FIREFOX, "203.0.113.9")
        .await;
    g.stop().await;

    let g = Glimpse::start(test_config(&ch, DB)).await;
    let mut second = test_config(&ch, DB);
    second.spool.dir = ch.spool_dir("second-collector");
    let other = Glimpse::start(second).await;
    g.send(&pageview("https://a.com/second"), UA_FIREFOX, "203.0.113.9")
        .await;
    other
        .send(&pageview("https://a.com/third"), UA_FIREFOX, "203.0.113.9")
        .await;
    g.stop().await;
    other.stop().await;
    let ids = visitor_ids(&ch, "1");
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        ch.count(DB, "SELECT count() FROM glimpse_salts"),
        2,
        "today and tomorrow, created once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_collectors_agree_on_one_salt_per_day_from_the_start() {
    let ch = ClickHouse::start();
    let cfg = test_config(&ch, DB);
    let (server, db) = store::clients(&cfg.clickhouse);
    let version = store::server_version(&server).await.unwrap();
    let layout = Layout::single(DB);
    store::migrate(&server, &db, &layout, version)
        .await
        .unwrap();
    let now = Clock::default().now();
    // Eight collectors create the first salts at once, each through its own connections.
    let keepers: Vec<std::sync::Arc<Salts>> = (0..8).map(|_| Default::default()).collect();
    let refreshes: Vec<_> = keepers
        .iter()
        .map(|k| {
            let (k, (_, db), layout) = (k.clone(), store::clients(&cfg.clickhouse), layout.clone());
            tokio::spawn(async move { salts::refresh(&k, &db, &layout, now).await })
        })
        .collect();
    for r in refreshes {
        r.await.unwrap().unwrap();
    }
    // With no second refresh, all use the same salt: one was created per day.
    let today = day_of(now);
    let ip = "203.0.113.1".parse().unwrap();
    let id = |s: &Salts| {
        glimpse::anonymize::visitor_id(s.load().get(today).unwrap(), "a.com", ip, UA_FIREFOX)
    };
    assert!(keepers.iter().all(|k| id(k) == id(&keepers[0])));
    let per_day = format!(
        "SELECT toUInt16(day) - {today}, count() FROM glimpse_salts GROUP BY day ORDER BY day"
    );
    assert_eq!(ch.rows(DB, &per_day), [["0", "1"], ["1", "1"]]);
    assert_eq!(
        ch.count(
            DB,
            "SELECT count() FROM system.tables WHERE name = 'glimpse_salt_lock'"
        ),
        0,
        "the lock is released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salts_are_destroyed_within_48_hours() {
    let ch = ClickHouse::start();
    let cfg = test_config(&ch, DB);
    let (server, db) = store::clients(&cfg.clickhouse);
    let version = store::server_version(&server).await.unwrap();
    store::migrate(&server, &db, &Layout::single(DB), version)
        .await
        .unwrap();
    let today = day_of(Clock::default().now());
    for day in [today - 3, today - 2, today - 1] {
        salts::insert(&db, day, &glimpse::anonymize::Salt::random())
            .await
            .unwrap();
    }
    let days = || {
        ch.rows(
            DB,
            "SELECT DISTINCT toUInt16(day) FROM glimpse_salts ORDER BY day",
        )
        .concat()
    };
    let keeper = Salts::default();
    let midnight = u64::from(today) * SECS_PER_DAY;

    // 01:00: yesterday's salt began 25 h ago and stays; older ones go.
    salts::refresh(&keeper, &db, &Layout::single(DB), midnight + 3600)
        .await
        .unwrap();
    assert_eq!(days(), [today - 1, today, today + 1].map(|d| d.to_string()));
    // 23:00: yesterday's began 47 h ago, so it is destroyed before the 48 h mark.
    salts::refresh(&keeper, &db, &Layout::single(DB), midnight + 23 * 3600)
        .await
        .unwrap();
    assert_eq!(days(), [today, today + 1].map(|d| d.to_string()));
    // Gone from the table's parts too, not only hidden.
    let parts = ch.count(
        DB,
        &format!(
            "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'glimpse_salts' \
             AND active AND partition_id < '{}'",
            glimpse::clock::date_string(today).replace('-', "")
        ),
    );
    assert_eq!(parts, 0);
    assert_eq!(
        keeper.load().days(),
        [today, today + 1],
        "memory holds only today and tomorrow"
    );
}

/// A salt past its lifetime is destroyed at start-up before anything else, and a salt in
/// memory is forgotten at its time even when ClickHouse cannot be reached to replace it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_salts_go_at_start_up_and_from_memory_without_clickhouse() {
    let mut ch = ClickHouse::start();
    let cfg = test_config(&ch, DB);
    let (server, db) = store::clients(&cfg.clickhouse);
    let version = store::server_version(&server).await.unwrap();
    store::migrate(&server, &db, &Layout::single(DB), version)
        .await
        .unwrap();
    let today = day_of(Clock::default().now());
    for day in [today - 5, today - 2] {
        salts::insert(&db, day, &glimpse::anonymize::Salt::random())
            .await
            .unwrap();
    }
    // A collector left down for days starts: the old salts are gone once it serves.
    let clock = Clock::default();
    let g = Glimpse::start_with_clock(cfg, clock.clone()).await;
    let days = ch
        .rows(
            DB,
            "SELECT DISTINCT toUInt16(day) FROM glimpse_salts ORDER BY day",
        )
        .concat();
    assert_eq!(days, [today, today + 1].map(|d| d.to_string()));

    // ClickHouse goes away for three days: refreshes fail, yet today's and tomorrow's salts
    // leave memory once their lifetime is over, and events are refused rather than hashed.
    ch.kill();
    clock.advance(3 * SECS_PER_DAY as i64);
    let now = clock.now();
    assert!(
        salts::keep(&g.salts, &g.db, &Layout::single(DB), now)
            .await
            .is_err(),
        "ClickHouse is down"
    );
    assert!(
        g.salts.load().days().is_empty(),
        "{:?}",
        g.salts.load().days()
    );
    let r = g
        .send(&pageview("https://a.com/"), UA_FIREFOX, "198.51.100.9")
        .await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("salt"), "{}", r.body);
    let abort = tokio::time::timeout(Duration::from_secs(1), g.stop()).await;
    drop(abort);
}

/// A ClickHouse that hangs (it keeps connections open and never answers) leaves the salt
/// refresh waiting; salts still leave memory at the end of their lifetime, on their own timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salts_leave_memory_on_time_while_clickhouse_hangs() {
    let ch = ClickHouse::start();
    let clock = Clock::default();
    let g = Glimpse::start_with_clock(test_config(&ch, DB), clock.clone()).await;
    assert_eq!(g.salts.load().days().len(), 2, "today's and tomorrow's");
    ch.pause();
    let refresh = {
        let (salts, db, now) = (g.salts.clone(), g.db.clone(), clock.now());
        tokio::spawn(async move { salts::keep(&salts, &db, &Layout::single(DB), now).await })
    };
    clock.advance(3 * SECS_PER_DAY as i64);
    let start = std::time::Instant::now();
    while !g.salts.load().days().is_empty() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = g.salts.load().days();
    assert!(
        !refresh.is_finished(),
        "the refresh is still waiting for ClickHouse"
    );
    ch.resume();
    assert!(
        left.is_empty(),
        "salts past their lifetime still in memory: {left:?}"
    );
    let r = g
        .send(&pageview("https://a.com/"), UA_FIREFOX, "198.51.100.9")
        .await;
    assert_eq!(r.status, 503);
    let _ = tokio::time::timeout(Duration::from_secs(5), g.stop()).await;
}

/// In aggregates-only mode, 48 hours after a day began no table holds a visitor hash: the day's
/// sketches were deleted once its exact copy added up, its salt is destroyed, and no raw event
/// was stored. The copies still answer the dashboards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_visitor_hash_outlives_48_hours_in_aggregates_only_mode() {
    let ch = ClickHouse::start();
    let mut cfg = test_config(&ch, DB);
    cfg.retention.events_days = 0;
    let clock = Clock::default();
    let g = Glimpse::start_with_clock(cfg, clock.clone()).await;
    let day = day_of(clock.now());
    for (i, ua) in [UA_FIREFOX, UA_IPHONE, UA_CHROME_WIN].iter().enumerate() {
        let body = r#"{"n":"Signup","u":"https://a.com/pricing","p":{"plan":"pro"}}"#;
        assert_eq!(
            g.send(&pageview("https://a.com/"), ua, &format!("81.2.69.{i}"))
                .await
                .status,
            202
        );
        assert_eq!(g.send(body, ua, &format!("81.2.69.{i}")).await.status, 202);
    }
    let (_, db) = store::clients(&test_config(&ch, DB).clickhouse);
    // The views are written one after another: wait for every sketch table.
    ch.wait_count(
        DB,
        "SELECT least(least((SELECT sumMerge(pageviews) FROM stats_daily WHERE dimension = 'device'), \
         (SELECT sumMerge(pageviews) FROM stats_hourly)), (SELECT sumMerge(events) FROM props_daily))",
        3,
    );
    let visitors = "SELECT uniqMerge(visitors) FROM stats_hourly";
    assert_eq!(ch.count(DB, visitors), 3);

    // Two days later.
    clock.advance(2 * SECS_PER_DAY as i64);
    let now = clock.now();
    let closed = store::closing::close_days(&db, &Layout::single(DB), clock.now_millis())
        .await
        .unwrap();
    assert_eq!(closed.len(), 1, "{closed:?}");
    salts::keep(&g.salts, &g.db, &Layout::single(DB), now)
        .await
        .unwrap();
    let sketch_rows = "SELECT (SELECT count() FROM stats_hourly) + (SELECT count() FROM stats_daily) \
                       + (SELECT count() FROM props_daily)";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ch.count(DB, sketch_rows) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ch.count(DB, sketch_rows),
        0,
        "the day's sketches are deleted"
    );
    assert_eq!(
        ch.count(DB, "SELECT count() FROM events"),
        0,
        "no raw events"
    );
    let salt_days = ch
        .rows(DB, "SELECT DISTINCT toUInt16(day) FROM glimpse_salts")
        .concat();
    assert!(!salt_days.contains(&day.to_string()), "{salt_days:?}");
    // Nothing else holds a per-visitor value: every column of type AggregateFunction(uniq...)
    // is empty, and no column is named like a visitor id outside those.
    let uniq_columns = ch.rows(
        DB,
        "SELECT table, name FROM system.columns WHERE database = currentDatabase() \
         AND (type LIKE '%uniq%' OR name LIKE '%visitor_id%')",
    );
    for col in uniq_columns {
        let rows = ch.count(DB, &format!("SELECT count() FROM `{}`", col[0]));
        assert_eq!(rows, 0, "{}.{} still holds rows", col[0], col[1]);
    }
    // The exact copies answer.
    let copied = ch.count(
        DB,
        &format!(
            "SELECT argMax(visitors, generation) FROM closed_days WHERE day = toDate('{}')",
            glimpse::clock::date_string(day)
        ),
    );
    assert_eq!(copied, 3);
    let props = ch.count(DB, "SELECT sum(visitors) FROM props_daily_closed");
    assert_eq!(props, 3);
    let abort = tokio::time::timeout(Duration::from_secs(1), g.stop()).await;
    drop(abort);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_recorded() {
    let ch = ClickHouse::start();
    let cfg = test_config(&ch, DB);
    let (server, db) = store::clients(&cfg.clickhouse);
    let version = store::server_version(&server).await.unwrap();
    let first = store::migrate(&server, &db, &Layout::single(DB), version)
        .await
        .unwrap();
    assert_eq!(first.len(), store::schema::MIGRATIONS.len());
    let second = store::migrate(&server, &db, &Layout::single(DB), version)
        .await
        .unwrap();
    assert!(second.is_empty());
    // Starting a collector re-runs migrations and retention on the same database.
    Glimpse::start(cfg.clone()).await.stop().await;
    let tables = ch.sql(
        DB,
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
    );
    assert!(tables.contains("events_raw_mv"));
    Glimpse::start(cfg).await.stop().await;
    assert_eq!(
        ch.sql(
            DB,
            "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"
        ),
        tables
    );
    assert_eq!(
        ch.count(DB, "SELECT count() FROM glimpse_migrations"),
        store::schema::MIGRATIONS.len() as u64
    );
}

/// Upgrading a database that has data: migration 0007 rebuilds the sketch tables, keeping every
/// aggregate, and the views (recreated by 0009) then write into the rebuilt tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_closed_days_keeps_the_aggregates() {
    let ch = ClickHouse::start();
    let cfg = test_config(&ch, DB);
    let (server, db) = store::clients(&cfg.clickhouse);
    let version = store::server_version(&server).await.unwrap();
    let (before, rest) = store::schema::MIGRATIONS.split_at(6);
    assert_eq!(rest[0].0, "0007_closed_days.sql");
    store::migrate_with(&server, &db, &Layout::single(DB), version, before)
        .await
        .unwrap();
    let insert = |offset: u64| {
        format!(
            "INSERT INTO events_in (timestamp, site, name, pathname, country_code, visitor_id) \
             SELECT toDateTime(1795000000 + number * 600), if(number % 3 = 0, 'b.org', 'a.com'), \
             if(number % 5 = 0, 'Signup', 'pageview'), concat('/p', toString(number % 7)), \
             'DE', number % 97 FROM system.numbers LIMIT 1000 OFFSET {offset}"
        )
    };
    ch.sql(DB, &insert(0));
    let snapshot = |ch: &ClickHouse| {
        (
            ch.rows(
                DB,
                "SELECT site, hour, sumMerge(pageviews), sumMerge(events), \
                 uniqMerge(visitors) FROM stats_hourly GROUP BY site, hour ORDER BY site, hour",
            ),
            ch.rows(
                DB,
                "SELECT site, day, dimension, value, sumMerge(pageviews), sumMerge(events), \
                 uniqMerge(visitors) FROM stats_daily GROUP BY site, day, dimension, value \
                 ORDER BY site, day, dimension, value",
            ),
        )
    };
    let old = snapshot(&ch);
    assert!(old.0.len() > 100 && old.1.len() > 100);
    let ran = store::migrate(&server, &db, &Layout::single(DB), version)
        .await
        .unwrap();
    assert_eq!(
        ran,
        [
            "0007_closed_days.sql",
            "0008_sketches_deleted.sql",
            "0009_engagement.sql",
            "0010_page_views_by_page.sql",
            "0011_daily_rollup.sql",
            "0012_intake.sql",
            "0013_visitor_days.sql",
            "0014_visit_pages_views.sql",
        ]
    );
    assert_eq!(snapshot(&ch), old, "every aggregate survives the rebuild");
    let leftovers = "SELECT count() FROM system.tables WHERE database = currentDatabase() \
                     AND (name LIKE '%_rebuild' OR name LIKE '%_0002')";
    assert_eq!(ch.count(DB, leftovers), 0);
    // New rows reach the rebuilt tables through the old views.
    ch.sql(DB, &insert(1000));
    assert_eq!(
        ch.count(
            DB,
            "SELECT sumMerge(pageviews) + sumMerge(events) FROM stats_hourly"
        ),
        2000
    );
    assert_eq!(
        ch.count(
            DB,
            "SELECT sumMerge(pageviews) FROM stats_daily WHERE dimension = 'country'"
        ),
        1600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_table_matches_the_row_encoder() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    g.stop().await;
    let want: Vec<(String, String)> = glimpse::encode::COLUMNS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    // Both insert tables: rows of every format go to one of them.
    for table in [
        store::schema::INSERT_TABLE,
        store::schema::LEGACY_INSERT_TABLE,
    ] {
        let live: Vec<(String, String)> = ch
            .rows(DB, &format!("DESCRIBE TABLE {table}"))
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        assert_eq!(live, want, "{table}");
    }
}

/// Entry and exit pages counted by the three plain views over the insert table (migration
/// 0014) are exactly what the single view they replaced counted of the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visit_pages_of_the_plain_views_equal_the_array_join_view() {
    let ch = ClickHouse::start();
    support::seed_known_traffic(&ch).await;
    assert_eq!(
        ch.count(
            DB,
            "SELECT count() FROM system.tables WHERE database = currentDatabase() \
             AND name = 'visit_pages_daily_intake_mv'"
        ),
        0,
        "the migration dropped the old view"
    );
    let view = ch.replay_events_through_view(
        DB,
        "0012_intake.sql",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS visit_pages_daily_intake_mv TO visit_pages_daily AS",
        "events_intake",
        "visit_pages_daily",
    );
    assert!(view.contains("ARRAY JOIN"), "{view}");
    let pages = |table: &str| {
        ch.rows(
            DB,
            &format!(
                "SELECT site, day, kind, page, sumMerge(visits) AS n FROM {table} \
                 GROUP BY site, day, kind, page HAVING n != 0 ORDER BY site, day, kind, page"
            ),
        )
    };
    let (plain, joined) = (pages("visit_pages_daily"), pages("check_visit_pages_daily"));
    assert_eq!(plain, joined);
    // Entries and exits both, and exits that moved on to a later page.
    assert!(plain.iter().any(|r| r[2] == "entry"), "{plain:?}");
    assert!(plain.iter().any(|r| r[2] == "exit"), "{plain:?}");
    let exits = ch.count(
        DB,
        "SELECT sumMerge(visits) FROM visit_pages_daily WHERE kind = 'exit'",
    );
    let views = ch.count(DB, "SELECT count() FROM events WHERE name = 'pageview'");
    assert!(exits < views, "{exits} exits, {views} page views");
}

/// The daily stats the deliverer sums itself (`deliver::rollup`) are exactly what the server's
/// fan-out view, the one that counts rows of older collectors, makes of the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_stats_summed_by_the_collector_equal_the_fan_out_view() {
    let ch = ClickHouse::start();
    support::seed_known_traffic(&ch).await;
    // A copy of the fan-out view, as the migration defines it, over a second insert table.
    let view = ch.replay_events_through_view(
        DB,
        "0011_daily_rollup.sql",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS stats_daily_mv TO stats_daily AS",
        "events_in",
        "stats_daily",
    );
    assert!(view.contains("rolled_up = 0"), "{view}");
    let daily = |table: &str| {
        ch.rows(
            DB,
            &format!(
                "SELECT site, day, dimension, value, sumMerge(pageviews), sumMerge(events), \
                 uniqMerge(visitors) FROM {table} \
                 GROUP BY site, day, dimension, value ORDER BY site, day, dimension, value"
            ),
        )
    };
    let (summed, viewed) = (daily("stats_daily"), daily("check_stats_daily"));
    // Every dimension of the traffic has rows, custom events and page views alike.
    assert!(summed.len() > 40, "{summed:?}");
    for dim in [
        "page",
        "source",
        "utm_campaign",
        "browser_version",
        "os_version",
        "event",
    ] {
        assert!(summed.iter().any(|r| r[2] == dim), "no {dim} rows");
    }
    assert_eq!(summed, viewed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_only_mode_stores_no_raw_events() {
    let ch = ClickHouse::start();
    // Start with raw events kept, then switch to aggregates-only: old raw rows go too.
    let g = Glimpse::start(test_config(&ch, DB)).await;
    g.send(&pageview("https://a.com/before"), UA_FIREFOX, "203.0.113.1")
        .await;
    g.stop().await;
    assert_eq!(ch.count(DB, "SELECT count() FROM events"), 1);

    let mut cfg = test_config(&ch, DB);
    cfg.retention.events_days = 0;
    let g = Glimpse::start(cfg).await;
    assert_eq!(
        ch.count(DB, "SELECT count() FROM events"),
        0,
        "existing raw rows dropped"
    );
    for page in ["/x", "/y", "/z"] {
        assert_eq!(
            g.send(
                &pageview(&format!("https://a.com{page}")),
                UA_FIREFOX,
                "203.0.113.1"
            )
            .await
            .status,
            202
        );
    }
    g.stop().await;
    assert_eq!(ch.count(DB, "SELECT count() FROM events"), 0);
    assert_eq!(
        ch.count(DB, "SELECT sumMerge(pageviews) FROM stats_hourly"),
        4
    );
    assert_eq!(
        ch.count(
            DB,
            "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'events_raw_mv'"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_expired_days() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    g.stop().await;
    let now = Clock::default().now();
    for days_ago in [45u64, 31, 30, 29, 1, 0] {
        let ts = now - days_ago * SECS_PER_DAY;
        ch.sql(
            DB,
            &format!(
                "INSERT INTO events (timestamp, site, name) VALUES ({ts}, 'a.com', 'pageview')"
            ),
        );
        // The visitor days made from them hold daily visitor ids too, and go with them.
        ch.sql(
            DB,
            &format!(
                "INSERT INTO visitor_days (site, day, visitor_id) \
                 VALUES ('a.com', toDate(toDateTime({ts})), 7)"
            ),
        );
    }
    let (_, db) = store::clients(&test_config(&ch, DB).clickhouse);
    let version = store::server_version(&db).await.unwrap();
    let dropped = store::apply_retention(&db, &Layout::single(DB), version, 30, now)
        .await
        .unwrap();
    assert_eq!(dropped.len(), 3, "45, 31 and 30 days old");
    let left = ch.rows(
        DB,
        &format!("SELECT intDiv({now} - toUInt32(timestamp), 86400) AS d FROM events ORDER BY d"),
    );
    assert_eq!(left.concat(), ["0", "1", "29"]);
    let left = ch.rows(
        DB,
        &format!("SELECT intDiv({now} - toUInt32(toDateTime(day)), 86400) AS d FROM visitor_days ORDER BY d"),
    );
    assert_eq!(left.concat(), ["0", "1", "29"]);
}

/// `retention.aggregates_days` drops whole months of every aggregate table once their last day
/// is that old; 0 keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_retention_drops_whole_expired_months() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    g.stop().await;
    let now = Clock::default().now();
    let today = day_of(now);
    for days_ago in [400u16, 100, 0] {
        let day = glimpse::clock::date_string(today - days_ago);
        ch.sql(
            DB,
            &format!("INSERT INTO dropped_daily (site, day, reason, events) VALUES ('a.com', '{day}', 'crawler', 1)"),
        );
        ch.sql(
            DB,
            &format!("INSERT INTO closed_days (site, day, generation, pageviews, events, visitors) VALUES ('a.com', '{day}', 1, 1, 0, 1)"),
        );
    }
    let (_, db) = store::clients(&test_config(&ch, DB).clickhouse);
    assert!(
        store::apply_aggregate_retention(&db, &Layout::single(DB), 0, now)
            .await
            .unwrap()
            .is_empty()
    );
    let dropped = store::apply_aggregate_retention(&db, &Layout::single(DB), 60, now)
        .await
        .unwrap();
    let tables: std::collections::BTreeSet<&str> = dropped.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tables,
        ["closed_days", "dropped_daily"].into(),
        "{dropped:?}"
    );
    assert_eq!(dropped.len(), 4, "two months in each: {dropped:?}");
    for table in ["dropped_daily", "closed_days"] {
        let left = ch.count(DB, &format!("SELECT count() FROM {table}"));
        assert_eq!(left, 1, "{table} keeps this month");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_clickhouse() {
    let mut ch = ClickHouse::start();
    let client = support::browser_client();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    assert_eq!(
        client.get(g.url("/readyz")).send().await.unwrap().status(),
        200
    );
    // With ClickHouse gone, readiness says so and liveness does not care.
    ch.stop();
    let r = client.get(g.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        client.get(g.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let abort = tokio::time::timeout(Duration::from_secs(1), g.stop()).await;
    drop(abort);
}

/// Rows are sent as Native blocks (`deliver::native`): whatever the rows hold, the server reads
/// back exactly the RowBinary rows they were made from, for every row format of the spool and
/// for the daily rollup's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_blocks_are_read_back_as_the_rows_they_were_made_from() {
    use glimpse::deliver::insert;

    let ch = ClickHouse::start();
    ch.sql("default", &format!("CREATE DATABASE IF NOT EXISTS {DB}"));
    let cfg = test_config(&ch, DB);
    let (_, db) = store::clients(&cfg.clickhouse);
    for (case, columns) in support::insert_column_lists() {
        let rows = support::varied_rows(columns, 3_000);
        let (names, defs) = support::column_sql(columns);
        ch.sql(DB, "DROP TABLE IF EXISTS native_check");
        ch.sql(
            DB,
            &format!("CREATE TABLE native_check ({defs}) ENGINE = Memory"),
        );
        let blocks =
            glimpse::deliver::native::blocks(&rows, columns, glimpse::deliver::native::BLOCK_BYTES)
                .count();
        assert!(blocks > 3, "{case}: {blocks} blocks");
        let sql = format!("INSERT INTO native_check ({names}) FORMAT Native");
        insert::insert_rows(&db, &sql, &rows, columns)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        let back = db
            .query(&format!(
                "SELECT {names} FROM native_check SETTINGS max_threads = 1"
            ))
            .fetch_bytes("RowBinary")
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(back.len(), rows.len(), "{case}");
        assert!(back == rows, "{case}: the rows read back differ");
    }
}

/// The modern engine reads the same Native blocks back as the same rows.
#[test]
fn native_blocks_are_read_by_the_modern_engine() {
    const SCRIPT: &str = r#"
import sys
from chdb import session
defs, names, path = sys.argv[1:4]
s = session.Session()
s.query("CREATE DATABASE IF NOT EXISTS c")
s.query(f"CREATE TABLE c.t ({defs}) ENGINE = Memory")
s.query(f"INSERT INTO c.t ({names}) FROM INFILE '{path}' FORMAT Native")
sys.stdout.buffer.write(s.query(f"SELECT {names} FROM c.t SETTINGS max_threads = 1", "RowBinary").bytes())
"#;
    let dir = tempfile::tempdir().unwrap();
    for (case, columns) in support::insert_column_lists() {
        let rows = support::varied_rows(columns, 3_000);
        let blocks: Vec<Vec<u8>> =
            glimpse::deliver::native::blocks(&rows, columns, glimpse::deliver::native::BLOCK_BYTES)
                .collect::<Result<_, _>>()
                .unwrap();
        assert!(blocks.len() > 3, "{case}");
        let path = dir.path().join("blocks.native");
        std::fs::write(&path, blocks.concat()).unwrap();
        let (names, defs) = support::column_sql(columns);
        let back = support::chdb(SCRIPT, &[&defs, &names, path.to_str().unwrap()]);
        assert_eq!(back.len(), rows.len(), "{case}");
        assert!(back == rows, "{case}: the rows read back differ");
    }
}
