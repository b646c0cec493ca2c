//! The server-wide state every shard, the admin side and `main` share (read-mostly), and
//! readiness: draining, shards up, Kafka assignment and link health.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::fanout::Fanout;
use crate::ingest::IngestStatus;
use crate::metrics::Metrics;

/// An admin request for one shard, answered from that shard's own turn. Travels on the
/// shard's [`ControlQueue`], never in the event ring.
#[derive(Debug)]
pub enum AdminQuery {
    /// Describe this shard's open sessions (of one identity, if given).
    Connections {
        identity: Option<String>,
        reply: crossbeam_channel::Sender<Vec<serde_json::Value>>,
    },
    /// Close the session with this id with 1012 "service restart"; replies whether it was here.
    Close {
        id: String,
        reply: crossbeam_channel::Sender<bool>,
    },
}

/// A shard's small admin queue, woken with the same waker as its event ring.
#[derive(Debug)]
pub struct ControlQueue {
    queue: crossbeam_queue::ArrayQueue<AdminQuery>,
}

impl ControlQueue {
    /// Admin requests a shard can hold before further asks are refused.
    pub const CAPACITY: usize = 64;

    pub fn new() -> ControlQueue {
        ControlQueue {
            queue: crossbeam_queue::ArrayQueue::new(Self::CAPACITY),
        }
    }

    /// Owning shard only (after `ShardInbox::begin_drain`, so a later push wakes it again).
    pub fn pop(&self) -> Option<AdminQuery> {
        self.queue.pop()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl Default for ControlQueue {
    fn default() -> Self {
        ControlQueue::new()
    }
}

/// State shared by every shard, the admin side and `main`. Read-mostly.
#[derive(Debug)]
pub struct ServerState {
    /// The configuration the process started with. Restart-only settings are read here.
    pub cfg: Arc<Config>,
    /// `[limits]` as last (re)loaded: handshakes, new connections and new subscriptions read
    /// it; SIGHUP swaps it whole. The outbox caps and `slow_consumer_close_s` are read from
    /// `cfg` (they are restart-only: every open connection shares them).
    pub limits: arc_swap::ArcSwap<crate::config::LimitsConfig>,
    pub metrics: Arc<Metrics>,
    pub fanout: Arc<Fanout>,
    pub ingest: Arc<IngestStatus>,
    /// Per-partition replay buffer (resume with `since`, REST fallbacks).
    pub replay: Arc<crate::ingest::ReplayBuffer>,
    /// Credentials → identity; swapped whole on SIGHUP.
    pub auth: arc_swap::ArcSwap<crate::auth::Authenticator>,
    /// rustls server config when `[tls]` is set; swapped whole on SIGHUP (new connections
    /// take the new certificate, established ones keep theirs).
    pub tls: Option<arc_swap::ArcSwap<rustls::ServerConfig>>,
    /// Connection slots: global, per IP, attempts per minute per IP.
    pub limiter: crate::auth::ConnLimiter,
    /// Per-identity counts (connections, REST requests per minute) against the tier limits.
    pub identities: crate::auth::IdentityLimiter,
    /// Per-shard admin queues (index = shard id).
    pub control: Vec<ControlQueue>,
    pub draining: AtomicBool,
    /// Shards whose listener is bound and polling.
    pub shards_up: AtomicUsize,
    /// The shards' I/O backend in use (`epoll` | `uring`, after any fallback).
    pub io_backend: &'static str,
    pub started: Instant,
    /// `started` as unix milliseconds (for timestamps in admin answers).
    pub started_unix_ms: i64,
}

impl ServerState {
    /// Queues `q` for shard `shard` and wakes it; false when that shard's queue is full.
    pub fn ask(&self, shard: usize, q: AdminQuery) -> bool {
        let (Some(control), Some(inbox)) =
            (self.control.get(shard), self.fanout.inboxes.get(shard))
        else {
            return false;
        };
        if control.queue.push(q).is_err() {
            return false;
        }
        inbox.notify();
        true
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.fanout.inboxes.len()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
    /// Every shard completed a reactor turn within `within` (shards turn at least once a
    /// second even when idle). Drives the systemd watchdog.
    pub fn shards_alive(&self, within: Duration) -> bool {
        let now = self.started.elapsed().as_millis() as i64;
        self.metrics
            .shards
            .iter()
            .all(|m| now - m.last_turn_ms.get() <= within.as_millis() as i64)
    }

    /// The `/health/ready` answer (both listeners): 200 or 503 and a body naming every check
    /// (`"ok"` or `"not_ready"`) and listing those not ready, e.g.
    /// `{"status":"not_ready","reason":"draining","not_ready":["draining"],"checks":{..}}`.
    pub fn readiness_answer(&self) -> (u16, serde_json::Value) {
        let checks = self.readiness();
        let not_ready: Vec<&str> = checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| *name)
            .collect();
        let map: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|(name, ok)| {
                (
                    name.to_string(),
                    (if *ok { "ok" } else { "not_ready" }).into(),
                )
            })
            .collect();
        match self.not_ready_reason() {
            None => (
                200,
                serde_json::json!({"status": "ready", "not_ready": not_ready, "checks": map}),
            ),
            Some(r) => (
                503,
                serde_json::json!({"status": "not_ready", "reason": r, "not_ready": not_ready, "checks": map}),
            ),
        }
    }

    /// Each readiness check and whether it passes: `shards` (every shard up),
    /// `kafka_assignment` (partitions assigned), `broker_link` (not degraded), `draining`
    /// (passes while not draining).
    pub fn readiness(&self) -> [(&'static str, bool); 4] {
        [
            (
                "shards",
                self.shards_up.load(Ordering::Acquire) >= self.fanout.inboxes.len(),
            ),
            (
                "kafka_assignment",
                self.ingest.assigned.load(Ordering::Acquire),
            ),
            ("broker_link", !self.ingest.degraded.load(Ordering::Acquire)),
            ("draining", !self.is_draining()),
        ]
    }

    /// `None` when ready for traffic, else why not (readiness probe).
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.is_draining() {
            Some("draining")
        } else if self.shards_up.load(Ordering::Acquire) < self.fanout.inboxes.len() {
            Some("starting")
        } else if !self.ingest.assigned.load(Ordering::Acquire) {
            Some("kafka partitions not assigned")
        } else if self.ingest.degraded.load(Ordering::Acquire) {
            Some("kafka unavailable")
        } else {
            None
        }
    }
}
