//! The built-in dashboard: `glimpse dashboard` serves one HTML page and a JSON stats API over
//! the aggregate tables, in its own process, so the ingest path stays lean. The API mirrors the
//! shapes of Plausible's Stats API v1 where that costs little (`/api/v1/stats/aggregate`,
//! `timeseries`, `breakdown`). Every API request needs `Authorization: Bearer <dashboard.token>`;
//! the page itself holds no data and asks for the token.

pub mod params;
pub mod filters;
pub mod plan;
pub mod api;
pub mod v2;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::front::{self, Reply};
use crate::settings::Reader;

const PAGE: &str = include_str!("page.html");

/// The `[dashboard]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Bearer token for the stats API; `glimpse dashboard` refuses to start without one.
    pub token: String,
    /// k-anonymity: breakdown rows with fewer visitors are folded into "(other)".
    pub min_visitors: u32,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            listen: r.socket_addr("dashboard.listen", "127.0.0.1:8081"),
            token: r.string("dashboard.token", ""),
            min_visitors: r.bounded("dashboard.min_visitors", 0, 0, 1_000_000) as u32,
        }
    }
}

pub struct Dashboard {
    pub db: clickhouse::Client,
    pub token: String,
    pub sites: Vec<String>,
    /// Breakdown rows with fewer visitors are folded into "(other)".
    pub min_visitors: u32,
    pub clock: Clock,
    /// Each site's goals.
    pub goals: std::collections::HashMap<String, Vec<crate::model::Goal>>,
    /// Days of raw events kept (`retention.events_days`); 0: aggregates only, so filtered
    /// questions cannot be answered.
    pub events_days: u32,
}

/// Serves until `shutdown` completes, on the shared front with its limits.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    app: Arc<Dashboard>,
    limits: front::Settings,
) {
    front::serve(listener, shutdown, limits, move |_, req| {
        let app = app.clone();
        async move { handle(&app, req).await }
    })
    .await;
}

/// Largest v2 query body.
const MAX_QUERY_BYTES: usize = 64 * 1024;

async fn handle(app: &Dashboard, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let v2 = path == "/api/v2/query";
    match (req.method(), v2) {
        (&Method::GET, false) | (&Method::POST, true) => {}
        (_, true) => return api::error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
        (_, false) => return api::error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
    }
    if path == "/" {
        let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return r;
    }
    let endpoint = path.strip_prefix("/api/v1/");
    if endpoint.is_none() && !v2 {
        return api::error(
            StatusCode::NOT_FOUND,
            "no such page; the API is under /api/v1/ and at /api/v2/query",
        );
    }
    if !front::bearer(req.headers(), &app.token) {
        let mut r = api::error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <dashboard.token>",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let Some(endpoint) = endpoint else {
        let body = match front::read_body(
            req.into_body(),
            MAX_QUERY_BYTES,
            std::time::Duration::from_secs(10),
        )
        .await
        {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        return api::reply(v2::query(app, &body).await);
    };
    let query = req.uri().query().unwrap_or("").to_string();
    api::answer(app, endpoint, &query).await
}
