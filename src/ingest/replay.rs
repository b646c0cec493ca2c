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
//! - The epoch ([`ReplayBuffer::epoch`]) names the log the offsets belong to: random per start
//!   (embedded cluster, `direct` mode) until ingest derives a stable one from the Kafka cluster
//!   id ([`ReplayBuffer::set_epoch`]), before any partition is assigned.
//! - Resume (`since`, `Last-Event-ID`, REST cursors) is in [`resume`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::config::ReplayConfig;
use crate::event::Event;

pub mod resume;
pub use resume::{ChannelPattern, PartResume, Reason, Resume, Start};

/// Estimated bytes per event beyond its frame: the `Arc<Event>` allocation, two deque slots,
/// and the parsed `data` (counted as one more frame length in [`cost`]; the SSE encoding
/// shares the frame's allocation and is counted too).
const EVENT_OVERHEAD: usize = 256;

fn cost(ev: &Event) -> usize {
    2 * ev.ws_frame.len() + ev.sse_frame.len() + ev.channel.len() + EVENT_OVERHEAD
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

/// (topic, the channels it can carry), from the routes.
pub type ChannelTopics = Vec<(Arc<str>, ChannelPattern)>;

/// See the module doc. `Send + Sync`; share it as `Arc<ReplayBuffer>`.
#[derive(Debug)]
pub struct ReplayBuffer {
    max_records: usize,
    max_bytes: usize,
    max_age: Duration,
    epoch: AtomicU64,
    seq: AtomicU64,
    /// Which topics can carry which channels (`None`: any topic any channel).
    channel_topics: ArcSwap<Option<ChannelTopics>>,
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
            epoch: AtomicU64::new(z ^ (z >> 31)),
            seq: AtomicU64::new(0),
            channel_topics: ArcSwap::from_pointee(None),
            table: ArcSwap::from_pointee(Table::new()),
            grow: Mutex::new(()),
        }
    }

    /// The log the offsets belong to (see the module doc); a resume cursor from another
    /// epoch names other offsets.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Ingest only, before partitions are assigned: a stable epoch (e.g. from the Kafka
    /// cluster id, so replicas reading one cluster agree and a restart keeps it).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Ingest only, at start: which topics can carry which channels (from the routes). Until
    /// set, every topic may carry every channel (`direct` mode, the default route).
    pub fn set_channel_topics(&self, topics: ChannelTopics) {
        self.channel_topics.store(Arc::new(Some(topics)));
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

    /// The most recently ingested retained event of `channel` that passes `keep` (e.g. an
    /// identity's forced filter), over all partitions. Scans each partition from its newest
    /// event back to the first that passes.
    pub fn latest_matching(
        &self,
        channel: &str,
        keep: impl Fn(&Event) -> bool,
    ) -> Option<Arc<Event>> {
        let table = self.table.load();
        let mut best: Option<(u64, Arc<Event>)> = None;
        for parts in table.values() {
            for p in parts.values() {
                let st = p.lock();
                let Some(q) = st.by_channel.get(channel) else {
                    continue;
                };
                // newer than the best so far, and kept
                let found = q
                    .iter()
                    .rev()
                    .take_while(|(seq, _)| best.as_ref().is_none_or(|(b, _)| seq > b))
                    .find(|(_, ev)| keep(ev));
                if let Some((seq, ev)) = found {
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

    pub(super) fn ev(
        topic: &Arc<str>,
        partition: i32,
        offset: i64,
        channel: &str,
        pad: usize,
    ) -> Arc<Event> {
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

    pub(super) fn cfg(records: usize, bytes: usize, age: u64) -> ReplayConfig {
        ReplayConfig {
            max_records: records,
            max_bytes: bytes,
            max_age_s: age,
        }
    }

    fn offsets(r: &Resume) -> Vec<i64> {
        r.events.iter().map(|e| e.offset).collect()
    }

    /// Resumes channel `ch` after `since` (topic, partition, offset).
    fn replay(b: &ReplayBuffer, ch: &str, since: &[(&str, i32, i64)]) -> Resume {
        let q: Vec<String> = since
            .iter()
            .map(|(t, p, o)| format!("{t}/{p}:{o}"))
            .collect();
        let c = crate::protocol::Cursor::parse_query(&q.join(",")).expect("cursor");
        b.resume(&[ch], Start::Cursor(&c))
    }

    #[test]
    fn replays_after_since_per_partition() {
        let b = ReplayBuffer::new(&cfg(100, 1 << 20, 60));
        let t: Arc<str> = "t".into();
        for o in 0..5 {
            b.append(&ev(&t, 0, o, "a", 0));
            b.append(&ev(&t, 1, o, if o % 2 == 0 { "a" } else { "b" }, 0));
        }
        let r = replay(&b, "a", &[("t", 0, 2), ("t", 1, 0)]);
        assert!(r.lost.is_none(), "{:?}", r.lost);
        assert_eq!(offsets(&r), vec![3, 4, 2, 4]);
        let r = replay(&b, "a", &[("t", 0, 4), ("t", 1, 4)]);
        assert!(r.lost.is_none() && r.events.is_empty());
        assert_eq!(b.latest_matching("a", |_| true).unwrap().offset, 4);
        assert_eq!(b.latest_matching("b", |_| true).unwrap().partition, 1);
        assert!(b.latest_matching("zzz", |_| true).is_none());
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
        let r = replay(&b, "a", &[("t", 0, 16)]);
        assert!(r.lost.is_none());
        assert_eq!(offsets(&r), vec![17, 18, 19]);
        let r = replay(&b, "a", &[("t", 0, 15)]);
        let (reason, detail) = r.lost.clone().unwrap();
        assert_eq!(reason, Reason::TooOld);
        assert!(detail.contains("older"), "{detail}");
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
        let r = replay(&b, "a", &[("t", 0, 2)]);
        assert!(r.lost.is_none() && r.events.is_empty());
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
        let r = replay(&b, "a", &[("t", 0, 102)]);
        assert!(r.lost.is_none());
        assert_eq!(offsets(&r), vec![105, 109]);
        let r = replay(&b, "a", &[("t", 0, 99)]);
        assert!(r.lost.is_none());
        assert_eq!(offsets(&r), vec![100, 102, 105, 109]);
        let r = replay(&b, "a", &[("t", 0, 98)]);
        assert!(r.lost.is_some());
        // duplicates after a re-fetch are ignored
        b.append(&ev(&t, 0, 105, "a", 0));
        assert_eq!(b.usage("t", 0).0, 4);
    }

    #[test]
    fn unknown_partition_and_marked_empty_partition() {
        let b = ReplayBuffer::new(&cfg(100, 1 << 20, 60));
        let t: Arc<str> = "t".into();
        let r = replay(&b, "a", &[("t", 0, 5)]);
        assert_eq!(r.lost.map(|l| l.0), Some(Reason::TooOld), "not served here");
        b.mark_position(&t, 0, 6);
        assert!(replay(&b, "a", &[("t", 0, 5)]).lost.is_none());
        assert!(replay(&b, "a", &[("t", 0, 4)]).lost.is_some());
        assert_ne!(b.epoch(), 0);
    }
}
