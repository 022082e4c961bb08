//! An event proxy shaped like the common server-side integrations (framework middleware, CDN
//! workers, backend SDKs): it forwards each request's body with only `User-Agent`,
//! `X-Forwarded-For` and `Content-Type: application/json`, as Plausible's Events API
//! documentation shows. The visitor's address is what the edge in front of it reported in
//! `X-Real-IP` (or the peer address).

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use tokio::task::JoinHandle;

pub struct EventProxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EventProxy {
    /// Forwards every request to `target`'s `/api/event`.
    pub async fn start(target: SocketAddr) -> EventProxy {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = reqwest::Client::new();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let client = client.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned)
                            };
                            let ua = header("user-agent").unwrap_or_default();
                            let visitor = header("x-real-ip").unwrap_or(peer.ip().to_string());
                            let body = req.into_body().collect().await?.to_bytes();
                            let upstream = client
                                .post(format!("http://{target}/api/event"))
                                .header("user-agent", ua)
                                .header("x-forwarded-for", visitor)
                                .header("content-type", "application/json")
                                .body(body)
                                .send()
                                .await;
                            let mut r = match upstream {
                                Ok(u) => {
                                    let status = u.status().as_u16();
                                    let mut r = hyper::Response::new(Full::new(
                                        u.bytes().await.unwrap_or_default(),
                                    ));
                                    *r.status_mut() = hyper::StatusCode::from_u16(status)
                                        .unwrap_or(hyper::StatusCode::BAD_GATEWAY);
                                    r
                                }
                                Err(_) => {
                                    let mut r =
                                        hyper::Response::new(Full::new(bytes::Bytes::new()));
                                    *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                                    r
                                }
                            };
                            r.headers_mut()
                                .insert("content-type", "text/plain".parse().unwrap());
                            Ok::<_, hyper::Error>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        EventProxy { addr, task }
    }
}

impl Drop for EventProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
