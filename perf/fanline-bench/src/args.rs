//! Command line of `fanline-bench`: the load run (default), `merge` and `compare`.
//!
//! Every load loop is bounded: `--duration` caps publishing, and `--hard-timeout` (default
//! duration + connect budget + 60 s) ends the process whatever happens.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "fanline-bench",
    version,
    about = "Open-loop WebSocket fan-out benchmark"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Merge result files written with `--json` (histograms and counters) into one.
    Merge {
        /// Result files to merge.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the merged result here as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Label of the merged result (default: the first file's label).
        #[arg(long)]
        label: Option<String>,
    },
    /// Print a markdown ratio table: the first file (fanline) against each other file (peers).
    Compare {
        /// Result files; the first is the baseline.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
    },
}

/// How clients receive events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// WebSocket (`--url ws://…/v1/ws`, subscribe message).
    Ws,
    /// Server-Sent Events (`GET …/v1/sse?channels=…`; `--url http://HOST:PORT/v1/sse`, or a
    /// `ws://HOST:PORT/…` URL whose host is used with `/v1/sse`).
    Sse,
    /// WebSocket offering `permessage-deflate` (required in the 101); compressed events are
    /// inflated by the client.
    WsDeflate,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// URL of the server under test (WebSocket; `http://…/v1/sse` with `--transport sse`).
    #[arg(long, default_value = "ws://127.0.0.1:8080/v1/ws")]
    pub url: String,
    /// Client transport.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// Where events come from: `http://HOST:PORT/PATH` (POST, fanline's publish API) or
    /// `none` (this process only subscribes; another process publishes the same schedule).
    /// `kafka:BROKERS:TOPIC` is reserved for producing straight to Kafka (see publisher.rs).
    #[arg(long, default_value = "http://127.0.0.1:9091/v1/publish")]
    pub publish: String,
    /// Bearer token sent as `Authorization: Bearer …` on every WebSocket upgrade (fanline with
    /// `auth.anonymous = false`).
    #[arg(long, env = "FANLINE_BENCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Number of WebSocket connections.
    #[arg(long, default_value_t = 100)]
    pub conns: u32,
    /// Spread connections over this many source addresses 127.0.0.(1+offset) ….
    #[arg(long, default_value_t = 1)]
    pub sources: u32,
    /// First source address is 127.0.0.(1 + source_offset): give each generator process its own.
    #[arg(long, default_value_t = 0)]
    pub source_offset: u32,
    /// Channel name (with `--channels K > 1`: `NAME-0` … `NAME-(K-1)`, client i takes i mod K).
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Number of channels.
    #[arg(long, default_value_t = 1)]
    pub channels: u32,
    /// Published events per second in total (round-robin over channels); 0 = idle run.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Pad each event's `data` with about this many bytes of varied JSON (`"pad":[…]`), e.g.
    /// 1000 for ~1 KiB events. 0: the bare `{"t","seq"}` (~40 bytes).
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Publishing time in seconds (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// After the last publish, stop once this many seconds pass with no delivery (or when
    /// every expected event arrived).
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Seconds to wait idle after all connections are up (RSS per idle connection is read then).
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Start publishing at this unix time (seconds) instead of right after settle, so that
    /// several generator processes share one schedule.
    #[arg(long)]
    pub start_at: Option<f64>,
    /// Of the connections, this many subscribe and then stop reading (slow consumers).
    #[arg(long, default_value_t = 0)]
    pub slow: u32,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: u32,
    /// Publisher connections (channels are split over them; order within a channel holds).
    #[arg(long, default_value_t = 1)]
    pub pub_conns: u32,
    /// Tokio worker threads for the clients.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// PID of the server: report its CPU per million deliveries and RSS per idle connection.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write a machine-readable result (with the serialized histogram) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Name of the server under test, carried into the result.
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Raise connections in steps until p99 exceeds `--p99-bound-ms`; report the capacity.
    #[arg(long)]
    pub step_up: bool,
    /// Connections added per step.
    #[arg(long, default_value_t = 1000)]
    pub step: u32,
    /// Seconds of measurement per step.
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// p99 bound in milliseconds for `--step-up`.
    #[arg(long, default_value_t = 500.0)]
    pub p99_bound_ms: f64,
    /// Kill switch in seconds (default: duration + drain + settle + 120).
    #[arg(long)]
    pub hard_timeout: Option<f64>,
    /// Suppress the per-second progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// Parsed `ws://` URL.
#[derive(Debug, Clone)]
pub struct WsTarget {
    pub addr: SocketAddr,
    pub url: String,
}

impl RunArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=3600.0).contains(&self.duration) {
            bail!("--duration must be within 0..=3600 s");
        }
        if !(0.0..=1_000_000.0).contains(&self.rate) {
            bail!("--rate must be within 0..=1e6 events/s");
        }
        if self.conns == 0 || self.conns > 19_900 {
            bail!("--conns must be within 1..=19900 (one process holds < 20,000 fds)");
        }
        if self.slow >= self.conns && self.rate > 0.0 {
            bail!("--slow must leave at least one reading client");
        }
        if self.sources == 0 || self.source_offset + self.sources > 250 {
            bail!("--sources must be ≥ 1 and source_offset + sources ≤ 250");
        }
        if self.channels == 0 || self.pub_conns == 0 || self.threads == 0 {
            bail!("--channels, --pub-conns and --threads must be ≥ 1");
        }
        Ok(())
    }

    pub fn hard_timeout_secs(&self) -> f64 {
        self.hard_timeout
            .unwrap_or(self.duration + self.drain + self.settle + 120.0)
    }

    /// Channel name for channel index `c`.
    pub fn channel_name(&self, c: u32) -> String {
        if self.channels == 1 {
            self.channel.clone()
        } else {
            format!("{}-{c}", self.channel)
        }
    }

    /// Source address for connection `i`.
    pub fn source_addr(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, (1 + self.source_offset + i % self.sources) as u8)
    }

    pub fn ws_target(&self) -> anyhow::Result<WsTarget> {
        let (rest, url) = match (self.transport, self.url.strip_prefix("http://")) {
            (Transport::Sse, Some(rest)) => (rest, self.url.clone()),
            (Transport::Sse, None) => {
                let rest = self
                    .url
                    .strip_prefix("ws://")
                    .context("--url must start with http:// or ws://")?;
                let host = rest.split('/').next().unwrap_or(rest);
                (rest, format!("http://{host}/v1/sse"))
            }
            (Transport::Ws | Transport::WsDeflate, _) => (
                self.url
                    .strip_prefix("ws://")
                    .context("--url must start with ws://")?,
                self.url.clone(),
            ),
        };
        let hostport = rest.split('/').next().unwrap_or(rest);
        let addr = hostport
            .to_socket_addrs()
            .with_context(|| format!("resolving {hostport}"))?
            .find(|a| a.is_ipv4())
            .context("no IPv4 address for --url")?;
        Ok(WsTarget { addr, url })
    }
}
