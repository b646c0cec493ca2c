//! SIGHUP: a freshly loaded [`Config`] is checked whole, then its reloadable parts are put in
//! force without touching a connection:
//!
//! - `[[route]]`: the ingest thread gets the new table (new topics assigned from their
//!   beginning, removed ones released; subscriptions are per channel and stay), and so does
//!   the sink behind `POST /v1/publish`;
//! - `[limits]` (except the outbox caps and `slow_consumer_close_s`, shared by every open
//!   connection, and the connection limiter's `max_connections`, `per_ip_connections`,
//!   `connect_per_ip_per_min`, `connect_allowlist`, `max_pending_heads`): new connections and new subscriptions get the new values; open connections
//!   keep what they hold (their slot, their inbound bucket, their subscriptions);
//! - `[auth]`: JWT keys, PEM and JWKS files, the API key file; `[tls]` certificate and key;
//! - `log.level`.
//!
//! Settings that need a restart (listeners, shards, `[kafka]`, `[replay]`, ...) are logged as
//! ignored. Nothing is swapped unless everything checks out: a bad file changes nothing and
//! its error names the key.

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::ingest::PublishSink;
use crate::ingest::routes::Routes;
use crate::state::ServerState;

/// Puts a new `log.level` (an env-filter directive) in force. `main` builds it from its
/// tracing-subscriber reload handle; an in-process server has none.
pub type LogReload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where a [`LogReload`] is kept (it has no `Debug` of its own).
#[derive(Default)]
pub struct LogHook(pub Option<LogReload>);

impl std::fmt::Debug for LogHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "LogHook(set)"
        } else {
            "LogHook(none)"
        })
    }
}

/// Why a reload was refused; the running configuration stays in force whole.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file (or env) does not load: unknown key, wrong type, impossible value.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Credentials (JWT keys, JWKS, API key file) or `limits.connect_allowlist` are invalid
    /// or unreadable.
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    /// The TLS certificate or key could not be read.
    #[error("tls.cert/tls.key: {0}")]
    Tls(#[from] crate::conn::tls::TlsSetupError),
    /// A `[[route]]` entry does not compile.
    #[error("invalid setting route: {0}")]
    Routes(String),
    /// `log.level` is not an env-filter directive.
    #[error("invalid setting log.level: {0}")]
    LogLevel(String),
}

/// What a successful reload changed (for the log line and tests).
#[derive(Debug, Default)]
pub struct Reloaded {
    /// The route table changed and was handed to ingest.
    pub routes: bool,
    /// Changed settings that need a restart and were ignored, by key.
    pub ignored: Vec<&'static str>,
}

/// Keys (or sections) that only a restart applies.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    fn differs<T: serde::Serialize>(a: &T, b: &T) -> bool {
        serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
    }
    let mut out = Vec::new();
    let (o, n) = (&old.server, &new.server);
    let (ol, nl) = (&old.limits, &new.limits);
    let checks: [(&'static str, bool); 14] = [
        ("server.listen", o.listen != n.listen),
        ("server.admin_listen", o.admin_listen != n.admin_listen),
        ("server.shards", o.shards != n.shards),
        ("server.ws_paths", o.ws_paths != n.ws_paths),
        ("server.ring_capacity", o.ring_capacity != n.ring_capacity),
        ("server", differs(o, n)),
        ("kafka", differs(&old.kafka, &new.kafka)),
        ("replay", differs(&old.replay, &new.replay)),
        ("testing", differs(&old.testing, &new.testing)),
        ("log.format", old.log.format != new.log.format),
        (
            "tls (added, removed or tls.listen)",
            old.tls.is_some() != new.tls.is_some()
                || old.tls.as_ref().map(|t| t.listen) != new.tls.as_ref().map(|t| t.listen),
        ),
        (
            "limits.outbox_frames/outbox_bytes",
            old.limits.outbox_frames != new.limits.outbox_frames
                || old.limits.outbox_bytes != new.limits.outbox_bytes,
        ),
        (
            "limits.max_connections/per_ip_connections/connect_per_ip_per_min/connect_allowlist",
            ol.max_connections != nl.max_connections
                || ol.per_ip_connections != nl.per_ip_connections
                || ol.connect_per_ip_per_min != nl.connect_per_ip_per_min
                || ol.connect_allowlist != nl.connect_allowlist,
        ),
        (
            "limits.slow_consumer_close_s",
            old.limits.slow_consumer_close_s != new.limits.slow_consumer_close_s,
        ),
    ];
    let specific_server = checks[..5].iter().any(|(_, d)| *d);
    for (i, (key, changed)) in checks.into_iter().enumerate() {
        // `server` names the other server keys only when no specific one is named
        if changed && !(i == 5 && specific_server) {
            out.push(key);
        }
    }
    out
}

/// Checks `new` whole against the running `old`, then applies it (see the module doc).
/// `max_connections` is capped by the open-files limit as at startup.
pub fn apply(
    shared: &ServerState,
    sink: &dyn PublishSink,
    log: Option<&LogReload>,
    old: &Config,
    mut new: Config,
) -> Result<(Config, Reloaded), ReloadError> {
    new.validate()?;
    if let Ok(nofile) = crate::io::raise_nofile_limit() {
        let cap = (nofile.saturating_sub(256)) as usize;
        new.limits.max_connections = new.limits.max_connections.min(cap);
    }
    let auth = crate::auth::Authenticator::from_config(&new.auth)?;
    // the connection limiter's caps (max_connections, per-IP) are restart-only for now
    crate::auth::ConnLimiter::new(&new.limits)?;
    let tls = match (&new.tls, &shared.tls) {
        (Some(t), Some(_)) => Some(crate::conn::tls::load_server_config(t)?),
        _ => None,
    };
    // the default topic is a `[kafka]` setting, restart-only: keep the running one
    let routes =
        Routes::compile(&new.routes, &old.kafka.default_topic).map_err(ReloadError::Routes)?;
    let level_changed = new.log.level != old.log.level;
    if level_changed && log.is_some() {
        tracing_subscriber::EnvFilter::try_new(&new.log.level)
            .map_err(|e| ReloadError::LogLevel(format!("{:?}: {e}", new.log.level)))?;
    }
    // everything checked: put it in force
    let mut done = Reloaded {
        ignored: restart_only(old, &new),
        ..Reloaded::default()
    };
    shared.limits.store(Arc::new(new.limits.clone()));
    shared.auth.store(Arc::new(auth));
    if let (Some(fresh), Some(slot)) = (tls, &shared.tls) {
        slot.store(fresh);
    }
    if serde_json::to_value(&old.routes).ok() != serde_json::to_value(&new.routes).ok() {
        sink.set_routes(&routes);
        shared.ingest.route_update.send(routes);
        done.routes = true;
    }
    if let (true, Some(set)) = (level_changed, log) {
        set(&new.log.level).map_err(ReloadError::LogLevel)?;
    }
    for key in &done.ignored {
        tracing::warn!(
            key,
            "SIGHUP: {key} changed; it needs a restart and was ignored"
        );
    }
    Ok((new, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_are_named_and_reloadable_ones_are_not() {
        let old = Config::default();
        let mut new = Config::default();
        new.limits.max_subscriptions = 3;
        new.log.level = "debug".into();
        assert!(restart_only(&old, &new).is_empty());
        new.server.shards = 7;
        new.server.drain_ms = 1;
        new.kafka.partitions = 9;
        new.limits.outbox_frames = 5;
        assert_eq!(
            restart_only(&old, &new),
            vec![
                "server.shards",
                "kafka",
                "limits.outbox_frames/outbox_bytes"
            ]
        );
        let mut only_drain = Config::default();
        only_drain.server.drain_ms = 1;
        assert_eq!(restart_only(&old, &only_drain), vec!["server"]);
    }
}
