//! The beacon in a real browser: headless Chromium loads a test site that embeds
//! `/js/glimpse.js`; assertions read what reached ClickHouse.

use std::time::Duration;

use support::{BROWSER_UA, Chromium, ClickHouse, Glimpse, TestSite, test_config};

const DB: &str = "glimpse";

/// The test page: the documented embed snippet, plus the pre-load queue and an outbound link.
fn page(glimpse_port: u16, other_port: u16) -> impl Fn(&str) -> String + Send + Sync + 'static {
    move |_path| {
        format!(
            r#"<!doctype html><html><head><title>Test site</title>
<script>window.__sent=[];const f=window.fetch;window.fetch=function(u,o){{window.__sent.push(String(o&&o.body));return f.apply(this,arguments)}};</script>
<script>window.glimpse=window.glimpse||function(){{(window.glimpse.q=window.glimpse.q||[]).push(arguments)}};
glimpse('Signup',{{props:{{plan:'pro'}},revenue:{{amount:9.99,currency:'EUR'}}}});</script>
<script defer data-domain="a.com" data-local data-allow-automation data-outbound
  src="http://127.0.0.1:{glimpse_port}/js/glimpse.js"></script>
</head><body>
<a id="out" href="http://localhost:{other_port}/elsewhere?x=1" target="_blank">elsewhere</a>
<a id="next" href="/next">next</a>
</body></html>"#
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_records_pageviews_spa_navigation_events_and_outbound_clicks() {
    // The browser's page views must fall on one UTC day to share one visitor id (below).
    tokio::time::sleep(support::wait_clear_of_midnight(Duration::from_secs(120))).await;
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let other = TestSite::start(|_| "<!doctype html><p>elsewhere</p>".to_owned()).await;
    let site = TestSite::start(page(g.addr.port(), other.port)).await;
    let referrer_page = TestSite::start({
        let target =
            site.url("/landing?utm_source=newsletter&utm_medium=email&utm_campaign=launch");
        move |_| format!(r#"<!doctype html><a id="go" href="{target}">go</a>"#)
    })
    .await;
    let chromium = Chromium::start();
    let browser = chromium.session().await;

    // Arrive from another site through a link, so document.referrer is set.
    browser
        .goto(&referrer_page.url("/ref").replace("127.0.0.1", "localhost"))
        .await
        .unwrap();
    browser
        .find(fantoccini::Locator::Id("go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    g.wait_accepted(2).await; // the landing page view and the queued Signup
    let ua: String = browser
        .execute("return navigator.userAgent", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .into();
    assert_eq!(ua, BROWSER_UA);

    // SPA navigation: a new path counts once; pushing or replacing the same path does not.
    browser
        .execute(
            "history.pushState({}, '', '/spa/one'); history.pushState({}, '', '/spa/one');
             history.replaceState({}, '', '/spa/one'); history.pushState({}, '', '/spa/two');",
            vec![],
        )
        .await
        .unwrap();
    // A custom event after load, non-interactive.
    browser
        .execute(
            "glimpse('Video Play', {props: {title: 'intro'}, interactive: false})",
            vec![],
        )
        .await
        .unwrap();
    // Outbound link (opens a new tab, so this page stays).
    browser
        .find(fantoccini::Locator::Id("out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The beacon itself sent the link without its query.
    let sent = browser
        .execute(
            "return window.__sent.filter(b => b.includes('Outbound'))",
            vec![],
        )
        .await
        .unwrap();
    let sent: Vec<String> = serde_json::from_value(sent).unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("/elsewhere\""), "{sent:?}");
    assert!(!sent[0].contains("x=1"), "{sent:?}");

    // Nothing stored in the browser, for the site or for the collector's origin.
    let storage = browser
        .execute(
            "return [document.cookie, localStorage.length, sessionStorage.length]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(storage, serde_json::json!(["", 0, 0]));
    assert!(browser.get_all_cookies().await.unwrap().is_empty());

    g.wait_accepted(6).await;
    browser.goto(&g.url("/healthz")).await.unwrap();
    assert!(
        browser.get_all_cookies().await.unwrap().is_empty(),
        "collector sets no cookie"
    );
    browser.close().await.unwrap();
    g.stop().await;

    let pages = ch.rows(
        DB,
        "SELECT pathname, count() FROM events WHERE name = 'pageview' GROUP BY pathname ORDER BY pathname",
    );
    let pages: Vec<(String, String)> = pages
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        pages,
        [("/landing", "1"), ("/spa/one", "1"), ("/spa/two", "1")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let landing = ch.rows(
        DB,
        "SELECT site, hostname, referrer_source, utm_source, utm_medium, utm_campaign, browser, device, os \
         FROM events WHERE pathname = '/landing' AND name = 'pageview'",
    );
    assert_eq!(
        landing,
        vec![
            [
                "a.com",
                "127.0.0.1",
                "newsletter",
                "newsletter",
                "email",
                "launch",
                "Chrome",
                "desktop",
                "Linux"
            ]
            .map(String::from)
            .to_vec()
        ]
    );
    let referrer = ch.rows(
        DB,
        "SELECT referrer FROM events WHERE pathname = '/landing' AND name = 'pageview'",
    );
    assert_eq!(
        referrer.concat(),
        ["localhost"],
        "cross-origin referrer is the origin only"
    );

    let signup = ch.rows(
        DB,
        "SELECT pathname, prop_keys, prop_values, revenue_micros, revenue_currency, interactive \
         FROM events WHERE name = 'Signup'",
    );
    assert_eq!(
        signup,
        vec![
            ["/landing", "['plan']", "['pro']", "9990000", "EUR", "1"]
                .map(String::from)
                .to_vec()
        ]
    );
    let video = ch.rows(
        DB,
        "SELECT prop_values, interactive FROM events WHERE name = 'Video Play'",
    );
    assert_eq!(video, vec![["['intro']", "0"].map(String::from).to_vec()]);
    let outbound = ch.rows(
        DB,
        "SELECT prop_keys, prop_values FROM events WHERE name = 'Outbound Link: Click'",
    );
    assert_eq!(outbound.len(), 1, "{outbound:?}");
    assert_eq!(outbound[0][0], "['url']");
    assert!(
        outbound[0][1].contains(&format!("localhost:{}/elsewhere", other.port)),
        "{outbound:?}"
    );
    assert!(!outbound[0][1].contains("x=1"), "{outbound:?}");
    let visitors = ch.count(DB, "SELECT uniqExact(visitor_id) FROM events");
    assert_eq!(visitors, 1, "one browser, one visitor id for the day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_is_served_cached_and_small() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let client = support::browser_client();
    let r = client.get(g.url("/js/glimpse.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/javascript; charset=utf-8");
    assert!(
        h["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=86400")
    );
    assert_eq!(h["access-control-allow-origin"], "*");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(r.bytes().await.unwrap(), glimpse::beacon::SCRIPT);

    let r = client
        .get(g.url("/js/glimpse.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = client
        .get(g.url("/js/glimpse.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    assert!(
        gz.len() <= glimpse::beacon::MAX_GZIP_BYTES,
        "{} bytes gzipped",
        gz.len()
    );

    // The no-JavaScript pixel records a page view, defaulting the URL to the Referer.
    let r = client
        .get(g.url("/api/event.gif?d=a.com"))
        .header("referer", "https://a.com/noscript")
        .header("user-agent", support::UA_FIREFOX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(r.bytes().await.unwrap(), glimpse::beacon::PIXEL);
    let r = client
        .get(g.url("/api/event.gif?n=pageview&u=https%3A%2F%2Fa.com%2Fexplicit%3Fq%3D1&r=https%3A%2F%2Fsearch.example%2F"))
        .header("user-agent", support::UA_FIREFOX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    g.stop().await;
    let rows = ch.rows(
        DB,
        "SELECT pathname, referrer FROM events ORDER BY pathname",
    );
    assert_eq!(
        rows,
        vec![
            vec!["/explicit".to_owned(), "search.example".to_owned()],
            vec!["/noscript".to_owned(), String::new()]
        ]
    );
}

/// The official `@plausible-analytics/tracker` package, pointed at Glimpse, must produce the same
/// rows as Glimpse's own script for the same visit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_plausible_tracker_produces_the_same_rows() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let gport = g.addr.port();
    let event = "'Signup', {props: {plan: 'pro'}, revenue: {amount: 9.99, currency: 'EUR'}}";
    let ours = TestSite::start(move |_| {
        format!(
            r#"<!doctype html><script defer data-domain="a.com" data-local data-allow-automation
  src="http://127.0.0.1:{gport}/js/glimpse.js"></script>
<script>addEventListener('load', () => glimpse({event}))</script>"#
        )
    })
    .await;
    let tracker = support::plausible_tracker_js();
    let theirs = TestSite::start(move |path| {
        if path == "/plausible.js" {
            return tracker.clone();
        }
        format!(
            r#"<!doctype html><script>window.__plausible = true</script>
<script type="module">
import {{ init, track }} from '/plausible.js';
init({{ domain: 'a.com', endpoint: 'http://127.0.0.1:{gport}/api/event', captureOnLocalhost: true }});
track({event});
</script>"#
        )
    })
    .await;
    let chromium = Chromium::start();
    let browser = chromium.session().await;
    browser
        .goto(&ours.url("/pricing?utm_source=newsletter&utm_campaign=fall"))
        .await
        .unwrap();
    g.wait_accepted(2).await;
    browser
        .goto(&theirs.url("/pricing?utm_source=newsletter&utm_campaign=fall"))
        .await
        .unwrap();
    g.wait_accepted(4).await;
    browser.close().await.unwrap();
    g.stop().await;

    let columns = "site, name, hostname, pathname, referrer, referrer_source, utm_source, utm_campaign, \
                   browser, os, device, visitor_id, interactive, revenue_micros, revenue_currency, \
                   prop_keys, prop_values";
    let rows = ch.rows(
        DB,
        &format!(
            "SELECT {columns} FROM events WHERE name != 'engagement' ORDER BY name, timestamp"
        ),
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[0], rows[1], "Signup from both clients");
    assert_eq!(rows[2], rows[3], "page view from both clients");
    assert_eq!(rows[2][1], "pageview");
    assert_eq!(rows[0][15], "['plan']");
}

/// Hash-based routing, excluded pages and file downloads, each opt-in on the script tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_mode_exclusions_and_downloads() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let gport = g.addr.port();
    let site = TestSite::start(move |_| {
        format!(
            r#"<!doctype html><script defer data-domain="a.com" data-local data-allow-automation data-hash
  data-downloads data-exclude="/admin/**" src="http://127.0.0.1:{gport}/js/glimpse.js"></script>
<a id="dl" href="/files/report.pdf?token=secret" download>report</a>"#
        )
    })
    .await;
    let chromium = Chromium::start();
    let browser = chromium.session().await;
    browser.goto(&site.url("/app")).await.unwrap();
    g.wait_accepted(1).await;
    browser
        .execute("location.hash = '#/settings'", vec![])
        .await
        .unwrap();
    g.wait_accepted(2).await;
    browser
        .find(fantoccini::Locator::Id("dl"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    g.wait_accepted(3).await;
    // Excluded: neither the page view nor anything after it on that page is sent.
    browser.goto(&site.url("/admin/users/1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    browser.close().await.unwrap();
    g.stop().await;

    let rows = ch.rows(
        DB,
        "SELECT name, pathname, prop_values FROM events ORDER BY timestamp, name",
    );
    let want = [
        ["pageview", "/app", "[]"],
        ["pageview", "/app#/settings", "[]"],
        [
            "File Download",
            "/app#/settings",
            "['http://127.0.0.1:PORT/files/report.pdf']",
        ],
    ];
    let want: Vec<Vec<String>> = want
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.replace("PORT", &site.port.to_string()))
                .collect()
        })
        .collect();
    let mut rows = rows;
    rows.sort();
    let mut want = want;
    want.sort();
    assert_eq!(rows, want);
}

/// Without the opt-in attributes the script sends nothing from a local page or an automated
/// browser (this session is both: 127.0.0.1 and WebDriver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_automated_browsing_is_ignored_by_default() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let gport = g.addr.port();
    let site = TestSite::start(move |path| {
        let opt_in = if path == "/local-ok" {
            "data-local"
        } else {
            "data-allow-automation"
        };
        format!(
            r#"<!doctype html><script defer data-domain="a.com" {opt_in}
  src="http://127.0.0.1:{gport}/js/glimpse.js"></script>
<script>addEventListener('load', () => glimpse('Signup'))</script>"#
        )
    })
    .await;
    let chromium = Chromium::start();
    let browser = chromium.session().await;
    // Only one of the two opt-ins each time: still ignored.
    browser.goto(&site.url("/local-ok")).await.unwrap();
    browser.goto(&site.url("/automation-ok")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let requests = g.metrics.events_accepted.get();
    browser.close().await.unwrap();
    g.stop().await;
    assert_eq!(requests, 0);
    assert_eq!(ch.count(DB, "SELECT count() FROM events"), 0);
}
