//! fanline: a Kafka → WebSocket fan-out gateway.
//!
//! Codemap, in the order an event travels:
//!
//! ```text
//! ingest/     one thread: Kafka records (or direct publishes) -> routes -> Event, replay buffer
//! event.rs    Event: the envelope, encoded ONCE into a shared `Bytes` WebSocket frame
//! fanout/     subscription snapshot (arc-swap: channel -> shard mask) and per-shard rings
//! shard/      one reactor thread per core: mio poll, slab of connections, timer wheel,
//!             local channel -> connections index, outbox with drop-oldest backpressure
//! conn/       connection state machine: HTTP head -> auth -> 101 -> WebSocket session
//! http/       sans-I/O HTTP/1.1 request head parsing and responses (httparse)
//! ws/         sans-I/O RFC 6455 codec: decode masked client frames, encode server frames
//! protocol/   fanline protocol v1: client messages, server messages, filters
//! io/         the only place that calls libc: writev, socket options
//! admin/      admin listener: metrics, stats, publish (never blocks a shard)
//! auth/       credentials, JWT, API keys, channel ACL: pure functions, no I/O
//! metrics.rs  counters: per-shard cache-padded atomics, summed at scrape time
//! server.rs   `Server`: wires config -> ingest, shards, admin; shutdown
//! config.rs   TOML file + FANLINE_* env + flags
//! ```
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod admin;
pub mod auth;
pub mod config;
pub mod conn;
pub mod event;
pub mod fanout;
pub mod http;
pub mod ingest;
#[allow(unsafe_code)]
pub mod io;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod ws;
