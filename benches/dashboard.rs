//! Dashboard speed: every panel of the built-in dashboard, through its stats API, over the
//! aggregates of 10 million raw events (200 000 when run as a test), on the real clickhouse-server.
//!
//! `cargo bench --bench dashboard`; `GLIMPSE_DASHBOARD_EVENTS` sets the number of events and
//! `GLIMPSE_DASHBOARD_RUNS` the runs per panel (20). The events are generated inside ClickHouse
//! (30 days, 5 sites, 2 million daily visitors, long-tailed pages, 10 % custom events) and go
//! through the same materialized views as collected ones, and are kept raw as well (30 days of
//! retention), because filtered questions and goals are answered from the raw events. The 29
//! finished days are then closed into exact counts and visitor days, as the collector does
//! after each midnight, and today stays open. Times every unfiltered panel (aggregates) and a
//! set of filtered questions (raw events and visitor days) separately; prints p50/p95 per
//! request and the bytes on disk of the raw events and visitor days, and writes
//! `target/dashboard-report.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use glimpse::clock::{Clock, SECS_PER_DAY};
use glimpse::dashboard::{self, Dashboard};
use serde_json::json;
use support::ClickHouse;

const TOKEN: &str = "bench-token-0123456789";

/// Events `offset..offset + count` of `n` (chunks keep each statement within the client timeout).
fn generate_sql(n: u64, offset: u64, count: u64, start: u64, span: u64) -> String {
    format!(
        "INSERT INTO glimpse.events_in (timestamp, site, name, hostname, pathname, referrer, \
         referrer_source, utm_source, utm_medium, utm_campaign, utm_content, utm_term, \
         country_code, region, browser, browser_version, os, os_version, device, visitor_id, \
         interactive, revenue_micros, revenue_currency, prop_keys, prop_values, visit_entry, \
         visit_seconds, visit_bounce, visit_exit_prev) \
         SELECT \
           toDateTime({start} + intDiv(number * {span}, {n})), \
           concat('site', toString(intHash32(number) % 5), '.example') AS s, \
           if(number % 10 = 0, 'Signup', 'pageview') AS nm, \
           s, \
           concat('/', arrayElement(['blog','docs','pricing','products','about'], intHash32(number * 3) % 5 + 1), \
                  '/', toString(toUInt32(exp(log(5000) * intHash32(number * 7) / 4294967295)))) AS path, \
           arrayElement(['', '', 'www.google.com', 'news.ycombinator.com/item', 't.co/abc'], intHash32(number * 5) % 5 + 1) AS ref, \
           arrayElement(['', '', 'Google', 'Hacker News', 't.co'], intHash32(number * 5) % 5 + 1), \
           if(number % 7 = 0, 'newsletter', ''), if(number % 7 = 0, 'email', ''), \
           if(number % 7 = 0, concat('launch-', toString(number % 12)), ''), '', '', \
           arrayElement(['US','DE','GB','FR','JP','BR','IN','NL','SE','CA'], intHash32(number * 11) % 10 + 1), \
           concat('R', toString(intHash32(number * 13) % 30)), \
           arrayElement(['Chrome','Safari','Firefox','Edge','Samsung Internet'], intHash32(number * 17) % 5 + 1), \
           toString(100 + intHash32(number * 19) % 30), \
           arrayElement(['Windows 10','Mac OSX','iOS','Android','Linux'], intHash32(number * 23) % 5 + 1), \
           toString(intHash32(number * 29) % 18), \
           arrayElement(['desktop','mobile','tablet'], intHash32(number * 31) % 3 + 1), \
           cityHash64(intHash32(number) % 2000000, intDiv(number * {span}, {n} * 86400)), \
           1, if(number % 50 = 0, 19990000, 0), if(number % 50 = 0, 'EUR', ''), \
           if(nm = 'Signup', ['plan'], emptyArrayString()), \
           if(nm = 'Signup', [arrayElement(['free','pro','team'], number % 3 + 1)], emptyArrayString()), \
           toUInt8(intHash32(number * 37) % 3 = 0) AS entry, \
           if(entry = 1, 0, intHash32(number * 41) % 600), \
           toInt8(if(entry = 1, 1, if(intHash32(number * 43) % 4 = 0, -1, 0))), \
           if(entry = 1 OR nm != 'pageview', '', path) \
         FROM system.numbers LIMIT {count} OFFSET {offset}"
    )
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let Some(full) = support::bench_mode("dashboard_smoke") else {
        return;
    };
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = if full {
        env("GLIMPSE_DASHBOARD_EVENTS", 10_000_000)
    } else {
        200_000
    };
    let runs = if full {
        env("GLIMPSE_DASHBOARD_RUNS", 20)
    } else {
        3
    } as usize;

    let ch = ClickHouse::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = support::test_config(&ch, "glimpse");
        cfg.retention.events_days = 30;
        cfg.sites = (0..5)
            .map(|i| glimpse::model::Site::new(&format!("site{i}.example")))
            .collect();
        cfg.sites[0].goals = vec![
            glimpse::model::Goal {
                name: "Signup".into(),
                kind: glimpse::model::GoalKind::Event("Signup".into()),
            },
            glimpse::model::Goal {
                name: "Visit /pricing/**".into(),
                kind: glimpse::model::GoalKind::Page("/pricing/**".into()),
            },
        ];
        let (server, db) = glimpse::store::clients(&cfg.clickhouse);
        let layout = cfg.clickhouse.layout();
        let version = glimpse::store::server_version(&server).await.unwrap();
        glimpse::store::migrate(&server, &db, &layout, version)
            .await
            .unwrap();
        glimpse::store::apply_retention(&db, &layout, version, cfg.retention.events_days, Clock::default().now())
            .await
            .unwrap();
        let clock = Clock::default();
        let today = clock.now() - clock.now() % SECS_PER_DAY;
        let start = today - 29 * SECS_PER_DAY;
        let t = Instant::now();
        // The server's CPU for the inserts and their views (generation from `numbers` included),
        // per event: the same measure the modern-engine script prints for chdb.
        let server_pid = ch.pid().expect("clickhouse-server running");
        let cpu0 = support::cpu_seconds(server_pid);
        const CHUNK: u64 = 500_000;
        let mut offset = 0;
        while offset < n {
            let count = CHUNK.min(n - offset);
            ch.sql(
                "glimpse",
                &generate_sql(n, offset, count, start, 30 * SECS_PER_DAY),
            );
            offset += count;
        }
        let generated = t.elapsed();
        let cpu_us_per_event = (support::cpu_seconds(server_pid) - cpu0) / n as f64 * 1e6;
        let _ = ch.sql("glimpse", "OPTIMIZE TABLE stats_daily FINAL");
        let _ = ch.sql("glimpse", "OPTIMIZE TABLE stats_hourly FINAL");
        let stored = ch.count(
            "glimpse",
            "SELECT sumMerge(pageviews) + sumMerge(events) FROM stats_hourly",
        );
        assert_eq!(stored, n, "every generated event is in the aggregates");
        let rows = ch.count(
            "glimpse",
            "SELECT sum(rows) FROM system.parts WHERE database = 'glimpse' AND active",
        );
        eprintln!(
            "{n} events generated through the views in {:.1} s ({cpu_us_per_event:.1} µs of \
             server CPU per event); {rows} aggregate rows",
            generated.as_secs_f64()
        );
        // What the collector does after each midnight: every day but today becomes exact counts.
        let t = Instant::now();
        // In the grace period after midnight yesterday is not closed yet: close as just after it.
        let at = clock
            .now_millis()
            .max((today + glimpse::store::closing::CLOSE_AFTER_SECS) * 1000);
        let closed = glimpse::store::closing::close_days(&db, &layout, at)
            .await
            .unwrap();
        let closing = t.elapsed();
        assert_eq!(closed.len(), 5 * 29, "29 finished days of 5 sites");
        eprintln!(
            "{} finished (site, day) pairs closed in {:.1} s",
            closed.len(),
            closing.as_secs_f64()
        );
        // What the raw events and the visitor days made from them (the 29 closed days) take.
        let bytes = |table: &str| {
            ch.count(
                "glimpse",
                &format!(
                    "SELECT sum(bytes_on_disk) FROM system.parts \
                     WHERE database = 'glimpse' AND table = '{table}' AND active"
                ),
            )
        };
        let (raw_bytes, visitor_day_bytes) = (bytes("events"), bytes("visitor_days"));
        let visitor_days = ch.count("glimpse", "SELECT count() FROM visitor_days");
        eprintln!(
            "on disk: raw events {:.1} bytes per event; {visitor_days} visitor days {:.1} bytes \
             per event",
            raw_bytes as f64 / n as f64,
            visitor_day_bytes as f64 / n as f64
        );

        let app = Arc::new(Dashboard {
            db,
            token: TOKEN.into(),
            sites: cfg.sites.iter().map(|s| s.domain.clone()).collect(),
            min_visitors: 0,
            clock,
            goals: cfg.goals(),
            events_days: cfg.retention.events_days,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v1/stats", listener.local_addr().unwrap());
        tokio::spawn(dashboard::run(
            listener,
            std::future::pending(),
            app,
            cfg.server.clone(),
        ));
        let client = reqwest::Client::new();
        let q = "site_id=site0.example&period=30d";
        let mut panels: Vec<(String, String)> = vec![
            // What the dashboard page asks.
            (
                "aggregate".into(),
                format!(
                    "{base}/aggregate?{q}&compare=previous_period&metrics=visitors,visits,\
                     pageviews,events,bounce_rate,visit_duration,views_per_visit"
                ),
            ),
            (
                "timeseries (days)".into(),
                format!("{base}/timeseries?{q}&metrics=visitors,pageviews"),
            ),
            (
                "timeseries (hours)".into(),
                format!("{base}/timeseries?{q}&interval=hour&metrics=visitors,pageviews"),
            ),
            ("revenue".into(), format!("{base}/revenue?{q}")),
            ("dropped".into(), format!("{base}/dropped?{q}")),
        ];
        for p in [
            "event:page",
            "visit:entry_page",
            "visit:exit_page",
            "visit:source",
            "visit:referrer",
            "visit:utm_campaign",
            "visit:country",
            "visit:region",
            "visit:browser",
            "visit:browser_version",
            "visit:os",
            "visit:device",
            "event:name",
            "event:props",
        ] {
            // The metrics the dashboard page asks of each panel.
            let metrics = match p {
                "visit:entry_page" | "visit:exit_page" => "visits",
                "event:page" => "visitors,pageviews,scroll_depth,time_on_page",
                "event:props" => "visitors,events",
                _ => "visitors,pageviews",
            };
            panels.push((
                p.into(),
                format!("{base}/breakdown?{q}&property={p}&limit=10&metrics={metrics}"),
            ));
        }
        // Filtered questions and goals: the raw events answer them.
        let filtered = [
            ("filtered: totals by country", "aggregate", "filters=visit:country==DE&metrics=visitors,visits,pageviews,events,bounce_rate,visit_duration"),
            ("filtered: series by country", "timeseries", "filters=visit:country==DE&metrics=visitors,pageviews"),
            ("filtered: pages by source", "breakdown", "property=event:page&filters=visit:source==Google&limit=10&metrics=visitors,pageviews"),
            ("filtered: sources of a page", "breakdown", "property=visit:source&filters=event:page==/pricing/**&limit=10&metrics=visitors,visits,bounce_rate"),
            ("filtered: two conditions", "breakdown", "property=visit:country&filters=visit:browser==Firefox;visit:device!=tablet&limit=10&metrics=visitors,pageviews"),
            ("goals with conversion", "breakdown", "property=event:goal&metrics=visitors,events,conversion_rate"),
        ];
        let unfiltered = panels.len();
        for (name, endpoint, rest) in filtered {
            panels.push((name.into(), format!("{base}/{endpoint}?{q}&{rest}")));
        }
        let mut report = Vec::new();
        let mut worst_filtered: f64 = 0.0;
        println!("| {:<22} | {:>9} | {:>9} |", "panel", "p50 ms", "p95 ms");
        println!("|{}|{}|{}|", "-".repeat(24), "-".repeat(11), "-".repeat(11));
        let mut worst: f64 = 0.0;
        for (i, (name, url)) in panels.iter().enumerate() {
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t = Instant::now();
                let r = client
                    .get(url)
                    .bearer_auth(TOKEN)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{name}: {}", r.text().await.unwrap());
                let _ = r.bytes().await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let p50 = percentile(&mut times, 0.5);
            let p95 = percentile(&mut times, 0.95);
            if i < unfiltered {
                worst = worst.max(p95);
            } else {
                worst_filtered = worst_filtered.max(p95);
            }
            println!("| {name:<22} | {p50:>9.1} | {p95:>9.1} |");
            report.push(json!({ "panel": name, "p50_ms": p50, "p95_ms": p95 }));
        }
        let out = json!({
            "events": n,
            "aggregate_rows": rows,
            "runs_per_panel": runs,
            "generate_seconds": generated.as_secs_f64(),
            "server_cpu_us_per_generated_event": cpu_us_per_event,
            "closed_site_days": closed.len(),
            "close_seconds": closing.as_secs_f64(),
            "raw_event_bytes": raw_bytes,
            "visitor_days": visitor_days,
            "visitor_day_bytes": visitor_day_bytes,
            "panels": report,
            "worst_p95_ms": worst,
            "worst_filtered_p95_ms": worst_filtered,
        });
        let path = support::repo_path(if full {
            "target/dashboard-report.json"
        } else {
            "target/dashboard-smoke-report.json"
        });
        std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
        println!(
            "worst p95: {worst:.1} ms unfiltered, {worst_filtered:.1} ms filtered; report: {}",
            path.display()
        );
    });
}
