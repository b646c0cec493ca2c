//! One client connection: its socket, phase, outbox and timers.
//!
//! Phases: `Http` (reading a request head; cut at the upgrade deadline or past the head limit)
//! → either a one-shot HTTP response or `Open` (a session over one [`Transport`]: WebSocket,
//! Server-Sent Events or the echo route). Independently, its [`Life`] goes `Open` →
//! `Closing` (close frame or response flushed, write side shut, reading and discarding until
//! the peer's EOF or a short deadline) → `Dead` (removed at the end of the turn); the session
//! stays in place until removal so its subscriptions are always unindexed by the shard.
//! A connection is only ever touched by the shard thread that accepted it.

pub mod cors;
pub mod deliver;
pub mod demo;
pub mod encoding;
pub mod handshake;
pub mod outbox;
pub mod read;
pub mod rest;
pub mod session;
pub mod sse;
pub mod state;
pub mod tls;

pub use state::{Grant, Peer, Ping, Reader, Session, Sub, Trouble};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::TcpStream;

use crate::clock::Stamp;
use crate::conn::outbox::Outbox;
use crate::metrics::ShardMetrics;
use crate::protocol::Filter;
use crate::state::ServerState;

/// The local channel index a connection subscribes through (implemented by the shard's
/// `shard::index::ChannelIndex`, which mirrors first/last local subscribers globally).
pub trait Subscriptions {
    /// Adds or replaces `conn`'s subscription to `channel` with `filter`; returns the channel's
    /// name as the index holds it (shared, so a subscription costs no copy of it).
    fn subscribe(&mut self, channel: &str, conn: usize, filter: Option<Arc<Filter>>) -> Arc<str>;
    /// Removes `conn`'s subscription to `channel` (no-op when absent).
    fn unsubscribe(&mut self, channel: &str, conn: usize);
}

/// What a connection's handlers may touch besides the connection itself, lent by the shard
/// for one call (sans-I/O in the style of quinn-proto: time is passed in, no globals).
pub struct Env<'a> {
    pub now: Instant,
    /// The shard's index (in connection ids and metrics).
    pub shard: usize,
    pub state: &'a ServerState,
    pub subs: &'a mut dyn Subscriptions,
    /// Connections started on this shard (connection ids).
    pub conn_seq: &'a mut u64,
    /// Outbox bytes added (+) or written/dropped (-) this turn; flushed to the gauge per turn.
    pub outbox_bytes: &'a mut i64,
    /// Connections to remove at the end of the turn.
    pub dead: &'a mut Vec<usize>,
    /// The grant of the last session opened here (sessions in a row with the same credential
    /// share one [`Grant`]).
    pub last_grant: &'a mut Option<Arc<Grant>>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl Env<'_> {
    pub fn metrics(&self) -> &ShardMetrics {
        &self.state.metrics.shards[self.shard]
    }

    /// The grant for a new session: the last one when it is the same, else a new one (kept
    /// for the next).
    pub fn grant(&mut self, grant: Grant) -> Arc<Grant> {
        if let Some(g) = self.last_grant.as_ref()
            && g.same(&grant)
        {
            return g.clone();
        }
        let g = Arc::new(grant);
        *self.last_grant = Some(g.clone());
        g
    }

    /// Marks `conn` (slab key `key`) for removal at the end of the turn.
    pub fn kill(&mut self, key: usize, conn: &mut Conn) {
        conn.kill(key, self.dead);
    }
}

/// Queues `conn` (slab key `key`) in this turn's dirty list for a flush, once; never a dead
/// one. The only place that sets [`Conn::queued`].
pub fn mark_dirty(dirty: &mut Vec<usize>, key: usize, conn: &mut Conn) {
    if !conn.queued && !conn.is_dead() {
        conn.queued = true;
        dirty.push(key);
    }
}

/// How long a closing connection waits for the peer's close/EOF after our last byte.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Longest a closing connection lingers while the peer is still reading what we queued
/// (a slow client reading its backlog up to the close frame).
pub const CLOSE_LINGER_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub phase: Phase,
    /// Queued frames; it also holds the session's [`Transport`] (set once by [`Conn::open`]).
    pub outbox: Outbox,
    pub life: Life,
    /// In the shard's dirty list for this turn's flush (set only by [`mark_dirty`]).
    pub queued: bool,
    pub last_read: Stamp,
    /// Deadline of the timer currently armed for this connection, and its generation.
    pub timer: Option<(Stamp, u32)>,
    /// `Some` on a TLS listener's connections; plain connections never touch it.
    pub tls: Option<Box<tls::TlsConn>>,
}

#[derive(Debug)]
pub enum Phase {
    /// Until the request head is complete (boxed: short-lived, so it costs an open
    /// connection nothing).
    Http(Box<HttpPhase>),
    /// After the `101` (or the SSE `200`): a session; its transport is `outbox.transport()`.
    Open(Box<Session>),
}

/// A connection reading its request head. `client`: the address a trusted proxy announced with
/// PROXY v2, once parsed. `slot`: the place the unfinished head holds under the connection caps
/// (taken at accept, given back when the head is complete).
#[derive(Debug)]
pub struct HttpPhase {
    /// The socket's peer (an open session keeps its client address in `Peer`).
    pub remote: SocketAddr,
    pub head: Vec<u8>,
    pub deadline: Instant,
    pub client: Option<SocketAddr>,
    pub slot: Option<crate::auth::HeadSlot>,
}

/// How an open session talks to its client. Fixed at the upgrade by [`Conn::open`] and held
/// in one place, the outbox, which encodes events by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// WebSocket with the fanline protocol (also the encoding of HTTP-phase responses).
    #[default]
    WebSocket,
    /// A Server-Sent Events stream (`GET /v1/sse`): events as `sse_frame`, `:` heartbeats, no
    /// inbound protocol (reads are discarded), no close frame.
    Sse,
    /// The conformance echo route: WebSocket that echoes data messages, no fanline protocol.
    Echo,
}

/// Where a connection is in its life: `Open` → `Closing` → `Dead`, never back. One pointer
/// (every connection has one): nothing while open, the [`Ending`] boxed once it starts.
#[derive(Debug, Default)]
pub struct Life(Option<Box<Ending>>);

/// A connection's end.
#[derive(Debug)]
pub enum Ending {
    /// Finishing: see [`Closing`].
    Closing(Closing),
    /// Removed at the end of this turn.
    Dead,
}

impl Life {
    pub fn is_open(&self) -> bool {
        self.0.is_none()
    }

    pub fn is_dead(&self) -> bool {
        matches!(self.0.as_deref(), Some(Ending::Dead))
    }

    /// The closing bookkeeping, while closing.
    pub fn closing(&self) -> Option<&Closing> {
        match self.0.as_deref() {
            Some(Ending::Closing(c)) => Some(c),
            _ => None,
        }
    }

    pub fn closing_mut(&mut self) -> Option<&mut Closing> {
        match self.0.as_deref_mut() {
            Some(Ending::Closing(c)) => Some(c),
            _ => None,
        }
    }

    fn set(&mut self, e: Ending) {
        match self.0.as_deref_mut() {
            Some(old) => *old = e,
            None => self.0 = Some(Box::new(e)),
        }
    }
}

/// A closing connection: flush what is queued (`close_sent`: our WebSocket close frame is
/// among it), then shut the write side (`write_shut`), then wait for the peer's EOF until
/// `deadline`. `unsent`: bytes still ours to deliver (outbox + socket send queue) when
/// `deadline` was set; a peer that keeps reading them extends the linger, up to `until`.
#[derive(Debug)]
pub struct Closing {
    pub deadline: Instant,
    pub close_sent: bool,
    pub write_shut: bool,
    pub unsent: usize,
    pub until: Instant,
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        remote: SocketAddr,
        now: Instant,
        upgrade_timeout: Duration,
        tls: Option<Box<tls::TlsConn>>,
    ) -> Conn {
        Conn {
            stream,
            phase: Phase::Http(Box::new(HttpPhase {
                remote,
                head: Vec::new(),
                deadline: now + upgrade_timeout,
                client: None,
                slot: None,
            })),
            outbox: Outbox::default(),
            life: Life::default(),
            queued: false,
            last_read: Stamp::at(now),
            timer: None,
            tls,
        }
    }

    /// A new connection holding `head_slot` until its request head is complete.
    pub fn holding(mut self, head_slot: crate::auth::HeadSlot) -> Conn {
        if let Phase::Http(h) = &mut self.phase {
            h.slot = Some(head_slot);
        }
        self
    }

    /// The HTTP phase ends: `s` runs over `transport` from now on.
    pub fn open(&mut self, s: Session, transport: Transport) {
        self.outbox.set_transport(transport);
        self.phase = Phase::Open(Box::new(s));
    }

    /// The client's address for logs: the socket's peer during the HTTP phase, the client
    /// address (after trusted-proxy resolution) once open.
    pub fn client_ip(&self) -> std::net::IpAddr {
        match &self.phase {
            Phase::Http(h) => h.client.unwrap_or(h.remote).ip(),
            Phase::Open(s) => s.peer.client_ip(),
        }
    }

    /// The session's transport (`WebSocket` during the HTTP phase).
    pub fn transport(&self) -> Transport {
        self.outbox.transport()
    }

    pub fn is_open(&self) -> bool {
        self.life.is_open()
    }

    pub fn is_dead(&self) -> bool {
        self.life.is_dead()
    }

    /// Marks this connection (slab key `key`) `Dead` and lists it for removal, once.
    pub fn kill(&mut self, key: usize, dead: &mut Vec<usize>) {
        if !self.is_dead() {
            self.life.set(Ending::Dead);
            dead.push(key);
        }
    }

    /// Bytes are waiting for the socket: outbox frames, TLS records, or the write-side shutdown.
    pub fn wants_flush(&self) -> bool {
        !self.outbox.is_empty()
            || self.shut_pending()
            || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// The write side is to be shut once everything queued is written.
    pub fn shut_pending(&self) -> bool {
        self.life.closing().is_some_and(|c| !c.write_shut)
    }

    /// Everything queued is written and the write side was shut.
    pub fn mark_write_shut(&mut self) {
        if let Some(c) = self.life.closing_mut() {
            c.write_shut = true;
        }
    }

    pub fn session(&mut self) -> Option<&mut Session> {
        match &mut self.phase {
            Phase::Open(s) => Some(s),
            _ => None,
        }
    }

    /// Starts an orderly close (`Open` → `Closing`, once): queues a close frame if this is a
    /// WebSocket session, flushes, shuts the write side, then waits up to [`CLOSE_LINGER`] for
    /// the peer. No-op when already closing or dead.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if !self.is_open() {
            return;
        }
        let ws = matches!(self.phase, Phase::Open(_))
            && matches!(self.transport(), Transport::WebSocket | Transport::Echo);
        if ws {
            self.outbox.push_close(crate::ws::close_frame(code, reason));
        }
        self.life.set(Ending::Closing(Closing {
            deadline: now + CLOSE_LINGER,
            close_sent: ws,
            write_shut: false,
            unsent: self.unsent(),
            until: now + CLOSE_LINGER_MAX,
        }));
    }

    /// Bytes still ours to deliver: the outbox and the socket's unacknowledged send queue.
    fn unsent(&self) -> usize {
        self.outbox.bytes() + crate::io::unsent_bytes(&self.stream)
    }

    /// A closing connection reached its deadline: lingers on (returns true) while the peer is
    /// still reading what we sent since the last deadline, or our close frame is still queued
    /// (a client that pauses reading still gets to see why it was closed), up to
    /// [`CLOSE_LINGER_MAX`].
    pub fn linger_on(&mut self, now: Instant) -> bool {
        let left = self.unsent();
        let queued = !self.outbox.is_empty();
        let Some(c) = self.life.closing_mut() else {
            return false;
        };
        if (left >= c.unsent && !queued) || now >= c.until {
            return false;
        }
        c.unsent = left;
        c.deadline = now + CLOSE_LINGER;
        true
    }

    /// The peer sent bytes: it is alive (answers an outstanding ping).
    pub fn heard(&mut self, now: Instant) {
        self.last_read = Stamp::at(now);
        if let Phase::Open(s) = &mut self.phase
            && let Ping::Out { .. } = s.ping
        {
            s.ping = Ping::Idle;
        }
    }

    /// After a flush: a queued ping that is now written out starts the answer clock. Returns
    /// whether it did (the timer must be re-armed).
    pub fn note_written(&mut self, now: Instant) -> bool {
        let written = self.outbox.control_written();
        if let Phase::Open(s) = &mut self.phase
            && let Ping::Queued { mark } = s.ping
            && (written as u32).wrapping_sub(mark) as i32 >= 0
        {
            s.ping = Ping::Out { at: Stamp::at(now) };
            return true;
        }
        false
    }

    /// The earliest instant this connection needs attention without I/O (read next to `now`).
    pub fn next_deadline(
        &self,
        now: Instant,
        heartbeat: Duration,
        slow_close: Duration,
    ) -> Instant {
        if let Some(c) = self.life.closing() {
            return c.deadline;
        }
        match &self.phase {
            Phase::Http(h) => h.deadline,
            Phase::Open(s) => {
                let ping = match s.ping {
                    Ping::Out { at } => s.next_ping.min(at + heartbeat.mul_f32(1.5)),
                    Ping::Idle | Ping::Queued { .. } => s.next_ping,
                };
                let mut d = ping.instant(now);
                if let Some(o) = s.overflow_since() {
                    d = d.min(o + slow_close);
                }
                d
            }
        }
    }
}

impl Conn {
    /// Admin view of a WebSocket connection (`GET /v1/connections`); `None` for HTTP ones.
    pub fn describe(
        &self,
        now: Instant,
        started: Instant,
        started_unix_ms: i64,
    ) -> Option<serde_json::Value> {
        let Phase::Open(s) = &self.phase else {
            return None;
        };
        let unix =
            |t: Instant| started_unix_ms + t.saturating_duration_since(started).as_millis() as i64;
        Some(serde_json::json!({
            "id": &*s.id.text(),
            "identity": &*s.peer.grant.identity,
            "transport": if self.transport() == Transport::Sse { "sse" } else { "ws" },
            "remote": s.peer.client_ip().to_string(),
            "connected_at": started_unix_ms + s.connected_ms as i64,
            "last_heartbeat": unix(self.last_read.instant(now)),
            "healthy": self.is_open() && s.overflow_since().is_none(),
            "subscriptions": s.subs.iter().map(|x| &*x.channel).collect::<Vec<_>>(),
            "sent": self.outbox.events_written(),
            "outbox_frames": self.outbox.len(),
            "outbox_bytes": self.outbox.bytes(),
            "outbox_oldest_ms": self.outbox.oldest_ingested().map(|t| now.saturating_duration_since(t).as_millis() as u64),
            "dropped": s.dropped(),
            "failed": s.trouble.as_ref().map_or(0, |t| t.failed),
            "last_failure": s.trouble.as_ref().and_then(|t| t.last_failure).map(|(at, reason)| serde_json::json!({"at": unix(at), "reason": reason})),
        }))
    }
}
/// The byte budget of an open connection (docs/tuning.md §6): a test fails when a change
/// grows it, so growth is a decision, not an accident.
#[cfg(test)]
mod budget {
    use std::mem::size_of;

    #[test]
    fn an_open_connection_stays_within_its_byte_budget() {
        // In the shard's slab, for every connection (the HTTP phase is boxed while it lasts).
        assert!(
            size_of::<super::Conn>() <= 96,
            "Conn {}",
            size_of::<super::Conn>()
        );
        assert_eq!(size_of::<super::Phase>(), 16);
        // Boxed once per session.
        assert!(
            size_of::<super::Session>() <= 152,
            "Session {}",
            size_of::<super::Session>()
        );
        assert!(
            size_of::<super::Sub>() <= 24,
            "Sub {}",
            size_of::<super::Sub>()
        );
    }
}
