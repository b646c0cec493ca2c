//! Per-connection outbox: frames waiting for the next writev, in two lanes.
//!
//! - The **control lane** (protocol frames: HTTP responses, acks, errors, pong, ping, `gap`,
//!   status, close) is written ahead of every event frame not yet started; its frames are never
//!   dropped. Replies the client provokes ([`Outbox::push_reply`]) are bounded
//!   ([`CONTROL_MAX_FRAMES`], [`CONTROL_MAX_BYTES`]): a client that floods requests without
//!   reading is refused, and the connection closes it 1008. Server frames (ping, status, gap,
//!   close) are bounded by construction: one ping outstanding, `gap`s merged per channel while
//!   unwritten, one close.
//! - The **event lane** is bounded by the `[limits]` outbox caps; overflow drops the OLDEST
//!   event frame not yet started and reports it so the session can send `gap`. A `gap` for
//!   drops that came AFTER the queued events (a full shard ring) is queued in the event lane
//!   behind them ([`Outbox::push_gap_behind`]) so it cannot overtake them; it is never dropped:
//!   reaching the front of a drop, it moves to the control lane ([`Outbox::settle`]).
//!
//! Invariants: `control_bytes + event_bytes` = queued frame lengths minus `head_offset`; the
//! head frame (`torn`, whichever lane) is never dropped or overtaken once partly written (the
//! peer would see a torn frame). Allocates only when it grows.
//! The outbox is where a session's [`Transport`] lives (set once at the upgrade by
//! `Conn::open`): a queued event is written (and counted) as `event.ws_frame`, or as
//! `event.sse_frame` on a Server-Sent Events stream; the flush picks the encoding once per
//! writev, so the plain WebSocket path is unchanged. A WebSocket that negotiated
//! `permessage-deflate` ([`Deflated`]) writes the event's shared compressed frame instead
//! (made once per event). An event encoded for this connection alone
//! ([`Outbox::push_event_encoded`]: an SSE message carrying the stream's own `id:`) is written
//! as queued and dropped like any event.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::conn::Transport;
use crate::conn::encoding::encode;
pub use crate::conn::encoding::{Deflated, Encoding};
use crate::event::Event;
use crate::io::IoVecs;

/// Most control frames a client may have queued by its own requests (acks, errors, pongs).
pub const CONTROL_MAX_FRAMES: usize = 256;
/// Most bytes of such frames.
pub const CONTROL_MAX_BYTES: usize = 256 * 1024;

/// One queued frame, as [`Outbox::iter`] shows them (write order).
#[derive(Debug, Clone)]
pub enum Frame {
    /// A fan-out delivery: writes `event.ws_frame` (`sse_frame` on an SSE outbox); droppable
    /// under pressure.
    Event(Arc<Event>),
    /// A protocol frame (ack, pong, gap, close, HTTP response): never dropped.
    Control(Bytes),
}

impl Frame {
    /// The bytes to write in the given transport.
    #[inline]
    pub fn encoded(&self, enc: Encoding) -> &Bytes {
        match self {
            Frame::Event(e) => encode(e, enc),
            Frame::Control(b) => b,
        }
    }
}

/// How a `gap` frame is encoded for a channel and a count (see `session::gap_encoder`).
pub type GapEncoder = fn(&str, u64) -> Bytes;

/// An event-lane entry: the shared event, and this connection's own encoding of it when it
/// has one (an SSE message with the stream's position as `id:`); or a `gap` that must be read
/// after the events queued before it ([`Outbox::push_gap_behind`]).
#[derive(Debug)]
enum Queued {
    Event {
        ev: Arc<Event>,
        own: Option<Bytes>,
    },
    Gap {
        channel: Box<str>,
        dropped: u64,
        bytes: Bytes,
        encode: GapEncoder,
    },
}

impl Queued {
    #[inline]
    fn bytes(&self, enc: Encoding) -> &Bytes {
        match self {
            Queued::Event { own: Some(b), .. } => b,
            Queued::Event { ev, own: None } => encode(ev, enc),
            Queued::Gap { bytes, .. } => bytes,
        }
    }

    fn frame(&self) -> Frame {
        match self {
            Queued::Event { ev, .. } => Frame::Event(ev.clone()),
            Queued::Gap { bytes, .. } => Frame::Control(bytes.clone()),
        }
    }
}

/// What a control frame is, for merging `gap`s and keeping the close frame last.
#[derive(Debug)]
enum Kind {
    Plain,
    /// A client-provoked reply (counted against the control caps).
    Reply,
    Gap {
        channel: Box<str>,
        dropped: u64,
    },
    Close,
}

#[derive(Debug)]
struct Control {
    bytes: Bytes,
    kind: Kind,
}

/// Which lane the partly written head frame is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Lane {
    #[default]
    Control,
    Event,
}

/// A reply was refused: the client has too many unread replies queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFull;

/// The queue. See the module doc for invariants.
#[derive(Debug, Default)]
pub struct Outbox {
    control: VecDeque<Control>,
    events: VecDeque<Queued>,
    /// Bytes of the head frame already written (0: no frame is torn), and its lane.
    head_offset: usize,
    torn: Lane,
    control_bytes: usize,
    event_bytes: usize,
    /// Replies queued (see [`Outbox::push_reply`]) and their bytes.
    replies: usize,
    reply_bytes: usize,
    /// The session's transport: SSE writes events as SSE messages, the others as WebSocket
    /// frames.
    transport: Transport,
    /// Event frames written out in full (the session's `sent`).
    events_written: u64,
    /// Control frames queued / written out in full (marks for "the ping is out").
    control_pushed: u64,
    control_written: u64,
    /// Event-lane `gap`s that reached the front of a drop, per channel, to go to the control
    /// lane at the next [`Outbox::settle`] (one encoding per turn, not one per drop).
    moved: Vec<(Box<str>, u64, GapEncoder)>,
    /// `Some` when the WebSocket negotiated `permessage-deflate` (set once, at the upgrade).
    deflate: Option<Deflated>,
}

/// Result of a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket is full; wait for writability.
    Partial,
}

impl Outbox {
    /// Fixes the session's transport (once, at the upgrade, before any event is queued).
    pub(crate) fn set_transport(&mut self, t: Transport) {
        self.transport = t;
    }
    pub fn transport(&self) -> Transport {
        self.transport
    }
    /// Creates an empty outbox for a session over `t` (tests and benches).
    pub fn for_transport(t: Transport) -> Outbox {
        Outbox {
            transport: t,
            ..Outbox::default()
        }
    }
    /// Writes events compressed (once, at the upgrade, before any event is queued).
    pub(crate) fn set_deflate(&mut self, d: Deflated) {
        self.deflate = Some(d);
    }
    /// How events are written: from the transport and the negotiated compression.
    #[inline]
    pub fn encoding(&self) -> Encoding {
        match (self.transport, self.deflate) {
            (Transport::Sse, _) => Encoding::Sse,
            (_, Some(d)) => Encoding::WsDeflate(d),
            (_, None) => Encoding::Ws,
        }
    }
    /// Frames queued, both lanes.
    pub fn len(&self) -> usize {
        self.control.len() + self.events.len()
    }
    pub fn is_empty(&self) -> bool {
        self.control.is_empty() && self.events.is_empty() && self.moved.is_empty()
    }
    /// Bytes still to write, both lanes.
    pub fn bytes(&self) -> usize {
        self.control_bytes + self.event_bytes
    }
    /// Event frames queued.
    pub fn event_frames(&self) -> usize {
        self.events.len()
    }
    /// Event bytes still to write.
    pub fn event_bytes(&self) -> usize {
        self.event_bytes
    }
    /// When the oldest queued event was ingested: how late it would reach the client if it
    /// were written now (`None`: no event queued).
    pub fn oldest_ingested(&self) -> Option<Instant> {
        self.events.iter().find_map(|q| match q {
            Queued::Event { ev, .. } => Some(ev.ingested_at),
            Queued::Gap { .. } => None,
        })
    }
    /// Event frames written out in full.
    pub fn events_written(&self) -> u64 {
        self.events_written
    }
    /// Control frames written out in full; compare with a mark from [`Outbox::push_control`].
    pub fn control_written(&self) -> u64 {
        self.control_written
    }
    /// The event lane is under half of both caps (the low watermark that ends an overflow).
    pub fn below_low_watermark(&self, max_frames: usize, max_bytes: usize) -> bool {
        self.events.len() * 2 < max_frames.max(1) && self.event_bytes * 2 < max_bytes.max(1)
    }

    /// Whether the head is a torn event frame (then it is written before the control lane).
    #[inline]
    fn torn_event(&self) -> bool {
        self.head_offset > 0 && self.torn == Lane::Event
    }

    /// Queues an event frame; when over `max_frames`/`max_bytes` (event lane only), drops the
    /// oldest event frames not yet started and hands each dropped event to `on_drop`.
    #[inline]
    pub fn push_event(
        &mut self,
        ev: &Arc<Event>,
        max_frames: usize,
        max_bytes: usize,
        on_drop: impl FnMut(&Event),
    ) {
        let q = Queued::Event {
            ev: ev.clone(),
            own: None,
        };
        self.push_queued(q, max_frames, max_bytes, on_drop);
    }

    /// [`Outbox::push_event`] with this connection's own encoding of `ev` (written as is).
    #[inline]
    pub fn push_event_encoded(
        &mut self,
        ev: &Arc<Event>,
        encoded: Bytes,
        max_frames: usize,
        max_bytes: usize,
        on_drop: impl FnMut(&Event),
    ) {
        let q = Queued::Event {
            ev: ev.clone(),
            own: Some(encoded),
        };
        self.push_queued(q, max_frames, max_bytes, on_drop);
    }

    #[inline]
    fn push_queued(
        &mut self,
        q: Queued,
        max_frames: usize,
        max_bytes: usize,
        mut on_drop: impl FnMut(&Event),
    ) {
        let len = q.bytes(self.encoding()).len();
        while self.events.len() >= max_frames || self.event_bytes + len > max_bytes {
            match self.drop_oldest_event() {
                Some(dropped) => on_drop(&dropped),
                None => break,
            }
        }
        if self.events.len() >= max_frames || self.event_bytes + len > max_bytes {
            if let Queued::Event { ev, .. } = &q {
                on_drop(ev);
            }
            return;
        }
        self.event_bytes += len;
        self.events.push_back(q);
    }

    fn push(&mut self, bytes: Bytes, kind: Kind) -> u64 {
        self.control_bytes += bytes.len();
        self.control.push_back(Control { bytes, kind });
        self.control_pushed += 1;
        self.control_pushed
    }

    /// Queues a server control frame (HTTP response, ping, status, echo) in the control lane.
    /// Returns its mark: it is written out once [`Outbox::control_written`] reaches the mark.
    pub fn push_control(&mut self, b: Bytes) -> u64 {
        self.push(b, Kind::Plain)
    }

    /// Queues a reply the client asked for (ack, error, pong), refused when the client already
    /// has [`CONTROL_MAX_FRAMES`] or [`CONTROL_MAX_BYTES`] of replies unread.
    pub fn push_reply(&mut self, b: Bytes) -> Result<(), ControlFull> {
        if self.replies >= CONTROL_MAX_FRAMES || self.reply_bytes + b.len() > CONTROL_MAX_BYTES {
            return Err(ControlFull);
        }
        self.replies += 1;
        self.reply_bytes += b.len();
        self.push(b, Kind::Reply);
        Ok(())
    }

    /// Queues the close frame (last: a later `gap` goes in front of it).
    pub fn push_close(&mut self, b: Bytes) {
        self.push(b, Kind::Close);
    }

    /// Reports `dropped` more events of `channel`: adds them to a `gap` frame of that channel
    /// still waiting in the control lane (re-encoded with `encode(channel, total)`), or queues
    /// a new one ahead of a queued close frame. Returns whether a new frame was queued.
    pub fn push_gap(
        &mut self,
        channel: Box<str>,
        dropped: u64,
        encode: impl Fn(&str, u64) -> Bytes,
    ) -> bool {
        let skip = usize::from(self.head_offset > 0 && self.torn == Lane::Control);
        for c in self.control.iter_mut().skip(skip) {
            if let Kind::Gap {
                channel: ch,
                dropped: n,
            } = &mut c.kind
                && *ch == channel
            {
                *n += dropped;
                let b = encode(ch, *n);
                self.control_bytes = self.control_bytes + b.len() - c.bytes.len();
                c.bytes = b;
                return false;
            }
        }
        let bytes = encode(&channel, dropped);
        let at = self
            .control
            .iter()
            .skip(skip)
            .position(|c| matches!(c.kind, Kind::Close))
            .map(|i| i + skip);
        let kind = Kind::Gap { channel, dropped };
        match at {
            Some(i) => {
                self.control_bytes += bytes.len();
                self.control.insert(i, Control { bytes, kind });
                self.control_pushed += 1;
            }
            None => {
                self.push(bytes, kind);
            }
        }
        true
    }

    /// Reports `dropped` more events of `channel` that came AFTER everything queued so far
    /// (a full shard ring): the `gap` goes behind the queued events (merged with a `gap` of
    /// that channel among the last entries), so it cannot overtake events from before the
    /// drop. With no event frame waiting it goes to the control lane ([`Outbox::push_gap`]).
    /// Returns whether a new frame was queued. Never dropped: a `gap` that reaches the front of
    /// a drop moves to the control lane, where it stands in the same place.
    pub fn push_gap_behind(&mut self, channel: Box<str>, dropped: u64, encode: GapEncoder) -> bool {
        if self.events.len() == usize::from(self.torn_event()) {
            return self.push_gap(channel, dropped, encode);
        }
        let torn = usize::from(self.torn_event());
        for q in self.events.iter_mut().skip(torn).rev() {
            let Queued::Gap {
                channel: ch,
                dropped: n,
                bytes,
                ..
            } = q
            else {
                break;
            };
            if *ch == channel {
                *n += dropped;
                let b = encode(ch, *n);
                self.event_bytes = self.event_bytes + b.len() - bytes.len();
                *bytes = b;
                return false;
            }
        }
        let bytes = encode(&channel, dropped);
        self.event_bytes += bytes.len();
        self.events.push_back(Queued::Gap {
            channel,
            dropped,
            bytes,
            encode,
        });
        true
    }

    /// Drops every queued event frame not yet started, handing each to `on_drop` (a `gap`
    /// among them moves to the control lane, ahead of a queued close).
    pub fn clear_events(&mut self, mut on_drop: impl FnMut(&Event)) {
        let keep = usize::from(self.torn_event());
        let enc = self.encoding();
        let mut gaps = Vec::new();
        for q in self.events.drain(keep..) {
            self.event_bytes -= q.bytes(enc).len();
            match q {
                Queued::Event { ev, .. } => on_drop(&ev),
                Queued::Gap {
                    channel,
                    dropped,
                    encode,
                    ..
                } => gaps.push((channel, dropped, encode)),
            }
        }
        for (channel, dropped, encode) in gaps {
            self.push_gap(channel, dropped, encode);
        }
        self.settle();
    }

    /// Drops the oldest event frame not yet started; a `gap` in front of it moves to the
    /// control lane (the same place in write order).
    fn drop_oldest_event(&mut self) -> Option<Arc<Event>> {
        let idx = usize::from(self.torn_event());
        loop {
            let q = self.events.remove(idx)?;
            self.event_bytes -= q.bytes(self.encoding()).len();
            match q {
                Queued::Event { ev, .. } => return Some(ev),
                Queued::Gap {
                    channel,
                    dropped,
                    encode,
                    ..
                } => match self.moved.iter_mut().find(|(c, ..)| *c == channel) {
                    Some((_, n, _)) => *n += dropped,
                    None => self.moved.push((channel, dropped, encode)),
                },
            }
        }
    }

    /// Puts the `gap`s moved out of the event lane by drops into the control lane (where they
    /// stand in the same place in write order). The shard calls it before every flush.
    pub fn settle(&mut self) {
        for (channel, dropped, encode) in std::mem::take(&mut self.moved) {
            self.push_gap(channel, dropped, encode);
        }
    }

    /// Every queued frame's bytes in write order: a torn event head, the control lane, the
    /// event lane. The first starts at `head_offset`.
    pub fn ordered(&self) -> impl Iterator<Item = &Bytes> {
        let enc = self.encoding();
        let torn = usize::from(self.torn_event());
        self.events
            .iter()
            .take(torn)
            .map(move |q| q.bytes(enc))
            .chain(self.control.iter().map(|c| &c.bytes))
            .chain(self.events.iter().skip(torn).map(move |q| q.bytes(enc)))
    }

    /// Bytes of the first frame of [`Outbox::ordered`] already written.
    pub fn head_offset(&self) -> usize {
        self.head_offset
    }

    /// Writes everything queued with ONE writev (up to IOV_MAX frames). Returns bytes written.
    pub fn flush(&mut self, fd: &impl AsRawFd, iov: &mut IoVecs) -> io::Result<(usize, Flushed)> {
        if self.is_empty() {
            return Ok((0, Flushed::All));
        }
        self.settle();
        let n = iov.write_frames(fd, self.head_offset, self.ordered())?;
        self.consume(n);
        Ok((
            n,
            if self.is_empty() {
                Flushed::All
            } else {
                Flushed::Partial
            },
        ))
    }

    /// The queued bytes as slices in write order, the head frame starting at its write offset
    /// (the TLS path hands these to rustls's writer, then calls [`Outbox::consume`]).
    pub fn slices(&self) -> impl Iterator<Item = io::IoSlice<'_>> {
        let off = self.head_offset;
        self.ordered().enumerate().map(move |(i, b)| {
            let o = if i == 0 { off.min(b.len()) } else { 0 };
            io::IoSlice::new(&b[o..])
        })
    }

    /// The lane whose front is written next.
    fn head_lane(&self) -> Option<Lane> {
        if self.head_offset > 0 {
            Some(self.torn)
        } else if !self.control.is_empty() {
            Some(Lane::Control)
        } else if !self.events.is_empty() {
            Some(Lane::Event)
        } else {
            None
        }
    }

    /// Marks `n` bytes as written: pops finished frames, keeps the offset into a torn one.
    pub fn consume(&mut self, mut n: usize) {
        let enc = self.encoding();
        while n > 0 {
            let Some(lane) = self.head_lane() else { break };
            let len = match lane {
                Lane::Control => self.control.front().map_or(0, |c| c.bytes.len()),
                Lane::Event => self.events.front().map_or(0, |q| q.bytes(enc).len()),
            };
            let rest = len - self.head_offset;
            let took = n.min(rest);
            match lane {
                Lane::Control => self.control_bytes -= took,
                Lane::Event => self.event_bytes -= took,
            }
            n -= took;
            if took < rest {
                self.head_offset += took;
                self.torn = lane;
                break;
            }
            self.head_offset = 0;
            match lane {
                Lane::Control => {
                    if let Some(c) = self.control.pop_front()
                        && matches!(c.kind, Kind::Reply)
                    {
                        self.replies -= 1;
                        self.reply_bytes -= c.bytes.len();
                    }
                    self.control_written += 1;
                }
                Lane::Event => {
                    if let Some(Queued::Event { .. }) = self.events.pop_front() {
                        self.events_written += 1;
                    }
                }
            }
        }
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new(); // give a burst's memory back
        }
        if self.control.is_empty() && self.control.capacity() > 0 {
            // Control frames are rare (welcome, acks, a ping per heartbeat): an idle socket
            // holds no lane buffer between them.
            self.control = VecDeque::new();
        }
    }

    /// Queued frames in write order (for tests and stats).
    pub fn iter(&self) -> impl Iterator<Item = Frame> + '_ {
        let torn = usize::from(self.torn_event());
        self.events
            .iter()
            .take(torn)
            .map(Queued::frame)
            .chain(self.control.iter().map(|c| Frame::Control(c.bytes.clone())))
            .chain(self.events.iter().skip(torn).map(Queued::frame))
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
