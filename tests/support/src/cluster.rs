//! A real ClickHouse cluster on loopback: ZooKeeper, 2 shards × 2 replicas of
//! `clickhouse-server`, and nginx routing visitors to collectors by consistent hashing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clickhouse::ClickHouse;
use crate::free_port;

/// The cluster names the collectors are configured with.
pub const CLUSTER: &str = "glimpse";
pub const NODE_CLUSTER: &str = "glimpse_nodes";

/// What ZooKeeper's server needs on its class path, from Debian's `zookeeper` package.
const ZOOKEEPER_JARS: &[&str] = &[
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/zookeeper-jute.jar",
    "/usr/share/java/slf4j-api.jar",
    "/usr/share/java/log4j-1.2.jar",
    "/usr/share/java/netty-all.jar",
];

/// A single ZooKeeper server with its own data directory, on a free port; killed on drop.
pub struct ZooKeeper {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        assert!(
            Path::new(ZOOKEEPER_JARS[0]).exists(),
            "ZooKeeper not found ({}). Install it with `sudo apt-get install -y zookeeper`, or \
             run `scripts/test.sh`, which installs everything the tests need.",
            ZOOKEEPER_JARS[0]
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}/data\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxSessionTimeout=20000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let classpath: Vec<&str> = std::iter::once("/etc/zookeeper/conf")
            .chain(
                ZOOKEEPER_JARS
                    .iter()
                    .copied()
                    .filter(|j| Path::new(j).exists()),
            )
            .collect();
        let child = Command::new("java")
            .args(["-Xmx256m", "-cp", &classpath.join(":")])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("out.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start java (apt-get install -y default-jre-headless zookeeper)");
        let log = || std::fs::read_to_string(dir.path().join("out.log")).unwrap_or_default();
        crate::wait_listening(port, Duration::from_secs(30), "ZooKeeper", log);
        // Listening is not serving: until it is, ZooKeeper closes new sessions during the
        // handshake, and a clickhouse-server 18.16 that meets that then crashes. `srvr` (the one
        // four-letter command allowed by default) names the server's mode once it serves.
        let start = std::time::Instant::now();
        while !serving(port) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ZooKeeper listens but does not serve; its log:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ZooKeeper {
            port,
            _dir: dir,
            child,
        }
    }
}

/// Whether the ZooKeeper on `port` serves sessions: its `srvr` answer names a mode.
fn serving(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = String::new();
    conn.write_all(b"srvr").is_ok()
        && conn.read_to_string(&mut answer).is_ok()
        && answer.contains("Mode: ")
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shards × replicas of `clickhouse-server` with `remote_servers` (both clusters), `macros`,
/// `zookeeper` and `interserver_http_host` in each node's `config.d`.
pub struct ClickHouseCluster {
    /// Node `shard * replicas + replica`.
    pub nodes: Vec<ClickHouse>,
    pub replicas: usize,
    pub zookeeper: ZooKeeper,
}

impl ClickHouseCluster {
    pub fn start(shards: usize, replicas: usize) -> ClickHouseCluster {
        let zookeeper = ZooKeeper::start();
        let count = shards * replicas;
        let ports: Vec<(u16, u16, u16)> = (0..count)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let replica = |i: usize| {
            format!(
                "<replica><host>127.0.0.1</host><port>{}</port></replica>",
                ports[i].1
            )
        };
        let sharded: String = (0..shards)
            .map(|s| {
                let r: String = (0..replicas).map(|r| replica(s * replicas + r)).collect();
                format!("<shard><internal_replication>true</internal_replication>{r}</shard>")
            })
            .collect();
        let each: String = (0..count)
            .map(|i| format!("<shard>{}</shard>", replica(i)))
            .collect();
        // Start all at once: each waits for ZooKeeper, not for the others.
        let mut nodes: Vec<ClickHouse> = Vec::with_capacity(count);
        for (i, (http, tcp, interserver)) in ports.iter().enumerate() {
            let xml = format!(
                "<yandex>\n\
                 <interserver_http_port>{interserver}</interserver_http_port>\n\
                 <interserver_http_host replace=\"replace\">127.0.0.1</interserver_http_host>\n\
                 <remote_servers replace=\"replace\"><{CLUSTER}>{sharded}</{CLUSTER}>\
                 <{NODE_CLUSTER}>{each}</{NODE_CLUSTER}></remote_servers>\n\
                 <zookeeper replace=\"replace\"><node><host>127.0.0.1</host><port>{}</port></node>\
                 <session_timeout_ms>6000</session_timeout_ms></zookeeper>\n\
                 <macros replace=\"replace\"><shard>{:02}</shard><replica>r{}</replica></macros>\n\
                 <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n\
                 </yandex>\n",
                zookeeper.port,
                i / replicas + 1,
                i % replicas + 1
            );
            nodes.push(ClickHouse::start_node(*http, *tcp, Some(xml)));
        }
        ClickHouseCluster {
            nodes,
            replicas,
            zookeeper,
        }
    }

    /// The nodes of shard `s` (from 0).
    pub fn shard(&mut self, s: usize) -> &mut [ClickHouse] {
        let r = self.replicas;
        &mut self.nodes[s * r..(s + 1) * r]
    }

    /// Waits until every replica of every replicated table of `database` has fetched what its
    /// shard's other replicas hold: reads through a `Distributed` table go to any replica.
    pub fn sync_replicas(&self, database: &str) {
        for node in &self.nodes {
            for row in node.rows(
                database,
                "SELECT name FROM system.tables WHERE database = currentDatabase() \
                 AND engine LIKE 'Replicated%'",
            ) {
                node.sql(database, &format!("SYSTEM SYNC REPLICA {}", row[0]));
            }
        }
    }

    /// Collector environment for a collector that talks to node `i`.
    pub fn collector_env(&self, i: usize) -> Vec<(&'static str, String)> {
        let mut env = crate::binary_env(&self.nodes[i]);
        env.push(("GLIMPSE_CLICKHOUSE_CLUSTER", CLUSTER.to_owned()));
        env.push(("GLIMPSE_CLICKHOUSE_NODE_CLUSTER", NODE_CLUSTER.to_owned()));
        env
    }
}

/// nginx in front of collectors: `hash $remote_addr consistent`, with the visitor's address
/// taken from `X-Forwarded-For` (as behind a CDN) and passed on.
pub struct Nginx {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    pub fn start(upstreams: &[std::net::SocketAddr]) -> Nginx {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx not found. Install it with `sudo apt-get install -y nginx-light`, or run `scripts/test.sh`");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let servers: String = upstreams
            .iter()
            .map(|a| format!("        server {a} max_fails=1 fail_timeout=3s;\n"))
            .collect();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n\
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             set_real_ip_from 127.0.0.1;\n    real_ip_header X-Forwarded-For;\n\
             upstream collectors {{\n        hash $remote_addr consistent;\n{servers}        keepalive 32;\n    }}\n\
             server {{\n        listen 127.0.0.1:{port};\n        location / {{\n\
             proxy_pass http://collectors;\n            proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n            proxy_set_header X-Forwarded-For $remote_addr;\n\
             proxy_next_upstream error timeout;\n            proxy_connect_timeout 1s;\n        }}\n    }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("cannot start nginx");
        crate::wait_listening(port, Duration::from_secs(10), "nginx", || {
            std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
        });
        Nginx { port, dir, child }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so that the master stops its worker too: a SIGKILLed master leaves the worker
        // running, orphaned, after the test.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until no spool under `dirs` holds a segment (dead letters aside): every accepted event
/// is in ClickHouse. Panics after `limit`.
pub fn wait_for_empty_spools(dirs: &[std::path::PathBuf], limit: Duration) {
    let start = Instant::now();
    loop {
        let pending: usize = dirs
            .iter()
            .map(|d| {
                std::fs::read_dir(d)
                    .map(|entries| {
                        entries
                            .flatten()
                            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                            .count()
                    })
                    .unwrap_or(0)
            })
            .sum();
        if pending == 0 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{pending} segments still undelivered after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
