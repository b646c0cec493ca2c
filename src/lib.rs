//! fanline: a Kafka → WebSocket fan-out gateway.
//!
//! Codemap, top to bottom; each folder imports only what sits below it:
//!
//! ```text
//! server.rs   `Server`: wires config -> ingest, shards, admin; reload; shutdown
//! reload.rs   SIGHUP: check a re-read config whole, then swap routes, limits, auth, TLS, log level
//! admin/      admin listener: metrics, stats, connections, publish (never blocks a shard;
//!             asks shards through their control queue in state.rs)
//! shard/      one reactor thread per core: I/O backend, accept, slab of connections, timer
//!             wheel, local channel index (implements conn::Subscriptions); one turn =
//!             read -> drain event ring -> drain control queue -> timers -> flush -> remove
//! conn/       one connection end to end, sans-I/O over a `conn::Env` the shard lends per
//!             call (now, &ServerState, metrics, Subscriptions): read.rs (plain/TLS bytes,
//!             HTTP head, PROXY v2, upgrade, session start), deliver (the delivery policy:
//!             filter, resume dedup, drop-oldest, gap), handshake, session, sse, rest,
//!             tls, outbox (drop-oldest backpressure, one send per flush)
//! state.rs    ServerState: server-wide read-mostly state and readiness; AdminQuery and the
//!             per-shard ControlQueue
//! ingest/     one thread: Kafka records (or direct publishes) -> routes -> Event, replay buffer
//! fanout/     subscription snapshot (arc-swap: channel -> shard mask) and per-shard event rings
//! event.rs    Event: the envelope, encoded ONCE into a shared `Bytes` WebSocket frame
//! auth/       credentials, JWT, API keys, channel ACL, connection and per-identity (tier)
//!             limiters: no I/O
//! http/       sans-I/O HTTP/1.1 request head parsing and responses (httparse)
//! ws/         sans-I/O RFC 6455 codec: decode masked client frames, encode server frames
//! protocol/   fanline protocol v1: client messages, server messages, filters
//! io/         the only place that calls libc: writev, socket options, rlimits, the
//!             epoll and io_uring backends behind one interface (`io::Backend`)
//! metrics.rs  counters: per-shard cache-padded atomics, summed at scrape time
//! clock.rs    Stamp: 4-byte wrapping millisecond times for per-connection deadlines
//! config/     TOML file + FANLINE_* env + flags; [auth] and [kafka]/[[route]] sections
//! ```
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod admin;
pub mod auth;
pub mod clock;
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
pub mod reload;
pub mod server;
pub mod shard;
pub mod state;
pub mod ws;
