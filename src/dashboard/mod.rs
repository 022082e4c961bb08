//! The built-in dashboard: `glimpse dashboard` serves one HTML page and a JSON stats API over
//! the aggregate tables, in its own process, so the ingest path stays lean. The API mirrors the
//! shapes of Plausible's Stats API v1 where that costs little (`/api/v1/stats/aggregate`,
//! `timeseries`, `breakdown`). Every API request needs `Authorization: Bearer <dashboard.token>`;
//! the page itself holds no data and asks for the token.

pub mod api;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::clock::Clock;

const PAGE: &str = include_str!("page.html");

pub struct Dashboard {
    pub db: clickhouse::Client,
    pub token: String,
    pub sites: Vec<String>,
    /// Breakdown rows with fewer visitors are folded into "(other)".
    pub min_visitors: u32,
    pub clock: Clock,
}

/// Serves until `shutdown` completes.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>, app: Arc<Dashboard>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(app: &Dashboard, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() != Method::GET {
        return api::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    if path == "/" {
        let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return r;
    }
    let Some(endpoint) = path.strip_prefix("/api/v1/") else {
        return api::error(
            StatusCode::NOT_FOUND,
            "no such page; the API is under /api/v1/",
        );
    };
    if !authorized(app, req.headers()) {
        let mut r = api::error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <dashboard.token>",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let query = req.uri().query().unwrap_or("");
    api::answer(app, endpoint, query).await
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn authorized(app: &Dashboard, headers: &http::HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), app.token.as_bytes());
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
