//! fanline WebSocket protocol v1 (SPEC §4): JSON text frames.
//!
//! - [`client`]: what clients send (subscribe, unsubscribe, ping), parsed with clear errors.
//! - [`server`]: what the server sends (welcome, subscribed, error, pong, gap, status), as
//!   ready-to-write WebSocket frames.
//! - [`cursor`]: resume cursors (`since`, `?since=`, the SSE `id:` token) and epochs.
//! - [`filter`]: subscription filters: AND across keys, OR within a list.

pub mod client;
pub mod cursor;
pub mod filter;
pub mod server;

pub use client::{ClientError, ClientMessage, Since};
pub use cursor::Cursor;
pub use filter::Filter;

/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
