//! Headless Chromium through chromedriver, and a loopback test web site for it to open.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{free_port, test_dep};

/// A desktop Chrome user agent for the browser tests: headless Chromium's own says
/// "HeadlessChrome", which Glimpse rightly drops as automation.
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// chromedriver driving Debian's headless Chromium, with a fresh profile per session.
pub struct Chromium {
    port: u16,
    child: Child,
    profiles: tempfile::TempDir,
}

impl Chromium {
    pub fn start() -> Chromium {
        for (bin, what) in [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
        ] {
            assert!(
                Path::new(bin).exists(),
                "{bin} not found. Install it with `sudo apt-get install -y chromium chromium-driver`, \
                 or run `scripts/test.sh`, which installs everything the tests need ({what})."
            );
        }
        let port = free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // chromedriver listens once it is ready for sessions.
        crate::wait_listening(port, Duration::from_secs(20), "chromedriver", String::new);
        Chromium {
            port,
            child,
            profiles: tempfile::tempdir().unwrap(),
        }
    }

    /// A new headless browser session.
    pub async fn session(&self) -> fantoccini::Client {
        let profile = tempfile::tempdir_in(self.profiles.path()).unwrap().keep();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-component-update".to_owned(),
            // Test sites under public-looking names (scripts treat localhost specially), and
            // under the test sites' own domain.
            "--host-resolver-rules=MAP *.test 127.0.0.1,MAP a.com 127.0.0.1".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--user-agent={BROWSER_UA}"),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("WebDriver session")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The official Plausible tracker.
pub fn plausible_tracker_js() -> String {
    test_dep("@plausible-analytics/tracker", "plausible.js")
}

/// Opens `url`, lets its scripts run, clicks the elements with these ids in order, and lets
/// what the clicks sent leave the page.
pub async fn open_and_click(browser: &fantoccini::Client, url: &str, ids: &[&str]) {
    let settle = || tokio::time::sleep(Duration::from_millis(400));
    browser.goto(url).await.unwrap();
    settle().await;
    for id in ids {
        browser
            .find(fantoccini::Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id} on {url}: {e}"))
            .click()
            .await
            .unwrap();
    }
    if !ids.is_empty() {
        settle().await;
    }
}

/// A test web site on loopback: every path answers with `page(path)` as HTML.
pub struct TestSite {
    pub port: u16,
    task: JoinHandle<()>,
}

impl TestSite {
    pub async fn start(page: impl Fn(&str) -> String + Send + Sync + 'static) -> TestSite {
        use http_body_util::Full;
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let page = Arc::new(page);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let page = page.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let path = req.uri().path().to_owned();
                        let html = page(&path);
                        async move {
                            let mut r = hyper::Response::new(Full::new(bytes::Bytes::from(html)));
                            let ct = if path.ends_with(".js") {
                                "application/javascript"
                            } else {
                                "text/html; charset=utf-8"
                            };
                            r.headers_mut().insert("content-type", ct.parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestSite { port, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The site under a `*.test` host name, which the browser resolves to loopback.
    pub fn url_on(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}
