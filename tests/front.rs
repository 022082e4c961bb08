//! The collector's HTTP routes on the shared front, with no ClickHouse: health and readiness,
//! CORS, methods, content types, size limits and the event endpoint.

use std::sync::Arc;

use glimpse::server::Probe;
use support::{Front, Send, StatsApi, UA_FIREFOX, front_config, pageview};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_surface() {
    let g = Front::start(front_config()).await;
    let client = support::browser_client();
    assert_eq!(
        client.get(g.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        client.get(g.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let pre = client
        .request(reqwest::Method::OPTIONS, g.url("/api/event"))
        .header("origin", "https://a.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    assert!(
        pre.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let big = format!(
        r#"{{"n":"pageview","u":"https://a.com/","p":{{"k":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    // `Send` uses its own connection: answering 413 before the body is read closes the
    // connection, and a pooled client could race to reuse it.
    let r = Send::event(g.addr, big).send().await;
    assert_eq!(r.status, 413);
    assert!(r.body.contains("larger than 65536 bytes"));
    let r = Send::event(g.addr, "n=1")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await;
    assert_eq!(r.status, 415);
    let r = client.get(g.url("/api/event")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        client.get(g.url("/nope")).send().await.unwrap().status(),
        404
    );
    let r = g
        .send(
            r#"{"n":"pageview","u":"https://a.com/","d":"a.com"}"#,
            UA_FIREFOX,
            "203.0.113.1",
        )
        .await;
    assert_eq!(r.status, 202);
    // application/json works as well as text/plain.
    let r = Send::event(g.addr, pageview("https://a.com/json"))
        .header("content-type", "application/json")
        .ua(UA_FIREFOX)
        .send()
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(g.stop().await, 2, "two rows recorded");
}

/// A body that arrives in several pieces is read whole, and the size limit holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_pieces() {
    let g = Front::start(front_config()).await;
    let addr = g.addr;
    let ua = format!("User-Agent: {UA_FIREFOX}");
    let status = tokio::task::spawn_blocking(move || {
        let headers = [
            "Content-Type: text/plain",
            "Accept-Language: en",
            ua.as_str(),
        ];
        let event = pageview("https://a.com/in-pieces");
        let (a, rest) = event.as_bytes().split_at(10);
        let (b, c) = rest.split_at(10);
        let whole = support::post_in_pieces(addr, "/api/event", &headers, &[a, b, c]).unwrap();
        let big = vec![b'x'; 30_000];
        let over =
            support::post_in_pieces(addr, "/api/event", &headers, &[&big, &big, &big]).unwrap();
        (whole, over)
    })
    .await
    .unwrap();
    assert_eq!(status, (202, 413));
    assert_eq!(g.stop().await, 1, "the event in pieces is recorded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_the_probes_answer() {
    let failing: Probe = Arc::new(|| Box::pin(async { Err("connection refused".to_string()) }));
    let g = Front::start_with(front_config(), failing).await;
    let client = support::browser_client();
    let r = client.get(g.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("not reachable"), "{body}");
    assert!(
        !body.contains("connection refused"),
        "the reason goes to the log, not to anonymous clients: {body}"
    );
    assert_eq!(
        client.get(g.url("/healthz")).send().await.unwrap().status(),
        200
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let open = Front::start(front_config()).await;
    let r = reqwest::get(open.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 200, "open by default");
    open.stop().await;

    let mut cfg = front_config();
    cfg.metrics.token = "metrics-secret-0123".into();
    let g = Front::start(cfg).await;
    let client = reqwest::Client::new();
    for auth in [
        None,
        Some("Bearer wrong-secret-01234"),
        Some("metrics-secret-0123"),
    ] {
        let mut req = client.get(g.url("/metrics"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    let r = client
        .get(g.url("/metrics"))
        .header("authorization", "Bearer metrics-secret-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("glimpse_events_accepted_total")
    );
    g.stop().await;
}

/// The dashboard is served by the same front: a client that sends no request head is cut off
/// after the header timeout, and the connection cap holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_has_the_front_limits() {
    use std::io::Read;
    let mut cfg = front_config();
    cfg.server.header_timeout = std::time::Duration::from_secs(1);
    cfg.server.max_connections = 2;
    // The page needs no database; the API is not called here.
    let server = StatsApi::start(cfg, "dashboard-token-0123456789").await;
    let addr = server.addr;
    let silent = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let start = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        start.elapsed()
    });
    // Two silent connections take both slots; a third client waits until the timeout.
    let hog = std::net::TcpStream::connect(addr).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let start = std::time::Instant::now();
    let page = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let held = silent.await.unwrap();
    assert!(
        held < std::time::Duration::from_secs(3),
        "a silent connection is closed after the header timeout, not {held:?}"
    );
    drop(hog);
    server.stop().await;
}
