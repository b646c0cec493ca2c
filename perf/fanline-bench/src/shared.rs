//! What every client of this process shares (latency histogram, counters, per-channel
//! sequence bounds) and one client's job description. Both transports (`client.rs` for
//! WebSocket, `sse.rs` for Server-Sent Events) import this; neither imports the other's
//! internals except `client.rs` dispatching to `sse::connect`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use hdrhistogram::Histogram;
/// Highest latency the histogram tracks, in µs (2 minutes).
pub const MAX_LATENCY_US: u64 = 120_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static bounds are valid")
}

/// State shared by all clients of this process. Counters are only summed, never ordered
/// against each other: `Relaxed` everywhere except `sent` (see publisher.rs).
#[derive(Debug)]
pub struct Shared {
    pub hist: Mutex<Histogram<u64>>,
    pub deliveries: AtomicU64,
    pub gaps: AtomicU64,
    pub gap_dropped: AtomicU64,
    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    pub closed_early: AtomicU64,
    pub last_rx_ns: AtomicU64,
    /// Seqs handed to the wire per channel (set by the publisher of this process).
    pub sent: Arc<Vec<AtomicU64>>,
    /// Final per-channel event count, written before `stop` is raised.
    pub end_seq: Mutex<Vec<u64>>,
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(channels: usize) -> Self {
        Self {
            hist: Mutex::new(new_histogram()),
            deliveries: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            gap_dropped: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            last_rx_ns: AtomicU64::new(0),
            sent: Arc::new((0..channels).map(|_| AtomicU64::new(0)).collect()),
            end_seq: Mutex::new(vec![0; channels]),
            first_error: Mutex::new(None),
        }
    }

    pub fn error(&self, e: &anyhow::Error) {
        let mut f = self.first_error.lock().expect("not poisoned");
        f.get_or_insert_with(|| format!("{e:#}"));
    }
}

/// What one client saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientStats {
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

/// One client's job.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub target: SocketAddr,
    pub url: String,
    pub source: Ipv4Addr,
    pub channel: String,
    pub channel_idx: usize,
    /// Stop reading after `subscribed` (a slow consumer).
    pub slow: bool,
    /// `Authorization: Bearer` credential, if any.
    pub token: Option<Arc<str>>,
    /// WebSocket, WebSocket with `permessage-deflate`, or Server-Sent Events.
    pub transport: crate::args::Transport,
}
