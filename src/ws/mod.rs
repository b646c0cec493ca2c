//! Sans-I/O RFC 6455 server codec: bytes in, frames/messages out; no sockets, no clocks.
//!
//! - [`encode`]: unmasked server frames (header encoding, close/ping/pong/text builders).
//! - decode: masked client frames, fragmentation, UTF-8, control-frame rules (see `decode.rs`).

pub mod encode;

pub use encode::{OpCode, close_frame, frame_header, ping_frame, pong_frame, text_frame};
