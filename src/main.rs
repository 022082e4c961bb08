//! The `glimpse` command: thin wrapper over the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use glimpse::clock::Clock;
use glimpse::collector::Collector;
use glimpse::config::{Config, LogFormat};
use glimpse::store::{self, ServerVersion, schema};

#[derive(Parser)]
#[command(
    name = "glimpse",
    version,
    about = "Privacy-friendly web analytics collector for ClickHouse"
)]
struct Cli {
    /// TOML configuration file; every key can also be set as GLIMPSE_<SECTION>_<KEY>.
    #[arg(long, short, global = true, env = "GLIMPSE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations, then accept events until SIGTERM/SIGINT.
    Serve,
    /// Create the database and apply pending migrations, then exit.
    Migrate,
    /// Print the DDL that `migrate` would apply.
    Schema {
        /// Render for this server version (e.g. 18.16 or 26.3) instead of asking the server.
        #[arg(long)]
        server_version: Option<String>,
    },
    /// Serve the dashboard page and its stats API (a separate process from `serve`).
    Dashboard,
    /// Check the configuration (file and environment) and print what it sets up, without
    /// connecting to anything. Exits non-zero, listing every problem, when it is invalid.
    CheckConfig {
        /// The command the configuration is for: `serve` or `dashboard` (which also needs a
        /// token).
        #[arg(long, default_value = "serve")]
        command: String,
    },
    /// Print a plain-language privacy statement for this configuration, to paste into a
    /// privacy policy. What destroys salts depends on the ClickHouse version.
    PrivacyStatement {
        /// Word it for this server version (e.g. 18.16 or 26.3) instead of asking the server.
        #[arg(long)]
        server_version: Option<String>,
    },
    /// Print the SQL the stats APIs' planner runs over the raw events for a question.
    ExplainQuery {
        /// A configured site (its goals are used).
        #[arg(long)]
        site: String,
        /// First and last day, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Comma-separated metrics.
        #[arg(long, default_value = "visitors")]
        metrics: String,
        /// Comma-separated dimensions (event:page, visit:country, event:goal, ...).
        #[arg(long, default_value = "")]
        dimensions: String,
        /// Filters in the v1 syntax (visit:country==GB;event:page==/blog/**).
        #[arg(long)]
        filters: Option<String>,
        /// Time buckets: hour, date, week or month.
        #[arg(long)]
        interval: Option<String>,
    },
}

/// The configuration as a fresh copy, with the parser's garbage handed back to the system.
/// Parsing leaves its freed tables in the heap with the settings' own small allocations
/// scattered among them, so most of those pages stay resident: 16.5 MiB with 10 000 sites,
/// which the request threads, allocating from malloc arenas of their own, mostly do not reuse.
fn compact(config: Config) -> Config {
    let copy = config.clone();
    drop(config);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the heap to the system; no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    copy
}

/// Keeps large buffers (segments, the rollup's chunks) in their own mappings, returned to the
/// system when freed and grown without a copy. glibc otherwise raises this threshold to the
/// size of each such buffer freed, and the next ones come from the heap, where a growing vector
/// is copied and freed pages stay with the process.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any other thread exists; mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() -> Result<()> {
    fixed_mmap_threshold();
    let cli = Cli::parse();
    // The config path comes from clap, so GLIMPSE_CONFIG is not a setting.
    // SAFETY: single-threaded at this point; no other thread reads the environment.
    unsafe { std::env::remove_var("GLIMPSE_CONFIG") };
    let config = compact(Config::from_file_and_env(cli.config.as_deref())?);
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let (server, db) = store::clients(&config.clickhouse);
            let version = store::server_version(&server)
                .await
                .context("cannot reach ClickHouse")?;
            let ran = store::migrate(&server, &db, &config.clickhouse.layout(), version).await?;
            println!("ClickHouse {version}: {} migration(s) applied", ran.len());
            Ok(())
        }
        Command::Dashboard => dashboard(config).await,
        Command::CheckConfig { command } => check_config(&config, &command),
        Command::ExplainQuery {
            site,
            from,
            to,
            metrics,
            dimensions,
            filters,
            interval,
        } => {
            use glimpse::dashboard::{filters as f, params, plan};
            let day = |s: &str| {
                glimpse::clock::parse_date(s).with_context(|| format!("{s:?} is not a date"))
            };
            let goals = config
                .sites
                .iter()
                .find(|s| s.domain == site)
                .with_context(|| format!("{site:?} is not a configured site"))?
                .goals
                .clone();
            let time = match interval.as_deref() {
                None => None,
                Some("hour") => Some(params::Interval::Hour),
                Some("date") => Some(params::Interval::Date),
                Some("week") => Some(params::Interval::Week),
                Some("month") => Some(params::Interval::Month),
                Some(other) => anyhow::bail!("--interval {other:?}: hour, date, week or month"),
            };
            let q = plan::Question {
                site,
                from: day(&from)?,
                to: day(&to)?,
                metrics: params::metrics(Some(&metrics)).map_err(anyhow::Error::msg)?,
                dims: dimensions
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(f::Dim::parse)
                    .collect::<Result<_, _>>()
                    .map_err(anyhow::Error::msg)?,
                time,
                filter: filters
                    .as_deref()
                    .map(f::parse_v1)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                goals,
            };
            println!("{}", plan::raw_sql(&q).map_err(anyhow::Error::msg)?);
            Ok(())
        }
        Command::PrivacyStatement { server_version } => {
            let version = server_version_or_ask(server_version.as_deref(), &config).await?;
            let backstop = if version.features().ttl {
                glimpse::privacy::SaltBackstop::Database
            } else {
                glimpse::privacy::SaltBackstop::CollectorOnly
            };
            print!("{}", glimpse::privacy::statement(&config, backstop));
            Ok(())
        }
        Command::Schema { server_version } => {
            let version = server_version_or_ask(server_version.as_deref(), &config).await?;
            let keep_raw = config.retention.events_days > 0;
            print!(
                "{}",
                schema::script(version, keep_raw, &config.clickhouse.layout())?
            );
            Ok(())
        }
    }
}

/// The version given with `--server-version`, else the configured server's.
async fn server_version_or_ask(given: Option<&str>, config: &Config) -> Result<ServerVersion> {
    match given {
        Some(v) => ServerVersion::parse(v)
            .with_context(|| format!("--server-version {v:?} is not like 24.8")),
        None => {
            let (server, _) = store::clients(&config.clickhouse);
            store::server_version(&server)
                .await
                .context("cannot reach ClickHouse (or pass --server-version)")
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let collector = Collector::start(config.clone(), Clock::default())
        .await
        .context("start-up failed")?;
    tracing::info!(listen = %listener.local_addr()?, sites = config.sites.len(), "accepting events");
    collector.serve(listener, shutdown_signal()).await;
    Ok(())
}

const SHORT_TOKEN: &str =
    "dashboard.token (GLIMPSE_DASHBOARD_TOKEN) must be set to a secret of at least 16 characters";

/// The configuration loaded already (an invalid one never gets here); this adds what only one
/// command needs and says what the configuration sets up.
fn check_config(config: &Config, command: &str) -> Result<()> {
    match command {
        "serve" => {}
        "dashboard" if config.dashboard.token.len() < 16 => anyhow::bail!(SHORT_TOKEN),
        "dashboard" => {}
        other => anyhow::bail!("--command {other:?}: expected serve or dashboard"),
    }
    let ch = &config.clickhouse;
    let topology = match &ch.cluster {
        Some(c) => format!("cluster {} (nodes cluster {})", c.name, c.nodes),
        None => "one server".to_owned(),
    };
    println!(
        "configuration valid for `glimpse {command}`: {} site(s); ClickHouse {} database {} ({topology});          raw events kept {} day(s)",
        config.sites.len(),
        ch.url,
        ch.database,
        config.retention.events_days
    );
    Ok(())
}

async fn dashboard(config: Config) -> Result<()> {
    if config.dashboard.token.len() < 16 {
        anyhow::bail!(SHORT_TOKEN);
    }
    let listener = tokio::net::TcpListener::bind(config.dashboard.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.dashboard.listen))?;
    let (_, db) = store::clients(&config.clickhouse);
    let app = std::sync::Arc::new(glimpse::dashboard::Dashboard {
        db,
        token: config.dashboard.token.clone(),
        sites: config.domains(),
        min_visitors: config.dashboard.min_visitors,
        clock: Clock::default(),
        goals: config.goals(),
        events_days: config.retention.events_days,
    });
    tracing::info!(listen = %listener.local_addr()?, "dashboard");
    glimpse::dashboard::run(listener, shutdown_signal(), app, config.server).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
