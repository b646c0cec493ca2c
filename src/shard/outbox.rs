//! Per-connection outbox: frames waiting for the next writev, bounded in frames and bytes.
//!
//! Invariants: `bytes` = sum of queued frame lengths minus `head_offset`; the head frame is
//! never dropped once partly written (the peer would see a torn frame); overflow drops the
//! OLDEST event frame (control frames such as acks and close are never dropped) and reports
//! which event it was so the connection can send `gap`. Allocates only when it grows.
//! The transport is fixed per outbox (`sse`): a queued [`Frame::Event`] is written (and
//! counted) as `event.ws_frame`, or as `event.sse_frame` on a Server-Sent Events stream; the
//! flush picks the encoding once per writev, so the WebSocket path is unchanged.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;

use crate::event::Event;
use crate::io::IoVecs;

/// One queued frame.
#[derive(Debug)]
pub enum Frame {
    /// A fan-out delivery: writes `event.ws_frame` (`sse_frame` on an SSE outbox); droppable
    /// under pressure.
    Event(Arc<Event>),
    /// A protocol frame (ack, pong, gap, close, HTTP response): never dropped.
    Control(Bytes),
}

impl Frame {
    /// The bytes to write on a WebSocket.
    #[inline]
    pub fn bytes(&self) -> &Bytes {
        match self {
            Frame::Event(e) => &e.ws_frame,
            Frame::Control(b) => b,
        }
    }

    /// The bytes to write on a Server-Sent Events stream.
    #[inline]
    pub fn sse_bytes(&self) -> &Bytes {
        match self {
            Frame::Event(e) => &e.sse_frame,
            Frame::Control(b) => b,
        }
    }

    /// The bytes to write in the given transport.
    #[inline]
    pub fn encoded(&self, sse: bool) -> &Bytes {
        if sse { self.sse_bytes() } else { self.bytes() }
    }
}

/// The queue. See the module doc for invariants.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: VecDeque<Frame>,
    head_offset: usize,
    bytes: usize,
    /// Events are written as SSE messages instead of WebSocket frames.
    sse: bool,
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
    /// Switches event encoding to Server-Sent Events (set once, before any event is queued).
    pub fn set_sse(&mut self, sse: bool) {
        self.sse = sse;
    }
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    /// Bytes still to write.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues an event frame; when over `max_frames`/`max_bytes`, drops the oldest event
    /// frames and hands each dropped event to `on_drop`.
    #[inline]
    pub fn push_event(
        &mut self,
        ev: &Arc<Event>,
        max_frames: usize,
        max_bytes: usize,
        mut on_drop: impl FnMut(&Event),
    ) {
        let len = if self.sse {
            ev.sse_frame.len()
        } else {
            ev.ws_frame.len()
        };
        while !self.frames.is_empty()
            && (self.frames.len() >= max_frames || self.bytes + len > max_bytes)
        {
            match self.drop_oldest_event() {
                Some(dropped) => on_drop(&dropped),
                None => break,
            }
        }
        if self.frames.len() >= max_frames || self.bytes + len > max_bytes {
            on_drop(ev);
            return;
        }
        self.bytes += len;
        self.frames.push_back(Frame::Event(ev.clone()));
    }

    /// Queues a control frame at the back (never dropped, not counted against the caps).
    pub fn push_control(&mut self, b: Bytes) {
        self.bytes += b.len();
        self.frames.push_back(Frame::Control(b));
    }

    /// Queues a control frame ahead of every not-yet-started frame.
    pub fn push_control_front(&mut self, b: Bytes) {
        self.bytes += b.len();
        let at = usize::from(self.head_offset > 0).min(self.frames.len());
        self.frames.insert(at, Frame::Control(b));
    }

    /// Drops every queued event frame not yet started; returns how many.
    pub fn clear_events(&mut self, mut on_drop: impl FnMut(&Event)) {
        let keep_head = self.head_offset > 0;
        let mut i = 0;
        self.frames.retain(|f| {
            let keep = (keep_head && i == 0) || matches!(f, Frame::Control(_));
            i += 1;
            if !keep && let Frame::Event(e) = f {
                on_drop(e);
            }
            keep
        });
        self.recount();
    }

    fn drop_oldest_event(&mut self) -> Option<Arc<Event>> {
        let skip = usize::from(self.head_offset > 0);
        let idx = self
            .frames
            .iter()
            .skip(skip)
            .position(|f| matches!(f, Frame::Event(_)))?
            + skip;
        let f = self.frames.remove(idx)?;
        self.bytes -= f.encoded(self.sse).len();
        match f {
            Frame::Event(e) => Some(e),
            Frame::Control(_) => None,
        }
    }

    fn recount(&mut self) {
        let sse = self.sse;
        self.bytes = self
            .frames
            .iter()
            .map(|f| f.encoded(sse).len())
            .sum::<usize>()
            - self.head_offset;
    }

    /// Writes everything queued with ONE writev (up to IOV_MAX frames). Returns bytes written.
    pub fn flush(&mut self, fd: &impl AsRawFd, iov: &mut IoVecs) -> io::Result<(usize, Flushed)> {
        if self.frames.is_empty() {
            return Ok((0, Flushed::All));
        }
        let n = if self.sse {
            iov.write_frames(
                fd,
                self.head_offset,
                self.frames.iter().map(Frame::sse_bytes),
            )?
        } else {
            iov.write_frames(fd, self.head_offset, self.frames.iter().map(Frame::bytes))?
        };
        self.consume(n);
        Ok((
            n,
            if self.frames.is_empty() {
                Flushed::All
            } else {
                Flushed::Partial
            },
        ))
    }

    /// The queued bytes as slices, the head frame starting at its write offset (the TLS path
    /// hands these to rustls's writer, then calls [`Outbox::consume`] with what it took).
    pub fn slices(&self) -> impl Iterator<Item = io::IoSlice<'_>> {
        let sse = self.sse;
        self.frames.iter().enumerate().map(move |(i, f)| {
            let b = f.encoded(sse);
            let off = if i == 0 {
                self.head_offset.min(b.len())
            } else {
                0
            };
            io::IoSlice::new(&b[off..])
        })
    }

    /// Marks `n` bytes as written: pops finished frames, keeps the offset into a torn one.
    pub fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let rest = front.encoded(self.sse).len() - self.head_offset;
            if n >= rest {
                n -= rest;
                self.head_offset = 0;
                self.frames.pop_front();
            } else {
                self.head_offset += n;
                n = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 64 {
            self.frames = VecDeque::new(); // give a burst's memory back
        }
    }

    /// Iterates over queued event frames (for tests and stats).
    pub fn iter(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParts;

    fn ev(offset: i64, size: usize) -> Arc<Event> {
        let topic: Arc<str> = "t".into();
        let data = format!("\"{}\"", "x".repeat(size));
        Arc::new(Event::new(
            EventParts {
                channel: "c",
                topic: &topic,
                partition: 0,
                offset,
                ts_ms: 0,
                event_type: None,
                correlation_id: None,
                data_json: data.as_bytes(),
            },
            serde_json::Value::Null,
        ))
    }

    #[test]
    fn overflow_drops_oldest_events_and_reports_them() {
        let mut o = Outbox::default();
        o.push_control(Bytes::from_static(b"ack"));
        let mut dropped = Vec::new();
        for i in 0..5 {
            o.push_event(&ev(i, 10), 3, 1 << 20, |e| dropped.push(e.offset));
        }
        assert_eq!(dropped, vec![0, 1, 2]);
        let kept: Vec<_> = o
            .iter()
            .filter_map(|f| match f {
                Frame::Event(e) => Some(e.offset),
                _ => None,
            })
            .collect();
        assert_eq!(kept, vec![3, 4]);
        assert!(matches!(o.iter().next(), Some(Frame::Control(_))));
    }

    #[test]
    fn sse_outbox_queues_and_counts_sse_frames() {
        let mut o = Outbox::default();
        o.set_sse(true);
        let e = ev(0, 10);
        let cap = e.sse_frame.len() * 2;
        let mut n = 0;
        for i in 0..3 {
            o.push_event(&ev(i, 10), 1000, cap, |_| n += 1);
        }
        assert_eq!(n, 1);
        assert_eq!(o.bytes(), cap);
        let first = o.iter().next().unwrap().encoded(true);
        assert!(first.starts_with(b"id: t/0/1\n"));
        let (l, r) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut iov = IoVecs::default();
        o.consume(4);
        assert_eq!(o.flush(&l, &mut iov).unwrap().1, Flushed::All);
        drop(l);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut &r, &mut out).unwrap();
        assert!(
            out.starts_with(b"t/0/1\nevent: c\ndata: {"),
            "torn head resumes"
        );
        assert_eq!(out.len(), cap - 4);
    }

    #[test]
    fn byte_cap_is_enforced() {
        let mut o = Outbox::default();
        let e = ev(0, 100);
        let cap = e.ws_frame.len() * 2;
        let mut n = 0;
        for i in 0..10 {
            o.push_event(&ev(i, 100), 1000, cap, |_| n += 1);
        }
        assert!(o.bytes() <= cap);
        assert_eq!(n, 8);
    }

    #[test]
    fn partial_writes_resume_and_torn_head_is_never_dropped() {
        let mut o = Outbox::default();
        o.push_event(&ev(0, 10), 2, 1 << 20, |_| {});
        let total = o.bytes();
        o.consume(3);
        assert_eq!(o.bytes(), total - 3);
        o.push_event(&ev(1, 10), 2, 1 << 20, |_| {});
        let mut dropped = Vec::new();
        o.push_event(&ev(2, 10), 2, 1 << 20, |e| dropped.push(e.offset));
        assert_eq!(dropped, vec![1], "the torn head (offset 0) must survive");
        o.push_control_front(Bytes::from_static(b"gap"));
        let order: Vec<usize> = o.iter().map(|f| f.bytes().len()).collect();
        assert_eq!(order[1], 3, "control goes right after the torn head");
    }
}
