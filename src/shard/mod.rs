//! A shard: one reactor thread owning its listeners (SO_REUSEPORT; plain and/or TLS), a slab of connections, a
//! timer wheel, a local channel index and the inbox ring fed by ingest.
//!
//! One turn: poll → accept/read (conn::read) → drain the event ring into outboxes → answer the
//! admin control queue → fire timers → flush every
//! dirty connection with ONE writev → remove dead connections. Nothing here takes a lock
//! shared with another shard; the only cross-thread traffic is the inbox ring, the control queue, the
//! subscription table (written on first/last local subscriber) and relaxed counters.

mod accept;
pub mod index;
pub mod timer;
mod turn;

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::conn::{Conn, Env};
use crate::fanout::ShardInbox;
use crate::io::IoVecs;
use crate::metrics::ShardMetrics;
use crate::state::ServerState;
use index::ChannelIndex;
use timer::TimerWheel;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);
/// The second (TLS) listener when `tls.listen` is set.
pub(crate) const TLS_LISTENER: Token = Token(usize::MAX - 3);
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
    pub iov: IoVecs,
    pub dirty: Vec<usize>,
    pub dead: Vec<usize>,
    /// Events delivered this turn: when ingest built each, and its record timestamp (ms).
    pub turn_events: Vec<(Instant, i64)>,
    pub conn_seq: u64,
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
        }
    }
}

/// A shard, ready to run on its own thread.
#[derive(Debug)]
pub struct Shard {
    poll: Poll,
    /// Index 0: `server.listen` (token `LISTENER`); 1: `tls.listen` (token `TLS_LISTENER`).
    listeners: [Option<Accepting>; 2],
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
struct Accepting {
    socket: TcpListener,
    tls: bool,
}

#[derive(Debug)]
struct Drain {
    start: Instant,
    initial: usize,
    closed: usize,
}

impl Shard {
    /// Builds shard `id` around its poll (whose waker feeds `inbox`), its `server.listen`
    /// listener and, when `tls.listen` is set, its TLS listener.
    pub fn new(
        id: usize,
        poll: Poll,
        listener: Listener,
        tls_listener: Option<StdListener>,
        inbox: Arc<ShardInbox>,
        shared: Arc<ServerState>,
    ) -> std::io::Result<Shard> {
        let register = |l: StdListener, token: Token, tls: bool| {
            let mut socket = TcpListener::from_std(l);
            poll.registry()
                .register(&mut socket, token, Interest::READABLE)?;
            Ok::<_, std::io::Error>(Accepting { socket, tls })
        };
        let main = register(listener.socket, LISTENER, listener.tls)?;
        let second = match tls_listener {
            Some(l) => Some(register(l, TLS_LISTENER, true)?),
            None => None,
        };
        let now = Instant::now();
        shared.metrics.shards[id]
            .ring_capacity
            .set(inbox.capacity() as i64);
        let index = ChannelIndex::new(id, shared.fanout.clone());
        Ok(Shard {
            poll,
            listeners: [Some(main), second],
            conns: Slab::with_capacity(1024),
            ctx: Ctx {
                id,
                shared,
                inbox,
                index,
                timers: TimerWheel::new(now, TIMER_TICK),
                timer_gen: 0,
                now,
                iov: IoVecs::default(),
                dirty: Vec::with_capacity(1024),
                dead: Vec::new(),
                turn_events: Vec::with_capacity(1024),
                conn_seq: 0,
                deliveries: 0,
                outbox_bytes: 0,
            },
            drain: None,
            reserve: accept::FdReserve::new(),
        })
    }

    /// Runs turns until drained. Returns when every connection is closed after shutdown.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024].into_boxed_slice();
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
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(shard = self.ctx.id, "poll failed: {e}");
                break;
            }
            self.ctx.now = Instant::now();
            if self.reserve.retry_at.is_some_and(|at| at <= self.ctx.now) {
                // Out of descriptors last time: try the backlog again, arrival or not.
                self.reserve.retry_at = None;
                self.accept(0);
                self.accept(1);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(0),
                    TLS_LISTENER => self.accept(1),
                    WAKER => {}
                    Token(key) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(key, &mut scratch);
                        }
                        if ev.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
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

    fn accept(&mut self, which: usize) {
        loop {
            let Some(listener) = &self.listeners[which] else {
                return;
            };
            match listener.socket.accept() {
                Ok((mut stream, remote)) => {
                    let Some(slot) =
                        accept::admit_head(&self.ctx, &mut stream, remote, listener.tls)
                    else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let tls = match (listener.tls, &self.ctx.shared.tls) {
                        (false, _) => None,
                        (true, Some(cfg)) => {
                            match crate::conn::tls::TlsConn::new(cfg.load_full()) {
                                Ok(t) => Some(Box::new(t)),
                                Err(e) => {
                                    tracing::warn!("tls session setup failed: {e}");
                                    continue;
                                }
                            }
                        }
                        (true, None) => continue,
                    };
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self
                        .poll
                        .registry()
                        .register(&mut stream, Token(key), interest)
                    {
                        tracing::warn!("register failed: {e}");
                        continue;
                    }
                    let timeout =
                        Duration::from_millis(self.ctx.shared.cfg.server.upgrade_timeout_ms);
                    entry.insert(
                        Conn::new(stream, remote, self.ctx.now, timeout, tls).holding(slot),
                    );
                    self.rearm(key);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if accept::out_of_fds(&e) => {
                    // Shed one pending connection through the reserve descriptor and go on:
                    // edge-triggered, the backlog would otherwise wait for a new arrival.
                    match self.reserve.shed(&listener.socket, listener.tls, &self.ctx) {
                        accept::Shed::One => continue,
                        accept::Shed::BacklogEmpty => return,
                        accept::Shed::NotNow => {
                            self.reserve.retry_at = Some(self.ctx.now + accept::RETRY);
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(shard = self.ctx.id, "accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            crate::conn::mark_dirty(&mut self.ctx.dirty, key, c);
        }
    }

    /// Arms the connection's timer for its next deadline if it moved earlier or fired.
    fn rearm(&mut self, key: usize) {
        let hb = Duration::from_millis(self.ctx.shared.cfg.server.heartbeat_ms);
        let slow = Duration::from_secs(self.ctx.shared.cfg.limits.slow_consumer_close_s);
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let at = c.next_deadline(hb, slow);
        if matches!(c.timer, Some((t, _)) if t <= at) {
            return;
        }
        self.ctx.timer_gen = self.ctx.timer_gen.wrapping_add(1);
        c.timer = Some((at, self.ctx.timer_gen));
        self.ctx.timers.arm(key, self.ctx.timer_gen, at);
    }

    /// Begins shutdown: stop accepting; connections are closed over the drain window.
    fn drain_step(&mut self) -> bool {
        if !self.ctx.shared.is_draining() {
            return false;
        }
        let now = self.ctx.now;
        if self.drain.is_none() {
            for l in &mut self.listeners {
                if let Some(mut l) = l.take() {
                    let _ = self.poll.registry().deregister(&mut l.socket);
                }
            }
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
