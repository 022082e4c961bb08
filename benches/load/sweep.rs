//! Sweep mode (`GLIMPSE_LOAD_SWEEP=1 cargo bench --bench load`): how the cost of an event grows
//! with the work, one axis at a time, everything else as in the main run:
//!
//! - sites configured and receiving traffic (1 → 10 000, long-tailed);
//! - distinct pages per site (100 → 1 000 000, drawn evenly at send time, the worst case for
//!   every per-value structure);
//! - open visits (1 000 → 1 000 000): one site, one browser, a pool of that many client
//!   addresses taking turns, each already seen before the measurement, and `visits.max_open`
//!   at least twice the pool;
//! - distinct client addresses (a pool of 10 → every address new) in the normal mix.
//!
//! Each point starts a collector of its own (its caches and visits empty) against the same
//! clickhouse-server, warms it up, measures `GLIMPSE_LOAD_ROUNDS` saturated phases of
//! `GLIMPSE_LOAD_SECONDS` (throughput and collector CPU: medians), stops it and checks that
//! every accepted event was stored. ClickHouse's CPU per event covers the whole point, from the
//! collector's start until its last rows are stored and their merges are done; then every table
//! is emptied, so that each point starts alike.
//! The rate limiter is off on the address and visit axes, where a few addresses send thousands
//! of events a second (it would answer 429 to them); elsewhere it is on, as by default.
//! Writes `target/load-sweep.json`, a Markdown table and a chart, `target/load-sweep.svg`.
//! `GLIMPSE_LOAD_SWEEP_AXIS` (the first word of an axis's name) measures that axis alone.

use super::*;

struct Axis {
    name: &'static str,
    points: Vec<Point>,
}

struct Point {
    /// Where the point sits on its axis, and how the chart labels it.
    x: f64,
    label: String,
    mix: Mix,
    visitors: Visitors,
    /// Events sent before measuring, so that every address of a pool has been seen.
    prefill: u64,
    /// Sites configured, written to a configuration file (10 000 names do not fit in one
    /// environment variable); `None`: the main run's 200.
    sites: Option<usize>,
    env: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    events_per_s: f64,
    collector_us: f64,
    clickhouse_us: f64,
    anon_mib: f64,
    open_visits: f64,
}

/// A charted metric: title, unit, and its value in a measurement.
type Metric = (&'static str, &'static str, fn(&Measured) -> f64);

/// The metrics charted, in rows.
const METRICS: [Metric; 4] = [
    ("throughput", "events/s", |m| m.events_per_s),
    ("collector CPU", "µs/event", |m| m.collector_us),
    ("clickhouse-server CPU", "µs/event", |m| m.clickhouse_us),
    ("peak anonymous memory", "MiB", |m| m.anon_mib),
];

fn axes(full: bool) -> Vec<Axis> {
    let no_limit = || vec![("GLIMPSE_RATE_LIMIT_EVENTS_PER_SECOND", "0".to_string())];
    let sites = |n: usize| Point {
        x: n as f64,
        label: n.to_string(),
        mix: Mix { sites: n, ..MIX },
        visitors: Visitors::Fresh(0),
        prefill: 0,
        sites: Some(n),
        env: Vec::new(),
    };
    let pages = |n: usize| Point {
        x: n as f64,
        label: n.to_string(),
        mix: Mix {
            pages: n,
            uniform_pages: true,
            ..MIX
        },
        visitors: Visitors::Fresh(0),
        prefill: 0,
        sites: None,
        env: Vec::new(),
    };
    let visits = |n: u64| Point {
        x: n as f64,
        label: n.to_string(),
        mix: Mix {
            sites: 1,
            one_agent: true,
            ..MIX
        },
        visitors: Visitors::Pool(n),
        prefill: n,
        sites: Some(1),
        env: [
            no_limit(),
            vec![("GLIMPSE_VISITS_MAX_OPEN", (2 * n).max(100_000).to_string())],
        ]
        .concat(),
    };
    let addresses = |n: Option<u64>| Point {
        x: n.map_or(1e7, |n| n as f64),
        label: n.map_or("all new".into(), |n| n.to_string()),
        mix: MIX,
        visitors: n.map_or(Visitors::Fresh(0), Visitors::Pool),
        prefill: n.unwrap_or(0),
        sites: None,
        env: no_limit(),
    };
    if !full {
        // The smoke run: two points of one axis, to keep the mode and its chart working.
        return vec![Axis {
            name: "sites",
            points: vec![sites(1), sites(10)],
        }];
    }
    vec![
        Axis {
            name: "sites",
            points: [1, 10, 100, 1_000, 10_000].map(sites).into(),
        },
        Axis {
            name: "distinct pages per site",
            points: [100, 1_000, 10_000, 100_000, 1_000_000].map(pages).into(),
        },
        Axis {
            name: "open visits",
            points: [1_000, 10_000, 100_000, 1_000_000].map(visits).into(),
        },
        Axis {
            name: "distinct client addresses",
            points: [Some(10), Some(1_000), Some(100_000), None]
                .map(addresses)
                .into(),
        },
    ]
}

/// What every point shares: the server, the main run's collector environment and the phases.
pub(crate) struct Run<'a> {
    pub backend: &'a Backend,
    pub env: &'a [(&'static str, String)],
    pub connections: usize,
    pub phase: Duration,
    pub rounds: usize,
    /// `false` for the smoke test's two short points.
    pub full: bool,
}

/// Measures every point of every axis, then writes the table, the JSON report and the chart.
pub(crate) fn run(run: &Run) {
    let mut axes = axes(run.full);
    // One axis alone (its name's first word: sites, distinct, open), for a change that moves one.
    if let Ok(only) = std::env::var("GLIMPSE_LOAD_SWEEP_AXIS") {
        axes.retain(|a| a.name.split(' ').next() == Some(only.as_str()));
        assert!(
            !axes.is_empty(),
            "GLIMPSE_LOAD_SWEEP_AXIS={only}: no such axis"
        );
    }
    let mut serial = 0u64;
    let results: Vec<Vec<Measured>> = axes
        .iter()
        .map(|axis| {
            axis.points
                .iter()
                .map(|p| {
                    serial += 1;
                    let m = measure(run, p, serial);
                    eprint!("sweep: {}", table_row(axis, p, &m));
                    empty_tables(run.backend.first());
                    m
                })
                .collect()
        })
        .collect();
    write_report(run, &axes, &results);
}

/// One point: a collector of its own, warmed up (every pooled address seen once), measured,
/// stopped, and every accepted event found in ClickHouse.
fn measure(run: &Run, p: &Point, serial: u64) -> Measured {
    let ch = run.backend.first();
    let ch_pids = run.backend.pids();
    let ch_cpu = || ch_pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let mut rng = Rng(MIX_SEED);
    let requests = Arc::new(event_requests(&mut rng, p.mix).0);
    let mut env = run.env.to_vec();
    env.extend(p.env.iter().cloned());
    if let Some(n) = p.sites {
        let file = ch.temp_path(&format!("sweep-sites-{serial}.toml"));
        let toml: String = (0..n)
            .map(|i| format!("[[sites]]\ndomain = \"{}\"\n", site(i)))
            .collect();
        std::fs::write(&file, toml).unwrap();
        env.retain(|(k, _)| *k != "GLIMPSE_SITES");
        env.push(("GLIMPSE_CONFIG", file.display().to_string()));
    }
    let spool = ch.temp_path(&format!("sweep-spool-{serial}"));
    env.push(("GLIMPSE_SPOOL_DIR", spool.display().to_string()));
    let visitors = match p.visitors {
        Visitors::Fresh(_) => Visitors::Fresh(serial << 40),
        pool => pool,
    };
    let drive_for = |g: &GlimpseProcess, d: Duration| {
        drive(g.addr, requests.clone(), run.connections, d, None, visitors)
    };
    // ClickHouse's CPU over the whole point, up to the last delivery: its inserts do not fall
    // evenly into short phases.
    let ch0 = ch_cpu();
    let g = GlimpseProcess::start(&env, ch.temp_path(&format!("sweep-{serial}.log")));
    // Counted once the collector has created the database.
    let stored0 = stored_events(ch, &env);
    let pid = g.pid();
    let (mut all, took) = drive_for(&g, Duration::from_secs(if run.full { 2 } else { 1 }));
    let sent = all.responses();
    if sent < p.prefill {
        let rate = sent as f64 / took.as_secs_f64();
        let more = (p.prefill - sent) as f64 / rate * 1.1 + 1.0;
        all.merge(drive_for(&g, Duration::from_secs_f64(more)).0);
    }
    let (mut rates, mut collector, mut anon, mut open) =
        (Vec::new(), Vec::new(), 0.0f64, Vec::new());
    for _ in 0..run.rounds {
        let cpu0 = cpu_seconds(pid);
        let (t, took) = drive_for(&g, run.phase);
        rates.push(t.responses() as f64 / took.as_secs_f64());
        collector.push((cpu_seconds(pid) - cpu0) / t.accepted.max(1) as f64 * 1e6);
        anon = anon.max(status_mib(pid, "RssAnon:"));
        open.push(metric(g.addr, "glimpse_visits_open"));
        all.merge(t);
    }
    let exit = g.terminate();
    let stored = stored_events(ch, &env) - stored0;
    // The merges this point's inserts started are its cost too, and must not run into the next
    // point's measurement.
    super::wait_for_merges(ch);
    assert_all_landed(exit, stored, &all);
    Measured {
        events_per_s: median(rates),
        collector_us: median(collector),
        clickhouse_us: (ch_cpu() - ch0) / all.accepted.max(1) as f64 * 1e6,
        anon_mib: anon,
        open_visits: median(open),
    }
}

/// Every point starts from empty tables: a larger table merges larger parts.
fn empty_tables(ch: &ClickHouse) {
    for table in ch.rows(
        "glimpse",
        "SELECT name FROM system.tables WHERE database = 'glimpse' \
         AND engine LIKE '%MergeTree' AND name NOT IN ('glimpse_salts', 'glimpse_migrations')",
    ) {
        ch.sql("glimpse", &format!("TRUNCATE TABLE {}", table[0]));
    }
}

/// One point as a row of the Markdown table (also what the run prints as it goes).
fn table_row(axis: &Axis, p: &Point, m: &Measured) -> String {
    format!(
        "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} |\n",
        axis.name,
        p.label,
        m.events_per_s,
        m.collector_us,
        m.clickhouse_us,
        m.anon_mib,
        m.open_visits
    )
}

/// `target/load-sweep.{json,md,svg}` (`load-sweep-smoke.*` for the smoke test).
fn write_report(run: &Run, axes: &[Axis], results: &[Vec<Measured>]) {
    let mut table = [
        "| axis | value | events/s | collector µs/event | clickhouse µs/event |",
        " peak anon MiB | open visits |\n|---|---:|---:|---:|---:|---:|---:|\n",
    ]
    .concat();
    let mut json_axes = Vec::new();
    for (axis, row) in axes.iter().zip(results) {
        let mut points = Vec::new();
        for (p, m) in axis.points.iter().zip(row) {
            table.push_str(&table_row(axis, p, m));
            points.push(json!({
                "value": p.label,
                "events_per_second": m.events_per_s,
                "collector_cpu_us_per_event": m.collector_us,
                "clickhouse_cpu_us_per_event": m.clickhouse_us,
                "peak_anon_mib": m.anon_mib,
                "open_visits": m.open_visits,
            }));
        }
        json_axes.push(json!({ "axis": axis.name, "points": points }));
    }
    println!("{table}");
    let name = if run.full {
        "load-sweep"
    } else {
        "load-sweep-smoke"
    };
    let report = json!({
        "clickhouse": run.backend.name(),
        "connections": run.connections,
        "rounds": run.rounds,
        "phase_seconds": run.phase.as_secs_f64(),
        "axes": json_axes,
    });
    let write = |ext: &str, text: &str| {
        let path = support::repo_path(&format!("target/{name}.{ext}"));
        std::fs::write(&path, text).unwrap();
        println!("sweep: {}", path.display());
    };
    write("json", &serde_json::to_string_pretty(&report).unwrap());
    write("md", &table);
    write("svg", &chart(axes, results, &run.backend.name()));
}

/// Small multiples: one column per axis (log scale), one row per metric (a scale shared along
/// the row, from zero), each point labelled with its value.
fn chart(axes: &[Axis], results: &[Vec<Measured>], machine: &str) -> String {
    let (cell_w, cell_h, left, top, gap) = (230.0, 150.0, 150.0, 60.0, 30.0);
    let width = left + axes.len() as f64 * (cell_w + gap);
    let height = top + METRICS.len() as f64 * (cell_h + gap) + 20.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">Glimpse load sweep: cost per event as the \
         work grows ({machine}; medians)</text>\n"
    );
    for (col, axis) in axes.iter().enumerate() {
        let x0 = left + col as f64 * (cell_w + gap);
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n",
            x0 + cell_w / 2.0,
            top - 15.0,
            axis.name
        ));
    }
    for (r, (title, unit, value)) in METRICS.iter().enumerate() {
        let y0 = top + r as f64 * (cell_h + gap);
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\" font-weight=\"bold\">{title}</text>\
             <text x=\"10\" y=\"{}\">{unit}</text>\n",
            y0 + cell_h / 2.0,
            y0 + cell_h / 2.0 + 14.0
        ));
        let max = results
            .iter()
            .flatten()
            .map(value)
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.15;
        for (col, (axis, row)) in axes.iter().zip(results).enumerate() {
            let x0 = left + col as f64 * (cell_w + gap);
            let (lo, hi) = axis
                .points
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
                    (lo.min(p.x.log10()), hi.max(p.x.log10()))
                });
            let span = (hi - lo).max(1e-9);
            let px = |x: f64| x0 + 15.0 + (x.log10() - lo) / span * (cell_w - 30.0);
            let py = |v: f64| y0 + cell_h - v / max * cell_h;
            svg.push_str(&format!(
                "<rect x=\"{x0}\" y=\"{y0}\" width=\"{cell_w}\" height=\"{cell_h}\" \
                 fill=\"none\" stroke=\"#ccc\"/>\n"
            ));
            let line: Vec<String> = axis
                .points
                .iter()
                .zip(row)
                .map(|(p, m)| format!("{:.1},{:.1}", px(p.x), py(value(m))))
                .collect();
            svg.push_str(&format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n",
                line.join(" ")
            ));
            for (p, m) in axis.points.iter().zip(row) {
                let (x, y) = (px(p.x), py(value(m)));
                let v = value(m);
                let shown = if v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                };
                svg.push_str(&format!(
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"#1f77b4\"/>\
                     <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{shown}</text>\n",
                    y - 6.0
                ));
                if r == METRICS.len() - 1 {
                    svg.push_str(&format!(
                        "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                         fill=\"#555\">{}</text>\n",
                        y0 + cell_h + 14.0,
                        p.label
                    ));
                }
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}
