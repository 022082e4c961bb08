//! The `glimpse` binary as a child process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clickhouse::ClickHouse;
use crate::client::http;
use crate::{free_port, repo_path};

/// The `glimpse` binary cargo built for this test run: next to the `deps/` directory that holds
/// the running test or bench executable.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join("glimpse");
    assert!(
        bin.exists(),
        "{} not found: run the tests with cargo, which builds it",
        bin.display()
    );
    bin
}

/// Runs the binary once with `args` and only the environment `env`.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The environment the binary's tests start from: ClickHouse `ch`, the site a.com, loopback as
/// trusted proxy (so tests choose client addresses) and the GeoIP2 fixture.
pub fn binary_env(ch: &ClickHouse) -> Vec<(&'static str, String)> {
    vec![
        ("GLIMPSE_CLICKHOUSE_URL", ch.url()),
        ("GLIMPSE_SITES", "a.com".to_owned()),
        ("GLIMPSE_PROXY_TRUSTED", "127.0.0.1".to_owned()),
        (
            "GLIMPSE_GEOIP_DATABASE",
            repo_path("tests/fixtures/geoip2-city-test.mmdb")
                .display()
                .to_string(),
        ),
    ]
}

/// The `glimpse` binary as a child process, with its stderr captured to a file.
pub struct GlimpseProcess {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl GlimpseProcess {
    pub fn start(env: &[(&str, String)], log: PathBuf) -> GlimpseProcess {
        GlimpseProcess::start_on(free_port(), env, log)
    }

    /// On a given port: a collector restarted where a load balancer expects it.
    pub fn start_on(port: u16, env: &[(&str, String)], log: PathBuf) -> GlimpseProcess {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .env_clear()
            .env("GLIMPSE_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if !env.iter().any(|(k, _)| *k == "GLIMPSE_SPOOL_DIR") {
            cmd.env("GLIMPSE_SPOOL_DIR", log.with_extension("spool"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn glimpse");
        let p = GlimpseProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            child,
        };
        let start = Instant::now();
        while http("GET", port, "/healthz", "").is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "glimpse did not start: {}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        status.code()
    }
}

impl Drop for GlimpseProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time of a process (all its threads), in seconds: what the benches
/// charge to the collector, ClickHouse and the anchor server.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
