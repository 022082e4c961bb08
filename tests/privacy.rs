//! The privacy statement's claims, proved against a real database and the real binary: the
//! fields it lists are exactly the stored columns, no table anywhere can hold an address or a
//! user agent, retention is the one applied, and the beacon touches no browser storage.

use std::collections::BTreeSet;

use glimpse::privacy::{self, STORED};
use support::{ClickHouse, Glimpse, UA_FIREFOX, pageview, test_config};

const DB: &str = "glimpse";

/// Columns every aggregate table adds to the stored fields: keys and counts, nothing about a
/// person.
const AGGREGATE_COLUMNS: &[&str] = &[
    "hour",
    "day",
    "dimension",
    "value",
    "pageviews",
    "events",
    "visitors",
    "reason",
    "event",
    "currency",
    "revenue",
    "key",
    "bounces",
    "duration",
    "kind",
    "page",
    "visits",
    // Engagement sums per page (engagement_daily).
    "scroll_sum",
    "scroll_pages",
    "engaged_pages",
    // When a closed day's copy was made (by the collector's clock), not when anyone visited.
    "generation",
    // How a closed day's copy was made: whether it added late rows, and the sums it consumed,
    // and whether it made the day's visitor days.
    "merged",
    "visitor_days",
    "sketch_pageviews",
    "sketch_events",
    // Of the insert table only, which stores nothing: whether the collector sent the row's
    // daily stats itself.
    "rolled_up",
];

fn columns(ch: &ClickHouse, table: &str) -> Vec<String> {
    ch.rows(DB, &format!("DESCRIBE TABLE {table}"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_matches_the_database() {
    let ch = ClickHouse::start();
    let g = Glimpse::start(test_config(&ch, DB)).await;
    let r = g
        .send(
            &pageview("https://a.com/p?secret=1"),
            UA_FIREFOX,
            "81.2.69.10",
        )
        .await;
    assert_eq!(r.status, 202);
    g.stop().await;

    // The listed fields are exactly the columns of the raw events table, in order.
    let listed = privacy::stored_columns();
    assert_eq!(columns(&ch, "events"), listed);

    // No table the collector created has a column outside the listed fields and aggregate
    // keys and counts, except the salts (secret, destroyed within 48 h) and the migration log.
    let allowed: BTreeSet<&str> = listed
        .iter()
        .copied()
        .chain(AGGREGATE_COLUMNS.iter().copied())
        .collect();
    let tables: Vec<String> = ch
        .rows(
            "system",
            "SELECT name FROM system.tables WHERE database = 'glimpse' \
             AND engine NOT LIKE '%View%' ORDER BY name",
        )
        .concat();
    assert!(tables.len() >= 5, "{tables:?}");
    for table in tables {
        if table == "glimpse_salts" || table == "glimpse_migrations" {
            continue;
        }
        for column in columns(&ch, &table) {
            assert!(
                allowed.contains(column.as_str()),
                "{table}.{column} is not covered by the statement"
            );
        }
    }

    // And nothing stored anywhere contains the client's address or user agent.
    let dump = ch.sql(DB, "SELECT * FROM events FORMAT TSV");
    assert!(!dump.is_empty());
    for secret in ["81.2.69.10", "Firefox/125.0", "X11; Linux", "secret=1"] {
        assert!(!dump.contains(secret), "{secret} stored");
    }
}

#[test]
fn the_binary_prints_it_from_the_effective_config() {
    let run = |env: &[(&str, &str)]| {
        let out = support::process::run(&["privacy-statement", "--server-version", "18.16"], env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let kept = run(&[
        ("GLIMPSE_SITES", "example.com"),
        ("GLIMPSE_RETENTION_EVENTS_DAYS", "21"),
    ]);
    assert!(kept.contains("on example.com to understand"));
    assert!(kept.contains("deleted after 21 days"));
    for f in STORED {
        assert!(kept.contains(f.what));
    }
    let aggregates = run(&[
        ("GLIMPSE_SITES", "example.com"),
        ("GLIMPSE_RETENTION_EVENTS_DAYS", "0"),
    ]);
    assert!(aggregates.contains("Individual events are not stored"));
    assert!(
        aggregates.contains("destroyed when it starts again"),
        "18.16 has no TTL"
    );
    let modern = support::process::run(
        &["privacy-statement", "--server-version", "24.8"],
        &[("GLIMPSE_SITES", "example.com")],
    );
    let modern = String::from_utf8(modern.stdout).unwrap();
    assert!(modern.contains("by the database itself"), "{modern}");
    assert!(
        !aggregates.contains("a month at a time"),
        "aggregates kept by default"
    );
    let limited = run(&[
        ("GLIMPSE_SITES", "example.com"),
        ("GLIMPSE_RETENTION_AGGREGATES_DAYS", "400"),
    ]);
    assert!(
        limited.contains("once the month is 400 days old"),
        "{limited}"
    );
}

/// Every script browsers get (the minified ones, without comments: glimpse.js, its engagement
/// build, and Plausible's variants with every extension) names no storage API.
#[test]
fn the_beacon_touches_no_browser_storage() {
    let all = (1u16 << glimpse::beacon::EXTENSIONS.len()) - 1;
    let scripts = [
        String::from_utf8(glimpse::beacon::SCRIPT.to_vec()).unwrap(),
        String::from_utf8(glimpse::beacon::ENGAGEMENT_SCRIPT.to_vec()).unwrap(),
        glimpse::beacon::plausible_script(0),
        glimpse::beacon::plausible_script(all),
    ];
    for js in &scripts {
        assert!(js.len() > 500, "the served script");
        for api in ["cookie", "Storage", "indexedDB", "caches", "openDatabase"] {
            assert!(!js.contains(api), "the beacon mentions {api}");
        }
    }
}
