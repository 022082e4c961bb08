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
use crate::clientip::client_ip;
use crate::metrics::Metrics;
use crate::pipeline::{Outcome, Pipeline};

/// How long a client may take to send its request head, and its body.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's read buffer).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

pub struct App {
    pub pipeline: Pipeline,
    pub metrics: Arc<Metrics>,
    pub trusted_proxies: Vec<IpNet>,
    pub max_body_bytes: usize,
    /// For `/readyz`.
    pub db: clickhouse::Client,
    pub script: Script,
}

pub struct Limits {
    pub max_connections: usize,
    pub shutdown_grace: Duration,
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
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
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
        (&Method::GET | &Method::HEAD, "/api/event.gif") => pixel(app, peer.ip(), &req),
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
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = Limited::new(req.into_body(), app.max_body_bytes);
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, body.collect()).await {
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
    cors(outcome_response(app.pipeline.ingest_json(
        &body,
        ip,
        &user_agent,
    )))
}

/// The no-JavaScript fallback: the same fields as query parameters. `n` defaults to `pageview`
/// and `u` to the `Referer` of the image request (the page that shows the image).
fn pixel(app: &App, peer: IpAddr, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let h = req.headers();
    let ip = client_ip(peer, h, &app.trusted_proxies);
    let user_agent = h
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let referer = h.get(header::REFERER).and_then(|v| v.to_str().ok());
    let outcome =
        match crate::parse::parse_query_with_defaults(req.uri().query().unwrap_or(""), referer) {
            Ok(payload) => app.pipeline.ingest(payload, ip, user_agent),
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
            "collector queue is full; retry shortly",
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
    let intake = &app.pipeline.intake;
    let depth = (intake.max_capacity() - intake.capacity()) as f64;
    let gauges = [(
        "glimpse_queue_depth",
        "Encoded requests waiting for the batcher.",
        depth,
    )];
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
