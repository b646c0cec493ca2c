//! The outbox's queue state ([`Lanes`]), boxed by [`super::Outbox`] only while frames are
//! queued or events flow (an idle connection holds none). Behaviour: see `outbox.rs`.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{CONTROL_MAX_BYTES, CONTROL_MAX_FRAMES, ControlFull, Frame, GapEncoder};
use crate::conn::encoding::{Encoding, encode};
use crate::event::Event;

/// An event-lane entry: the shared event, and this connection's own encoding of it when it
/// has one (an SSE message with the stream's position as `id:`); or a `gap` that must be read
/// after the events queued before it ([`super::Outbox::push_gap_behind`]).
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

/// The queue while anything is queued (see the module doc for invariants); the
/// [`super::Outbox`] holds it boxed and drops it when it drains.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    control: VecDeque<Control>,
    events: VecDeque<Queued>,
    /// Bytes of the head frame already written (0: no frame is torn), and its lane.
    head_offset: usize,
    torn: Lane,
    control_bytes: usize,
    event_bytes: usize,
    /// Replies queued (see [`super::Outbox::push_reply`]) and their bytes.
    replies: usize,
    reply_bytes: usize,
    /// Event frames written out in full (the session's `sent`).
    events_written: u64,
    /// Control frames queued / written out in full (marks for "the ping is out").
    control_pushed: u64,
    control_written: u64,
    /// Event-lane `gap`s that reached the front of a drop, per channel, to go to the control
    /// lane at the next [`super::Outbox::settle`] (one encoding per turn, not one per drop).
    moved: Vec<(Box<str>, u64, GapEncoder)>,
}

impl Lanes {
    /// Frames queued, both lanes.
    pub(super) fn len(&self) -> usize {
        self.control.len() + self.events.len()
    }
    pub(super) fn is_empty(&self) -> bool {
        self.control.is_empty() && self.events.is_empty() && self.moved.is_empty()
    }
    /// Bytes still to write, both lanes.
    pub(super) fn bytes(&self) -> usize {
        self.control_bytes + self.event_bytes
    }
    /// Event frames queued.
    pub(super) fn event_frames(&self) -> usize {
        self.events.len()
    }
    /// Event bytes still to write.
    pub(super) fn event_bytes(&self) -> usize {
        self.event_bytes
    }
    /// When the oldest queued event was ingested: how late it would reach the client if it
    /// were written now (`None`: no event queued).
    pub(super) fn oldest_ingested(&self) -> Option<Instant> {
        self.events.iter().find_map(|q| match q {
            Queued::Event { ev, .. } => Some(ev.ingested_at),
            Queued::Gap { .. } => None,
        })
    }
    /// Event frames written out in full.
    pub(super) fn events_written(&self) -> u64 {
        self.events_written
    }
    /// Control frames written out in full; compare with a mark from [`super::Outbox::push_control`].
    pub(super) fn control_written(&self) -> u64 {
        self.control_written
    }
    /// The event lane is under half of both caps (the low watermark that ends an overflow).
    pub(super) fn below_low_watermark(&self, max_frames: usize, max_bytes: usize) -> bool {
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
    pub(super) fn push_event(
        &mut self,
        ev: &Arc<Event>,
        enc: Encoding,
        max_frames: usize,
        max_bytes: usize,
        on_drop: impl FnMut(&Event),
    ) {
        let q = Queued::Event {
            ev: ev.clone(),
            own: None,
        };
        self.push_queued(q, enc, max_frames, max_bytes, on_drop);
    }

    /// [`super::Outbox::push_event`] with this connection's own encoding of `ev` (written as is).
    #[inline]
    pub(super) fn push_event_encoded(
        &mut self,
        ev: &Arc<Event>,
        encoded: Bytes,
        enc: Encoding,
        max_frames: usize,
        max_bytes: usize,
        on_drop: impl FnMut(&Event),
    ) {
        let q = Queued::Event {
            ev: ev.clone(),
            own: Some(encoded),
        };
        self.push_queued(q, enc, max_frames, max_bytes, on_drop);
    }

    #[inline]
    fn push_queued(
        &mut self,
        q: Queued,
        enc: Encoding,
        max_frames: usize,
        max_bytes: usize,
        mut on_drop: impl FnMut(&Event),
    ) {
        let len = q.bytes(enc).len();
        while self.events.len() >= max_frames || self.event_bytes + len > max_bytes {
            match self.drop_oldest_event(enc) {
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
    /// Returns its mark: it is written out once [`super::Outbox::control_written`] reaches the mark.
    pub(super) fn push_control(&mut self, b: Bytes) -> u64 {
        self.push(b, Kind::Plain)
    }

    /// Queues a reply the client asked for (ack, error, pong), refused when the client already
    /// has [`CONTROL_MAX_FRAMES`] or [`CONTROL_MAX_BYTES`] of replies unread.
    pub(super) fn push_reply(&mut self, b: Bytes) -> Result<(), ControlFull> {
        if self.replies >= CONTROL_MAX_FRAMES || self.reply_bytes + b.len() > CONTROL_MAX_BYTES {
            return Err(ControlFull);
        }
        self.replies += 1;
        self.reply_bytes += b.len();
        self.push(b, Kind::Reply);
        Ok(())
    }

    /// Queues the close frame (last: a later `gap` goes in front of it).
    pub(super) fn push_close(&mut self, b: Bytes) {
        self.push(b, Kind::Close);
    }

    /// Reports `dropped` more events of `channel`: adds them to a `gap` frame of that channel
    /// still waiting in the control lane (re-encoded with `encode(channel, total)`), or queues
    /// a new one ahead of a queued close frame. Returns whether a new frame was queued.
    pub(super) fn push_gap(
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
    /// drop. With no event frame waiting it goes to the control lane ([`super::Outbox::push_gap`]).
    /// Returns whether a new frame was queued. Never dropped: a `gap` that reaches the front of
    /// a drop moves to the control lane, where it stands in the same place.
    pub(super) fn push_gap_behind(
        &mut self,
        channel: Box<str>,
        dropped: u64,
        encode: GapEncoder,
    ) -> bool {
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
    pub(super) fn clear_events(&mut self, enc: Encoding, mut on_drop: impl FnMut(&Event)) {
        let keep = usize::from(self.torn_event());
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
    fn drop_oldest_event(&mut self, enc: Encoding) -> Option<Arc<Event>> {
        let idx = usize::from(self.torn_event());
        loop {
            let q = self.events.remove(idx)?;
            self.event_bytes -= q.bytes(enc).len();
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
    pub(super) fn settle(&mut self) {
        for (channel, dropped, encode) in std::mem::take(&mut self.moved) {
            self.push_gap(channel, dropped, encode);
        }
    }

    /// Every queued frame's bytes in write order: a torn event head, the control lane, the
    /// event lane. The first starts at `head_offset`.
    pub(super) fn ordered(&self, enc: Encoding) -> impl Iterator<Item = &Bytes> {
        let torn = usize::from(self.torn_event());
        self.events
            .iter()
            .take(torn)
            .map(move |q| q.bytes(enc))
            .chain(self.control.iter().map(|c| &c.bytes))
            .chain(self.events.iter().skip(torn).map(move |q| q.bytes(enc)))
    }

    /// Bytes of the first frame of [`super::Outbox::ordered`] already written.
    pub(super) fn head_offset(&self) -> usize {
        self.head_offset
    }

    /// The queued bytes as slices in write order, the head frame starting at its write offset
    /// (the TLS path hands these to rustls's writer, then calls [`super::Outbox::consume`]).
    pub(super) fn slices(&self, enc: Encoding) -> impl Iterator<Item = io::IoSlice<'_>> {
        let off = self.head_offset;
        self.ordered(enc).enumerate().map(move |(i, b)| {
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
    pub(super) fn consume(&mut self, mut n: usize, enc: Encoding) {
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
    pub(super) fn iter(&self) -> impl Iterator<Item = Frame> + '_ {
        let torn = usize::from(self.torn_event());
        self.events
            .iter()
            .take(torn)
            .map(Queued::frame)
            .chain(self.control.iter().map(|c| Frame::Control(c.bytes.clone())))
            .chain(self.events.iter().skip(torn).map(Queued::frame))
    }
}

impl Lanes {
    /// Empty lanes for an outbox that has written `events_written` events and
    /// `control_written` control frames so far.
    pub(super) fn starting(events_written: u64, control_written: u64) -> Lanes {
        Lanes {
            events_written,
            control_pushed: control_written,
            control_written,
            ..Lanes::default()
        }
    }

    /// The event lane's buffer is allocated: events flow to this connection.
    pub(super) fn events_hot(&self) -> bool {
        self.events.capacity() > 0
    }
}
