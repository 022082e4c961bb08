//! The collector's HTTP routes: events in (`POST /api/event`, the pixel), the beacon script,
//! health, readiness and metrics. [`run`] serves them on the shared front ([`front`]) with an
//! ingest handle (the [`Pipeline`]) and a readiness probe; it needs no ClickHouse of its own.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::beacon::{self, Script, Scripts};
use crate::clientip::{self, Peer};
use crate::filter::Signals;
use crate::front::{self, Reply, error, method_not_allowed, retry_later, text, too_large};
use crate::metrics::{Gauge, Metrics};
use crate::pipeline::{Outcome, Pipeline, Requester};
use crate::ratelimit::{self, RateLimiter};
use crate::settings::Reader;

/// The `[ingest]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    pub max_body_bytes: usize,
}

impl Ingest {
    pub(crate) fn read(r: &mut Reader) -> Ingest {
        Ingest {
            max_body_bytes: r.bounded("ingest.max_body_bytes", 65_536, 256, 16 << 20) as usize,
        }
    }
}

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>`; empty: open (bind the
    /// collector to a private address, or set a token, before exposing it).
    pub token: String,
}

impl MetricsSettings {
    pub(crate) fn read(r: &mut Reader) -> MetricsSettings {
        MetricsSettings {
            token: r.string("metrics.token", ""),
        }
    }
}

/// Answers whether the collector can deliver: `Err` says why not.
pub type Probe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A component's gauges, sampled at each `/metrics` read.
pub(crate) type Gauges = Box<dyn Fn(&mut Vec<Gauge>) + Send + Sync>;

/// Everything the routes need.
pub struct Routes {
    /// The ingest handle.
    pub pipeline: Pipeline,
    pub ready: Probe,
    /// Gauges of components outside the request path (the spool, ...).
    pub gauges: Vec<Gauges>,
    pub metrics: Arc<Metrics>,
    pub proxy: clientip::Settings,
    pub rate_limit: ratelimit::Settings,
    pub rate_limiter: RateLimiter,
    pub ingest: Ingest,
    /// `/metrics` needs this bearer token when it is not empty.
    pub metrics_token: String,
    /// How long a client may take to send its body once the head has arrived.
    pub body_timeout: Duration,
    pub scripts: Scripts,
}

impl Routes {
    /// The routes over `pipeline`, configured by these sections.
    pub fn new(
        pipeline: Pipeline,
        ready: Probe,
        proxy: &clientip::Settings,
        rate_limit: &ratelimit::Settings,
        ingest: &Ingest,
        metrics: &MetricsSettings,
        server: &front::Settings,
    ) -> Routes {
        Routes {
            metrics: pipeline.metrics.clone(),
            pipeline,
            ready,
            gauges: Vec::new(),
            proxy: proxy.clone(),
            rate_limit: rate_limit.clone(),
            rate_limiter: RateLimiter::new(rate_limit.limits()),
            ingest: ingest.clone(),
            metrics_token: metrics.token.clone(),
            body_timeout: server.body_timeout,
            scripts: Scripts::default(),
        }
    }
}

/// Serves the routes until `shutdown`, then drains (see [`front::serve`]).
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    routes: Arc<Routes>,
    settings: front::Settings,
) {
    front::serve(listener, shutdown, settings, move |peer, req| {
        let routes = routes.clone();
        async move { handle(&routes, peer, req).await }
    })
    .await;
}

async fn handle(routes: &Routes, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let response = route(routes, peer, req).await;
    routes.metrics.record_status(response.status().as_u16());
    response
}

async fn route(routes: &Routes, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/api/event") => ingest(routes, peer.ip(), req).await,
        (&Method::OPTIONS, "/api/event") => cors(preflight()),
        (_, "/api/event") => method_not_allowed("POST, OPTIONS"),
        (&Method::GET | &Method::HEAD, path) if path.starts_with("/js/") => {
            match routes.scripts.get(&path[4..]) {
                Ok(s) => script(&s, req.headers()),
                Err(e) => error(StatusCode::NOT_FOUND, &format!("{}: {e}", &path[4..])),
            }
        }
        (&Method::GET | &Method::HEAD, "/api/event.gif") => pixel(routes, peer.ip(), &req).await,
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET | &Method::HEAD, "/readyz") => ready(routes).await,
        (&Method::GET, "/metrics") => metrics(routes, req.headers()),
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint; events go to POST /api/event",
        ),
    }
}

async fn ingest(routes: &Routes, peer: IpAddr, req: Request<Incoming>) -> Reply {
    let (head, body) = req.into_parts();
    let headers = &head.headers;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.as_bytes();
        let is = |prefix: &str| {
            ct.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
        };
        if !(is("text/plain") || is("application/json")) {
            return cors(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type must be text/plain or application/json",
            ));
        }
    }
    // The fields travel in the body; a query string here would be ignored, so it is refused.
    if head.uri.query().is_some_and(|q| !q.is_empty()) {
        return cors(error(
            StatusCode::BAD_REQUEST,
            "POST /api/event takes its fields in the body, not in a query string",
        ));
    }
    let max = routes.ingest.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return cors(too_large(max));
    }
    let client = clientip::peer(peer, headers, &routes.proxy);
    if !admit(routes, client) {
        return cors(rate_limited());
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let signals = Signals::from_headers(headers);
    let body = match front::read_body(body, max, routes.body_timeout).await {
        Ok(body) => body,
        Err(reply) => return cors(reply),
    };
    let requester = Requester {
        ip: client.address(),
        user_agent,
        signals,
    };
    cors(outcome_response(
        routes.pipeline.ingest_json(&body, &requester).await,
    ))
}

/// The per-client rate limit. A trusted proxy's own request is limited as one client too,
/// unless `rate_limit.trusted_proxies = false` exempts it. Nothing else can be.
fn admit(routes: &Routes, client: Peer) -> bool {
    if !routes.rate_limit.trusted_proxies && matches!(client, Peer::Proxy(_)) {
        return true;
    }
    if routes.rate_limiter.allow(client.limit_key()) {
        return true;
    }
    routes.metrics.rate_limited.inc();
    false
}

fn rate_limited() -> Reply {
    retry_later(
        StatusCode::TOO_MANY_REQUESTS,
        "too many events from this client; slow down",
    )
}

/// The no-JavaScript fallback: the same fields as query parameters. `n` defaults to `pageview`
/// and `u` to the `Referer` of the image request (the page that shows the image).
async fn pixel(routes: &Routes, peer: IpAddr, req: &Request<Incoming>) -> Reply {
    let h = req.headers();
    let client = clientip::peer(peer, h, &routes.proxy);
    if !admit(routes, client) {
        return cors(rate_limited());
    }
    let user_agent = h
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let referer = h.get(header::REFERER).and_then(|v| v.to_str().ok());
    let requester = Requester {
        ip: client.address(),
        user_agent,
        signals: Signals::from_headers(h),
    };
    let outcome =
        match crate::parse::parse_query_with_defaults(req.uri().query().unwrap_or(""), referer) {
            Ok(payload) => routes.pipeline.ingest(payload, &requester).await,
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
fn script(script: &Script, headers: &http::HeaderMap) -> Reply {
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

pub(crate) fn outcome_response(outcome: Outcome) -> Reply {
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

/// Anonymous clients learn only ready or not; the reason goes to the log.
async fn ready(routes: &Routes) -> Reply {
    match tokio::time::timeout(Duration::from_secs(2), (routes.ready)()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "ClickHouse not reachable")
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ClickHouse did not answer within 2 s",
        ),
    }
}

fn metrics(routes: &Routes, headers: &http::HeaderMap) -> Reply {
    if !routes.metrics_token.is_empty() && !front::bearer(headers, &routes.metrics_token) {
        return front::unauthorized(
            "missing or wrong token: send Authorization: Bearer <metrics.token>",
        );
    }
    let mut gauges = Vec::with_capacity(16);
    routes.pipeline.gauges(&mut gauges);
    routes.rate_limiter.gauges(&mut gauges);
    for source in &routes.gauges {
        source(&mut gauges);
    }
    let mut r = Response::new(Full::new(Bytes::from(routes.metrics.render(&gauges))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

fn preflight() -> Reply {
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
fn cors(mut r: Reply) -> Reply {
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
