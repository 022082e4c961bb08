//! A real, throwaway ClickHouse server per test: its own temp dir and free loopback ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::http;
use crate::{free_port, repo_path};

const SERVER_CANDIDATES: &[&str] = &["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"];

/// The read-only user of `scripts/clickhouse/users.xml`: (name, password).
pub const DASHBOARDS_USER: (&str, &str) = ("dashboards", "dashboards");

/// A ClickHouse server in a temp dir, on free loopback ports; killed on drop.
pub struct ClickHouse {
    pub http_port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ClickHouse {
    pub fn start() -> ClickHouse {
        ClickHouse::start_node(free_port(), free_port(), None)
    }

    /// A server on the given ports, with `config_d` (XML) added as `config.d/node.xml`: a
    /// cluster node.
    pub fn start_node(http_port: u16, tcp_port: u16, config_d: Option<String>) -> ClickHouse {
        let mut ch = ClickHouse::prepare(http_port, tcp_port, config_d);
        ch.spawn();
        ch
    }

    fn prepare(http_port: u16, tcp_port: u16, config_d: Option<String>) -> ClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_owned();
        let fill = |t: &str| {
            t.replace("{{DIR}}", &d)
                .replace("{{HTTP_PORT}}", &http_port.to_string())
                .replace("{{TCP_PORT}}", &tcp_port.to_string())
        };
        let config = std::fs::read_to_string(repo_path("scripts/clickhouse/config.xml")).unwrap();
        let users = std::fs::read_to_string(repo_path("scripts/clickhouse/users.xml")).unwrap();
        std::fs::write(dir.path().join("config.xml"), fill(&config)).unwrap();
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        if let Some(xml) = config_d {
            std::fs::create_dir_all(dir.path().join("config.d")).unwrap();
            std::fs::write(dir.path().join("config.d/node.xml"), xml).unwrap();
        }
        ClickHouse {
            http_port,
            dir,
            child: None,
        }
    }

    fn spawn(&mut self) {
        let binary = SERVER_CANDIDATES.iter().find(|p| Path::new(p).exists()).unwrap_or_else(|| {
            panic!(
                "clickhouse-server not found (looked in {SERVER_CANDIDATES:?}). Install it with \
                 `sudo apt-get install -y clickhouse-server`, or run `scripts/test.sh`, which installs everything the tests need."
            )
        });
        let d = self.dir.path().to_str().unwrap().to_owned();
        let child = Command::new(binary)
            .arg(format!("--config-file={d}/config.xml"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30));
    }

    /// SIGKILL: the server vanishes mid-whatever, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data and ports after `stop` or `kill`.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Where a Glimpse instance of this test keeps its spool (shared across its restarts).
    pub fn spool_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("spool-{name}"))
    }

    /// The server's process id (for CPU accounting in the load harness).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A path in this test's temporary directory, for files a test hands to Glimpse.
    pub fn temp_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok((200, body)) = http("GET", self.http_port, "/ping", "")
                && body.starts_with("Ok.")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.path().join("log/clickhouse-server.err.log"))
            .unwrap_or_default();
        panic!("ClickHouse did not answer /ping within {limit:?}; its error log:\n{log}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Runs one statement and returns its TSV output.
    pub fn sql(&self, database: &str, query: &str) -> String {
        let (status, text) = self.sql_as(("default", ""), database, query);
        assert!(status == 200, "query failed ({status}): {query}\n{text}");
        text
    }

    /// Runs one statement as `(user, password)`: the HTTP status and the answer, or the error.
    pub fn sql_as(
        &self,
        (user, password): (&str, &str),
        database: &str,
        query: &str,
    ) -> (u16, String) {
        http(
            "POST",
            self.http_port,
            &format!("/?database={database}&user={user}&password={password}"),
            query,
        )
        .unwrap_or_else(|e| panic!("ClickHouse request failed: {e}"))
    }

    /// What one view of a migration makes of the raw events stored in `database`: the view's
    /// statement in `schema/<migration>` (the one that starts with `head`, up to its `;`) is
    /// created again over a `Null` copy of its insert table `source`, writing into an empty copy
    /// of its table `target` named `check_<target>`, and the stored rows are inserted through it.
    /// Returns the statement as the migration has it.
    pub fn replay_events_through_view(
        &self,
        database: &str,
        migration: &str,
        head: &str,
        source: &str,
        target: &str,
    ) -> String {
        let path = repo_path(&format!("schema/{migration}"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let from = text
            .find(head)
            .unwrap_or_else(|| panic!("{migration} has no `{head}`"));
        let view = &text[from..from + text[from..].find(';').unwrap_or(text.len() - from)];
        let from_source = format!("FROM {source}\n");
        assert!(view.contains(&from_source), "{view}");
        self.sql(
            database,
            &format!("CREATE TABLE check_in AS {source} ENGINE = Null"),
        );
        self.sql(
            database,
            &format!("CREATE TABLE check_{target} AS {target}"),
        );
        self.sql(
            database,
            &view
                .replace(
                    head,
                    &format!("CREATE MATERIALIZED VIEW check_mv TO check_{target} AS"),
                )
                .replace(&from_source, "FROM check_in\n"),
        );
        // The stored columns: every inserted one but the rollup's mark.
        let columns: Vec<&str> = glimpse::encode::COLUMNS
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| *n != "rolled_up")
            .collect();
        let columns = columns.join(", ");
        self.sql(
            database,
            &format!("INSERT INTO check_in ({columns}) SELECT {columns} FROM events"),
        );
        view.to_owned()
    }

    /// TSV rows as vectors of fields.
    pub fn rows(&self, database: &str, query: &str) -> Vec<Vec<String>> {
        self.sql(database, &format!("{query} FORMAT TSV"))
            .lines()
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    }

    pub fn count(&self, database: &str, query: &str) -> u64 {
        self.sql(database, query)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number from {query}"))
    }

    /// Polls until `query` returns at least `want`, then returns what it returned.
    pub fn wait_count(&self, database: &str, query: &str, want: u64) -> u64 {
        let start = Instant::now();
        loop {
            let n = self.count(database, query);
            if n >= want || start.elapsed() > Duration::from_secs(20) {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP: the server keeps its connections open and stops answering, as a hung one does.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`ClickHouse::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(child.id().to_string())
                .status();
        }
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM for a clean shutdown: running queries finish, new ones are refused. The
        // server then waits ~10 s for idle keep-alive connections to go away; by 3 s it is only
        // doing that, so the harness ends it there.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // A test failing because its server died says so, with the server's last words.
            if std::thread::panicking()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("log/clickhouse-server.err.log"))
                        .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                eprintln!(
                    "ClickHouse on HTTP port {} had exited ({status}); the end of its error \
                     log:\n{tail}",
                    self.http_port
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
