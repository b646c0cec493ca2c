//! A shard: one reactor thread owning its listeners (SO_REUSEPORT; plain and/or TLS), a slab of connections, a
//! timer wheel, a local channel index, the inbox ring fed by ingest, and its I/O backend
//! ([`crate::io::Backend`]: epoll or io_uring; nothing here knows which).
//!
//! One turn: poll (the backend submits last turn's sends and hands over accepts, bytes,
//! closes and send room) → drain the event ring into outboxes → answer the admin control
//! queue → fire timers → flush every dirty connection with ONE send → remove dead
//! connections. Nothing here takes a lock shared with another shard; the only cross-thread
//! traffic is the inbox ring, the control queue, the subscription table (written on
//! first/last local subscriber) and relaxed counters.

mod accept;
pub mod index;
pub mod timer;
mod turn;

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::conn::{Conn, Env};
use crate::fanout::ShardInbox;
use crate::io::{Backend, Event};
use crate::metrics::ShardMetrics;
use crate::state::ServerState;
use index::ChannelIndex;
use timer::TimerWheel;

/// Ring items drained per turn before flushing (bounds one turn's latency).
pub const RING_BATCH: usize = 8192;
const TIMER_TICK: Duration = Duration::from_millis(50);

/// Everything a shard's handlers need besides the connection slab.
#[derive(Debug)]
pub struct Ctx {
    pub id: usize,
    pub shared: Arc<ServerState>,
    pub inbox: Arc<ShardInbox>,
    pub index: ChannelIndex,
    pub timers: TimerWheel,
    pub timer_gen: u32,
    pub now: Instant,
    /// Decrypted TLS bytes pass through here (allocated at the first TLS read).
    pub plain: Vec<u8>,
    pub dirty: Vec<usize>,
    pub dead: Vec<usize>,
    /// Events delivered this turn: when ingest built each, and its record timestamp (ms).
    pub turn_events: Vec<(Instant, i64)>,
    pub conn_seq: u64,
    /// The last session's grant (see `conn::Env::grant`).
    pub last_grant: Option<Arc<crate::conn::Grant>>,
    /// Local tallies flushed to the shared counters once per turn.
    pub deliveries: u64,
    pub outbox_bytes: i64,
}

impl Ctx {
    pub fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics.shards[self.id]
    }

    /// Lends a connection handler what it may touch: time, server state, the local index.
    pub fn env(&mut self) -> Env<'_> {
        Env {
            now: self.now,
            shard: self.id,
            state: &self.shared,
            subs: &mut self.index,
            conn_seq: &mut self.conn_seq,
            outbox_bytes: &mut self.outbox_bytes,
            dead: &mut self.dead,
            last_grant: &mut self.last_grant,
        }
    }

    /// Queues `key` for this turn's flush (once; never a dead connection).
    pub fn mark_dirty(&mut self, conns: &mut Slab<Conn>, key: usize) {
        if let Some(c) = conns.get_mut(key) {
            crate::conn::mark_dirty(&mut self.dirty, key, c);
        }
    }

    /// Arms the connection's timer for its next deadline if it moved earlier or fired.
    pub fn rearm(&mut self, conns: &mut Slab<Conn>, key: usize) {
        let hb = Duration::from_millis(self.shared.cfg.server.heartbeat_ms);
        let slow = Duration::from_secs(self.shared.cfg.limits.slow_consumer_close_s);
        let Some(c) = conns.get_mut(key) else {
            return;
        };
        let at = c.next_deadline(self.now, hb, slow);
        let stamp = crate::clock::Stamp::at(at);
        if matches!(c.timer, Some((t, _)) if stamp.reached(t)) {
            return;
        }
        self.timer_gen = self.timer_gen.wrapping_add(1);
        c.timer = Some((stamp, self.timer_gen));
        self.timers.arm(key, self.timer_gen, at);
    }
}

/// A shard, ready to run on its own thread.
#[derive(Debug)]
pub struct Shard {
    backend: Backend,
    /// Whether listener 0 (`server.listen`) and 1 (`tls.listen`, when set) speak TLS; `None`:
    /// not listening (absent, or closed by the drain).
    listeners: [Option<bool>; 2],
    /// This poll's new connections and accept failures, handled after it.
    accepted: Vec<(usize, TcpStream, SocketAddr)>,
    accept_failed: Vec<(usize, std::io::Error)>,
    conns: Slab<Conn>,
    ctx: Ctx,
    drain: Option<Drain>,
    /// A descriptor held back for the moment the process runs out of them (see `accept.rs`).
    reserve: accept::FdReserve,
}

/// One accepting socket and whether its connections speak TLS.
#[derive(Debug)]
pub struct Listener {
    pub socket: StdListener,
    pub tls: bool,
}

#[derive(Debug)]
struct Drain {
    start: Instant,
    initial: usize,
    closed: usize,
}

impl Shard {
    /// Builds shard `id` around its backend (whose waker feeds `inbox`), its `server.listen`
    /// listener and, when `tls.listen` is set, its TLS listener.
    pub fn new(
        id: usize,
        mut backend: Backend,
        listener: Listener,
        tls_listener: Option<StdListener>,
        inbox: Arc<ShardInbox>,
        shared: Arc<ServerState>,
    ) -> std::io::Result<Shard> {
        backend.add_listener(0, listener.socket)?;
        let second = match tls_listener {
            Some(l) => {
                backend.add_listener(1, l)?;
                Some(true)
            }
            None => None,
        };
        let now = Instant::now();
        shared.metrics.shards[id]
            .ring_capacity
            .set(inbox.capacity() as i64);
        let index = ChannelIndex::new(id, shared.fanout.clone());
        // The slab is sized once for this shard's share of `limits.max_connections`: pages
        // are touched only as connections fill them, and it never grows by copying (a
        // doubling leaves the old copy's pages behind in the heap: ~0.3 KiB per socket at 10k).
        let slots = match shared.cfg.limits.max_connections {
            0 => 1024,
            n => n
                .div_ceil(shared.metrics.shards.len().max(1))
                .clamp(1024, 1 << 20),
        };
        Ok(Shard {
            backend,
            listeners: [Some(listener.tls), second],
            accepted: Vec::new(),
            accept_failed: Vec::new(),
            conns: Slab::with_capacity(slots),
            ctx: Ctx {
                id,
                shared,
                inbox,
                index,
                timers: TimerWheel::new(now, TIMER_TICK),
                timer_gen: 0,
                now,
                plain: Vec::new(),
                dirty: Vec::with_capacity(1024),
                dead: Vec::new(),
                turn_events: Vec::with_capacity(1024),
                conn_seq: 0,
                last_grant: None,
                deliveries: 0,
                outbox_bytes: 0,
            },
            drain: None,
            reserve: accept::FdReserve::new(),
        })
    }

    /// Runs turns until drained. Returns when every connection is closed after shutdown.
    pub fn run(mut self) {
        if let Err(e) = self.backend.start() {
            tracing::error!(shard = self.ctx.id, "starting the I/O backend failed: {e}");
            return;
        }
        self.ctx.shared.shards_up.fetch_add(1, Ordering::AcqRel);
        loop {
            let timeout =
                if !self.ctx.inbox.is_empty() || !self.ctx.shared.control[self.ctx.id].is_empty() {
                    Some(Duration::ZERO)
                } else if self.drain.is_some() {
                    Some(Duration::from_millis(10))
                } else {
                    let now = Instant::now();
                    let t = self
                        .ctx
                        .timers
                        .timeout(now)
                        .unwrap_or(Duration::from_secs(1));
                    Some(match self.reserve.retry_at {
                        Some(at) => t.min(at.saturating_duration_since(now)),
                        None => t,
                    })
                };
            if self.reserve.retry_at.is_some_and(|at| at <= Instant::now()) {
                // Out of descriptors last time: try the backlog again, arrival or not.
                self.reserve.retry_at = None;
                for idx in 0..self.listeners.len() {
                    if self.listeners[idx].is_some() {
                        self.backend.retry_accept(idx);
                    }
                }
            }
            if let Err(e) = self.poll(timeout) {
                tracing::error!(shard = self.ctx.id, "poll failed: {e}");
                break;
            }
            self.admit_accepted();
            self.drain_ring();
            self.drain_control();
            self.fire_timers();
            self.flush_dirty();
            self.remove_dead();
            self.publish_tallies();
            if self.drain_step() {
                break;
            }
        }
        tracing::debug!(shard = self.ctx.id, "shard stopped");
    }

    /// One wait for I/O; bytes go straight to their connection, accepts wait for
    /// [`Shard::admit_accepted`] (registering needs the backend the poll is using).
    fn poll(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        let Shard {
            backend,
            conns,
            ctx,
            accepted,
            accept_failed,
            ..
        } = self;
        let mut now_set = false;
        backend.poll(timeout, |ev| {
            if !now_set {
                ctx.now = Instant::now();
                now_set = true;
            }
            match ev {
                Event::Accepted {
                    listener,
                    stream,
                    remote,
                } => accepted.push((listener, stream, remote)),
                Event::AcceptFailed { listener, error } => accept_failed.push((listener, error)),
                Event::Data { key, bytes } => return turn::on_data(ctx, conns, key, bytes),
                Event::Closed { key } => {
                    if let Some(c) = conns.get_mut(key) {
                        c.kill(key, &mut ctx.dead);
                    }
                }
                Event::Writable { key } => ctx.mark_dirty(conns, key),
            }
            true
        })?;
        self.ctx.now = Instant::now();
        Ok(())
    }

    /// Takes this poll's new connections in (head slot, TLS session, slab entry, backend
    /// registration); out of descriptors, sheds the backlog through the reserve.
    fn admit_accepted(&mut self) {
        for (idx, error) in std::mem::take(&mut self.accept_failed) {
            if !accept::out_of_fds(&error) {
                tracing::warn!(shard = self.ctx.id, "accept failed: {error}");
                continue;
            }
            let Some(tls) = self.listeners.get(idx).copied().flatten() else {
                continue;
            };
            // Shed the pending connections through the reserve descriptor: with nothing to
            // accept them into, the backlog would otherwise wait for a new arrival.
            loop {
                let backend = &mut self.backend;
                match self
                    .reserve
                    .shed(|| backend.accept_now(idx), tls, &self.ctx)
                {
                    accept::Shed::One => continue,
                    accept::Shed::BacklogEmpty => {
                        self.backend.retry_accept(idx);
                        break;
                    }
                    accept::Shed::NotNow => {
                        // `run` retries every listener then, arrival or not.
                        self.reserve.retry_at = Some(self.ctx.now + accept::RETRY);
                        break;
                    }
                }
            }
        }
        let mut accepted = std::mem::take(&mut self.accepted);
        for (idx, mut stream, remote) in accepted.drain(..) {
            let Some(tls) = self.listeners.get(idx).copied().flatten() else {
                continue;
            };
            let Some(slot) = accept::admit_head(&self.ctx, &mut stream, remote, tls) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tls = match (tls, &self.ctx.shared.tls) {
                (false, _) => None,
                (true, Some(cfg)) => match crate::conn::tls::TlsConn::new(cfg.load_full()) {
                    Ok(t) => Some(Box::new(t)),
                    Err(e) => {
                        tracing::warn!("tls session setup failed: {e}");
                        continue;
                    }
                },
                (true, None) => continue,
            };
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = self.backend.register(key, stream.as_raw_fd()) {
                tracing::warn!("register failed: {e}");
                continue;
            }
            let timeout = Duration::from_millis(self.ctx.shared.cfg.server.upgrade_timeout_ms);
            entry.insert(Conn::new(stream, remote, self.ctx.now, timeout, tls).holding(slot));
            self.rearm(key);
        }
        self.accepted = accepted;
    }

    fn mark_dirty(&mut self, key: usize) {
        self.ctx.mark_dirty(&mut self.conns, key);
    }

    fn rearm(&mut self, key: usize) {
        self.ctx.rearm(&mut self.conns, key);
    }

    /// Begins shutdown: stop accepting; connections are closed over the drain window.
    fn drain_step(&mut self) -> bool {
        if !self.ctx.shared.is_draining() {
            return false;
        }
        let now = self.ctx.now;
        if self.drain.is_none() {
            self.listeners = [None, None];
            self.backend.close_listeners();
            self.drain = Some(Drain {
                start: now,
                initial: self.conns.len(),
                closed: 0,
            });
        }
        let window = Duration::from_millis(self.ctx.shared.cfg.server.drain_ms);
        let Some(d) = &mut self.drain else {
            return false;
        };
        let elapsed = now.saturating_duration_since(d.start);
        let frac = if window.is_zero() {
            1.0
        } else {
            (elapsed.as_secs_f64() / window.as_secs_f64()).min(1.0)
        };
        let target = ((d.initial as f64 * frac).ceil() as usize).max(1);
        let mut to_close = Vec::new();
        for (key, c) in self.conns.iter() {
            if d.closed >= target {
                break;
            }
            if c.is_open() {
                to_close.push(key);
                d.closed += 1;
            }
        }
        for key in to_close {
            if let Some(c) = self.conns.get_mut(key) {
                c.close(1001, "server shutting down", now);
            }
            self.mark_dirty(key);
            self.rearm(key);
        }
        self.flush_dirty();
        self.conns.is_empty() || elapsed > window + crate::conn::CLOSE_LINGER * 2
    }
}
