//! Drop-in for Plausible, in a real browser: the tags that Plausible sites embed, pointed at
//! Glimpse's `/js/script*.js`, record what Plausible documents; engagement from the official
//! tracker, from the variants and from Glimpse's own script becomes scroll depth and time on
//! page. The test sites live under `*.test` names (scripts ignore localhost), which the browser
//! resolves to loopback.

use std::time::Duration;

use support::{Chromium, ClickHouse, Glimpse, TestSite, test_config};

const DB: &str = "glimpse";

/// What Plausible's installation instructions put before the tag: the queue stub. The flag
/// lets the scripts send from an automated browser (Plausible's own escape hatch).
const STUB: &str = "<script>window.__plausible = true; window.plausible = window.plausible || \
                    function() { (window.plausible.q = window.plausible.q || []).push(arguments) }</script>";

/// Rows other than engagement, as (name, pathname, prop pairs), sorted.
fn recorded(ch: &ClickHouse) -> Vec<Vec<String>> {
    let mut rows = ch.rows(
        DB,
        "SELECT name, pathname, arrayStringConcat(arrayMap((k, v) -> concat(k, '=', v), prop_keys, \
         prop_values), ',') FROM events WHERE name != 'engagement'",
    );
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plausible_tags_and_variants_record_as_documented() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let collector = format!("http://collector.test:{}", g.addr.port());
    let other = TestSite::start(|_| "<!doctype html><p>elsewhere</p>".to_owned()).await;
    let elsewhere = other.url_on("elsewhere.test", "/page?secret=1");
    let site = TestSite::start(move |path| {
        let tag = |file: &str, attrs: &str| {
            format!(r#"<script defer data-domain="a.com" {attrs} src="{collector}/js/{file}"></script>"#)
        };
        let body = match path {
            // The legacy tag, with a call queued before the script loads.
            "/plain" => format!(
                "{STUB}<script>plausible('Signup', {{props: {{plan: 'pro'}}}})</script>{}",
                tag("script.js", "")
            ),
            "/tagged" => format!(
                r#"{STUB}{}
<button id="cta" class="big plausible-event-name=Cta+Click plausible-event-position=top">Go</button>
<a id="out" href="{elsewhere}">out</a>
<form class="plausible-event-name=Newsletter" onsubmit="return false"><button id="sub">sub</button></form>"#,
                tag("script.tagged-events.outbound-links.js", "")
            ),
            "/manual" => format!(
                r#"{STUB}{}<script>addEventListener('load', () => plausible('pageview', {{u: 'http://a.test/custom/path'}}))</script>"#,
                tag("script.pageview-props.manual.js", r#"event-author="alice""#)
            ),
            "/hash" => format!(
                "{STUB}{}",
                tag("plausible.hash.exclusions.js", r#"data-exclude="/hash#/private/**""#)
            ),
            "/files" => format!(
                r#"{STUB}{}
<a id="xyz" href="/d/data.xyz?token=1" download>data</a><a id="pdf" href="/d/report.pdf" download>pdf</a>"#,
                tag("script.file-downloads.js", r#"add-file-types="xyz""#)
            ),
            // Plausible's current snippet: the site comes from the page's host, the options
            // from plausible.init().
            "/pa" => format!(
                r#"<script async src="{collector}/js/pa-AbC123xyz.js"></script>
<script>window.__plausible = true; window.plausible = window.plausible || function() {{ (plausible.q = plausible.q || []).push(arguments) }}, plausible.init = plausible.init || function(i) {{ plausible.o = i || {{}} }};
plausible.init({{ hashBasedRouting: true, outboundLinks: true, customProperties: {{ tier: 'gold' }} }})</script>
<a id="away" href="{elsewhere}">away</a>"#
            ),
            "/compat" => format!(
                "{STUB}{}",
                tag("script.compat.js", r#"id="plausible""#)
            ),
            _ => String::new(),
        };
        format!("<!doctype html><html><head>{body}</head></html>")
    })
    .await;
    let chromium = Chromium::start();
    let browser = chromium.session().await;
    let run = |js: &'static str| {
        let browser = browser.clone();
        async move { browser.execute(js, vec![]).await.unwrap() }
    };
    let settle = || tokio::time::sleep(Duration::from_millis(400));

    let open = |path: &'static str, ids: &'static [&'static str]| {
        let (browser, url) = (browser.clone(), site.url_on("a.test", path));
        async move { support::browser::open_and_click(&browser, &url, ids).await }
    };
    open("/plain", &[]).await;
    // SPA: a new path counts once; Plausible's script watches pushState only.
    run(
        "history.pushState({}, '', '/plain/spa'); history.pushState({}, '', '/plain/spa'); \
         history.replaceState({}, '', '/plain/replaced')",
    )
    .await;
    settle().await;
    // The outbound link last: it leaves the page (a new tab would leave this one hidden, and
    // the scripts do not count a page nobody sees).
    open("/tagged", &["cta", "sub", "out"]).await;
    open("/manual", &[]).await;
    open("/hash", &[]).await;
    for hash in ["#/a", "#/private/x", "#/b"] {
        browser
            .execute(&format!("location.hash = '{hash}'"), vec![])
            .await
            .unwrap();
        settle().await;
    }
    open("/files", &["xyz", "pdf"]).await;
    open("/compat", &[]).await;
    let pa = site.url_on("a.com", "/pa");
    support::browser::open_and_click(&browser, &pa, &[]).await;
    browser
        .execute("location.hash = '#/x'", vec![])
        .await
        .unwrap();
    settle().await;
    browser
        .find(fantoccini::Locator::Id("away"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    settle().await;
    let storage = run("return [document.cookie, localStorage.length, sessionStorage.length]").await;
    assert_eq!(storage, serde_json::json!(["", 0, 0]));
    browser
        .goto(&other.url_on("elsewhere.test", "/"))
        .await
        .unwrap();
    browser.close().await.unwrap();
    g.stop().await;

    let outbound = format!("url={}", other.url_on("elsewhere.test", "/page"));
    let gold_outbound = format!("tier=gold,{outbound}");
    let file = |name: &str| format!("url={}", site.url_on("a.test", &format!("/d/{name}")));
    let (xyz, pdf) = (file("data.xyz"), file("report.pdf"));
    let want: Vec<[&str; 3]> = vec![
        ["Cta Click", "/tagged", "position=top"],
        ["File Download", "/files", &xyz],
        ["File Download", "/files", &pdf],
        ["Newsletter", "/tagged", ""],
        ["Outbound Link: Click", "/pa#/x", &gold_outbound],
        ["Outbound Link: Click", "/tagged", &outbound],
        ["Signup", "/plain", "plan=pro"],
        ["pageview", "/compat", ""],
        ["pageview", "/custom/path", "author=alice"],
        ["pageview", "/files", ""],
        ["pageview", "/pa", "tier=gold"],
        ["pageview", "/pa#/x", "tier=gold"],
        ["pageview", "/hash", ""],
        ["pageview", "/hash#/a", ""],
        ["pageview", "/hash#/b", ""],
        ["pageview", "/plain", ""],
        ["pageview", "/plain/spa", ""],
        ["pageview", "/tagged", ""],
    ];
    let mut want: Vec<Vec<String>> = want
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    want.sort();
    assert_eq!(recorded(&ch), want);
}

/// Every script name Plausible documents is served, in any order of extensions; an unknown or
/// repeated extension is a 404 that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plausible_script_name_is_served() {
    let front = support::Front::start(support::front_config()).await;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = front.url(&path);
        async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, ct, r.text().await.unwrap())
        }
    };
    let (status, ct, js) = get("/js/script.js".into()).await;
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("application/javascript; charset=utf-8"));
    assert!(js.ends_with("(\"\");"), "{}", &js[js.len() - 40..]);
    let (_, _, same) = get("/js/plausible.js".into()).await;
    assert_eq!(same, js);
    let (_, _, a) = get("/js/script.outbound-links.hash.tagged-events.js".into()).await;
    let (_, _, b) = get("/js/script.tagged-events.hash.outbound-links.js".into()).await;
    assert_eq!(a, b);
    assert!(a.ends_with("(\"hash outbound-links tagged-events\");"));
    let all = glimpse::beacon::EXTENSIONS.join(".");
    assert_eq!(get(format!("/js/script.{all}.js")).await.0, 200);
    let (status, _, body) = get("/js/script.hash.hash.js".into()).await;
    assert_eq!(status, 404);
    assert!(body.contains("`hash` is named twice"), "{body}");
    let (status, _, body) = get("/js/script.outbound.js".into()).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("unknown script extension `outbound`"),
        "{body}"
    );
    assert_eq!(get("/js/glimpse.engagement.js".into()).await.0, 200);
    assert_eq!(get("/js/other.js".into()).await.0, 404);
    front.stop().await;
}

/// Scroll depth and time on page from three clients: the official tracker, a Plausible variant
/// served by Glimpse (including the report sent before a single-page-app view), and Glimpse's
/// own script with `data-engagement`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engagement_becomes_scroll_depth_and_time_on_page() {
    // Midnight ends a visit, and this one's pages are counted per visit.
    tokio::time::sleep(support::wait_clear_of_midnight(Duration::from_secs(60))).await;
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let collector = format!("http://collector.test:{}", g.addr.port());
    let tracker = support::plausible_tracker_js();
    let site = TestSite::start(move |path| {
        let tall = r#"<div style="height: 4000px">long read</div>"#;
        match path {
            "/plausible.js" => tracker.clone(),
            "/official" => format!(
                r#"<!doctype html><script>window.__plausible = true</script>
<script type="module">
import {{ init }} from '/plausible.js';
init({{ domain: 'a.com', endpoint: '{collector}/api/event' }});
</script>{tall}"#
            ),
            "/variant" => format!(
                r#"<!doctype html>{STUB}<script defer data-domain="a.com" src="{collector}/js/script.js"></script>{tall}"#
            ),
            "/glimpse" => format!(
                r#"<!doctype html><script defer data-domain="a.com" data-allow-automation data-engagement src="{collector}/js/glimpse.js"></script>{tall}"#
            ),
            _ => "<!doctype html><p>next</p>".to_owned(),
        }
    })
    .await;
    let chromium = Chromium::start();
    let browser = chromium.session().await;
    // Each page: wait for its page view, scroll 1000 px, read for 3.2 s, leave (the page is
    // hidden). What the page's own geometry says the depth is.
    let mut expected = Vec::new();
    for page in ["/official", "/variant", "/glimpse"] {
        browser.goto(&site.url_on("a.test", page)).await.unwrap();
        let pageviews =
            format!("SELECT count() FROM events WHERE pathname = '{page}' AND name = 'pageview'");
        assert_eq!(ch.wait_count(DB, &pageviews, 1), 1, "{page}");
        let depth = browser
            .execute(
                "window.scrollTo(0, 1000); const h = document.documentElement.scrollHeight; \
                 return Math.round(Math.min(h, 1000 + innerHeight) / h * 100)",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap();
        expected.push((page.to_string(), depth));
        tokio::time::sleep(Duration::from_millis(3200)).await;
        if page == "/variant" {
            // A single-page-app view first reports the page it leaves.
            browser
                .execute("history.pushState({}, '', '/variant/next')", vec![])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        browser.goto(&site.url_on("a.test", "/next")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    browser.close().await.unwrap();
    let today = glimpse::clock::date_string(glimpse::clock::day_of(g.clock.now()));
    g.stop().await;

    let reports = ch.rows(
        DB,
        "SELECT pathname, sum(scroll_gain), sum(scroll_first), sum(engaged_ms), sum(engaged_first) \
         FROM events WHERE name = 'engagement' GROUP BY pathname ORDER BY pathname",
    );
    println!("engagement rows: {reports:?}");
    for (page, depth) in &expected {
        let row = reports
            .iter()
            .find(|r| &r[0] == page)
            .unwrap_or_else(|| panic!("{page}: no engagement in {reports:?}"));
        assert_eq!(row[1], depth.to_string(), "{page}: scroll depth");
        assert_eq!(row[2], "1", "{page}: one visit-page");
        let ms: u64 = row[3].parse().unwrap();
        assert!((3000..8000).contains(&ms), "{page}: engaged {ms} ms");
        assert_eq!(row[4], "1", "{page}");
    }
    // What the stats API reads: per page, the scroll depth and seconds on page.
    let p = glimpse::store::queries::Params {
        site: "a.com".into(),
        from: today.clone(),
        to: today,
        dimension: String::new(),
        k: 0,
        limit: 100,
        offset: 0,
    };
    let pages = ch.rows(
        DB,
        &glimpse::store::queries::render("page_engagement", &p).unwrap(),
    );
    for (page, depth) in &expected {
        let row = pages.iter().find(|r| &r[0] == page).unwrap();
        assert_eq!(row[1], depth.to_string(), "{page}");
        let secs: u64 = row[2].parse().unwrap();
        assert!((3..8).contains(&secs), "{page}: {secs} s on page");
    }
    // Engagement is neither a page view nor an event: the totals count the three page views
    // and the single-page-app view (the last page has no script).
    let totals = ch.rows(DB, &glimpse::store::queries::render("totals", &p).unwrap());
    assert_eq!(totals[0][1], "4", "{totals:?}");
    assert_eq!(totals[0][2], "0", "{totals:?}");
}
