//! HTTP front: accepts connections (bounded), routes requests, and turns pipeline outcomes into
//! responses. `run` takes its listener, shutdown signal and state; it owns no globals.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::beacon::{self, Script};
use crate::check::{Sender, Signals};
use crate::clientip::client_ip;
use crate::metrics::Metrics;
use crate::pipeline::{Outcome, Pipeline};
use crate::ratelimit::RateLimiter;
use crate::spool::Spool;

pub struct App {
    pub pipeline: Pipeline,
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_body_bytes: usize,
    /// How long a client may take to send its body once the head has arrived.
    pub body_timeout: Duration,
    pub rate_limiter: RateLimiter,
    /// Whether a trusted proxy's own address (a request it made itself) is limited too.
    pub rate_limit_proxies: bool,
    /// For the spool gauges.
    pub spool: Arc<Spool>,
    /// For `/readyz`.
    pub db: clickhouse::Client,
    pub script: Script,
}

pub struct Limits {
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request head. hyper starts this clock as soon as it
    /// waits for a head, so it also closes idle keep-alive connections.
    pub header_timeout: Duration,
    /// Largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
}

/// Serves until `shutdown` completes, then stops accepting and gives open connections up to
/// `limits.shutdown_grace` to finish their current request.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    app: Arc<App>,
    limits: Limits,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Waiting for a permit before accepting keeps excess clients in the kernel's backlog
        // instead of holding memory for them here.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(&app, peer, req).await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

async fn handle(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let response = route(app, peer, req).await;
    app.metrics.record_status(response.status().as_u16());
    response
}

async fn route(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/api/event") => ingest(app, peer.ip(), req).await,
        (&Method::OPTIONS, "/api/event") => cors(preflight()),
        (_, "/api/event") => method_not_allowed("POST, OPTIONS"),
        (&Method::GET | &Method::HEAD, "/js/glimpse.js") => script(&app.script, req.headers()),
        (&Method::GET | &Method::HEAD, "/api/event.gif") => pixel(app, peer.ip(), &req).await,
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET | &Method::HEAD, "/readyz") => ready(app).await,
        (&Method::GET, "/metrics") => metrics(app),
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint; events go to POST /api/event",
        ),
    }
}

async fn ingest(app: &App, peer: IpAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if !(ct.starts_with("text/plain") || ct.starts_with("application/json")) {
            return cors(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type must be text/plain or application/json",
            ));
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.max_body_bytes as u64) {
        return cors(too_large(app.max_body_bytes));
    }
    let ip = client_ip(peer, req.headers(), &app.trusted_proxies);
    if !admit(app, ip) {
        return cors(rate_limited());
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let signals = Signals::from_headers(req.headers());
    let body = Limited::new(req.into_body(), app.max_body_bytes);
    let body = match tokio::time::timeout(app.body_timeout, body.collect()).await {
        Err(_) => {
            return cors(error(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ));
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return cors(too_large(app.max_body_bytes));
        }
        Ok(Err(_)) => {
            return cors(error(
                StatusCode::BAD_REQUEST,
                "could not read request body",
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let sender = Sender {
        ip,
        user_agent: &user_agent,
        signals,
    };
    cors(outcome_response(
        app.pipeline.ingest_json(&body, &sender).await,
    ))
}

/// The per-client rate limit. A trusted proxy's own address is exempt unless configured
/// otherwise: it is a backend sending events server-side, not a visitor.
fn admit(app: &App, ip: IpAddr) -> bool {
    if !app.rate_limit_proxies && app.trusted_proxies.iter().any(|n| n.contains(&ip)) {
        return true;
    }
    if app.rate_limiter.allow(ip) {
        return true;
    }
    app.metrics.rate_limited.inc();
    false
}

fn rate_limited() -> Response<Full<Bytes>> {
    retry_later(
        StatusCode::TOO_MANY_REQUESTS,
        "too many events from this client; slow down",
    )
}

/// The no-JavaScript fallback: the same fields as query parameters. `n` defaults to `pageview`
/// and `u` to the `Referer` of the image request (the page that shows the image).
async fn pixel(app: &App, peer: IpAddr, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let h = req.headers();
    let ip = client_ip(peer, h, &app.trusted_proxies);
    if !admit(app, ip) {
        return cors(rate_limited());
    }
    let user_agent = h
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let referer = h.get(header::REFERER).and_then(|v| v.to_str().ok());
    let sender = Sender {
        ip,
        user_agent,
        signals: Signals::from_headers(h),
    };
    let outcome =
        match crate::parse::parse_query_with_defaults(req.uri().query().unwrap_or(""), referer) {
            Ok(payload) => app.pipeline.ingest(payload, &sender).await,
            Err(e) => Outcome::Invalid(e.0),
        };
    let mut r = outcome_response(outcome);
    if r.status() == StatusCode::ACCEPTED {
        // An <img> needs an image; 200 keeps every browser happy.
        *r.status_mut() = StatusCode::OK;
        *r.body_mut() = Full::new(Bytes::from_static(beacon::PIXEL));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    cors(r)
}

/// The beacon script: cached for a day, revalidated by ETag, gzipped when the client accepts it.
fn script(script: &Script, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
    let etag = HeaderValue::from_str(&script.etag).expect("hex etag is a valid header");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == script.etag || t.trim() == "*")
        });
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut r = if matches {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if gzip {
        let mut r = Response::new(Full::new(script.gzip.clone()));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(Full::new(script.plain.clone()))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400, stale-while-revalidate=604800"),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    cors(r)
}

pub fn outcome_response(outcome: Outcome) -> Response<Full<Bytes>> {
    match outcome {
        Outcome::Accepted { .. } => text(StatusCode::ACCEPTED, "ok"),
        Outcome::Dropped(reason) => {
            let mut r = text(StatusCode::ACCEPTED, "ok");
            r.headers_mut().insert(
                "x-glimpse-dropped",
                HeaderValue::from_static(reason.as_str()),
            );
            r
        }
        Outcome::Invalid(msg) => error(StatusCode::BAD_REQUEST, &msg),
        Outcome::Busy => retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "collector queue or spool is full; retry shortly",
        ),
        Outcome::Unavailable => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "collector is shutting down or cannot write its spool; retry shortly",
        ),
        Outcome::NoSalt => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "visitor salt not available yet; retry shortly",
        ),
    }
}

async fn ready(app: &App) -> Response<Full<Bytes>> {
    let check = app.db.query("SELECT 1").fetch_one::<u8>();
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(_)) => text(StatusCode::OK, "ready"),
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("ClickHouse not reachable: {e}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ClickHouse did not answer within 2 s",
        ),
    }
}

fn metrics(app: &App) -> Response<Full<Bytes>> {
    let now = app.pipeline.clock.now();
    let salts = &app.pipeline.salts;
    let gauges = [
        (
            "glimpse_queue_depth",
            "Requests waiting for the batcher.",
            app.pipeline.intake.depth() as f64,
        ),
        (
            "glimpse_spool_bytes",
            "Bytes of spool segments on disk, not yet in ClickHouse.",
            app.spool.bytes() as f64,
        ),
        (
            "glimpse_spool_segments",
            "Spool segments on disk, not yet in ClickHouse.",
            app.spool.segments() as f64,
        ),
        (
            "glimpse_spool_dead_letters",
            "Segments ClickHouse rejected, kept in the dead-letter directory.",
            app.spool.dead_letters() as f64,
        ),
        (
            "glimpse_salt_age_seconds",
            "Age of the oldest visitor salt in memory (-1: none loaded).",
            salts.age(now).map_or(-1.0, |s| s as f64),
        ),
        (
            "glimpse_salt_refresh_age_seconds",
            "Seconds since the salts were last read from ClickHouse (-1: never).",
            salts.since_refresh(now).map_or(-1.0, |s| s as f64),
        ),
        (
            "glimpse_visits_open",
            "Visits in progress held in memory.",
            app.pipeline.visits.open() as f64,
        ),
        (
            "glimpse_visits_untracked",
            "Events counted as a visit of their own because the visit table was full.",
            app.pipeline.visits.untracked() as f64,
        ),
        (
            "glimpse_rate_limited_clients",
            "Clients the rate limiter currently tracks.",
            app.rate_limiter.tracked() as f64,
        ),
    ];
    let mut r = Response::new(Full::new(Bytes::from(app.metrics.render(&gauges))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `{"error": "..."}` with the given status.
pub fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": msg }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn too_large(max: usize) -> Response<Full<Bytes>> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {max} bytes"),
    )
}

fn retry_later(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut r = error(status, msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn preflight() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

/// Any site may send events; the dropped reason is readable from scripts for debugging.
fn cors(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-glimpse-dropped"),
    );
    r
}
