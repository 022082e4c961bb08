//! HTTP clients: a raw one-shot exchange for servers and processes, a browser-like client, and
//! the one way tests send events: [`Send`], which returns a typed [`Reply`].

use std::net::SocketAddr;
use std::time::Duration;

/// A minimal blocking HTTP/1.1 exchange (one request, then close) on loopback, usable from
/// sync and async tests alike.
pub fn http(method: &str, port: u16, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = raw[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `POST path` with `body` sent chunked, one chunk per piece and a pause between pieces, so that
/// the server reads it in several frames; `headers` are `Name: value` lines. The status.
pub fn post_in_pieces(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    pieces: &[&[u8]],
) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let mut send = || -> std::io::Result<()> {
        for piece in pieces {
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
            s.write_all(piece)?;
            s.write_all(b"\r\n")?;
        }
        s.write_all(b"0\r\n\r\n")
    };
    // The server may answer early (413) and close while pieces are still on the way.
    let _ = send();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let head = String::from_utf8_lossy(&raw);
    Ok(head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

/// An HTTP client that sends what every browser sends with a beacon request besides its user
/// agent (`Accept-Language`), so the header checks treat it as a browser.
pub fn browser_client() -> reqwest::Client {
    browser_client_builder().build().expect("reqwest client")
}

pub fn browser_client_builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT_LANGUAGE,
        reqwest::header::HeaderValue::from_static("en-GB,en;q=0.9"),
    );
    reqwest::Client::builder().default_headers(headers)
}

/// One event request, built up and then sent: `Send::event(addr, body).ua(..).from(ip)`.
/// By default it is what a browser's beacon sends (`text/plain`, `Accept-Language`) from the
/// test's own address; [`Send::from`] sets the visitor address through the trusted proxy header.
#[derive(Debug, Clone)]
pub struct Send {
    url: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    browser: bool,
}

impl Send {
    /// `POST /api/event` with `body`.
    pub fn event(addr: SocketAddr, body: impl Into<Vec<u8>>) -> Send {
        Send {
            url: format!("http://{addr}/api/event"),
            body: body.into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            browser: true,
        }
    }

    pub fn ua(self, ua: &str) -> Send {
        self.header("user-agent", ua)
    }

    /// The visitor's address, forwarded by the trusted proxy (loopback in the tests).
    pub fn from(self, ip: &str) -> Send {
        self.header("x-forwarded-for", ip)
    }

    /// Sets a header, replacing one of the same name.
    pub fn header(mut self, name: &str, value: &str) -> Send {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Without the headers every browser adds (a server-side sender).
    pub fn bare(mut self) -> Send {
        self.browser = false;
        self
    }

    /// Sends on a fresh connection, so an answer that closes it cannot race a pooled reuse.
    pub async fn send(self) -> Reply {
        let client = if self.browser {
            browser_client()
        } else {
            reqwest::Client::new()
        };
        let mut req = client.post(&self.url);
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        Reply::from(req.body(self.body).send().await.unwrap()).await
    }
}

/// A collector listening at `addr`, as tests talk to it.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub addr: SocketAddr,
}

impl Endpoint {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs an event as a browser at `ip` with user agent `ua` would (through the trusted proxy).
    pub async fn send(&self, body: &str, ua: &str, ip: &str) -> Reply {
        Send::event(self.addr, body).ua(ua).from(ip).send().await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What the collector answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The `x-glimpse-dropped` reason, when the event was deliberately not recorded.
    pub dropped: Option<String>,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub async fn from(res: reqwest::Response) -> Reply {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let dropped = headers
            .get("x-glimpse-dropped")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.text().await.unwrap();
        Reply {
            status,
            dropped,
            body,
            headers,
        }
    }
}
