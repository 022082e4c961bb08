//! Hostile input: malformed bodies, oversized requests, slow clients, floods. Every case gets a
//! clear 4xx (or a closed connection), nothing panics, and other clients keep being served.
//! These run against the HTTP front and request path alone ([`support::Front`]), with no
//! ClickHouse; only the metrics test, which counts inserts, starts one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{ClickHouse, Front, Glimpse, Send, UA_FIREFOX, front_config, pageview, test_config};

const DB: &str = "glimpse";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx() {
    let mut cfg = front_config();
    // Large enough that the parser, not the size cap, must reject the big cases below.
    cfg.ingest.max_body_bytes = 4 << 20;
    let g = Front::start(cfg).await;
    let many_props: String = (0..10_000)
        .map(|i| format!("\"k{i}\":\"v\""))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty body", b"".to_vec(), 400, "empty body"),
        (
            "invalid UTF-8",
            b"{\"n\":\"pageview\",\"u\":\"https://a.com/\xff\xfe\"}".to_vec(),
            400,
            "`u`: invalid unicode",
        ),
        (
            "truncated JSON",
            br#"{"n":"pageview","u":"#.to_vec(),
            400,
            "EOF while parsing",
        ),
        ("not an object", b"[1,2,3]".to_vec(), 400, ""),
        (
            "wrong type",
            br#"{"n":42,"u":"https://a.com/"}"#.to_vec(),
            400,
            "`n`",
        ),
        (
            "huge number",
            format!(
                r#"{{"n":"e","u":"https://a.com/","p":{{"k":1{}}}}}"#,
                "0".repeat(400)
            )
            .into_bytes(),
            400,
            "number out of range",
        ),
        (
            "huge revenue",
            br#"{"n":"buy","u":"https://a.com/","$":{"amount":1e300,"currency":"EUR"}}"#.to_vec(),
            400,
            "",
        ),
        (
            "deeply nested",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            400,
            "expected a JSON object",
        ),
        (
            "deeply nested prop",
            format!(
                r#"{{"n":"e","u":"https://a.com/","p":{{"k":{}{}}}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
            .into_bytes(),
            400,
            "not arrays",
        ),
        (
            "10 000 props",
            format!(r#"{{"n":"e","u":"https://a.com/","p":{{{many_props}}}}}"#).into_bytes(),
            400,
            "at most 30",
        ),
        (
            "1 MB URL",
            format!(
                r#"{{"n":"pageview","u":"https://a.com/{}"}}"#,
                "a".repeat(1 << 20)
            )
            .into_bytes(),
            400,
            "longer than 2000 bytes",
        ),
        (
            "object as prop value",
            br#"{"n":"e","u":"https://a.com/","p":{"k":{"x":1}}}"#.to_vec(),
            400,
            "not objects",
        ),
        (
            "missing url",
            br#"{"n":"pageview"}"#.to_vec(),
            400,
            "missing field `u`",
        ),
        (
            "misspelt field",
            br#"{"n":"Purchase","u":"https://a.com/","revnue":{"amount":9,"currency":"EUR"}}"#
                .to_vec(),
            400,
            "unknown field `revnue`",
        ),
    ];
    for (what, body, status, needle) in cases {
        let r = Send::event(g.addr, body).ua(UA_FIREFOX).send().await;
        let (got, text) = (r.status, r.body);
        assert_eq!(got, status, "{what}: {}", &text[..text.len().min(300)]);
        assert!(text.contains("\"error\""), "{what}: not a JSON error");
        let shown: String = text.chars().take(300).collect();
        assert!(text.contains(needle), "{what}: {shown:?} lacks {needle:?}");
    }
    g.stop().await;

    // With the default cap, size is refused before parsing.
    let g = Front::start(front_config()).await;
    let big = format!(
        r#"{{"n":"pageview","u":"https://a.com/{}"}}"#,
        "a".repeat(1 << 20)
    );
    let r = Send::event(g.addr, big).ua(UA_FIREFOX).send().await;
    let (status, text) = (r.status, r.body);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than 65536 bytes"));
    // A request head past the cap (a 1 MB URL in the pixel's query, a huge header): 431.
    let addr = g.addr;
    let head = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let line = format!(
            "GET /api/event.gif?u=https://a.com/{} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let _ = s.write_all(line.as_bytes());
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // The event endpoint takes no query string: it would be ignored.
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/event?n=pageview", g.addr))
        .header("content-type", "text/plain")
        .body(pageview("https://a.com/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not in a query string"));
    // The pixel refuses a parameter it does not have, by name.
    let r = reqwest::get(format!(
        "http://{}/api/event.gif?d=a.com&u=https%3A%2F%2Fa.com%2F&utm_source=x",
        g.addr
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("unknown field `utm_source`"), "{text}");
    let r = Send::event(g.addr, pageview("https://a.com/"))
        .header("x-padding", &"p".repeat(32 * 1024))
        .send()
        .await;
    assert_eq!(r.status, 431);
    // And after all that the collector is healthy and records events.
    let ok = g
        .send(&pageview("https://a.com/after"), UA_FIREFOX, "198.51.100.7")
        .await;
    assert_eq!(ok.status, 202);
    assert_eq!(g.stop().await, 1, "one row recorded");
}

/// Opens a connection and starts a request head that never ends, one header line at a time.
/// Raw TCP on purpose: no HTTP client (nor `Send`) sends an unfinished head.
fn slowloris(addr: std::net::SocketAddr) -> std::thread::JoinHandle<(Duration, String)> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.write_all(b"POST /api/event HTTP/1.1\r\nHost: x\r\n");
        let mut got = Vec::new();
        for i in 0..100 {
            if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .is_err()
            {
                break;
            }
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        (start.elapsed(), String::from_utf8_lossy(&got).into_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_block_others() {
    let mut cfg = front_config();
    cfg.server.header_timeout = Duration::from_secs(1);
    cfg.server.body_timeout = Duration::from_secs(1);
    cfg.server.max_connections = 16;
    let g = Front::start(cfg).await;

    let slow: Vec<_> = (0..8).map(|_| slowloris(g.addr)).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile, a real client is served promptly.
    for i in 0..20 {
        let start = Instant::now();
        let r = g
            .send(
                &pageview(&format!("https://a.com/fast/{i}")),
                UA_FIREFOX,
                "198.51.100.20",
            )
            .await;
        assert_eq!(r.status, 202);
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "request {i} took {:?}",
            start.elapsed()
        );
    }
    for t in slow {
        let (held, _) = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
        assert!(
            held < Duration::from_secs(3),
            "a slow head was cut off after the 1 s header timeout, not {held:?}"
        );
    }

    // A body that trickles in: 408 when the body timeout passes. Raw TCP on purpose: `Send`
    // always sends the whole body it announces.
    let addr = g.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            .unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        (start.elapsed(), String::from_utf8_lossy(&buf).into_owned())
    })
    .await
    .unwrap();
    assert!(answer.1.starts_with("HTTP/1.1 408"), "{}", answer.1);
    assert!(answer.0 < Duration::from_secs(3), "{:?}", answer.0);

    // An idle keep-alive connection is closed too.
    let addr = g.addr;
    let idle = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let start = Instant::now();
        let closed = matches!(s.read(&mut buf), Ok(0));
        (closed, start.elapsed())
    })
    .await
    .unwrap();
    assert!(idle.0, "the server closed the idle connection");
    assert!(idle.1 < Duration::from_secs(3), "after {:?}", idle.1);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_frees_up() {
    let mut cfg = front_config();
    cfg.server.header_timeout = Duration::from_secs(1);
    cfg.server.max_connections = 4;
    let g = Front::start(cfg).await;
    // Four connections that say nothing take every slot...
    let hogs: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(g.addr).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a fifth client waits in the backlog until the header timeout frees them.
    let start = Instant::now();
    let r = g
        .send(
            &pageview("https://a.com/capped"),
            UA_FIREFOX,
            "198.51.100.30",
        )
        .await;
    let waited = start.elapsed();
    assert_eq!(r.status, 202);
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(4),
        "waited {waited:?}"
    );
    drop(hogs);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_rate_limited_by_address() {
    let mut cfg = front_config();
    cfg.rate_limit.events_per_second = 2;
    cfg.rate_limit.burst = 10;
    let g = Front::start(cfg).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..30 {
        let r = g
            .send(
                &pageview(&format!("https://a.com/flood/{i}")),
                UA_FIREFOX,
                "203.0.113.66",
            )
            .await;
        if r.status == 429 && retry_after.is_none() {
            retry_after = r.headers.get("retry-after").cloned();
            assert!(r.body.contains("too many events"), "{}", r.body);
        }
        statuses.push(r.status);
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!((10..=12).contains(&accepted), "{statuses:?}");
    assert!(retry_after.is_some(), "429 carries Retry-After");
    // Another visitor is not affected.
    let other = g
        .send(&pageview("https://a.com/other"), UA_FIREFOX, "203.0.113.67")
        .await;
    assert_eq!(other.status, 202);
    // The trusted proxy's own requests (no forwarding header) carry no visitor address and
    // are limited as one client, the proxy.
    let mut own = Vec::new();
    for i in 0..30 {
        let r = Send::event(g.addr, pageview(&format!("https://a.com/backend/{i}")))
            .ua(UA_FIREFOX)
            .send()
            .await;
        own.push(r.status);
    }
    let own_accepted = own.iter().filter(|s| **s == 202).count();
    assert!((10..=12).contains(&own_accepted), "{own:?}");
    let metrics = g.metrics().await;
    assert!(metrics.contains(&format!(
        "glimpse_events_rate_limited_total {}",
        60 - accepted - own_accepted
    )));
    assert!(!metrics.contains("203.0.113"), "no address in metrics");
    g.stop().await;

    // Only an explicit `rate_limit.trusted_proxies = false` exempts them.
    let mut cfg = front_config();
    cfg.rate_limit.events_per_second = 2;
    cfg.rate_limit.burst = 10;
    cfg.rate_limit.trusted_proxies = false;
    let g = Front::start(cfg).await;
    for i in 0..30 {
        let r = Send::event(g.addr, pageview(&format!("https://a.com/backend/{i}")))
            .ua(UA_FIREFOX)
            .send()
            .await;
        assert_eq!(r.status, 202);
    }
    g.stop().await;
}

/// Addresses of one IPv6 /64 (one subscriber's allocation) are one client to the limiter;
/// another /64 is another client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_network_is_rate_limited_as_one_client() {
    let mut cfg = front_config();
    cfg.rate_limit.events_per_second = 2;
    cfg.rate_limit.burst = 10;
    let g = Front::start(cfg).await;
    let mut statuses = Vec::new();
    for i in 0..30 {
        let from = format!("2001:db8:5:7:{i:x}::1");
        let r = g
            .send(&pageview("https://a.com/v6"), UA_FIREFOX, &from)
            .await;
        statuses.push(r.status);
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!((10..=12).contains(&accepted), "{statuses:?}");
    let other = g
        .send(
            &pageview("https://a.com/v6/other"),
            UA_FIREFOX,
            "2001:db8:5:8::1",
        )
        .await;
    assert_eq!(other.status, 202, "another /64");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_the_pipeline_and_name_no_visitor() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let marker_ua = format!("{UA_FIREFOX} MetricsMarker/9");
    for i in 0..5 {
        let r = g
            .send(
                &pageview(&format!("https://a.com/m/{i}?q=secret")),
                &marker_ua,
                "192.0.2.55",
            )
            .await;
        assert_eq!(r.status, 202);
    }
    let bot = g
        .send(&pageview("https://a.com/"), "curl/8.5.0", "192.0.2.56")
        .await;
    assert_eq!(bot.dropped.as_deref(), Some("http_client"));
    assert_eq!(ch.wait_count(DB, "SELECT count() FROM events", 5), 5);
    // The insert's metrics are recorded once ClickHouse has answered: poll briefly.
    let start = Instant::now();
    let text = loop {
        let text = g.metrics().await;
        let done = text.contains("glimpse_insert_rows_total 5")
            && !text.contains("glimpse_insert_rollup_rows_total 0");
        if done || start.elapsed() > Duration::from_secs(5) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for needle in [
        "glimpse_http_responses_total{status=\"202\"} 6",
        "glimpse_events_accepted_total 5",
        "glimpse_events_dropped_total{reason=\"http_client\"} 1",
        "glimpse_queue_depth ",
        "glimpse_spool_bytes ",
        "glimpse_spool_segments ",
        "glimpse_spool_dead_letters 0",
        "glimpse_insert_batches_total ",
        "glimpse_insert_rows_total 5",
        "glimpse_insert_errors_total 0",
        "glimpse_insert_duration_seconds_bucket{le=\"+Inf\"} ",
        "glimpse_insert_duration_seconds_sum ",
        "glimpse_salt_age_seconds ",
        "glimpse_salt_refresh_age_seconds ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    for secret in ["192.0.2.5", "MetricsMarker", "secret", "/m/"] {
        assert!(!text.contains(secret), "metrics contain {secret:?}");
    }
    // The daily stats went as grouped rows: at least one per dimension.
    let rollup = support::metric(&text, "glimpse_insert_rollup_rows_total");
    assert!(rollup >= 17.0, "{rollup}");
    let salt_age = support::metric(&text, "glimpse_salt_age_seconds");
    assert!((0.0..86_400.0 + 120.0).contains(&salt_age), "{salt_age}");
    g.stop().await;
}
