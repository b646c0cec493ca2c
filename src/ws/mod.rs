//! Sans-I/O RFC 6455 server codec: bytes in, frames/messages out; no sockets, no clocks.
//!
//! - [`encode`]: unmasked server frames (header encoding, close/ping/pong/text builders) and, for
//!   tests and load generators, masked client frames.
//! - [`decode`]: masked client frames -> [`Message`]s; fragmentation, UTF-8, control-frame rules,
//!   size limit; errors carry the close code to send.
//! - [`extensions`]: `permessage-deflate` negotiation (RFC 7692 offers → response).
//! - [`deflate`]: the once-per-event compressor and the bounded per-connection inflater.
//! - [`mask`]: payload (un)masking, word at a time.
//! - [`utf8`]: incremental UTF-8 validation across partial frames and fragments.

pub mod decode;
pub mod deflate;
pub mod encode;
pub mod extensions;
pub mod mask;
pub mod utf8;

pub use decode::{CloseFrame, DecodeError, Decoder, Message};
pub use encode::{
    OpCode, binary_frame, close_frame, frame_header, masked_frame, ping_frame, pong_frame,
    text_frame,
};
