//! Configuration: a TOML file, then `FANLINE_<SECTION>_<KEY>` environment overrides, then flags.
//!
//! Every field has a documented default, so `fanline` with no file runs. [`Config::validate`]
//! rejects impossible combinations with a message naming the setting.
//!
//! A leaf below the modules it configures: `ingest.rs` holds `[kafka]`, `[replay]` and
//! `[[route]]`, `auth.rs` holds `[auth]`; nothing here imports `ingest` or `auth`.

pub mod auth;
mod ingest;

pub use ingest::{DEFAULT_TOPIC, KafkaConfig, KafkaMode, KafkaStart, ReplayConfig, RouteConfig};

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The whole configuration. Section names contain no `_` so env keys split unambiguously.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub testing: TestingConfig,
    pub kafka: KafkaConfig,
    pub replay: ReplayConfig,
    pub auth: auth::AuthConfig,
    pub tls: Option<TlsConfig>,
    pub log: LogConfig,
    pub compression: CompressionConfig,
    /// `[[route]]` entries: Kafka topic → channel (see SPEC §3).
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
}

/// `[server]`: listeners, shards, protocol timing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Public listener (WebSocket, health). Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Admin listener (metrics, stats, publish). Default `127.0.0.1:9091`.
    pub admin_listen: SocketAddr,
    /// Reactor shards; 0 = one per core. Default 0.
    pub shards: usize,
    /// The shards' I/O backend (SPEC §1): `epoll` or `uring` (falls back to epoll, with a
    /// WARN line, where io_uring is unavailable). Default: [`IoBackend::DEFAULT`].
    pub io_backend: IoBackend,
    /// WebSocket upgrade paths. Default `["/v1/ws"]`.
    pub ws_paths: Vec<String>,
    /// Protocol ping interval; a peer silent for 1.5× this is closed with 1001. Default 20000.
    pub heartbeat_ms: u64,
    /// An upgrade (request head) must complete within this. Default 10000.
    pub upgrade_timeout_ms: u64,
    /// Shutdown: sockets are closed with 1001 spread over this window. Default 10000.
    pub drain_ms: u64,
    /// Per-shard ring capacity (events queued from ingest to a shard). Default 65536.
    pub ring_capacity: usize,
    /// Admin bearer token; required when set, and always when admin binds a non-loopback address.
    pub admin_token: Option<String>,
    /// Serve the demo page at `/` (and the JS client at `/fanline.js`) on the public
    /// listener. Default true; turn off in production.
    pub demo: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:8080".parse().expect("static addr"),
            admin_listen: "127.0.0.1:9091".parse().expect("static addr"),
            shards: 0,
            io_backend: IoBackend::from_env_or_default(),
            ws_paths: vec!["/v1/ws".into()],
            heartbeat_ms: 20_000,
            upgrade_timeout_ms: 10_000,
            drain_ms: 10_000,
            ring_capacity: 65_536,
            admin_token: None,
            demo: true,
        }
    }
}

/// `server.io_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// Readiness (mio, edge-triggered): one writev per connection per turn.
    Epoll,
    /// Completions (io_uring): every send of a turn in one `io_uring_enter`, multishot accept
    /// and receive from a provided-buffer ring.
    #[serde(alias = "io_uring")]
    Uring,
}

impl IoBackend {
    /// The measured faster backend on this machine (perf/RESULTS.md, "epoll vs uring").
    pub const DEFAULT: IoBackend = IoBackend::Epoll;

    pub fn name(self) -> &'static str {
        match self {
            IoBackend::Epoll => "epoll",
            IoBackend::Uring => "uring",
        }
    }

    /// [`IoBackend::DEFAULT`], or `FANLINE_SERVER_IO_BACKEND` when it names a backend: a
    /// configuration built in code (tests, embedders) follows the same env key as a loaded
    /// one, so the whole test suite runs on either backend.
    pub fn from_env_or_default() -> IoBackend {
        std::env::var("FANLINE_SERVER_IO_BACKEND")
            .ok()
            .and_then(|v| v.trim_matches('"').parse().ok())
            .unwrap_or(IoBackend::DEFAULT)
    }
}

impl std::str::FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<IoBackend, String> {
        match s {
            "epoll" => Ok(IoBackend::Epoll),
            "uring" | "io_uring" => Ok(IoBackend::Uring),
            other => Err(format!("unknown io backend {other:?} (epoll | uring)")),
        }
    }
}

/// `[limits]`: SPEC §5 defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub per_ip_connections: usize,
    pub connect_per_ip_per_min: u32,
    /// CIDRs exempt from both per-IP limits. Default loopback.
    pub connect_allowlist: Vec<String>,
    pub inbound_msgs_per_s: u32,
    pub inbound_burst: u32,
    /// Largest inbound WebSocket message (after reassembly); larger → close 1009.
    pub max_inbound_bytes: usize,
    /// Largest `data` accepted by `POST /v1/publish`; larger → 413.
    pub max_publish_bytes: usize,
    pub max_subscriptions: usize,
    /// Outbox caps per connection; overflow drops the OLDEST frames and sends `gap`.
    pub outbox_frames: usize,
    pub outbox_bytes: usize,
    /// Overflowing for longer than this closes the connection with 4000.
    pub slow_consumer_close_s: u64,
    /// Allowed `Origin` values; empty = any.
    pub allowed_origins: Vec<String>,
    /// Largest HTTP request head; larger → 431.
    pub max_head_bytes: usize,
    /// Most connections whose request head is unfinished, over all addresses (0 = no cap);
    /// past it new connections are answered 503 and closed at once.
    pub max_pending_heads: usize,
    /// Open WebSocket/SSE connections per identity (0 = no cap); past it → 429.
    pub connections_per_identity: usize,
    /// REST requests per identity per minute (0 = no cap); past it → 429 + `Retry-After`.
    pub rest_requests_per_min: u32,
    /// `[limits.tier.<name>]`: overrides selected by an API key's `tier` or a JWT `tier` claim.
    pub tier: std::collections::BTreeMap<String, TierConfig>,
}

/// `[limits.tier.<name>]`: what a tier changes; anything unset is the `[limits]` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierConfig {
    pub connections_per_identity: Option<usize>,
    pub inbound_msgs_per_s: Option<u32>,
    pub inbound_burst: Option<u32>,
    pub rest_requests_per_min: Option<u32>,
}

/// The per-identity limits in force for one tier (or none): `[limits]` with the tier's
/// overrides applied. An unknown tier name gets the `[limits]` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityLimits {
    pub connections: usize,
    pub inbound_msgs_per_s: u32,
    pub inbound_burst: u32,
    pub rest_requests_per_min: u32,
}

impl LimitsConfig {
    /// The limits for an identity of `tier`.
    pub fn for_tier(&self, tier: Option<&str>) -> IdentityLimits {
        let t = tier
            .and_then(|t| self.tier.get(t))
            .copied()
            .unwrap_or_default();
        IdentityLimits {
            connections: t
                .connections_per_identity
                .unwrap_or(self.connections_per_identity),
            inbound_msgs_per_s: t.inbound_msgs_per_s.unwrap_or(self.inbound_msgs_per_s),
            inbound_burst: t.inbound_burst.unwrap_or(self.inbound_burst),
            rest_requests_per_min: t
                .rest_requests_per_min
                .unwrap_or(self.rest_requests_per_min),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 100_000,
            per_ip_connections: 1_000,
            connect_per_ip_per_min: 10,
            connect_allowlist: vec!["127.0.0.0/8".into(), "::1/128".into()],
            inbound_msgs_per_s: 10,
            inbound_burst: 20,
            max_inbound_bytes: 65_536,
            max_publish_bytes: 1_048_576,
            max_subscriptions: 100,
            outbox_frames: 1_000,
            outbox_bytes: 4 * 1024 * 1024,
            slow_consumer_close_s: 30,
            allowed_origins: Vec::new(),
            max_head_bytes: 16 * 1024,
            max_pending_heads: 4096,
            connections_per_identity: 0,
            rest_requests_per_min: 0,
            tier: std::collections::BTreeMap::new(),
        }
    }
}

/// `[testing]`: conformance helpers, off by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// Adds a WebSocket echo route at this path (Autobahn). Limits still apply.
    pub echo_path: Option<String>,
}

/// `[compression]`: `permessage-deflate` (RFC 7692) on WebSockets (SPEC §9).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    /// Negotiate `permessage-deflate` when the client offers it. Default true.
    pub enabled: bool,
    /// Events whose JSON envelope is shorter than this go uncompressed. Default 256.
    pub min_bytes: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            min_bytes: 256,
        }
    }
}

/// `[tls]`: rustls on the public listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Required. Re-read on SIGHUP.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Required. Re-read on SIGHUP.
    pub key: String,
    /// A second public listener serving TLS while `server.listen` stays plain. Default unset:
    /// `server.listen` itself serves TLS.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// tracing env-filter directive, e.g. `info` or `fanline=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// A configuration problem, with the setting it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid setting {key}: {why}")]
    Invalid { key: &'static str, why: String },
}

impl Config {
    /// Loads `path` (if any), applies `FANLINE_*` variables from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        apply_env(&mut doc, env)?;
        let cfg: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects impossible settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.into(),
            })
        };
        if self.server.ws_paths.iter().any(|p| !p.starts_with('/')) {
            return bad("server.ws_paths", "every path must start with '/'");
        }
        if !self.server.admin_listen.ip().is_loopback() && self.server.admin_token.is_none() {
            return bad(
                "server.admin_token",
                "required when server.admin_listen is not a loopback address",
            );
        }
        if self.server.heartbeat_ms < 100 {
            return bad("server.heartbeat_ms", "must be at least 100");
        }
        if self.server.ring_capacity < 16 {
            return bad("server.ring_capacity", "must be at least 16");
        }
        if self.limits.outbox_frames == 0 || self.limits.outbox_bytes == 0 {
            return bad("limits.outbox_frames", "outbox caps must be positive");
        }
        if self.limits.max_head_bytes < 1024 {
            return bad("limits.max_head_bytes", "must be at least 1024");
        }
        if let Some(t) = &self.tls {
            if t.cert.is_empty() {
                return bad("tls.cert", "a PEM certificate path is required");
            }
            if t.key.is_empty() {
                return bad("tls.key", "a PEM private key path is required");
            }
            if t.listen == Some(self.server.listen) && self.server.listen.port() != 0 {
                return bad("tls.listen", "must differ from server.listen");
            }
        }
        if let Err((key, why)) = self.kafka.validate() {
            return Err(ConfigError::Invalid { key, why });
        }
        if let Some(p) = &self.testing.echo_path
            && !p.starts_with('/')
        {
            return bad("testing.echo_path", "must start with '/'");
        }
        Ok(())
    }

    /// Number of shards to run: `server.shards`, or one per core.
    pub fn shard_count(&self) -> usize {
        if self.server.shards > 0 {
            self.server.shards
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

/// Applies `FANLINE_<SECTION>_<KEY>=value`: the value is parsed as a TOML value when it parses
/// (numbers, booleans, arrays), else taken as a string.
fn apply_env(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("FANLINE_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(v));
        let entry = doc
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => {
                return Err(ConfigError::Parse(format!(
                    "{k}: [{section}] is not a table"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_has_spec_defaults() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9091");
        assert_eq!(c.limits.outbox_frames, 1000);
        assert_eq!(c.server.ws_paths, vec!["/v1/ws".to_string()]);
    }

    #[test]
    fn env_overrides_file_values_with_typed_values() {
        let env = vec![
            (
                "FANLINE_LIMITS_MAX_CONNECTIONS".to_string(),
                "5".to_string(),
            ),
            (
                "FANLINE_SERVER_LISTEN".to_string(),
                "127.0.0.1:1".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!(c.server.listen.port(), 1);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let env = vec![("FANLINE_SERVER_LISTN".to_string(), "x".to_string())];
        let e = Config::load(None, env).unwrap_err().to_string();
        assert!(e.contains("listn"), "{e}");
    }
}
