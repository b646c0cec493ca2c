//! `fanline`: flags → config → [`fanline::server::Server`] → wait for signals.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Kafka → WebSocket fan-out gateway.
#[derive(Debug, Parser)]
#[command(name = "fanline", version, about)]
struct Args {
    /// TOML configuration file.
    #[arg(long, env = "FANLINE_CONFIG")]
    config: Option<PathBuf>,
    /// Public listener (WebSocket, health), e.g. 0.0.0.0:8080.
    #[arg(long)]
    listen: Option<String>,
    /// Admin listener (metrics, stats, publish), e.g. 127.0.0.1:9091.
    #[arg(long)]
    admin_listen: Option<String>,
    /// Kafka bootstrap servers; none = the embedded mock cluster.
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Reactor shards (default: one per core).
    #[arg(long)]
    shards: Option<usize>,
    /// The shards' I/O backend: epoll or uring (falls back to epoll where io_uring is
    /// unavailable).
    #[arg(long)]
    io_backend: Option<String>,
    /// Add a WebSocket echo route at this path (conformance suites).
    #[arg(long)]
    echo_path: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
}

fn main() {
    let args = Args::parse();
    let config_path = args.config.clone();
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    // Flags win over env and file: apply them as the last env overrides.
    let mut flag = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            env.push((k.to_string(), format!("{v:?}")));
        }
    };
    flag("FANLINE_SERVER_LISTEN", args.listen);
    flag("FANLINE_SERVER_ADMIN_LISTEN", args.admin_listen);
    flag("FANLINE_KAFKA_BROKERS", args.kafka_brokers);
    flag("FANLINE_TESTING_ECHO_PATH", args.echo_path);
    flag("FANLINE_LOG_FORMAT", args.log_format);
    flag("FANLINE_SERVER_IO_BACKEND", args.io_backend);
    if let Some(n) = args.shards {
        env.push(("FANLINE_SERVER_SHARDS".into(), n.to_string()));
    }
    let cfg = match fanline::config::Config::load(args.config.as_deref(), env.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fanline: {e}");
            std::process::exit(2);
        }
    };
    let log_reload = init_logging(&cfg.log);
    if let Ok(n) = fanline::io::raise_nofile_limit() {
        tracing::debug!(nofile = n, "open-files limit");
    }
    let mut server = match fanline::server::Server::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            std::process::exit(1);
        }
    };
    if let Some(f) = log_reload {
        server.set_log_reload(f);
    }
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    if server.wait_ready(Duration::from_secs(60)) {
        fanline::notify::ready();
        fanline::notify::status("ready");
    } else {
        tracing::warn!(
            "not ready after 60 s: {:?}",
            server.shared.not_ready_reason()
        );
    }
    if let Some(interval) = fanline::notify::watchdog_interval() {
        let shared = server.shared.clone();
        let every = interval / 2;
        let spawned = std::thread::Builder::new()
            .name("fanline-watchdog".into())
            .spawn(move || {
                loop {
                    // Ping only while every reactor is turning: a wedged shard stops the pings
                    // and systemd restarts the service.
                    if shared.shards_alive(every.max(Duration::from_secs(3))) {
                        fanline::notify::watchdog();
                    }
                    std::thread::sleep(every);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the watchdog thread: {e}");
        }
    }
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                // the file and the same env and flags as at startup
                let loaded = fanline::config::Config::load(config_path.as_deref(), env.clone());
                let result = loaded
                    .map_err(fanline::server::ReloadError::from)
                    .and_then(|new| server.reload_with(new));
                if let Err(e) = result {
                    tracing::error!(
                        "SIGHUP: configuration refused, the running one stays in force: {e}"
                    );
                }
            }
            _ => {
                fanline::notify::stopping();
                server.begin_shutdown();
                break;
            }
        }
    }
    server.join();
}

/// Installs the subscriber; returns how to change its level on SIGHUP (`None` when `RUST_LOG`
/// is set: it wins over `log.level`, at startup and on reload).
fn init_logging(cfg: &fanline::config::LogConfig) -> Option<fanline::server::LogReload> {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_set = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&cfg.level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let f: fanline::server::LogReload = if cfg.format == "json" {
        let b = b.json().with_filter_reloading();
        let handle = b.reload_handle();
        b.init();
        Box::new(move |level: &str| {
            let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        })
    } else {
        let b = b.with_filter_reloading();
        let handle = b.reload_handle();
        b.init();
        Box::new(move |level: &str| {
            let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        })
    };
    (!env_set).then_some(f)
}
