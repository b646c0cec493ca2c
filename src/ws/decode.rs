//! Client frame decoding (RFC 6455 §5): masked frames in, whole messages out. Sans-I/O.
//!
//! Owns: header parsing, the protocol rules a server must enforce on client frames, payload
//! unmasking, fragment reassembly, UTF-8 validation of text and close reasons, the message size
//! limit. Does not own: replying (pong, close echo) or closing — the caller does that, guided by
//! [`DecodeError::close_code`].
//!
//! Invariants:
//! - A frame header is checked as soon as its first two bytes arrive and consumed from `buf`
//!   once complete; its payload stays at the front of `buf` until the whole payload is there, and
//!   the prefix that has arrived is unmasked **in place** (and, for text, UTF-8 validated) as it
//!   arrives: `head.done` bytes at the front of `buf` are already unmasked. The caller must
//!   therefore pass the same `buf` on every call and only append to it.
//! - A data frame whose declared length, or whose length added to the fragments already held,
//!   exceeds `max_message_bytes` is rejected from its header, before any payload is buffered.
//!   Held memory is thus bounded by `max_message_bytes` (+ a 125-byte control frame).
//! - A complete single-frame message is handed out zero-copy (`split_to` + `freeze`); only
//!   fragmented messages are copied into the decoder's own buffer.
//! - After an error the decoder is poisoned: every later call returns the same error.
//! - With `permessage-deflate` negotiated ([`Decoder::with_deflate`]), RSV1 on the first frame
//!   of a text/binary message marks it compressed: its frames are inflated as they complete
//!   (UTF-8 is validated on the inflated bytes), and the message limit applies AFTER inflation
//!   (see [`super::deflate::Inflater`]: a bomb is rejected before its size is allocated). The
//!   compressed wire bytes of a frame are bounded by the limit plus 1/16 (stored blocks).

use bytes::{Buf, Bytes, BytesMut};

use super::deflate::{InflateError, Inflater};
use super::encode::OpCode;
use super::extensions::ContextTakeover;
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping (≤ 125 bytes): the caller answers with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong (≤ 125 bytes), e.g. the answer to our heartbeat.
    Pong(Bytes),
    /// A close frame; `None` when it carried no payload. The caller echoes a close (the same
    /// code, or 1000 for `None`) unless it initiated the close, then closes the socket.
    Close(Option<CloseFrame>),
}

/// Payload of a non-empty close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// A code valid on the wire: 1000-1003, 1007-1011, 3000-4999.
    pub code: u16,
    /// The reason; valid UTF-8 (possibly empty).
    pub reason: Bytes,
}

/// A protocol violation by the client. For every variant the caller sends a close frame with
/// [`DecodeError::close_code`], stops reading messages, and closes the socket once the client
/// answers the close (or after a short timeout). `Copy`; never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A client frame without the mask bit (§5.1). Close 1002.
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// RSV1-3 set while no extension was negotiated (§5.2), RSV2/RSV3 ever, or RSV1 on a
    /// control or continuation frame (RFC 7692 §6.1). Close 1002.
    #[error("reserved bits set without an extension")]
    ReservedBits,
    /// Opcode 0x3-0x7 or 0xB-0xF (§5.2). Close 1002.
    #[error("reserved opcode")]
    ReservedOpcode,
    /// Control frame with a payload over 125 bytes (§5.5). Close 1002.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// Control frame without FIN (§5.5). Close 1002.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// Continuation frame with no fragmented message in progress (§5.4). Close 1002.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// New text/binary frame while a fragmented message is in progress (§5.4). Close 1002.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// Text message or close reason that is not UTF-8 (§8.1). Close 1007.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// Close code not allowed on the wire (§7.4): < 1000, 1004-1006, 1012-2999 outside the
    /// registered 1012-1014, 1015, ≥ 5000. Close 1002.
    #[error("invalid close code")]
    InvalidCloseCode,
    /// Close payload of exactly one byte (§5.5.1). Close 1002.
    #[error("close payload of one byte")]
    BadClosePayload,
    /// Message (declared frame length, or fragments summed) over `max_message_bytes`. Close 1009.
    #[error("message too big")]
    TooBig,
    /// A compressed message that is not a valid DEFLATE stream (RFC 7692 §7.2.2). Close 1007.
    #[error("invalid compressed data")]
    BadDeflate,
}

impl From<InflateError> for DecodeError {
    fn from(e: InflateError) -> DecodeError {
        match e {
            InflateError::TooBig => DecodeError::TooBig,
            InflateError::Corrupt => DecodeError::BadDeflate,
        }
    }
}

impl DecodeError {
    /// The close code to send the client: 1002 protocol error, 1007 invalid data, 1009 too big.
    pub fn close_code(self) -> u16 {
        match self {
            DecodeError::InvalidUtf8 | DecodeError::BadDeflate => 1007,
            DecodeError::TooBig => 1009,
            _ => 1002,
        }
    }
}

/// Header of the frame whose payload is being received.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    op: OpCode,
    key: [u8; 4],
    /// How the message this frame belongs to is coded (continuations inherit it).
    coding: Coding,
    /// Payload length (≤ `max_message_bytes`, or ≤ 125 for control frames).
    len: usize,
    /// Payload bytes at the front of `buf` already unmasked (and validated if text).
    done: usize,
}

/// Whether a message is sent as is or compressed (`permessage-deflate`, RSV1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Plain,
    Deflated,
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Body,
}

/// The payload of a fragmented message so far.
#[derive(Debug)]
enum Body {
    /// Unmasked wire bytes.
    Plain(BytesMut),
    /// Inflated bytes of a compressed message.
    Inflated(Vec<u8>),
}

/// Per-connection decoder. Allocates nothing until a fragmented message arrives.
/// May only be used from one thread at a time (it is `Send`, not shared).
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    head: Option<Head>,
    /// Boxed: fragmented messages are rare, an idle socket should not carry room for one.
    partial: Option<Box<Partial>>,
    /// Validates the text message in progress (single frame or fragments).
    utf8: Utf8Validator,
    /// `Some` when `permessage-deflate` was negotiated: the client's context takeover.
    deflate: Option<ContextTakeover>,
    /// Created at the first compressed message (an idle socket holds no ~43 KiB inflate
    /// state) and, with [`ContextTakeover::Reset`], dropped again after each message.
    inflater: Option<Box<Inflater>>,
    failed: Option<DecodeError>,
}

impl Decoder {
    /// A decoder accepting messages up to `max_message_bytes` of payload.
    pub fn new(max_message_bytes: usize) -> Decoder {
        Decoder {
            max: max_message_bytes,
            head: None,
            partial: None,
            utf8: Utf8Validator::new(),
            deflate: None,
            inflater: None,
            failed: None,
        }
    }

    /// A decoder for a connection that negotiated `permessage-deflate`: `max_message_bytes`
    /// bounds messages after inflation; `client` is the client's context takeover.
    pub fn with_deflate(max_message_bytes: usize, client: ContextTakeover) -> Decoder {
        Decoder {
            deflate: Some(client),
            ..Decoder::new(max_message_bytes)
        }
    }

    /// Decodes the next complete message from the front of `buf`, removing the bytes it
    /// consumed. `Ok(None)`: need more bytes (everything consumed so far is kept in the decoder
    /// or `buf`). Cost: O(new bytes) per call; a payload is unmasked and validated only once.
    ///
    /// Pass the same `buf` every call and only append to it (or `reserve`): a partially received
    /// payload is unmasked in place at its front. Call again after `Ok(Some(_))`: more messages
    /// may already be buffered. After `Err(e)` every call returns `Err(e)`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.decode_inner(buf);
        if let Err(e) = r {
            self.failed = Some(e);
            self.partial = None;
        }
        r
    }

    /// Between messages with nothing held: no frame or fragmented message in progress, no
    /// inflate context kept (a fresh decoder would behave the same from here).
    pub fn at_rest(&self) -> bool {
        self.head.is_none()
            && self.partial.is_none()
            && self.inflater.is_none()
            && self.failed.is_none()
    }

    /// Bytes held by the decoder itself (fragments of the message in progress).
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| match &p.data {
            Body::Plain(b) => b.len(),
            Body::Inflated(v) => v.len(),
        })
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        loop {
            let head = match self.head {
                Some(h) => h,
                None => match self.parse_head(buf)? {
                    Some(h) => {
                        self.head = Some(h);
                        h
                    }
                    None => return Ok(None),
                },
            };
            let head = self.advance_payload(head, buf)?;
            if head.done < head.len {
                self.head = Some(head);
                return Ok(None);
            }
            self.head = None;
            let payload = buf.split_to(head.len);
            if let Some(msg) = self.finish_frame(head, payload)? {
                return Ok(Some(msg));
            }
        }
    }

    /// Parses and checks a frame header at the front of `buf`; consumes it once complete.
    fn parse_head(&mut self, buf: &mut BytesMut) -> Result<Option<Head>, DecodeError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x30 != 0 || (b0 & 0x40 != 0 && self.deflate.is_none()) {
            return Err(DecodeError::ReservedBits);
        }
        let op = OpCode::from_u8(b0 & 0x0F).ok_or(DecodeError::ReservedOpcode)?;
        let coding = match (b0 & 0x40 != 0, op) {
            (true, OpCode::Text | OpCode::Binary) => Coding::Deflated,
            (true, _) => return Err(DecodeError::ReservedBits),
            (false, OpCode::Continuation) => match self.partial.as_ref().map(|p| &p.data) {
                Some(Body::Inflated(_)) => Coding::Deflated,
                _ => Coding::Plain,
            },
            (false, _) => Coding::Plain,
        };
        if b1 & 0x80 == 0 {
            return Err(DecodeError::UnmaskedFrame);
        }
        let len7 = b1 & 0x7F;
        if op.is_control() {
            if !fin {
                return Err(DecodeError::FragmentedControl);
            }
            if len7 > 125 {
                return Err(DecodeError::ControlTooLong);
            }
        } else if op == OpCode::Continuation {
            if self.partial.is_none() {
                return Err(DecodeError::UnexpectedContinuation);
            }
        } else if self.partial.is_some() {
            return Err(DecodeError::ExpectedContinuation);
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if buf.len() < 2 + ext + 4 {
            // Fail fast on a too-big data frame even before the mask key arrives.
            if !op.is_control() && buf.len() >= 2 + ext {
                self.check_size(read_len(len7, &buf[2..2 + ext]), coding)?;
            }
            return Ok(None);
        }
        let declared = read_len(len7, &buf[2..2 + ext]);
        let len = if op.is_control() {
            declared as usize
        } else {
            self.check_size(declared, coding)?
        };
        let key = [buf[2 + ext], buf[3 + ext], buf[4 + ext], buf[5 + ext]];
        buf.advance(2 + ext + 4);
        if op == OpCode::Text {
            self.utf8.reset();
        }
        Ok(Some(Head {
            fin,
            op,
            key,
            coding,
            len,
            done: 0,
        }))
    }

    /// Checks a data frame's declared length against the limit, counting held fragments.
    /// Compressed frames get 1/16 more (incompressible data grows slightly); their inflated
    /// size is checked as it is produced.
    fn check_size(&self, declared: u64, coding: Coding) -> Result<usize, DecodeError> {
        let held = self.buffered() as u64;
        let max = match coding {
            Coding::Plain => self.max as u64,
            Coding::Deflated => self.max as u64 + self.max as u64 / 16 + 64,
        };
        match declared.checked_add(held) {
            Some(total) if total <= max => Ok(declared as usize),
            _ => Err(DecodeError::TooBig),
        }
    }

    /// Unmasks (and validates, for text) the payload bytes that arrived since the last call.
    fn advance_payload(&mut self, mut head: Head, buf: &mut BytesMut) -> Result<Head, DecodeError> {
        let avail = buf.len().min(head.len);
        if avail > head.done {
            let fresh = &mut buf[head.done..avail];
            apply_mask(fresh, head.key, head.done);
            if head.coding == Coding::Plain && self.is_text(head.op) {
                self.utf8
                    .feed(fresh)
                    .map_err(|_| DecodeError::InvalidUtf8)?;
            }
            head.done = avail;
        }
        Ok(head)
    }

    /// Text frame, or continuation of a text message (wire bytes of plain messages only).
    fn is_text(&self, op: OpCode) -> bool {
        match op {
            OpCode::Text => true,
            OpCode::Continuation => self.partial.as_ref().is_some_and(|p| p.text),
            _ => false,
        }
    }

    /// Turns a complete, unmasked frame into a message, or folds it into a fragmented one.
    fn finish_frame(
        &mut self,
        head: Head,
        payload: BytesMut,
    ) -> Result<Option<Message>, DecodeError> {
        let text_done = |v: &Utf8Validator| {
            if v.is_complete() {
                Ok(())
            } else {
                Err(DecodeError::InvalidUtf8)
            }
        };
        if head.coding == Coding::Deflated {
            return self.finish_deflated(head, payload);
        }
        match head.op {
            OpCode::Ping => Ok(Some(Message::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            OpCode::Close => parse_close(payload.freeze()).map(|c| Some(Message::Close(c))),
            OpCode::Text | OpCode::Binary if head.fin => {
                if head.op == OpCode::Text {
                    text_done(&self.utf8)?;
                    Ok(Some(Message::Text(payload.freeze())))
                } else {
                    Ok(Some(Message::Binary(payload.freeze())))
                }
            }
            OpCode::Text | OpCode::Binary => {
                self.partial = Some(Box::new(Partial {
                    text: head.op == OpCode::Text,
                    data: Body::Plain(payload),
                }));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(Partial {
                    text,
                    data: Body::Plain(data),
                }) = self.partial.as_deref_mut()
                else {
                    return Err(DecodeError::UnexpectedContinuation);
                };
                data.extend_from_slice(&payload);
                if !head.fin {
                    return Ok(None);
                }
                let text = *text;
                let data = std::mem::take(data);
                self.partial = None;
                if text {
                    text_done(&self.utf8)?;
                    Ok(Some(Message::Text(data.freeze())))
                } else {
                    Ok(Some(Message::Binary(data.freeze())))
                }
            }
        }
    }

    /// Inflates a complete frame of a compressed message; at FIN, hands out the message.
    fn finish_deflated(
        &mut self,
        head: Head,
        payload: BytesMut,
    ) -> Result<Option<Message>, DecodeError> {
        let (text, mut data) = match (head.op, self.partial.take().map(|p| *p)) {
            (
                OpCode::Continuation,
                Some(Partial {
                    text,
                    data: Body::Inflated(v),
                }),
            ) => (text, v),
            (OpCode::Text | OpCode::Binary, None) => (head.op == OpCode::Text, Vec::new()),
            _ => return Err(DecodeError::UnexpectedContinuation),
        };
        let context = self.deflate.ok_or(DecodeError::ReservedBits)?;
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(context)));
        let start = data.len();
        inflater.frame(&payload, &mut data, self.max)?;
        if head.fin {
            inflater.finish(&mut data, self.max)?;
            if context == ContextTakeover::Reset {
                self.inflater = None;
            }
        }
        if text {
            self.utf8
                .feed(&data[start..])
                .map_err(|_| DecodeError::InvalidUtf8)?;
        }
        if !head.fin {
            self.partial = Some(Box::new(Partial {
                text,
                data: Body::Inflated(data),
            }));
            return Ok(None);
        }
        if !text {
            return Ok(Some(Message::Binary(Bytes::from(data))));
        }
        if !self.utf8.is_complete() {
            return Err(DecodeError::InvalidUtf8);
        }
        Ok(Some(Message::Text(Bytes::from(data))))
    }
}

/// Extended payload length (§5.2): `len7` itself, or the 16/64-bit big-endian field.
fn read_len(len7: u8, ext: &[u8]) -> u64 {
    match ext.len() {
        2 => u16::from_be_bytes([ext[0], ext[1]]) as u64,
        8 => u64::from_be_bytes(ext.try_into().expect("8 bytes")),
        _ => len7 as u64,
    }
}

/// Validates a close payload (§5.5.1, §7.4): empty, or a valid code + UTF-8 reason.
fn parse_close(mut p: Bytes) -> Result<Option<CloseFrame>, DecodeError> {
    match p.len() {
        0 => Ok(None),
        1 => Err(DecodeError::BadClosePayload),
        _ => {
            let code = p.get_u16();
            if !close_code_is_valid(code) {
                return Err(DecodeError::InvalidCloseCode);
            }
            std::str::from_utf8(&p).map_err(|_| DecodeError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason: p }))
        }
    }
}

/// Codes a peer may send (§7.4.1 + IANA registry): 1000-1003, 1007-1014, 3000-4999.
pub fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
