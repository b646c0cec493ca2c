//! Resume over the replay buffer: given the channels of a subscription and where the client
//! stands ([`Start`]), what to replay, where the stream stands after it on every partition it
//! reads, and whether the resume is provably complete (SPEC §4 "`recovered:true` is a
//! promise").
//!
//! The partitions a subscription reads are those of every topic that can carry one of its
//! channels ([`ChannelPattern`], from the routes). For each:
//! - a cursor position `L`: events after `L` are replayed; proven when the buffer is complete
//!   from `L + 1` (`complete_from ≤ L + 1`), else [`Reason::TooOld`];
//! - no position: proven only when the buffer holds the partition from its very first offset
//!   (`complete_from ≤ 0`: nothing was ever evicted or skipped), and then everything retained
//!   is replayed; else [`Reason::PartialCursor`] and the partition goes live only;
//! - a cursor from another epoch: nothing is replayed and no position is applied (the
//!   offsets name another log; as watermarks they would drop new events):
//!   [`Reason::EpochChanged`].
//!
//! Cost: one lock per partition, a binary search per (partition, channel), then O(events
//! replayed) (plus a sort per partition when several channels share it).

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use super::{PartState, ReplayBuffer};
use crate::event::Event;
use crate::protocol::cursor::{Cursor, topic_hash};

/// Which channels a topic can carry: a route's channel template with its `{…}` parts as
/// wildcards (`predictions:{/symbol}` → `predictions:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPattern(Vec<Option<Box<str>>>);

impl ChannelPattern {
    /// `Some(literal)` or `None` (any text, possibly empty), in order.
    pub fn new(segments: Vec<Option<Box<str>>>) -> ChannelPattern {
        ChannelPattern(segments)
    }

    /// A topic carrying any channel (e.g. the default route, channel from a header).
    pub fn any() -> ChannelPattern {
        ChannelPattern(vec![None])
    }

    /// Whether the template can render `channel`. O(len × segments) worst case.
    pub fn matches(&self, channel: &str) -> bool {
        fn go(segs: &[Option<Box<str>>], s: &str) -> bool {
            match segs.split_first() {
                None => s.is_empty(),
                Some((Some(lit), rest)) => s.strip_prefix(&**lit).is_some_and(|t| go(rest, t)),
                Some((None, rest)) => (0..=s.len())
                    .filter(|i| s.is_char_boundary(*i))
                    .any(|i| go(rest, &s[i..])),
            }
        }
        go(&self.0, channel)
    }
}

/// Why a resume is not provably complete (`subscribed.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The cursor lacks a partition the channels are read from, and the buffer cannot prove
    /// nothing was missed there.
    PartialCursor,
    /// The cursor names another log (restart of the embedded cluster or `direct` mode).
    EpochChanged,
    /// Events after a cursor position were already evicted from the buffer.
    TooOld,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PartialCursor => "partial_cursor",
            Reason::EpochChanged => "epoch_changed",
            Reason::TooOld => "too_old",
        }
    }
}

/// Where a resume starts.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// No cursor: live from now; the result only reports every partition's position.
    Live,
    /// Everything retained (a REST poll without a cursor).
    Retained,
    /// After the client's cursor.
    Cursor(&'a Cursor),
}

/// One partition of a [`Resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartResume {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Events after this offset were replayed; `None`: not resumed (live only).
    pub after: Option<i64>,
    /// The stream's position here once the replay is delivered: the last offset ingested on
    /// the partition when it was read, or `after` when that is further (a replica that lags
    /// the one the cursor came from). Every live event at or below it was replayed or is at
    /// or before `after`: a resumed partition's watermark.
    pub tail: i64,
    /// This partition's events in [`Resume::events`] (oldest first).
    pub events: Range<usize>,
}

/// The result of [`ReplayBuffer::resume`].
#[derive(Debug, Default)]
pub struct Resume {
    /// Replayed events of the channels, grouped by partition, oldest first in each.
    pub events: Vec<Arc<Event>>,
    /// Every partition the channels are read from, sorted by (topic, partition).
    pub parts: Vec<PartResume>,
    /// `None`: recovered (every event the client can have missed is in `events`). `Some`:
    /// why not, and a human-readable detail.
    pub lost: Option<(Reason, String)>,
}

impl Resume {
    /// The watermarks that drop the live overlap: (topic, partition, tail) of every resumed
    /// partition.
    pub fn watermarks(&self) -> Vec<(Arc<str>, i32, i64)> {
        self.parts
            .iter()
            .filter(|p| p.after.is_some())
            .map(|p| (p.topic.clone(), p.partition, p.tail))
            .collect()
    }

    /// The stream's position before its replay is delivered: `after` for resumed partitions,
    /// `tail` for the others (an SSE stream's first `id:`).
    pub fn start_positions(&self) -> impl Iterator<Item = (Arc<str>, i32, i64)> + '_ {
        self.parts
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.after.unwrap_or(p.tail)))
    }

    fn lose(&mut self, reason: Reason, detail: impl FnOnce() -> String) {
        if self.lost.is_none() {
            self.lost = Some((reason, detail()));
        }
    }
}

impl ReplayBuffer {
    /// Whether `topic` can carry one of `channels` (any topic while routes are unset).
    fn may_carry(&self, topic: &str, channels: &[&str]) -> bool {
        match &**self.channel_topics.load() {
            None => true,
            Some(r) => r
                .iter()
                .any(|(rt, pat)| **rt == *topic && channels.iter().any(|c| pat.matches(c))),
        }
    }

    /// Topics served here that can carry one of `channels`, sorted.
    fn topics_for(&self, channels: &[&str]) -> Vec<Arc<str>> {
        let mut topics: Vec<Arc<str>> = self
            .table
            .load()
            .keys()
            .filter(|t| self.may_carry(t, channels))
            .cloned()
            .collect();
        topics.sort();
        topics
    }

    /// The topic served here whose name hashes to `h` (the SSE token's topic id), if exactly
    /// one does.
    pub fn topic_for_hash(&self, h: u32) -> Option<Arc<str>> {
        let table = self.table.load();
        let mut found = table.keys().filter(|t| topic_hash(t) == h);
        let first = found.next()?.clone();
        found.next().is_none().then_some(first)
    }

    /// See the module doc. `channels` may repeat (each counts once).
    pub fn resume(&self, channels: &[&str], start: Start<'_>) -> Resume {
        let mut channels = channels.to_vec();
        channels.sort_unstable();
        channels.dedup();
        let mut out = Resume::default();
        let mut cursor = match start {
            Start::Cursor(c) => Some(c),
            _ => None,
        };
        if let Some(c) = cursor
            && let Some(e) = c.epoch
            && e != self.epoch()
        {
            out.lose(Reason::EpochChanged, || {
                format!(
                    "the cursor is from epoch {e:016x}; the log here is epoch {:016x}",
                    self.epoch()
                )
            });
            cursor = None;
        }
        let now = Instant::now();
        for topic in self.topics_for(&channels) {
            let Some(parts) = self.table.load().get(&topic).cloned() else {
                continue;
            };
            let mut ids: Vec<i32> = parts.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                let Some(p) = parts.get(&id) else { continue };
                let mut st = p.lock();
                self.evict(&mut st, now);
                let complete_from = st.complete_from;
                let tail = st
                    .last_offset
                    .into_iter()
                    .chain(complete_from.map(|c| c - 1))
                    .max()
                    .unwrap_or(-1);
                let after = match (start, cursor) {
                    (Start::Live, _) => None,
                    (Start::Retained, _) => complete_from.map(|c| c - 1),
                    (Start::Cursor(_), None) => None, // refused epoch
                    (Start::Cursor(_), Some(c)) => {
                        let found = c
                            .positions
                            .binary_search_by(|q| (&*q.topic, q.partition).cmp(&(&*topic, id)));
                        match found.map(|i| c.positions[i].offset) {
                            Ok(l) => {
                                if complete_from.is_none_or(|cf| cf > l + 1) {
                                    out.lose(Reason::TooOld, || match complete_from {
                                        Some(cf) => format!("{topic}/{id}:{l} is older than the replay buffer (complete from offset {cf})"),
                                        None => format!("{topic}/{id} has no retained position"),
                                    });
                                }
                                Some(l)
                            }
                            Err(_) if complete_from.is_some_and(|cf| cf <= 0) => Some(-1),
                            Err(_) => {
                                out.lose(Reason::PartialCursor, || {
                                    format!("the cursor has no position for {topic}/{id}")
                                });
                                None
                            }
                        }
                    }
                };
                let tail = after.map_or(tail, |l| l.max(tail));
                let first = out.events.len();
                if let Some(l) = after {
                    replay_partition(&st, &channels, l, &mut out.events);
                }
                out.parts.push(PartResume {
                    topic: topic.clone(),
                    partition: id,
                    after,
                    tail,
                    events: first..out.events.len(),
                });
            }
        }
        // A position on a partition that can carry the channels but is not served here (yet):
        // what came after it cannot be replayed.
        for q in cursor.map_or(&[][..], |c| &c.positions[..]) {
            let served = out
                .parts
                .binary_search_by(|p| (&*p.topic, p.partition).cmp(&(&*q.topic, q.partition)))
                .is_ok();
            if !served && self.may_carry(&q.topic, &channels) {
                out.lose(Reason::TooOld, || {
                    format!("{}/{} is not served here", q.topic, q.partition)
                });
            }
        }
        out
    }
}

/// Appends the retained events of `channels` after offset `after`, in offset order.
fn replay_partition(st: &PartState, channels: &[&str], after: i64, out: &mut Vec<Arc<Event>>) {
    let first = out.len();
    for ch in channels {
        if let Some(q) = st.by_channel.get(*ch) {
            let start = q.partition_point(|(_, e)| e.offset <= after);
            out.extend(q.range(start..).map(|(_, e)| e.clone()));
        }
    }
    if channels.len() > 1 {
        out[first..].sort_unstable_by_key(|e| e.offset);
    }
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
