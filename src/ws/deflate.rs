//! `permessage-deflate` data transforms (RFC 7692 §7.2): the per-event compressor and the
//! bounded per-connection inflater. Sans-I/O.
//!
//! - [`compressed_frame`]: one complete server frame (FIN, RSV1, opcode, length, raw DEFLATE
//!   with the trailing `00 00 ff ff` of the sync flush removed). The compressor is reset for
//!   every message (`server_no_context_takeover`), so the bytes depend only on the payload and
//!   one frame serves every socket that negotiated the extension. The compressor is a per-thread
//!   scratch object (no allocation per event beyond the output).
//! - [`Inflater`]: client messages, frame by frame, into a caller buffer; output is bounded by a
//!   limit checked as it grows (geometric steps capped at `limit + 1`), so a decompression
//!   bomb costs at most `limit + 1` bytes of output buffer before it is rejected. The window
//!   is 32 KiB (the DEFLATE maximum), so any `client_max_window_bits` decodes; it is kept across
//!   messages unless the client negotiated `client_no_context_takeover`.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::encode::{OpCode, frame_header};
use super::extensions::ContextTakeover;

/// The four bytes a sync flush ends with; stripped by the sender, re-appended by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest output growth step.
pub const INFLATE_STEP: usize = 16 * 1024;

/// Compression level of event frames (zlib's 1..=9 scale). Compressed once per event, so the
/// default ratio/CPU point costs little.
const LEVEL: u32 = 6;

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
}

/// A complete final server frame `op` carrying `payload` compressed, RSV1 set. Cost: one
/// DEFLATE pass over `payload` (~10 µs per KiB of JSON at level 6) and one allocation.
pub fn compressed_frame(op: OpCode, payload: &[u8]) -> Bytes {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        c.reset(); // no context takeover: every event starts from an empty window
        let deflated = deflate_sync(&mut c, payload);
        let body = deflated.strip_suffix(&TAIL).unwrap_or(&deflated);
        let (mut h, n) = frame_header(op, body.len());
        h[0] |= 0x40;
        let mut out = Vec::with_capacity(n + body.len());
        out.extend_from_slice(&h[..n]);
        out.extend_from_slice(body);
        Bytes::from(out)
    })
}

/// Raw DEFLATE of `input` ending in a sync flush (which ends in [`TAIL`]).
fn deflate_sync(c: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start_in = c.total_in();
    loop {
        let consumed = (c.total_in() - start_in) as usize;
        // Compressing into a Vec's spare capacity cannot fail for a valid stream.
        let _ = c.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync);
        let all_in = (c.total_in() - start_in) as usize == input.len();
        // The flush is complete once all input is in and the output did not fill up.
        if all_in && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(64));
    }
}

/// Why an inbound compressed message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Inflated size over the limit. Close 1009.
    TooBig,
    /// Not a valid DEFLATE stream. Close 1007.
    Corrupt,
}

/// Per-connection inflater for client messages. May only be used from one thread at a time.
pub struct Inflater {
    d: Decompress,
    context: ContextTakeover,
    /// The stream ended (a BFINAL block): the next message starts from a reset state.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("context", &self.context)
            .finish()
    }
}

impl Inflater {
    /// An inflater for a client that negotiated `context` (~43 KiB of state, allocated here).
    pub fn new(context: ContextTakeover) -> Inflater {
        Inflater {
            d: Decompress::new(false),
            context,
            ended: false,
        }
    }

    /// Inflates one frame's payload of the current message, appending to `out`; fails once
    /// `out` would exceed `limit` bytes.
    pub fn frame(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        self.feed(input, out, limit)
    }

    /// Ends the message (after its final frame): flushes the stripped sync tail and resets the
    /// window unless the client keeps context.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let r = self.feed(&TAIL, out, limit);
        if r.is_err() || self.ended || self.context == ContextTakeover::Reset {
            self.d.reset(false);
            self.ended = false;
        }
        r
    }

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let mut pos = 0;
        while !self.ended {
            if out.len() == out.capacity() {
                // Geometric growth capped one byte past the limit (enough to see it exceeded).
                let cap = (2 * out.capacity()).max(INFLATE_STEP).min(limit + 1);
                if cap <= out.len() {
                    return Err(InflateError::TooBig);
                }
                out.reserve_exact(cap - out.len());
            }
            let before_in = self.d.total_in();
            let status = self
                .d
                .decompress_vec(&input[pos..], out, FlushDecompress::Sync);
            pos += (self.d.total_in() - before_in) as usize;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match status {
                Ok(Status::StreamEnd) => self.ended = true,
                Ok(_) => {}
                Err(_) => return Err(InflateError::Corrupt),
            }
            // Done when all input is consumed and the output was not the bottleneck.
            if pos == input.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
        // Bytes after a final block (BFINAL) carry nothing; the window is reset at `finish`.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strips the frame header of a server frame (test helper; lengths < 64 KiB).
    fn body(frame: &[u8]) -> &[u8] {
        match frame[1] & 0x7f {
            126 => &frame[4..],
            127 => &frame[10..],
            _ => &frame[2..],
        }
    }

    fn inflate_msg(inf: &mut Inflater, body: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        inf.frame(body, &mut out, limit)?;
        inf.finish(&mut out, limit)?;
        Ok(out)
    }

    #[test]
    fn compressed_frame_has_rsv1_and_round_trips() {
        let json =
            br#"{"type":"event","channel":"issues","data":{"k":"vvvvvvvvvvvvvvvvvvvvvvvvvvvv"}}"#
                .repeat(20);
        let f = compressed_frame(OpCode::Text, &json);
        assert_eq!(f[0], 0xC1, "FIN + RSV1 + text");
        assert!(f.len() < json.len() / 4, "{} bytes", f.len());
        assert!(!body(&f).ends_with(&TAIL));
        let mut inf = Inflater::new(ContextTakeover::Reset);
        assert_eq!(inflate_msg(&mut inf, body(&f), 1 << 20).unwrap(), json);
    }

    #[test]
    fn same_payload_compresses_to_the_same_bytes_every_time() {
        let a = compressed_frame(OpCode::Text, &b"abcabcabc-0123456789".repeat(100));
        let _ = compressed_frame(OpCode::Text, b"something else entirely");
        let b = compressed_frame(OpCode::Text, &b"abcabcabc-0123456789".repeat(100));
        assert_eq!(a, b);
    }

    #[test]
    fn empty_and_incompressible_payloads_round_trip() {
        let mut inf = Inflater::new(ContextTakeover::Keep);
        let e = compressed_frame(OpCode::Binary, b"");
        assert_eq!(e[0], 0xC2);
        assert_eq!(inflate_msg(&mut inf, body(&e), 10).unwrap(), b"");
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let f = compressed_frame(OpCode::Binary, &noise);
        assert_eq!(inflate_msg(&mut inf, body(&f), 5000).unwrap(), noise);
    }

    /// A raw-deflate stream over several messages with context takeover (as a client sends).
    fn client_stream(msgs: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut c = Compress::new(Compression::new(6), false);
        msgs.iter()
            .map(|m| {
                let mut v = deflate_sync(&mut c, m);
                v.truncate(v.len() - 4);
                v
            })
            .collect()
    }

    #[test]
    fn context_takeover_is_honoured_across_messages() {
        let m = b"the quick brown fox jumps over the lazy dog, again and again".repeat(3);
        let parts = client_stream(&[&m, &m]);
        assert!(
            parts[1].len() < parts[0].len() / 2,
            "second message references the first"
        );
        let mut inf = Inflater::new(ContextTakeover::Keep);
        assert_eq!(inflate_msg(&mut inf, &parts[0], 1000).unwrap(), m);
        assert_eq!(inflate_msg(&mut inf, &parts[1], 1000).unwrap(), m);
        // A reset inflater cannot decode the second message: proves the window was used.
        let mut fresh = Inflater::new(ContextTakeover::Reset);
        assert!(inflate_msg(&mut fresh, &parts[0], 1000).is_ok());
        assert!(inflate_msg(&mut fresh, &parts[1], 1000) != Ok(m.to_vec()));
    }

    #[test]
    fn message_split_across_frames_inflates_like_one() {
        let m = b"fragmented compressed message ".repeat(50);
        let f = compressed_frame(OpCode::Text, &m);
        let b = body(&f);
        let mut inf = Inflater::new(ContextTakeover::Keep);
        let mut out = Vec::new();
        for chunk in b.chunks(7) {
            inf.frame(chunk, &mut out, 10_000).unwrap();
        }
        inf.finish(&mut out, 10_000).unwrap();
        assert_eq!(&out[..], &m[..]);
    }

    #[test]
    fn bomb_is_rejected_without_allocating_its_size() {
        let zeros = vec![0u8; 50 << 20];
        let f = compressed_frame(OpCode::Binary, &zeros);
        assert!(f.len() < 100 << 10, "bomb is {} bytes", f.len());
        let mut inf = Inflater::new(ContextTakeover::Keep);
        let mut out = Vec::new();
        assert_eq!(
            inf.frame(body(&f), &mut out, 65_536),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= 65_537, "capacity {}", out.capacity());
    }

    #[test]
    fn exact_limit_is_allowed_and_one_more_is_not() {
        let m = vec![b'a'; 1000];
        let f = compressed_frame(OpCode::Binary, &m);
        assert!(inflate_msg(&mut Inflater::new(ContextTakeover::Reset), body(&f), 1000).is_ok());
        assert_eq!(
            inflate_msg(&mut Inflater::new(ContextTakeover::Reset), body(&f), 999),
            Err(InflateError::TooBig)
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut inf = Inflater::new(ContextTakeover::Keep);
        assert_eq!(
            inflate_msg(&mut inf, &[0xff; 16], 1000),
            Err(InflateError::Corrupt)
        );
    }
}
