//! What an open connection holds: the [`Session`] and its parts. Memory per idle socket is a
//! product promise (docs/tuning.md §6), so what a quiet subscriber never needs is boxed and
//! absent until used: the inbound [`Reader`] (a message being read), the [`Trouble`] record (a
//! session that lost events), an SSE stream's position.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::clock::Stamp;
use crate::event::Event;
use crate::protocol::Filter;
use crate::protocol::cursor::StreamPosition;
use crate::ws::Decoder;
use crate::ws::extensions::Deflate;

use super::outbox::Outbox;
use super::sse;

/// What a credential grants, fixed at the upgrade; one value shared by every session the
/// shard opens in a row with the same grant (all anonymous sessions share one).
#[derive(Debug)]
pub struct Grant {
    /// JWT `sub`, the API key's `identity`, or `anonymous` (what the session keeps of its
    /// [`crate::auth::Identity`]: the tier is applied at the upgrade).
    pub identity: Arc<str>,
    /// The channels it may subscribe to.
    pub acl: crate::auth::ChannelAcl,
    /// The credential's filter claim, ANDed with every subscribe's filter.
    pub forced_filter: Option<Arc<Filter>>,
    /// Inbound message rate (`inbound_msgs_per_s`, `inbound_burst` of the identity's tier).
    pub inbound: crate::auth::Rate,
    /// Largest inbound message (`limits.max_inbound_bytes` at the upgrade).
    pub max_inbound: u32,
}

impl Grant {
    /// The same grant (same identity, ACL and filter values, by pointer).
    pub fn same(&self, other: &Grant) -> bool {
        let Grant {
            identity,
            acl,
            forced_filter: forced,
            inbound,
            max_inbound,
        } = other;
        self.inbound == *inbound
            && self.max_inbound == *max_inbound
            && Arc::ptr_eq(&self.identity, identity)
            && self.acl.ptr_eq(acl)
            && match (&self.forced_filter, forced) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// Who a session belongs to and what it may do, fixed at the upgrade.
#[derive(Debug)]
pub struct Peer {
    pub grant: Arc<Grant>,
    /// The connection slot (global, per IP); released when the connection is dropped.
    pub permit: crate::auth::ConnPermit,
    /// The identity's connection count, when its tier caps it (released on drop).
    pub identity_permit: Option<Box<crate::auth::IdentityPermit>>,
    /// Client address after trusted-proxy resolution, packed in 16 bytes (IPv4 as
    /// IPv4-mapped; [`Peer::client_ip`] reads it back).
    pub client: std::net::Ipv6Addr,
    /// Inbound messages taken at the grant's rate.
    pub bucket: crate::auth::TokenBucket,
}

impl Peer {
    /// Client address after trusted-proxy resolution.
    pub fn client_ip(&self) -> std::net::IpAddr {
        self.client.to_canonical()
    }
}

/// `ip` in 16 bytes (an `IpAddr` takes 17): IPv4 as IPv4-mapped IPv6.
pub fn pack_ip(ip: std::net::IpAddr) -> std::net::Ipv6Addr {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    }
}

/// The heartbeat ping of a WebSocket session (SSE heartbeats are comments, never answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// No ping awaits an answer.
    Idle,
    /// In the control lane; out once `outbox.control_written()` reaches `mark` (the low 32
    /// bits, compared wrapping: one ping is outstanding at a time).
    Queued { mark: u32 },
    /// Written out at `at`: the peer must be heard from by `at + 1.5 × heartbeat_ms`.
    Out { at: Stamp },
}

/// A session's id as clients and logs see it (`{nonce:x}-{shard}-{seq}`: the process's
/// random nonce, the shard, the shard's connection count), kept as one number (shard in the
/// top 16 bits) and written out on demand ([`SessionId::text`], `Display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(u64);

const SEQ_BITS: u32 = 48;

impl SessionId {
    pub fn new(shard: usize, seq: u64) -> SessionId {
        SessionId(((shard as u64) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1)))
    }
}

/// Differs per process run, so ids of two runs do not collide.
fn nonce() -> u32 {
    static NONCE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        ((t ^ (u64::from(std::process::id()) << 20)) as u32) ^ 0x5bd1_e995
    })
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shard, seq) = (self.0 >> SEQ_BITS, self.0 & ((1 << SEQ_BITS) - 1));
        write!(f, "{:x}-{shard}-{seq}", nonce())
    }
}

/// A [`SessionId`] written out on the stack (no allocation), usable as `&str`.
#[derive(Clone, Copy)]
pub struct IdText {
    buf: [u8; 40],
    len: u8,
}

impl fmt::Write for IdText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = usize::from(self.len);
        let end = at + s.len();
        let dst = self.buf.get_mut(at..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end as u8;
        Ok(())
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl std::ops::Deref for IdText {
    type Target = str;
    fn deref(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the prefix is valid UTF-8.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl SessionId {
    /// The id as text (8 hex digits, a shard and a u64 fit the buffer: at most 40 bytes).
    pub fn text(&self) -> IdText {
        let mut t = IdText {
            buf: [0; 40],
            len: 0,
        };
        let _ = write!(t, "{self}");
        t
    }
}

/// A session (after the upgrade). Hot fields inline; what a quiet subscriber never uses is
/// boxed and `None` until needed.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub peer: Peer,
    pub subs: Subs,
    /// `Some` while an inbound message is being read (a partial frame, a fragmented message,
    /// a client's deflate context): an idle socket holds no read state.
    pub reader: Option<Box<Reader>>,
    /// An SSE stream's position on every partition it reads (each event's `id:`); `None` on
    /// a WebSocket (clients track `topic/partition/offset` from the event ids themselves).
    pub position: Option<Box<StreamPosition>>,
    /// `Some` once the session lost events (drop counts, gaps not yet reported, the overflow
    /// clock); kept from then on for the admin view.
    pub trouble: Option<Box<Trouble>>,
    pub next_ping: Stamp,
    pub ping: Ping,
    /// Milliseconds from the server's start to the upgrade.
    pub connected_ms: u64,
    /// The negotiated `permessage-deflate` (events go out compressed, client messages may be).
    pub deflate: Option<Deflate>,
    /// Any sub has replay watermarks (skip the per-delivery check when false).
    pub has_watermarks: bool,
}

/// The inbound side while a message is in progress: the decoder and the bytes of a partial
/// frame. Dropped whenever both are at rest.
#[derive(Debug)]
pub struct Reader {
    pub decoder: Decoder,
    pub rbuf: BytesMut,
}

impl Reader {
    pub fn new(max_inbound: u32, deflate: Option<Deflate>) -> Reader {
        let max = max_inbound as usize;
        Reader {
            decoder: match deflate {
                Some(d) => Decoder::with_deflate(max, d.client_context),
                None => Decoder::new(max),
            },
            rbuf: BytesMut::new(),
        }
    }

    /// Nothing in progress: no buffered bytes, no message or deflate context held.
    pub fn at_rest(&self) -> bool {
        self.rbuf.is_empty() && self.decoder.at_rest()
    }
}

/// What a session that lost events keeps: the drop counts, drops not yet reported with a
/// `gap`, and since when its outbox is over its caps.
#[derive(Debug, Default)]
pub struct Trouble {
    /// When the outbox first overflowed (cleared when it drains below the low watermark).
    pub overflow_since: Option<Instant>,
    /// Dropped-event counts per channel not yet reported with a `gap` frame.
    pub pending_gaps: Vec<(Box<str>, u64)>,
    /// Ring-full drops (per channel) not yet queued: they came after everything queued so
    /// far, so they go behind it ([`Outbox::push_gap_behind`]) before the next event queued
    /// here, or at the flush.
    pub ring_gaps: Vec<(Box<str>, u64)>,
    /// Events dropped for this connection (outbox overflow, replay overflow, the 4000 close).
    pub dropped: u64,
    /// Drop episodes (each reported by a `gap` frame) and the last one's time and reason.
    pub failed: u64,
    pub last_failure: Option<(Instant, &'static str)>,
}

/// A session's subscriptions, read as a slice: the first is held inline (most sessions
/// subscribe to one channel), more in a `Vec` sized exactly.
#[derive(Debug, Default)]
pub enum Subs {
    #[default]
    None,
    One(Sub),
    Many(Vec<Sub>),
}

impl std::ops::Deref for Subs {
    type Target = [Sub];
    fn deref(&self) -> &[Sub] {
        match self {
            Subs::None => &[],
            Subs::One(s) => std::slice::from_ref(s),
            Subs::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Subs {
    fn deref_mut(&mut self) -> &mut [Sub] {
        match self {
            Subs::None => &mut [],
            Subs::One(s) => std::slice::from_mut(s),
            Subs::Many(v) => v,
        }
    }
}

impl Subs {
    pub fn push(&mut self, sub: Sub) {
        *self = match std::mem::take(self) {
            Subs::None => Subs::One(sub),
            Subs::One(first) => Subs::Many(vec![first, sub]),
            Subs::Many(mut v) => {
                v.reserve_exact(1);
                v.push(sub);
                Subs::Many(v)
            }
        };
    }

    /// Removes the `i`th subscription (order is not kept).
    pub fn swap_remove(&mut self, i: usize) -> Option<Sub> {
        let (out, rest) = match std::mem::take(self) {
            Subs::One(s) if i == 0 => (Some(s), Subs::None),
            Subs::Many(mut v) if i < v.len() => {
                let s = v.swap_remove(i);
                let rest = match v.len() {
                    1 => v.pop().map_or(Subs::None, Subs::One),
                    _ => Subs::Many(v),
                };
                (Some(s), rest)
            }
            other => (None, other),
        };
        *self = rest;
        out
    }

    /// Takes every subscription out.
    pub fn drain(&mut self) -> impl Iterator<Item = Sub> + use<> {
        let (one, many) = match std::mem::take(self) {
            Subs::None => (None, Vec::new()),
            Subs::One(s) => (Some(s), Vec::new()),
            Subs::Many(v) => (None, v),
        };
        one.into_iter().chain(many)
    }
}

/// Resume dedup marks: (topic, partition, last offset already delivered by replay).
pub type Watermarks = Vec<(Arc<str>, i32, i64)>;

/// One channel subscription of a session.
#[derive(Debug)]
pub struct Sub {
    /// The channel's name, shared with the shard's index.
    pub channel: Arc<str>,
    /// Resume dedup: (topic, partition, last offset already delivered by replay); boxed and
    /// `None` unless the subscribe resumed.
    pub watermarks: Option<Box<Watermarks>>,
}

impl Session {
    /// The trouble record, made on first use.
    pub fn trouble(&mut self) -> &mut Trouble {
        self.trouble.get_or_insert_with(Box::default)
    }

    /// When the outbox went over its caps (`None`: keeping up).
    pub fn overflow_since(&self) -> Option<Instant> {
        self.trouble.as_ref().and_then(|t| t.overflow_since)
    }

    /// The outbox drained below its low watermark: the 4000 clock stops.
    pub fn keeping_up(&mut self) {
        if let Some(t) = &mut self.trouble {
            t.overflow_since = None;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.trouble.as_ref().map_or(0, |t| t.dropped)
    }

    /// Ring-full drops wait to be queued.
    #[inline]
    pub fn has_ring_gaps(&self) -> bool {
        self.trouble
            .as_ref()
            .is_some_and(|t| !t.ring_gaps.is_empty())
    }

    /// Counts a dropped event of `ev.channel` for the next `gap` frame.
    pub fn note_drop(&mut self, ev: &Event, now: Instant) {
        let t = self.trouble();
        t.dropped += 1;
        if t.overflow_since.is_none() {
            t.failed += 1;
            t.last_failure = Some((now, "slow_consumer"));
            t.overflow_since = Some(now);
        }
        match t.pending_gaps.iter_mut().find(|(c, _)| **c == *ev.channel) {
            Some((_, n)) => *n += 1,
            None => t.pending_gaps.push((ev.channel.clone(), 1)),
        }
    }

    /// Counts `dropped` ring-full drops of `channel` for a `gap` behind what is queued.
    pub fn note_ring_gap(&mut self, channel: &str, dropped: u64) {
        let t = self.trouble();
        match t.ring_gaps.iter_mut().find(|(c, _)| **c == *channel) {
            Some((_, n)) => *n += dropped,
            None => t.ring_gaps.push((channel.into(), dropped)),
        }
    }

    /// Queues one delivery of `ev` in this session's transport (an SSE stream's message carries
    /// its position), with the outbox caps; a dropped event is counted for the next `gap`
    /// and handed to `on_drop`.
    #[inline]
    pub fn queue_event(
        &mut self,
        outbox: &mut Outbox,
        ev: &Arc<Event>,
        (max_frames, max_bytes): (usize, usize),
        now: Instant,
        mut on_drop: impl FnMut(&Session, &Event),
    ) {
        let mut dropped = |s: &mut Session, d: &Event| {
            s.note_drop(d, now);
            on_drop(s, d);
        };
        match self.position.as_mut() {
            None => outbox.push_event(ev, max_frames, max_bytes, |d| dropped(self, d)),
            Some(pos) => {
                let msg = sse::event_message(ev, pos);
                outbox.push_event_encoded(ev, msg, max_frames, max_bytes, |d| dropped(self, d));
            }
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
                    .flat_map(|w| w.iter())
                    .any(|(t, p, o)| *p == ev.partition && ev.offset <= *o && **t == *ev.topic)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(c: &str) -> Sub {
        Sub {
            channel: c.into(),
            watermarks: None,
        }
    }

    fn names(s: &Subs) -> Vec<&str> {
        s.iter().map(|x| &*x.channel).collect()
    }

    #[test]
    fn subs_hold_one_inline_and_more_in_a_vec_and_give_them_all_back() {
        let mut s = Subs::default();
        assert!(s.is_empty());
        s.push(sub("a"));
        assert!(
            matches!(s, Subs::One(_)),
            "one subscription needs no allocation"
        );
        s.push(sub("b"));
        s.push(sub("c"));
        assert_eq!(names(&s), ["a", "b", "c"]);
        assert_eq!(s.swap_remove(0).map(|x| x.channel), Some("a".into()));
        assert_eq!(names(&s), ["c", "b"]);
        assert!(s.swap_remove(5).is_none(), "out of range removes nothing");
        assert_eq!(s.swap_remove(1).map(|x| x.channel), Some("b".into()));
        assert!(matches!(s, Subs::One(_)), "back inline at one");
        s.push(sub("d"));
        let all: Vec<_> = s.drain().map(|x| x.channel).collect();
        assert_eq!(all, ["c".into(), "d".into()] as [Arc<str>; 2]);
        assert!(s.is_empty());
        s.push(sub("e"));
        assert_eq!(s.swap_remove(0).map(|x| x.channel), Some("e".into()));
        assert!(matches!(s, Subs::None));
    }

    #[test]
    fn a_packed_client_address_reads_back() {
        for ip in ["10.1.2.3", "2001:db8::7", "::1", "127.0.0.1"] {
            let ip: std::net::IpAddr = ip.parse().expect("address");
            assert_eq!(pack_ip(ip).to_canonical(), ip);
        }
    }

    #[test]
    fn session_ids_read_back_as_nonce_shard_and_sequence() {
        let id = SessionId::new(3, 42);
        let text = id.to_string();
        assert!(text.ends_with("-3-42"), "{text}");
        assert_eq!(&*id.text(), text);
        assert_ne!(SessionId::new(1, 42), SessionId::new(2, 42));
    }
}
