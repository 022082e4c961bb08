//! Traffic quality end to end: every filter and shield drops with its named reason (response
//! header and /metrics), what they removed is counted per site, day and reason in ClickHouse,
//! and only the real visit is stored.

use std::collections::BTreeMap;

use glimpse::model::{HostPattern, IpRanges, PathPattern, Shields, Site};
use support::{ClickHouse, Glimpse, Reply, Send, UA_FIREFOX, test_config};

const DB: &str = "glimpse";

fn event(url: &str, extra: &str) -> String {
    format!(r#"{{"n":"pageview","u":"{url}"{extra}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drop_is_named_counted_and_kept_out_of_the_data() {
    let ch = ClickHouse::start();
    let mut cfg = test_config(&ch, DB);
    let datacenters = ch.temp_path("datacenters.txt");
    std::fs::write(
        &datacenters,
        "# test ranges\n203.0.113.0/24\n2001:db8:dc::/48\n",
    )
    .unwrap();
    cfg.filter.datacenter_ranges = Some(datacenters);
    cfg.sites = vec![
        Site {
            domain: "a.com".into(),
            shields: Shields {
                block_ips: IpRanges::parse("198.51.100.0/24").unwrap(),
                block_countries: vec!["GB".into()],
                exclude_paths: vec![PathPattern::parse("/admin/**").unwrap()],
                allow_hostnames: vec![
                    HostPattern::parse("a.com").unwrap(),
                    HostPattern::parse("*.a.com").unwrap(),
                ],
            },
            redact_tokens: true,
            goals: Vec::new(),
        },
        Site::new("b.org"),
    ];
    let g = Glimpse::start(cfg).await;
    let ip = "192.0.2.10";
    let page = event("https://a.com/pricing", "");

    let cases: Vec<(&str, Reply)> = vec![
        ("accepted", g.send(&page, UA_FIREFOX, ip).await),
        (
            "http_client",
            g.send(&page, "python-requests/2.32.3", ip).await,
        ),
        (
            "crawler",
            g.send(
                &page,
                "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
                ip,
            )
            .await,
        ),
        (
            "headless_browser",
            g.send(
                &page,
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/125.0.0.0 Safari/537.36",
                ip,
            )
            .await,
        ),
        (
            "header_mismatch",
            Send::event(g.addr, page.as_str())
                .ua(UA_FIREFOX)
                .from(ip)
                .bare()
                .header("sec-fetch-mode", "cors")
                .send()
                .await,
        ),
        (
            "prefetch",
            Send::event(g.addr, page.as_str())
                .ua(UA_FIREFOX)
                .from(ip)
                .header("sec-purpose", "prefetch")
                .send()
                .await,
        ),
        (
            "referrer_spam",
            g.send(
                &event("https://a.com/", r#","r":"https://www.semalt.com/crawler""#),
                UA_FIREFOX,
                ip,
            )
            .await,
        ),
        ("datacenter", g.send(&page, UA_FIREFOX, "203.0.113.5").await),
        (
            "blocked_ip",
            g.send(&page, UA_FIREFOX, "198.51.100.77").await,
        ),
        (
            "blocked_country",
            g.send(&page, UA_FIREFOX, "81.2.69.10").await,
        ),
        (
            "excluded_path",
            g.send(&event("https://a.com/admin/users", ""), UA_FIREFOX, ip)
                .await,
        ),
        (
            "hostname_not_allowed",
            g.send(
                &event("https://a-com.preview.example.net/", r#","d":"a.com""#),
                UA_FIREFOX,
                ip,
            )
            .await,
        ),
    ];
    for (want, r) in &cases {
        assert_eq!(r.status, 202, "{want}");
        let want = (*want != "accepted").then(|| want.to_string());
        assert_eq!(r.dropped, want);
    }
    // A shield is its site's alone: b.org counts the excluded-for-a.com page.
    let both = event("https://a.com/admin/users", r#","d":"a.com,b.org""#);
    let r = g.send(&both, UA_FIREFOX, ip).await;
    assert_eq!((r.status, r.dropped), (202, None));

    let metrics = g.metrics().await;
    for (reason, _) in cases.iter().skip(1) {
        let line = format!("glimpse_events_dropped_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "missing {line}");
    }
    g.stop().await;

    let stored = ch.rows(
        DB,
        "SELECT site, pathname FROM events ORDER BY site, pathname",
    );
    assert_eq!(
        stored,
        [["a.com", "/pricing"], ["b.org", "/admin/users"]].map(|r| r.map(String::from))
    );
    let counted: BTreeMap<(String, String), u64> = ch
        .rows(
            DB,
            "SELECT site, reason, sum(events) FROM dropped_daily \
             WHERE day = today() GROUP BY site, reason",
        )
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone()), r[2].parse().unwrap()))
        .collect();
    let mut want: BTreeMap<(String, String), u64> = cases
        .iter()
        .skip(1)
        .map(|(reason, _)| (("a.com".to_string(), reason.to_string()), 1))
        .collect();
    // The one a.com excluded while b.org kept it.
    *want
        .get_mut(&("a.com".to_string(), "excluded_path".to_string()))
        .unwrap() += 1;
    assert_eq!(counted, want);
    // Counts only: nothing about visitors or clients.
    let columns: Vec<String> = ch
        .rows(DB, "DESCRIBE TABLE dropped_daily")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(columns, ["site", "day", "reason", "events"]);
}

/// A server-side integration or event proxy sends only `User-Agent`, `X-Forwarded-For` and
/// `Content-Type: application/json`, as Plausible's Events API documentation shows. Through a
/// trusted proxy its events are recorded with the forwarded visitor's location and browser; bots
/// and tools behind it are still dropped; `filter.browser_only` refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_events_through_a_proxy_are_recorded() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let proxy = support::EventProxy::start(g.addr).await;
    let via_proxy = |ua: &'static str, url: &str| {
        let body = event(url, "");
        async move {
            let r = reqwest::Client::new()
                .post(format!("http://{}/event", proxy.addr))
                .header("user-agent", ua)
                .header("x-real-ip", "81.2.69.160")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    for n in 0..10 {
        let (status, body) = via_proxy(UA_FIREFOX, &format!("https://a.com/server/{n}")).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, _) = via_proxy(support::UA_IPHONE, "https://a.com/server/phone").await;
    assert_eq!(status, 202);
    // Tools and crawlers forwarded the same way are still dropped by their user agent.
    for ua in [
        "curl/8.5.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ] {
        assert_eq!(via_proxy(ua, "https://a.com/bot").await.0, 202);
    }
    g.stop().await;
    let rows = ch.rows(
        DB,
        "SELECT browser, device, country_code, count() FROM events \
         GROUP BY browser, device, country_code ORDER BY browser",
    );
    assert_eq!(
        rows,
        [
            ["Firefox", "desktop", "GB", "10"],
            ["Safari", "mobile", "GB", "1"]
        ]
        .map(|r| r.map(String::from))
    );

    // An operator whose events all come from browsers can refuse everything else.
    let ch2 = ClickHouse::start();
    let mut cfg = test_config(&ch2, DB);
    cfg.filter.browser_only = true;
    let g = Glimpse::start(cfg).await;
    let page = event("https://a.com/", "");
    let r = Send::event(g.addr, page.as_str())
        .ua(UA_FIREFOX)
        .from("192.0.2.10")
        .bare()
        .send()
        .await;
    assert_eq!((r.status, r.dropped), (202, Some("header_mismatch".into())));
    let r = g.send(&page, UA_FIREFOX, "192.0.2.10").await;
    assert_eq!((r.status, r.dropped), (202, None));
    // With the checks off, even that is accepted.
    g.stop().await;
    let mut cfg = test_config(&ch2, DB);
    cfg.filter.header_checks = false;
    let g = Glimpse::start(cfg).await;
    let r = Send::event(g.addr, page.as_str())
        .ua(UA_FIREFOX)
        .from("192.0.2.10")
        .bare()
        .header("sec-fetch-mode", "navigate")
        .send()
        .await;
    assert_eq!((r.status, r.dropped), (202, None));
    g.stop().await;
    assert_eq!(ch2.count(DB, "SELECT count() FROM events"), 2);
}

/// The file `scripts/fetch-datacenter-ranges.sh` writes (the test script runs it into
/// `target/test-deps/`) loads, holds the big clouds and not ordinary addresses, and answers
/// lookups fast.
#[test]
fn refreshed_datacenter_ranges_load_and_match() {
    let path = support::repo_path("target/test-deps/datacenter-ranges.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "{} not found: run `scripts/fetch-datacenter-ranges.sh {}` (needs python3 and pip)",
            path.display(),
            path.display()
        )
    });
    let ranges = glimpse::model::IpRanges::parse(&text).expect("the script writes valid CIDRs");
    assert!(ranges.len() > 1_000, "{} ranges", ranges.len());
    // An AWS and an Azure address; a residential test address, Google DNS and Cloudflare DNS
    // (Cloudflare is left out on purpose).
    for ip in ["52.94.76.1", "20.42.0.1"] {
        assert!(ranges.contains(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["81.2.69.10", "8.8.8.8", "1.1.1.1", "2a02:8070::1"] {
        assert!(!ranges.contains(ip.parse().unwrap()), "{ip}");
    }
    let start = std::time::Instant::now();
    let hits = (0..1_000_000u32)
        .filter(|i| {
            ranges.contains(std::net::IpAddr::from(
                i.wrapping_mul(2_654_435_761).to_be_bytes(),
            ))
        })
        .count();
    let per_lookup = start.elapsed() / 1_000_000;
    println!(
        "{} ranges; {hits} of 1e6 spread addresses matched; {per_lookup:?} per lookup",
        ranges.len()
    );
    assert!(
        per_lookup < std::time::Duration::from_micros(2),
        "{per_lookup:?}"
    );
}
