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
//!
//! Memory: the queue state ([`Lanes`], both lanes and their counts) is boxed and exists only
//! while something is queued, or while events flow to the connection (then its event lane
//! keeps its buffer, so a steady stream of deliveries never allocates). A connection that
//! only sees the welcome, acks, pongs or a ping frees it as soon as they are written; one that
//! stops receiving events frees it at the next [`Outbox::trim`] (the heartbeat). What survives
//! (transport, compression, the written counts that ping marks compare against) is inline.
//! The outbox is where a session's [`Transport`] lives (set once at the upgrade by
//! `Conn::open`): a queued event is written (and counted) as `event.ws_frame`, or as
//! `event.sse_frame` on a Server-Sent Events stream; the flush picks the encoding once per
//! writev, so the plain WebSocket path is unchanged. A WebSocket that negotiated
//! `permessage-deflate` ([`Deflated`]) writes the event's shared compressed frame instead
//! (made once per event). An event encoded for this connection alone
//! ([`Outbox::push_event_encoded`]: an SSE message carrying the stream's own `id:`) is written
//! as queued and dropped like any event.

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

/// A reply was refused: the client has too many unread replies queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFull;

/// Result of a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket is full; wait for writability.
    Partial,
}

/// A connection's outbox. See the module doc.
#[derive(Debug, Default)]
pub struct Outbox {
    /// `Some` while frames are queued or events flow; holds the counts below meanwhile.
    lanes: Option<Box<Lanes>>,
    /// The session's transport: SSE writes events as SSE messages, the others as WebSocket
    /// frames.
    transport: Transport,
    /// `Some` when the WebSocket negotiated `permessage-deflate` (set once, at the upgrade).
    deflate: Option<Box<Deflated>>,
    /// While `lanes` is `None`: event frames written out in full, and control frames queued
    /// (= written, nothing is queued) — the counts a new `Lanes` starts from.
    events_written: u64,
    control_written: u64,
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
        self.deflate = Some(Box::new(d));
    }
    /// How events are written: from the transport and the negotiated compression.
    #[inline]
    pub fn encoding(&self) -> Encoding {
        match (self.transport, self.deflate.as_deref()) {
            (Transport::Sse, _) => Encoding::Sse,
            (_, Some(d)) => Encoding::WsDeflate(*d),
            (_, None) => Encoding::Ws,
        }
    }

    /// The lanes, made on first use (they start from the counts kept while there were none).
    #[inline]
    fn lanes(&mut self) -> &mut Lanes {
        let (ew, cw) = (self.events_written, self.control_written);
        self.lanes
            .get_or_insert_with(|| Box::new(Lanes::starting(ew, cw)))
    }

    /// Drops the lanes, keeping their counts.
    fn free_lanes(&mut self) {
        if let Some(l) = self.lanes.take() {
            self.events_written = l.events_written();
            self.control_written = l.control_written();
        }
    }

    /// Frees the queue state if nothing is queued (a quiet moment: the shard calls it at each
    /// heartbeat, so a connection that stopped receiving events gives its lanes back).
    pub fn trim(&mut self) {
        if self.is_empty() {
            self.free_lanes();
        }
    }

    /// Whether the queue state is allocated (tests of the memory policy).
    #[cfg(test)]
    pub(crate) fn holds_lanes(&self) -> bool {
        self.lanes.is_some()
    }

    /// Frames queued, both lanes.
    pub fn len(&self) -> usize {
        self.lanes.as_ref().map_or(0, |l| l.len())
    }
    pub fn is_empty(&self) -> bool {
        self.lanes.as_ref().is_none_or(|l| l.is_empty())
    }
    /// Bytes still to write, both lanes.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.lanes.as_ref().map_or(0, |l| l.bytes())
    }
    /// Event frames queued.
    pub fn event_frames(&self) -> usize {
        self.lanes.as_ref().map_or(0, |l| l.event_frames())
    }
    /// Event bytes still to write.
    pub fn event_bytes(&self) -> usize {
        self.lanes.as_ref().map_or(0, |l| l.event_bytes())
    }
    /// When the oldest queued event was ingested: how late it would reach the client if it
    /// were written now (`None`: no event queued).
    pub fn oldest_ingested(&self) -> Option<Instant> {
        self.lanes.as_ref().and_then(|l| l.oldest_ingested())
    }
    /// Event frames written out in full.
    pub fn events_written(&self) -> u64 {
        self.lanes
            .as_ref()
            .map_or(self.events_written, |l| l.events_written())
    }
    /// Control frames written out in full; compare with a mark from [`Outbox::push_control`].
    pub fn control_written(&self) -> u64 {
        self.lanes
            .as_ref()
            .map_or(self.control_written, |l| l.control_written())
    }
    /// The event lane is under half of both caps (the low watermark that ends an overflow).
    pub fn below_low_watermark(&self, max_frames: usize, max_bytes: usize) -> bool {
        self.lanes
            .as_ref()
            .is_none_or(|l| l.below_low_watermark(max_frames, max_bytes))
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
        let enc = self.encoding();
        self.lanes()
            .push_event(ev, enc, max_frames, max_bytes, on_drop);
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
        let enc = self.encoding();
        self.lanes()
            .push_event_encoded(ev, encoded, enc, max_frames, max_bytes, on_drop);
    }

    /// Queues a server control frame (HTTP response, ping, status, echo) in the control lane.
    /// Returns its mark: it is written out once [`Outbox::control_written`] reaches the mark.
    pub fn push_control(&mut self, b: Bytes) -> u64 {
        self.lanes().push_control(b)
    }

    /// Queues a reply the client asked for (ack, error, pong), refused when the client already
    /// has [`CONTROL_MAX_FRAMES`] or [`CONTROL_MAX_BYTES`] of replies unread.
    pub fn push_reply(&mut self, b: Bytes) -> Result<(), ControlFull> {
        self.lanes().push_reply(b)
    }

    /// Queues the close frame (last: a later `gap` goes in front of it).
    pub fn push_close(&mut self, b: Bytes) {
        self.lanes().push_close(b);
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
        self.lanes().push_gap(channel, dropped, encode)
    }

    /// Reports `dropped` more events of `channel` that came AFTER everything queued so far
    /// (a full shard ring): the `gap` goes behind the queued events (merged with a `gap` of
    /// that channel among the last entries), so it cannot overtake events from before the
    /// drop. With no event frame waiting it goes to the control lane ([`Outbox::push_gap`]).
    /// Returns whether a new frame was queued. Never dropped: a `gap` that reaches the front of
    /// a drop moves to the control lane, where it stands in the same place.
    pub fn push_gap_behind(&mut self, channel: Box<str>, dropped: u64, encode: GapEncoder) -> bool {
        self.lanes().push_gap_behind(channel, dropped, encode)
    }

    /// Drops every queued event frame not yet started, handing each to `on_drop` (a `gap`
    /// among them moves to the control lane, ahead of a queued close).
    pub fn clear_events(&mut self, on_drop: impl FnMut(&Event)) {
        let enc = self.encoding();
        if let Some(l) = &mut self.lanes {
            l.clear_events(enc, on_drop);
        }
    }

    /// Puts the `gap`s moved out of the event lane by drops into the control lane (where they
    /// stand in the same place in write order). The shard calls it before every flush.
    pub fn settle(&mut self) {
        if let Some(l) = &mut self.lanes {
            l.settle();
        }
    }

    /// Every queued frame's bytes in write order: a torn event head, the control lane, the
    /// event lane. The first starts at `head_offset`.
    #[inline]
    pub fn ordered(&self) -> impl Iterator<Item = &Bytes> {
        let enc = self.encoding();
        self.lanes
            .as_deref()
            .into_iter()
            .flat_map(move |l| l.ordered(enc))
    }

    /// Bytes of the first frame of [`Outbox::ordered`] already written.
    pub fn head_offset(&self) -> usize {
        self.lanes.as_ref().map_or(0, |l| l.head_offset())
    }

    /// Writes everything queued with ONE writev (up to IOV_MAX frames). Returns bytes written.
    pub fn flush(&mut self, fd: &impl AsRawFd, iov: &mut IoVecs) -> io::Result<(usize, Flushed)> {
        if self.is_empty() {
            return Ok((0, Flushed::All));
        }
        self.settle();
        let n = iov.write_frames(fd, self.head_offset(), self.ordered())?;
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
        let enc = self.encoding();
        self.lanes
            .as_deref()
            .into_iter()
            .flat_map(move |l| l.slices(enc))
    }

    /// Marks `n` bytes as written: pops finished frames, keeps the offset into a torn one.
    /// Drained with no event lane buffer (no events flow here), the lanes are freed.
    pub fn consume(&mut self, n: usize) {
        let enc = self.encoding();
        let Some(l) = &mut self.lanes else {
            return;
        };
        l.consume(n, enc);
        if l.is_empty() && !l.events_hot() {
            self.free_lanes();
        }
    }

    /// Queued frames in write order (for tests and stats).
    pub fn iter(&self) -> impl Iterator<Item = Frame> + '_ {
        self.lanes.as_deref().into_iter().flat_map(Lanes::iter)
    }
}

#[path = "outbox_lanes.rs"]
mod lanes;
use lanes::Lanes;

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
