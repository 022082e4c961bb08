//! The `glimpse` binary as an operator runs it: CLI, config errors, and logs that never contain a
//! visitor's IP address or user agent, even at the most verbose level.

use support::process::run as glimpse;
use support::{ClickHouse, GlimpseProcess, Send, UA_FIREFOX, binary_env, repo_path};

#[test]
fn help_on_every_command() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["schema", "--help"],
        &["dashboard", "--help"],
        &["privacy-statement", "--help"],
        &["check-config", "--help"],
    ] {
        let out = glimpse(args, &[]);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn schema_command_renders_for_a_given_version() {
    let old = glimpse(&["schema", "--server-version", "18.16"], &[]);
    let old = String::from_utf8(old.stdout).unwrap();
    assert!(
        old.contains("CREATE TABLE IF NOT EXISTS events_in") && !old.contains("LowCardinality")
    );
    let new = glimpse(&["schema", "--server-version", "26.3"], &[]);
    let new = String::from_utf8(new.stdout).unwrap();
    assert!(new.contains("LowCardinality(String)") && new.contains("TTL day + INTERVAL 2 DAY"));
    let bad = glimpse(&["schema", "--server-version", "latest"], &[]);
    assert!(!bad.status.success());
}

#[test]
fn config_errors_are_all_reported_naming_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("glimpse.toml");
    std::fs::write(
        &path,
        "listen = 5\n[batch]\nmax_rows = -1\n[clikhouse]\nurl = 'x'\n",
    )
    .unwrap();
    let out = glimpse(
        &["serve", "--config", path.to_str().unwrap()],
        &[("GLIMPSE_RETENTION_EVENTS_DAYS", "many")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen (GLIMPSE_LISTEN)",
        "batch.max_rows",
        "clikhouse: unknown key",
        "retention.events_days",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
}

#[test]
fn dashboard_refuses_to_start_without_a_token() {
    let out = glimpse(&["dashboard"], &[("GLIMPSE_DASHBOARD_TOKEN", "short")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dashboard.token (GLIMPSE_DASHBOARD_TOKEN)"),
        "{err}"
    );
}

#[test]
fn example_config_is_valid() {
    let path = repo_path("scripts/glimpse.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    glimpse::config::Config::load(Some(&text), &Default::default()).unwrap();
}

#[test]
fn migrate_command_is_idempotent() {
    let ch = ClickHouse::start();
    let env = [("GLIMPSE_CLICKHOUSE_URL", ch.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = glimpse(&["migrate"], &env);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let applied = format!(
        "{} migration(s) applied",
        glimpse::store::schema::MIGRATIONS.len()
    );
    assert!(
        String::from_utf8_lossy(&first.stdout).contains(&applied),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    let second = glimpse(&["migrate"], &env);
    assert!(String::from_utf8_lossy(&second.stdout).contains("0 migration(s) applied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_ip_or_user_agent() {
    let ch = ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = binary_env(&ch);
    env.extend([
        ("GLIMPSE_BATCH_MAX_DELAY_MS", "50".to_owned()),
        // The most verbose setting, for our code and every library.
        ("GLIMPSE_LOG_LEVEL", "trace".to_owned()),
    ]);
    let g = GlimpseProcess::start(&env, dir.path().join("glimpse.log"));
    let ua = format!("{UA_FIREFOX} LogMarker/4242");
    let bodies = [
        r#"{"n":"pageview","u":"https://a.com/page?secret=tok123","r":"https://ref.example/x?q=secret2"}"#,
        r#"{"n":"pageview","u":"https://unknown.example/"}"#,
        r#"{"n":"pageview""#,
    ];
    for (i, ip) in ["203.0.113.99", "2001:db8:1::99", "81.2.69.99"]
        .iter()
        .enumerate()
    {
        for body in bodies {
            Send::event(g.addr, body).ua(&ua).from(ip).send().await;
        }
        // A bot and a peer address that is not a trusted proxy, too.
        let bot = format!("curl/8.{i} LogMarker/4242");
        Send::event(g.addr, bodies[0]).ua(&bot).send().await;
    }
    assert_eq!(ch.wait_count("glimpse", "SELECT count() FROM events", 3), 3);
    let log = g.log_text();
    let g_addr = g.addr;
    let code = g.terminate();
    assert_eq!(code, Some(0), "SIGTERM exits cleanly");
    assert!(
        log.contains("accepting events"),
        "logging works at all:\n{log}"
    );
    for needle in [
        "203.0.113.99",
        "2001:db8:1::99",
        "81.2.69.99",
        "LogMarker",
        "rv:125.0",
        "tok123",
        "secret2",
    ] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert!(
            hits.is_empty(),
            "log contains {needle:?}:\n{}",
            hits.join("\n")
        );
    }
    // The requests came from 127.0.0.1 (the trusted proxy): that address may appear only as our
    // own listen address or ClickHouse's, never as a peer with an ephemeral port.
    let ours = [format!("127.0.0.1:{}", ch.http_port), g_addr.to_string()];
    let peers: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("127.0.0.1:") && !ours.iter().any(|o| l.contains(o.as_str())))
        .collect();
    assert!(
        peers.is_empty(),
        "log names a peer address:\n{}",
        peers.join("\n")
    );
}

/// Every Glimpse service of the compose files in `deploy/compose/` has a valid configuration
/// (they cannot be run here: there is no container engine), and the cluster names they give
/// are the ones the ClickHouse configuration beside them defines.
#[test]
fn compose_files_configure_glimpse_validly() {
    let dir = repo_path("deploy/compose");
    let mut checked = 0;
    for file in ["single.yml", "cluster.yml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        doc.apply_merge().unwrap();
        let services = doc["services"].as_mapping().unwrap().clone();
        for (name, service) in services {
            let mut service = service;
            service.apply_merge().unwrap();
            if service.get("build").is_none() {
                continue;
            }
            let command = service["command"][0].as_str().unwrap().to_owned();
            let env: Vec<(String, String)> = service["environment"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_owned(),
                        v.as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let env_refs: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let out = glimpse(&["check-config", "--command", &command], &env_refs);
            assert!(
                out.status.success(),
                "{file} {name:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("configuration valid"), "{said}");
            for (key, value) in &env {
                if key.starts_with("GLIMPSE_CLICKHOUSE_") && key.ends_with("CLUSTER") {
                    let xml = std::fs::read_to_string(dir.join("cluster/cluster.xml")).unwrap();
                    assert!(
                        xml.contains(&format!("<{value}>")),
                        "{file} {name:?}: {value}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked, 5,
        "collector and dashboard of single.yml, two collectors and the dashboard of cluster.yml"
    );
    // An invalid configuration is reported, every problem at once, and nothing starts.
    let out = glimpse(
        &["check-config"],
        &[
            ("GLIMPSE_CLICKHOUSE_CLUSTER", "bad name"),
            ("GLIMPSE_RETENTION_EVENTS_DAYS", "many"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clickhouse.cluster") && err.contains("retention.events_days"),
        "{err}"
    );
    let out = glimpse(&["check-config", "--command", "dashboard"], &[]);
    assert!(!out.status.success(), "the dashboard needs a token");
}
