//! How a connection's outbox writes an event: the shared plain WebSocket frame, the shared
//! `permessage-deflate` frame (made once per event), or the SSE message.

use bytes::Bytes;

use crate::event::Event;

/// A WebSocket that negotiated `permessage-deflate`: events are written as
/// [`Event::ws_frame_deflated`] with these bounds (compressed once per event, shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflated {
    /// `[compression] min_bytes`: shorter envelopes go plain.
    pub min_bytes: usize,
    /// Longest envelope the client's `server_max_window_bits` allows compressed.
    pub max_payload: usize,
}

/// How an outbox writes event frames (from its transport and compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `event.ws_frame`.
    Ws,
    /// `event.ws_frame_deflated(..)`.
    WsDeflate(Deflated),
    /// `event.sse_frame`.
    Sse,
}

#[inline]
pub(crate) fn encode(e: &Event, enc: Encoding) -> &Bytes {
    match enc {
        Encoding::Ws => &e.ws_frame,
        Encoding::WsDeflate(d) => e.ws_frame_deflated(d.min_bytes, d.max_payload),
        Encoding::Sse => &e.sse_frame,
    }
}
