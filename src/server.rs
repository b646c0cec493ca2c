//! `Server`: wires configuration into running parts — shards (one thread each, own listener
//! and poll), the fan-out, the ingest side and the admin listener — and stops them in order.
//!
//! Tests start it in-process on port 0; `main` starts it from flags and waits for signals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::admin::Admin;
use crate::config::Config;
use crate::fanout::{Fanout, Publisher, ShardInbox, snapshot::MAX_SHARDS};
use crate::ingest::{IngestStatus, PublishSink, ReplayBuffer, spawn_ingest};
use crate::metrics::Metrics;
use crate::shard::Shard;
use crate::state::ServerState;

pub use crate::reload::{LogHook, LogReload, ReloadError, Reloaded};

/// A running gateway.
#[derive(Debug)]
pub struct Server {
    /// The public listener's bound address (port resolved when 0 was asked for).
    pub local_addr: SocketAddr,
    /// The TLS listener's bound address: `tls.listen` when set, else `local_addr` when `[tls]`
    /// is configured, else `None`.
    pub tls_addr: Option<SocketAddr>,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    pub shared: Arc<ServerState>,
    pub sink: Arc<dyn PublishSink>,
    shards: Vec<JoinHandle<()>>,
    admin: Admin,
    ingest_thread: Option<JoinHandle<()>>,
    ingest_stop: Arc<AtomicBool>,
    /// The configuration in force (the last one a reload accepted).
    running: std::sync::Mutex<Config>,
    log_reload: LogHook,
}

impl Server {
    /// Starts everything; returns once listeners are bound.
    pub fn start(cfg: Config) -> anyhow::Result<Server> {
        let mut cfg = cfg;
        if let Ok(nofile) = crate::io::raise_nofile_limit() {
            let cap = connection_cap(nofile);
            if cfg.limits.max_connections > cap {
                tracing::info!(
                    from = cfg.limits.max_connections,
                    to = cap,
                    "limits.max_connections capped by the open-files limit"
                );
                cfg.limits.max_connections = cap;
            }
        }
        let auth = crate::auth::Authenticator::from_config(&cfg.auth)?;
        let tls_config = match &cfg.tls {
            Some(t) => Some(crate::conn::tls::load_server_config(t)?),
            None => None,
        };
        let limiter = crate::auth::ConnLimiter::new(&cfg.limits)?;
        if cfg.auth.anonymous_allowed() {
            tracing::warn!(
                "auth: anonymous connections are allowed (no JWT key or API key file configured)"
            );
        }
        let running = std::sync::Mutex::new(cfg.clone());
        let cfg = Arc::new(cfg);
        let n = cfg.shard_count();
        anyhow::ensure!(
            n <= MAX_SHARDS,
            "server.shards: at most {MAX_SHARDS} shards"
        );
        let metrics = Arc::new(Metrics::new(n));
        let mut backends = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        for i in 0..n {
            let waker = crate::io::Waker::new().context("creating a waker")?;
            let backend = crate::io::Backend::open(cfg.server.io_backend, &waker, i)
                .context("opening the shard's I/O backend")?;
            inboxes.push(Arc::new(ShardInbox::new(cfg.server.ring_capacity, waker)));
            backends.push(backend);
        }
        let io_backend = backends.first().map_or("epoll", |b| b.kind().name());
        let fanout = Arc::new(Fanout::new(inboxes.clone()));
        let first = crate::io::reuseport_listener(cfg.server.listen)
            .with_context(|| format!("binding server.listen {}", cfg.server.listen))?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n {
            listeners.push(crate::io::reuseport_listener(local_addr)?);
        }
        // `tls.listen` set: a second TLS listener per shard; unset: `server.listen` is TLS.
        let second_addr = cfg.tls.as_ref().and_then(|t| t.listen);
        let main_is_tls = cfg.tls.is_some() && second_addr.is_none();
        let mut tls_listeners = Vec::with_capacity(n);
        let tls_addr = match second_addr {
            Some(addr) => {
                let first = crate::io::reuseport_listener(addr)
                    .with_context(|| format!("binding tls.listen {addr}"))?;
                let bound = first.local_addr()?;
                tls_listeners.push(first);
                for _ in 1..n {
                    tls_listeners.push(crate::io::reuseport_listener(bound)?);
                }
                Some(bound)
            }
            None if main_is_tls => Some(local_addr),
            None => None,
        };
        let mut tls_listeners = tls_listeners.into_iter();
        let ingest = Arc::new(IngestStatus::default());
        let replay = Arc::new(ReplayBuffer::new(&cfg.replay));
        let ingest_stop = Arc::new(AtomicBool::new(false));
        let publisher = Publisher::new(fanout.clone(), metrics.clone());
        let (ingest_thread, sink) = spawn_ingest(
            &cfg.kafka,
            &cfg.routes,
            publisher,
            replay.clone(),
            metrics.clone(),
            ingest.clone(),
            ingest_stop.clone(),
        )?;
        let shared = Arc::new(ServerState {
            cfg: cfg.clone(),
            limits: arc_swap::ArcSwap::from_pointee(cfg.limits.clone()),
            metrics,
            fanout,
            ingest,
            replay,
            auth: arc_swap::ArcSwap::from_pointee(auth),
            tls: tls_config.map(arc_swap::ArcSwap::new),
            limiter,
            identities: crate::auth::IdentityLimiter::new(),
            control: (0..n).map(|_| crate::state::ControlQueue::new()).collect(),
            draining: AtomicBool::new(false),
            shards_up: AtomicUsize::new(0),
            io_backend,
            started: Instant::now(),
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        });
        let mut shards = Vec::with_capacity(n);
        for (i, (backend, listener)) in backends.into_iter().zip(listeners).enumerate() {
            let listener = crate::shard::Listener {
                socket: listener,
                tls: main_is_tls,
            };
            let shard = Shard::new(
                i,
                backend,
                listener,
                tls_listeners.next(),
                inboxes[i].clone(),
                shared.clone(),
            )?;
            shards.push(
                std::thread::Builder::new()
                    .name(format!("fanline-shard-{i}"))
                    .spawn(move || shard.run())
                    .context("spawning a shard thread")?,
            );
        }
        let admin = Admin::spawn(cfg.server.admin_listen, shared.clone(), sink.clone())
            .with_context(|| format!("binding server.admin_listen {}", cfg.server.admin_listen))?;
        tracing::info!(listen = %local_addr, tls = ?tls_addr, admin = %admin.addr, shards = n, io_backend, "fanline started");
        Ok(Server {
            local_addr,
            tls_addr,
            admin_addr: admin.addr,
            shared,
            sink,
            shards,
            admin,
            ingest_thread: Some(ingest_thread),
            ingest_stop,
            running,
            log_reload: LogHook::default(),
        })
    }

    /// Waits until every shard polls and ingest is assigned (readiness), up to `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.shared.not_ready_reason().is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Lets [`Server::reload_with`] change the log level (`main` passes its subscriber's
    /// reload handle).
    pub fn set_log_reload(&mut self, f: LogReload) {
        self.log_reload = LogHook(Some(f));
    }

    /// Re-reads the files the running configuration names (JWT keys, PEM and JWKS files, the
    /// API key file, the TLS certificate and key) without touching connections. On error
    /// nothing changes.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let current = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.reload_with(current)
    }

    /// SIGHUP: puts `new` (the re-read file and env) in force — routes, limits, auth, TLS,
    /// log level — without dropping a connection (see [`crate::reload`]). An invalid `new` is
    /// refused whole with an error naming the key; the running configuration stays.
    pub fn reload_with(&self, new: Config) -> Result<Reloaded, ReloadError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let (applied, done) = crate::reload::apply(
            &self.shared,
            &*self.sink,
            self.log_reload.0.as_ref(),
            &running,
            new,
        )?;
        *running = applied;
        tracing::info!(routes_changed = done.routes, ignored = ?done.ignored, "configuration reloaded");
        Ok(done)
    }

    /// Begins the drain: stop accepting, readiness 503, close sockets with 1001 over the
    /// drain window. Returns immediately; [`Server::join`] waits for the end.
    pub fn begin_shutdown(&self) {
        if !self.shared.draining.swap(true, Ordering::AcqRel) {
            tracing::info!(drain_ms = self.shared.cfg.server.drain_ms, "draining");
            for inbox in &self.shared.fanout.inboxes {
                inbox.notify();
            }
        }
    }

    /// Waits for the shards to finish draining, then stops the admin listener.
    pub fn join(mut self) {
        for t in self.shards.drain(..) {
            let _ = t.join();
        }
        self.admin.stop();
        self.ingest_stop.store(true, Ordering::Release);
        if let Some(t) = self.ingest_thread.take() {
            let _ = t.join();
        }
        tracing::info!("fanline stopped");
    }

    /// `begin_shutdown` + `join`.
    pub fn shutdown(self) {
        self.begin_shutdown();
        self.join();
    }
}

/// The most connections `nofile` descriptors carry: every connection is one descriptor, and
/// 256 (a quarter of a small limit) stay for listeners, Kafka, the admin listener and files.
/// `limits.max_connections = 0` (no cap) is not lowered by it.
fn connection_cap(nofile: u64) -> usize {
    let reserve = (nofile / 4).min(256);
    nofile.saturating_sub(reserve).max(1) as usize
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_caps_connections_with_a_reserve() {
        assert_eq!(super::connection_cap(20_000), 19_744);
        assert_eq!(super::connection_cap(1024), 768);
        assert_eq!(
            super::connection_cap(256),
            192,
            "a small limit keeps a quarter"
        );
        assert_eq!(super::connection_cap(64), 48);
        assert_eq!(super::connection_cap(0), 1);
    }
}
