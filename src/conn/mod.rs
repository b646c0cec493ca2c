//! One client connection: its socket, phase, outbox and timers.
//!
//! Phases: `Http` (reading a request head; cut at the upgrade deadline or past the head limit)
//! → either a one-shot HTTP response or `Ws` (a WebSocket session). Either ends by *closing*
//! (`closing` set: close frame or response flushed, write side shut, reading and discarding
//! until the peer's EOF or a short deadline); the session stays in place until removal so its
//! subscriptions are always unindexed by the shard.
//! A connection is only ever touched by the shard thread that accepted it.

pub mod handshake;
pub mod rest;
pub mod session;
pub mod sse;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::TcpStream;

use crate::event::Event;
use crate::protocol::Filter;
use crate::shard::outbox::Outbox;
use crate::ws::Decoder;

/// How long a closing connection waits for the peer's close/EOF after our last byte.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub remote: SocketAddr,
    pub phase: Phase,
    pub outbox: Outbox,
    /// Queued in the shard's dirty list for this turn's flush.
    pub dirty: bool,
    /// Set once the connection must be removed at the end of the turn.
    pub dead: bool,
    /// After the outbox drains, shut the write side (then `Closing` waits for EOF).
    pub shut_after_flush: bool,
    pub last_read: Instant,
    /// Deadline of the timer currently armed for this connection, and its generation.
    pub timer: Option<(Instant, u32)>,
    /// Set when closing: remove at this instant at the latest.
    pub closing: Option<Instant>,
    /// `Some` on a TLS listener's connections; plain connections never touch it.
    pub tls: Option<Box<tls::TlsConn>>,
}

/// Who a session belongs to and what it may do, fixed at the upgrade.
#[derive(Debug)]
pub struct Peer {
    pub identity: crate::auth::Identity,
    /// The connection slot (global, per IP); released when the connection is dropped.
    pub permit: crate::auth::ConnPermit,
    /// Client address after trusted-proxy resolution.
    pub client_ip: std::net::IpAddr,
    /// Inbound message rate (`inbound_msgs_per_s`, `inbound_burst`).
    pub bucket: crate::auth::TokenBucket,
}

#[derive(Debug)]
pub enum Phase {
    /// `client`: the address a trusted proxy announced with PROXY v2, once parsed.
    Http {
        head: Vec<u8>,
        deadline: Instant,
        client: Option<SocketAddr>,
    },
    Ws(Box<Session>),
}

/// A WebSocket session (after the 101).
#[derive(Debug)]
pub struct Session {
    pub id: Box<str>,
    /// The conformance echo route: echo data messages, no fanline protocol.
    pub echo: bool,
    /// A Server-Sent Events stream (`GET /v1/sse`): events as `sse_frame`, `:` heartbeats, no
    /// inbound protocol (reads are discarded), no close frame.
    pub sse: bool,
    pub decoder: Decoder,
    pub rbuf: BytesMut,
    pub subs: Vec<Sub>,
    /// Any sub has replay watermarks (skip the per-delivery check when false).
    pub has_watermarks: bool,
    pub close_sent: bool,
    pub next_ping: Instant,
    /// When the outbox first overflowed (cleared when it fully drains).
    pub overflow_since: Option<Instant>,
    /// Dropped-event counts per channel not yet reported with a `gap` frame.
    pub pending_gaps: Vec<(Box<str>, u64)>,
    pub forced_filter: Option<Arc<Filter>>,
    pub peer: Peer,
    pub sent: u64,
    pub dropped: u64,
    /// Drop episodes (each reported by a `gap` frame) and the last one's time and reason.
    pub failed: u64,
    pub last_failure: Option<(Instant, &'static str)>,
    pub connected_at: Instant,
}

/// One channel subscription of a session.
#[derive(Debug)]
pub struct Sub {
    pub channel: Box<str>,
    /// Resume dedup: (topic, partition, last offset already delivered by replay).
    pub watermarks: Vec<(Arc<str>, i32, i64)>,
}

impl Session {
    /// Counts a dropped event of `ev.channel` for the next `gap` frame.
    pub fn note_drop(&mut self, ev: &Event, now: Instant) {
        self.dropped += 1;
        if self.overflow_since.is_none() {
            self.failed += 1;
            self.last_failure = Some((now, "slow_consumer"));
            self.overflow_since = Some(now);
        }
        match self
            .pending_gaps
            .iter_mut()
            .find(|(c, _)| **c == *ev.channel)
        {
            Some((_, n)) => *n += 1,
            None => self.pending_gaps.push((ev.channel.clone(), 1)),
        }
    }

    /// Whether replay already delivered `ev` to this session (resume without duplicates).
    pub fn already_replayed(&self, ev: &Event) -> bool {
        self.subs
            .iter()
            .filter(|s| *s.channel == *ev.channel)
            .any(|s| {
                s.watermarks
                    .iter()
                    .any(|(t, p, o)| *p == ev.partition && ev.offset <= *o && **t == *ev.topic)
            })
    }
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
            remote,
            phase: Phase::Http {
                head: Vec::new(),
                deadline: now + upgrade_timeout,
                client: None,
            },
            outbox: Outbox::default(),
            dirty: false,
            dead: false,
            shut_after_flush: false,
            last_read: now,
            timer: None,
            closing: None,
            tls,
        }
    }

    /// Bytes are waiting for the socket: outbox frames, TLS records, or the write-side shutdown.
    pub fn wants_flush(&self) -> bool {
        !self.outbox.is_empty()
            || self.shut_after_flush
            || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    pub fn session(&mut self) -> Option<&mut Session> {
        match &mut self.phase {
            Phase::Ws(s) => Some(s),
            _ => None,
        }
    }

    /// Starts an orderly close: sends a close frame (once) if this is a WebSocket, flushes,
    /// shuts the write side, then waits up to [`CLOSE_LINGER`] for the peer.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if let Phase::Ws(s) = &mut self.phase
            && !s.close_sent
            && !s.sse
        {
            s.close_sent = true;
            self.outbox
                .push_control(crate::ws::close_frame(code, reason));
        }
        if self.closing.is_none() {
            self.closing = Some(now + CLOSE_LINGER);
        }
        self.shut_after_flush = true;
    }

    /// The earliest instant this connection needs attention without I/O.
    pub fn next_deadline(&self, heartbeat: Duration, slow_close: Duration) -> Instant {
        if let Some(d) = self.closing {
            return d;
        }
        match &self.phase {
            Phase::Http { deadline, .. } => *deadline,
            Phase::Ws(s) => {
                let silent = self.last_read + heartbeat.mul_f32(1.5);
                // An SSE client never sends: only the heartbeat is due.
                let mut d = if s.sse {
                    s.next_ping
                } else {
                    s.next_ping.min(silent)
                };
                if let Some(o) = s.overflow_since {
                    d = d.min(o + slow_close);
                }
                d
            }
        }
    }
}

impl Conn {
    /// Admin view of a WebSocket connection (`GET /v1/connections`); `None` for HTTP ones.
    pub fn describe(&self, started: Instant, started_unix_ms: i64) -> Option<serde_json::Value> {
        let Phase::Ws(s) = &self.phase else {
            return None;
        };
        let unix =
            |t: Instant| started_unix_ms + t.saturating_duration_since(started).as_millis() as i64;
        Some(serde_json::json!({
            "id": &*s.id,
            "identity": &*s.peer.identity.id,
            "transport": if s.sse { "sse" } else { "ws" },
            "remote": s.peer.client_ip.to_string(),
            "connected_at": unix(s.connected_at),
            "last_heartbeat": unix(self.last_read),
            "healthy": self.closing.is_none() && s.overflow_since.is_none(),
            "subscriptions": s.subs.iter().map(|x| &*x.channel).collect::<Vec<_>>(),
            "sent": s.sent,
            "dropped": s.dropped,
            "failed": s.failed,
            "last_failure": s.last_failure.map(|(at, reason)| serde_json::json!({"at": unix(at), "reason": reason})),
        }))
    }
}
