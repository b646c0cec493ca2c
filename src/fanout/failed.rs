//! The failed-deliveries log (`GET /v1/deliveries/failed`): a bounded in-memory record of
//! events that did not reach a client — dropped for room in a slow consumer's outbox
//! (`slow_consumer`), still queued when a slow consumer was closed with 4000
//! (`slow_consumer_close`), still queued when any other connection went away (`closed`), or
//! never handed to a shard because its ring was full (`ring_full`; no connection then: every
//! subscriber of that channel on the shard got a `gap`).
//!
//! Layout and locking: one ring per shard, each behind its own mutex that only failures (the
//! owning shard, or the ingest thread for `ring_full`) and the admin reader take. A successful
//! delivery never touches it: no lock, no allocation. A mutex rather than asking shards over
//! their control queue because the ingest thread records `ring_full` (it is not a shard), and
//! because an operator reading the log during a failure storm should not wait for the busy
//! shards' turns. Sequence numbers are global (`seq`, the paging cursor) and taken while
//! holding the recording shard's lock; a page is read holding every shard's lock (in index
//! order), so every sequence number up to the last one handed out is in the log or evicted,
//! never still on its way: paging with `next` returns each entry once.
//!
//! Memory is fixed whatever happens: [`PER_SHARD`] entries per shard, newest kept, each field
//! cut at [`MAX_FIELD`] bytes; once a ring is full a new entry reuses the evicted one's buffer.
//!
//! Each failure is also an ERROR log line with its correlation id, at most
//! [`LINES_PER_SECOND`] per shard; the rest are counted
//! (`fanline_failed_delivery_lines_suppressed_total`) and summarized in one ERROR line when
//! the next second begins (from the next failure or the shard's turn, [`FailedLog::tick`]).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

use crate::event::Event;

/// Entries kept per shard (the oldest is evicted first).
pub const PER_SHARD: usize = 512;
/// Longest stored field (connection id, identity, channel, topic in the event id,
/// correlation id), in bytes; longer ones are cut at a character boundary.
pub const MAX_FIELD: usize = 256;
/// ERROR lines per shard per second; the rest are counted and summarized.
pub const LINES_PER_SECOND: u32 = 10;
/// Most entries one page returns.
pub const MAX_PAGE: usize = 1000;
const WINDOW: Duration = Duration::from_secs(1);

/// Why a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Dropped (oldest first) to keep a slow consumer's outbox under its caps.
    SlowConsumer,
    /// Still queued when the slow consumer was closed with 4000.
    SlowConsumerClose,
    /// Still queued when the connection went away for another reason.
    Closed,
    /// The shard's ring was full; the event never reached the shard.
    RingFull,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::SlowConsumer,
        Reason::SlowConsumerClose,
        Reason::Closed,
        Reason::RingFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SlowConsumer => "slow_consumer",
            Reason::SlowConsumerClose => "slow_consumer_close",
            Reason::Closed => "closed",
            Reason::RingFull => "ring_full",
        }
    }
}

/// One failure as the drop site sees it (borrowed; copied, bounded, into the log).
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// `None` for `ring_full` (no connection: the shard never saw the event).
    pub connection_id: Option<&'a str>,
    pub identity: Option<&'a str>,
    pub event: &'a Event,
    pub reason: Reason,
}

impl<'a> Failure<'a> {
    /// A connection's failure.
    pub fn conn(id: &'a str, identity: &'a str, event: &'a Event, reason: Reason) -> Self {
        Failure {
            connection_id: Some(id),
            identity: Some(identity),
            event,
            reason,
        }
    }

    /// An event a shard's full ring refused.
    pub fn ring_full(event: &'a Event) -> Self {
        Failure {
            connection_id: None,
            identity: None,
            event,
            reason: Reason::RingFull,
        }
    }
}

/// One shard's handle on the log (what a drop site needs). `Copy`, two words.
#[derive(Debug, Clone, Copy)]
pub struct ShardFailed<'a> {
    log: &'a FailedLog,
    shard: usize,
}

impl ShardFailed<'_> {
    /// Records a failed delivery to connection `id` (see [`FailedLog::record`]).
    #[cold]
    pub fn conn(self, id: &str, identity: &str, ev: &Event, reason: Reason) {
        self.log
            .record(self.shard, Failure::conn(id, identity, ev, reason));
    }
}

/// A stored entry. `text` holds the five fields back to back (`ends[i]` is where field `i`
/// ends; `present` has bit `i` set when field `i` is not null).
#[derive(Debug)]
struct Slot {
    seq: u64,
    at_ms: i64,
    reason: Reason,
    text: String,
    ends: [u16; 5],
    present: u8,
}

const FIELDS: [&str; 5] = [
    "connection_id",
    "identity",
    "channel",
    "event_id",
    "correlation_id",
];

impl Slot {
    fn field(&self, i: usize) -> Option<&str> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        (self.present & (1 << i) != 0).then(|| &self.text[start..self.ends[i] as usize])
    }

    fn fill(&mut self, seq: u64, at_ms: i64, f: &Failure<'_>) {
        self.seq = seq;
        self.at_ms = at_ms;
        self.reason = f.reason;
        self.text.clear();
        self.present = 0;
        let ev = f.event;
        self.put(0, f.connection_id);
        self.put(1, f.identity);
        self.put(2, Some(&ev.channel));
        let _ = write!(
            self.text,
            "{}/{}/{}",
            cut(&ev.topic),
            ev.partition,
            ev.offset
        );
        self.present |= 1 << 3;
        self.ends[3] = self.text.len() as u16;
        self.put(4, ev.correlation_id.as_deref());
    }

    fn put(&mut self, i: usize, v: Option<&str>) {
        if let Some(v) = v {
            self.text.push_str(cut(v));
            self.present |= 1 << i;
        }
        self.ends[i] = self.text.len() as u16;
    }

    fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::with_capacity(8);
        m.insert("seq".into(), self.seq.into());
        m.insert("at".into(), self.at_ms.into());
        for (i, name) in FIELDS.iter().enumerate() {
            m.insert((*name).into(), self.field(i).into());
        }
        m.insert("reason".into(), self.reason.as_str().into());
        serde_json::Value::Object(m)
    }
}

/// `s` cut to at most [`MAX_FIELD`] bytes at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The ERROR-line budget of one shard.
#[derive(Debug, Default)]
struct Limiter {
    window: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl Limiter {
    /// Starts a new window if the current one is over; returns the lines suppressed in the
    /// windows before (to summarize).
    fn roll(&mut self, now: Instant) -> u64 {
        if self
            .window
            .is_some_and(|w| now.saturating_duration_since(w) < WINDOW)
        {
            return 0;
        }
        self.window = Some(now);
        self.lines = 0;
        std::mem::take(&mut self.suppressed)
    }

    /// Whether one more line may be logged now.
    fn allow(&mut self) -> bool {
        if self.lines < LINES_PER_SECOND {
            self.lines += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

#[derive(Debug, Default)]
struct ShardRing {
    slots: VecDeque<Slot>,
    limiter: Limiter,
}

#[derive(Debug, Default)]
struct ShardLog {
    ring: Mutex<ShardRing>,
    /// Suppressed lines wait for a summary (read by [`FailedLog::tick`] without the lock).
    pending_summary: AtomicBool,
}

/// The log: one bounded ring per shard and the global sequence.
#[derive(Debug)]
pub struct FailedLog {
    shards: Box<[CachePadded<ShardLog>]>,
    /// The last sequence number handed out (taken under a shard lock).
    seq: AtomicU64,
    recorded: [AtomicU64; 4],
    suppressed: AtomicU64,
}

/// One page of the log.
#[derive(Debug)]
pub struct Page {
    pub failed: Vec<serde_json::Value>,
    /// The cursor to ask with next (`since`).
    pub next: u64,
    /// Entries after `since` that were evicted before this read (newest kept).
    pub missed: u64,
}

impl FailedLog {
    pub fn new(shards: usize) -> FailedLog {
        FailedLog {
            shards: (0..shards).map(|_| CachePadded::default()).collect(),
            seq: AtomicU64::new(0),
            recorded: Default::default(),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Shard `shard`'s handle (recording for a shard the log does not have is a no-op).
    pub fn shard(&self, shard: usize) -> ShardFailed<'_> {
        ShardFailed { log: self, shard }
    }

    /// Entries the log can hold in all.
    pub fn capacity(&self) -> usize {
        self.shards.len() * PER_SHARD
    }

    fn lock(&self, shard: usize) -> Option<MutexGuard<'_, ShardRing>> {
        let s = self.shards.get(shard)?;
        Some(s.ring.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records one failed delivery seen by `shard` (the shard whose connection or ring it
    /// was) and logs it at ERROR within the shard's line budget. Failure path only.
    pub fn record(&self, shard: usize, f: Failure<'_>) {
        let Some(mut ring) = self.lock(shard) else {
            return;
        };
        let now = Instant::now();
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let mut slot = if ring.slots.len() >= PER_SHARD {
            ring.slots.pop_front()
        } else {
            None
        }
        .unwrap_or_else(|| Slot {
            seq: 0,
            at_ms: 0,
            reason: f.reason,
            text: String::new(),
            ends: [0; 5],
            present: 0,
        });
        slot.fill(seq, at_ms, &f);
        ring.slots.push_back(slot);
        self.recorded[f.reason as usize].fetch_add(1, Relaxed);
        let summary = ring.limiter.roll(now);
        let log = ring.limiter.allow();
        if !log {
            self.suppressed.fetch_add(1, Relaxed);
            self.shards[shard].pending_summary.store(true, Relaxed);
        }
        drop(ring);
        if summary > 0 {
            summarize(shard, summary);
        }
        if log {
            let ev = f.event;
            tracing::error!(
                reason = f.reason.as_str(),
                connection_id = f.connection_id.unwrap_or("-"),
                identity = f.identity.unwrap_or("-"),
                channel = %ev.channel,
                event_id = %format_args!("{}/{}/{}", ev.topic, ev.partition, ev.offset),
                correlation_id = ev.correlation_id.as_deref().unwrap_or("-"),
                seq,
                "delivery failed"
            );
        }
    }

    /// Called once per shard turn: logs the summary of lines suppressed in an elapsed
    /// window when no later failure did. One relaxed load when there is nothing to do.
    pub fn tick(&self, shard: usize, now: Instant) {
        let Some(s) = self.shards.get(shard) else {
            return;
        };
        if !s.pending_summary.load(Relaxed) {
            return;
        }
        let Some(mut ring) = self.lock(shard) else {
            return;
        };
        let over = ring
            .limiter
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= WINDOW);
        if !over {
            return;
        }
        let n = std::mem::take(&mut ring.limiter.suppressed);
        ring.limiter.window = None;
        s.pending_summary.store(false, Relaxed);
        drop(ring);
        if n > 0 {
            summarize(shard, n);
        }
    }

    /// Up to `limit` entries with `seq > since`, oldest first, from every shard.
    pub fn page(&self, since: u64, limit: usize) -> Page {
        let limit = limit.clamp(1, MAX_PAGE);
        let rings: Vec<_> = (0..self.shards.len())
            .filter_map(|i| self.lock(i))
            .collect();
        // Every seq up to `last` is in a ring or evicted (all locks held).
        let last = self.seq.load(Relaxed);
        let mut kept_after = 0u64;
        let mut picked: Vec<&Slot> = Vec::new();
        for r in &rings {
            let from = r.slots.partition_point(|s| s.seq <= since);
            kept_after += (r.slots.len() - from) as u64;
            picked.extend(r.slots.range(from..).take(limit));
        }
        picked.sort_unstable_by_key(|s| s.seq);
        picked.truncate(limit);
        let failed: Vec<_> = picked.iter().map(|s| s.to_json()).collect();
        let next = picked.last().map_or(since.min(last), |s| s.seq);
        let missed = last.saturating_sub(since).saturating_sub(kept_after);
        Page {
            failed,
            next,
            missed,
        }
    }

    /// Entries held now (all shards).
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .filter_map(|i| self.lock(i).map(|r| r.slots.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prometheus text for the log's counters (appended to `/metrics`).
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str(
            "# HELP fanline_failed_deliveries_total Failed deliveries recorded in the failed-deliveries log, by reason.\n\
             # TYPE fanline_failed_deliveries_total counter\n",
        );
        for r in Reason::ALL {
            let _ = writeln!(
                out,
                "fanline_failed_deliveries_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.recorded[r as usize].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fanline_failed_delivery_lines_suppressed_total Failed-delivery ERROR lines not logged (rate limit).\n\
             # TYPE fanline_failed_delivery_lines_suppressed_total counter\n\
             fanline_failed_delivery_lines_suppressed_total {}",
            self.suppressed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP fanline_failed_deliveries_log_entries Entries held by the failed-deliveries log (at most fanline_failed_deliveries_log_capacity).\n\
             # TYPE fanline_failed_deliveries_log_entries gauge\n\
             fanline_failed_deliveries_log_entries {}\n\
             # HELP fanline_failed_deliveries_log_capacity Entries the failed-deliveries log holds at most.\n\
             # TYPE fanline_failed_deliveries_log_capacity gauge\n\
             fanline_failed_deliveries_log_capacity {}",
            self.len(),
            self.capacity()
        );
    }
}

fn summarize(shard: usize, n: u64) {
    tracing::error!(
        shard,
        suppressed = n,
        "delivery failed: {n} more failures not logged (rate limit); see GET /v1/deliveries/failed"
    );
}

#[cfg(test)]
#[path = "failed_tests.rs"]
mod tests;
