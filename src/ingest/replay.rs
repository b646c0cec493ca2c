//! The replay buffer: the recent events of every (topic, partition), for resume (`since`),
//! SSE `Last-Event-ID`, REST polling and "latest".
//!
//! Invariants:
//! - One writer (the ingest thread, [`ReplayBuffer::append`]); any number of readers (shards,
//!   HTTP). Each partition has its own `Mutex`; nothing holds it while doing I/O and no lock is
//!   shared across partitions. The partition table itself is an `arc-swap`ped map, replaced
//!   only when ingest meets a new partition.
//! - Per partition, offsets only grow; events are shared `Arc<Event>`s (no copy).
//! - `complete_from`: every record of the partition with offset ≥ it is retained. It starts at
//!   the first position ingest read from ([`ReplayBuffer::mark_position`], else the first
//!   appended offset) and moves to `evicted.offset + 1` on each eviction. Offsets can be sparse
//!   (transaction markers): gaps are never inferred from offset arithmetic, only from this mark.
//! - Bounded per partition by records, bytes and age ([`ReplayConfig`]); the first bound reached
//!   evicts the oldest event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use super::config::ReplayConfig;
use crate::event::Event;

/// Estimated bytes per event beyond its frame: the `Arc<Event>` allocation, two deque slots,
/// and the parsed `data` (counted as one more frame length in [`cost`]; the SSE encoding
/// shares the frame's allocation and is counted too).
const EVENT_OVERHEAD: usize = 256;

fn cost(ev: &Event) -> usize {
    2 * ev.ws_frame.len() + ev.sse_frame.len() + ev.channel.len() + EVENT_OVERHEAD
}

/// The result of [`ReplayBuffer::replay`].
#[derive(Debug, Default)]
pub struct Replay {
    /// Retained events of the channel after the `since` positions, oldest first per partition
    /// (partitions in `since` order). Returned even when `recovered` is false.
    pub events: Vec<Arc<Event>>,
    /// False when some `since` position is older than what the buffer retains (or unknown):
    /// the client must reload its state.
    pub recovered: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Default)]
struct PartState {
    /// (append sequence, event), oldest first.
    events: VecDeque<(u64, Arc<Event>)>,
    /// The same events by channel, oldest first.
    by_channel: HashMap<Box<str>, VecDeque<(u64, Arc<Event>)>>,
    bytes: usize,
    complete_from: Option<i64>,
    last_offset: Option<i64>,
}

#[derive(Debug, Default)]
struct PartitionBuf {
    state: Mutex<PartState>,
}

impl PartitionBuf {
    fn lock(&self) -> MutexGuard<'_, PartState> {
        // A panic while holding the lock leaves consistent-enough data (bounded deques).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Table = HashMap<Arc<str>, HashMap<i32, Arc<PartitionBuf>>>;

/// See the module doc. `Send + Sync`; share it as `Arc<ReplayBuffer>`.
#[derive(Debug)]
pub struct ReplayBuffer {
    max_records: usize,
    max_bytes: usize,
    max_age: Duration,
    epoch: u64,
    seq: AtomicU64,
    table: ArcSwap<Table>,
    /// Serializes table growth (ingest only, so uncontended).
    grow: Mutex<()>,
}

impl ReplayBuffer {
    pub fn new(cfg: &ReplayConfig) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // Changes per process start: start time mixed with the pid (splitmix64 finalizer).
        let mut z = nanos ^ (u64::from(std::process::id()) << 32);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ReplayBuffer {
            max_records: cfg.max_records.max(1),
            max_bytes: cfg.max_bytes.max(1),
            max_age: Duration::from_secs(cfg.max_age_s.max(1)),
            epoch: z ^ (z >> 31),
            seq: AtomicU64::new(0),
            table: ArcSwap::from_pointee(Table::new()),
            grow: Mutex::new(()),
        }
    }

    /// Random per process start; a resume cursor from another epoch names other buffers.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionBuf>> {
        self.table.load().get(topic)?.get(&partition).cloned()
    }

    fn partition_or_insert(&self, topic: &Arc<str>, partition: i32) -> Arc<PartitionBuf> {
        if let Some(p) = self.partition(topic, partition) {
            return p;
        }
        let _g = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = self.partition(topic, partition) {
            return p;
        }
        let mut t: Table = (**self.table.load()).clone();
        let p = Arc::new(PartitionBuf::default());
        t.entry(topic.clone())
            .or_default()
            .insert(partition, p.clone());
        self.table.store(Arc::new(t));
        p
    }

    /// Ingest only: the partition is read from `next_offset` on; with no events yet, that is
    /// where the buffer is complete from.
    pub fn mark_position(&self, topic: &Arc<str>, partition: i32, next_offset: i64) {
        let p = self.partition_or_insert(topic, partition);
        let mut st = p.lock();
        if st.events.is_empty() && st.complete_from.is_none_or(|c| c < next_offset) {
            st.complete_from = Some(next_offset);
        }
    }

    /// Ingest thread only. O(1) amortized: the event is shared, evictions pop from the front.
    pub fn append(&self, ev: &Arc<Event>) {
        let p = self.partition_or_insert(&ev.topic, ev.partition);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut st = p.lock();
        if st.last_offset.is_some_and(|l| ev.offset <= l) {
            return; // re-fetched after a seek: already retained
        }
        st.last_offset = Some(ev.offset);
        if st.complete_from.is_none() {
            st.complete_from = Some(ev.offset);
        }
        st.bytes += cost(ev);
        st.events.push_back((seq, ev.clone()));
        // look up first: `entry` would allocate a key per append
        match st.by_channel.get_mut(&*ev.channel) {
            Some(q) => q.push_back((seq, ev.clone())),
            None => {
                st.by_channel
                    .insert(ev.channel.clone(), VecDeque::from([(seq, ev.clone())]));
            }
        }
        self.evict(&mut st, Instant::now());
    }

    fn evict(&self, st: &mut PartState, now: Instant) {
        while let Some((_, front)) = st.events.front() {
            let old = now.saturating_duration_since(front.ingested_at) > self.max_age;
            if !(st.events.len() > self.max_records || st.bytes > self.max_bytes || old) {
                break;
            }
            let Some((_, ev)) = st.events.pop_front() else {
                break;
            };
            st.bytes = st.bytes.saturating_sub(cost(&ev));
            st.complete_from = Some(ev.offset + 1);
            if let Some(q) = st.by_channel.get_mut(&*ev.channel) {
                q.pop_front();
                if q.is_empty() {
                    st.by_channel.remove(&*ev.channel);
                }
            }
        }
    }

    /// Events on `channel` after the given last-seen positions, oldest first per partition.
    /// `since` entries are (topic, partition, last seen offset). Partitions absent from
    /// `since` are not replayed. `recovered = false` (+ reason) when a `since` offset is older
    /// than `complete_from - 1` of its partition, or the partition is unknown here.
    pub fn replay(&self, channel: &str, since: &[(String, i32, i64)]) -> Replay {
        let mut out = Replay {
            events: Vec::new(),
            recovered: true,
            reason: None,
        };
        let now = Instant::now();
        for (topic, partition, last) in since {
            let Some(p) = self.partition(topic, *partition) else {
                out.recovered = false;
                out.reason
                    .get_or_insert_with(|| format!("{topic}/{partition} is not served here"));
                continue;
            };
            let mut st = p.lock();
            self.evict(&mut st, now);
            match st.complete_from {
                Some(c) if *last >= c - 1 => {}
                c => {
                    out.recovered = false;
                    out.reason.get_or_insert_with(|| match c {
                        Some(c) => format!(
                            "{topic}/{partition}:{last} is older than the replay buffer (complete from offset {c})"
                        ),
                        None => format!("{topic}/{partition} has no retained position"),
                    });
                }
            }
            if let Some(q) = st.by_channel.get(channel) {
                let start = q.partition_point(|(_, e)| e.offset <= *last);
                out.events.extend(q.range(start..).map(|(_, e)| e.clone()));
            }
        }
        out
    }

    /// The most recently ingested retained event of `channel`, over all partitions.
    pub fn latest(&self, channel: &str) -> Option<Arc<Event>> {
        let table = self.table.load();
        let mut best: Option<(u64, Arc<Event>)> = None;
        for parts in table.values() {
            for p in parts.values() {
                let st = p.lock();
                if let Some((seq, ev)) = st.by_channel.get(channel).and_then(|q| q.back())
                    && best.as_ref().is_none_or(|(b, _)| seq > b)
                {
                    best = Some((*seq, ev.clone()));
                }
            }
        }
        best.map(|(_, e)| e)
    }

    /// Every partition known here: (topic, partition, `complete_from`).
    pub fn partitions(&self) -> Vec<(Arc<str>, i32, Option<i64>)> {
        let table = self.table.load();
        let mut out: Vec<_> = table
            .iter()
            .flat_map(|(t, parts)| {
                parts
                    .iter()
                    .map(move |(p, b)| (t.clone(), *p, b.lock().complete_from))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// `complete_from` of one partition (see the module doc), if it is known here.
    pub fn complete_from(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partition(topic, partition)?.lock().complete_from
    }

    /// Retained (events, bytes) of one partition.
    pub fn usage(&self, topic: &str, partition: i32) -> (usize, usize) {
        self.partition(topic, partition)
            .map(|p| {
                let st = p.lock();
                (st.events.len(), st.bytes)
            })
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParts;

    fn ev(topic: &Arc<str>, partition: i32, offset: i64, channel: &str, pad: usize) -> Arc<Event> {
        let data = format!("{{\"p\":\"{}\"}}", "x".repeat(pad));
        Arc::new(Event::new(
            EventParts {
                channel,
                topic,
                partition,
                offset,
                ts_ms: 0,
                event_type: None,
                correlation_id: None,
                data_json: data.as_bytes(),
            },
            serde_json::Value::Null,
        ))
    }

    fn cfg(records: usize, bytes: usize, age: u64) -> ReplayConfig {
        ReplayConfig {
            max_records: records,
            max_bytes: bytes,
            max_age_s: age,
        }
    }

    fn offsets(r: &Replay) -> Vec<i64> {
        r.events.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn replays_after_since_per_partition_and_only_given_partitions() {
        let b = ReplayBuffer::new(&cfg(100, 1 << 20, 60));
        let t: Arc<str> = "t".into();
        for o in 0..5 {
            b.append(&ev(&t, 0, o, "a", 0));
            b.append(&ev(&t, 1, o, if o % 2 == 0 { "a" } else { "b" }, 0));
        }
        let r = b.replay("a", &[("t".into(), 0, 2), ("t".into(), 1, 0)]);
        assert!(r.recovered, "{:?}", r.reason);
        assert_eq!(offsets(&r), vec![3, 4, 2, 4]);
        let r = b.replay("a", &[("t".into(), 1, 4)]);
        assert!(r.recovered && r.events.is_empty());
        assert_eq!(b.latest("a").unwrap().offset, 4);
        assert_eq!(b.latest("b").unwrap().partition, 1);
        assert!(b.latest("zzz").is_none());
    }

    #[test]
    fn eviction_by_records_sets_complete_from() {
        let b = ReplayBuffer::new(&cfg(3, 1 << 20, 60));
        let t: Arc<str> = "t".into();
        for o in 10..20 {
            b.append(&ev(&t, 0, o, "a", 0));
        }
        assert_eq!(b.usage("t", 0).0, 3);
        assert_eq!(b.complete_from("t", 0), Some(17));
        let r = b.replay("a", &[("t".into(), 0, 16)]);
        assert!(r.recovered);
        assert_eq!(offsets(&r), vec![17, 18, 19]);
        let r = b.replay("a", &[("t".into(), 0, 15)]);
        assert!(!r.recovered);
        assert!(r.reason.as_deref().unwrap_or("").contains("older"));
        assert_eq!(offsets(&r), vec![17, 18, 19]);
    }

    #[test]
    fn eviction_by_bytes() {
        let b = ReplayBuffer::new(&cfg(1000, 4096, 60));
        let t: Arc<str> = "t".into();
        for o in 0..50 {
            b.append(&ev(&t, 0, o, "a", 500));
        }
        let (n, bytes) = b.usage("t", 0);
        assert!(bytes <= 4096, "{bytes}");
        assert!((1..10).contains(&n), "{n}");
        assert_eq!(b.complete_from("t", 0), Some(50 - n as i64));
    }

    #[test]
    fn eviction_by_age() {
        let b = ReplayBuffer::new(&cfg(1000, 1 << 20, 1));
        let t: Arc<str> = "t".into();
        b.append(&ev(&t, 0, 0, "a", 0));
        b.append(&ev(&t, 0, 1, "a", 0));
        std::thread::sleep(Duration::from_millis(1100));
        b.append(&ev(&t, 0, 2, "a", 0));
        assert_eq!(b.usage("t", 0).0, 1);
        assert_eq!(b.complete_from("t", 0), Some(2));
        std::thread::sleep(Duration::from_millis(1100));
        // readers evict too: an idle partition does not serve stale events
        let r = b.replay("a", &[("t".into(), 0, 2)]);
        assert!(r.recovered && r.events.is_empty());
        assert_eq!(b.complete_from("t", 0), Some(3));
    }

    #[test]
    fn sparse_offsets_are_not_gaps() {
        let b = ReplayBuffer::new(&cfg(100, 1 << 20, 60));
        let t: Arc<str> = "t".into();
        b.mark_position(&t, 0, 100);
        for o in [100, 102, 105, 109] {
            b.append(&ev(&t, 0, o, "a", 0));
        }
        // 101, 103, 104 … were transaction markers: resuming from 102 is exact.
        let r = b.replay("a", &[("t".into(), 0, 102)]);
        assert!(r.recovered);
        assert_eq!(offsets(&r), vec![105, 109]);
        let r = b.replay("a", &[("t".into(), 0, 99)]);
        assert!(r.recovered);
        assert_eq!(offsets(&r), vec![100, 102, 105, 109]);
        let r = b.replay("a", &[("t".into(), 0, 98)]);
        assert!(!r.recovered);
        // duplicates after a re-fetch are ignored
        b.append(&ev(&t, 0, 105, "a", 0));
        assert_eq!(b.usage("t", 0).0, 4);
    }

    #[test]
    fn unknown_partition_and_marked_empty_partition() {
        let b = ReplayBuffer::new(&cfg(100, 1 << 20, 60));
        let t: Arc<str> = "t".into();
        let r = b.replay("a", &[("t".into(), 0, 5)]);
        assert!(!r.recovered);
        b.mark_position(&t, 0, 6);
        assert!(b.replay("a", &[("t".into(), 0, 5)]).recovered);
        assert!(!b.replay("a", &[("t".into(), 0, 4)]).recovered);
        assert_ne!(b.epoch(), 0);
    }
}
