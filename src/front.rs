//! The HTTP front shared by the collector and the dashboard: a bounded accept loop with header
//! and idle timeouts and a graceful drain, reading a body under a size and time limit, and the
//! response shapes (`{"error": "..."}` with a status that names the problem).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::settings::Reader;

/// Every response is a whole body in memory: answers are small.
pub type Reply = Response<Full<Bytes>>;

/// The `[server]` section: limits of every HTTP listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub max_connections: usize,
    /// How long open connections may finish their request once shutdown starts.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request head. hyper starts this clock as soon as it
    /// waits for a head, so it also closes idle keep-alive connections.
    pub header_timeout: Duration,
    /// How long a client may take to send its body once the head has arrived.
    pub body_timeout: Duration,
    /// Largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            max_connections: r.bounded("server.max_connections", 10_000, 1, 1_000_000) as usize,
            shutdown_grace: r.millis("server.shutdown_grace_ms", 10_000, 0, 3_600_000),
            header_timeout: r.millis("server.header_timeout_ms", 10_000, 100, 3_600_000),
            body_timeout: r.millis("server.body_timeout_ms", 10_000, 100, 3_600_000),
            // hyper's read buffer cannot be smaller than 8 KiB.
            max_header_bytes: r.bounded("server.max_header_bytes", 16_384, 8192, 1 << 20) as usize,
        }
    }
}

/// Serves `handle` until `shutdown` completes, then stops accepting and gives open connections
/// up to `settings.shutdown_grace` to finish their current request.
pub async fn serve<H, F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    settings: Settings,
    handle: H,
) where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let handle = Arc::new(handle);
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Waiting for a permit before accepting keeps excess clients in the kernel's backlog
        // instead of holding memory for them here.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed; stop rather than spin if it were
            },
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
        let handle = handle.clone();
        let service = service_fn(move |req| {
            let response = handle(peer, req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// The whole body, at most `max` bytes, received within `timeout`; otherwise the reply to send.
pub(crate) async fn read_body(
    body: Incoming,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, Reply> {
    match tokio::time::timeout(timeout, collect_at_most(body, max)).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received in time",
        )),
        Ok(body) => body,
    }
}

/// The body's data frames joined, refusing more than `max` bytes. A body that arrives in one
/// frame, as a small request's does with its head, is returned as it is, without a copy.
async fn collect_at_most(mut body: Incoming, max: usize) -> Result<Bytes, Reply> {
    if body.size_hint().lower() > max as u64 {
        return Err(too_large(max));
    }
    let mut whole = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "could not read request body",
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing we read
        };
        let len = joined.as_ref().map_or(whole.len(), BytesMut::len) + data.len();
        if len > max {
            return Err(too_large(max));
        }
        match joined.as_mut() {
            Some(buf) => buf.extend_from_slice(&data),
            None if whole.is_empty() => whole = data,
            None => {
                let mut buf = BytesMut::with_capacity(len);
                buf.extend_from_slice(&whole);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(whole, BytesMut::freeze))
}

/// Whether the request carries `Authorization: Bearer <token>`; never for an empty token.
/// Constant-time, so the token cannot be guessed byte by byte from timings.
pub fn bearer(headers: &http::HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 401 with the challenge for a bearer token.
pub(crate) fn unauthorized(msg: &str) -> Reply {
    let mut r = error(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

pub fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON body with its content type.
pub fn json(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `{"error": "..."}` with the given status.
pub fn error(status: StatusCode, msg: &str) -> Reply {
    json(status, serde_json::json!({ "error": msg }).to_string())
}

pub(crate) fn too_large(max: usize) -> Reply {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {max} bytes"),
    )
}

/// An error the client should retry after a second.
pub(crate) fn retry_later(status: StatusCode, msg: &str) -> Reply {
    let mut r = error(status, msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
