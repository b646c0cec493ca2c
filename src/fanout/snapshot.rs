//! Channel → shard mask, published as immutable snapshots through `arc-swap`.
//!
//! Readers (the ingest thread, once per event) do a lock-free `load` of one bucket. Writers (a
//! shard whose first subscriber to a channel arrives, or whose last one leaves) serialize on
//! that bucket's mutex, which only writers take, copy the bucket, and swap it in: the RCU
//! pattern of arc-swap's docs. Channels are spread over [`BUCKETS`] buckets by hash, so a
//! change copies about `channels / BUCKETS` entries instead of the whole map (10,000 sockets
//! each on its own `gateway:{id}` channel churn without copying 10,000 entries per change).
//! Shards are bits of a `u64`, so at most 64 shards.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// Maximum shards a mask can address.
pub const MAX_SHARDS: usize = 64;

/// Snapshot buckets (a power of two). 1,024 empty buckets cost ~56 KiB once per process.
pub const BUCKETS: usize = 1024;

type Map = HashMap<Box<str>, u64>;

#[derive(Debug, Default)]
struct Bucket {
    snapshot: ArcSwap<Map>,
    writer: Mutex<()>,
}

#[derive(Debug)]
pub struct SubscriptionTable {
    buckets: Box<[Bucket]>,
    hasher: RandomState,
}

impl Default for SubscriptionTable {
    fn default() -> Self {
        SubscriptionTable {
            buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl SubscriptionTable {
    #[inline]
    fn bucket(&self, channel: &str) -> &Bucket {
        let h = self.hasher.hash_one(channel) as usize;
        &self.buckets[h & (BUCKETS - 1)]
    }

    /// Shards with at least one subscriber to `channel`. Lock-free.
    #[inline]
    pub fn shards_for(&self, channel: &str) -> u64 {
        self.bucket(channel)
            .snapshot
            .load()
            .get(channel)
            .copied()
            .unwrap_or(0)
    }

    /// Marks `shard` as having (or no longer having) subscribers to `channel`. Returns how
    /// many entries the change copied (0 when nothing changed).
    pub fn set(&self, channel: &str, shard: usize, on: bool) -> usize {
        debug_assert!(shard < MAX_SHARDS);
        let b = self.bucket(channel);
        let _guard = b.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cur = b.snapshot.load();
        let old = cur.get(channel).copied().unwrap_or(0);
        let new = if on {
            old | (1 << shard)
        } else {
            old & !(1 << shard)
        };
        if new == old {
            return 0;
        }
        let mut next: Map = (**cur).clone();
        if new == 0 {
            next.remove(channel);
        } else {
            next.insert(channel.into(), new);
        }
        let copied = cur.len();
        b.snapshot.store(Arc::new(next));
        copied.max(1)
    }

    /// Channels with at least one subscriber somewhere.
    pub fn channel_count(&self) -> usize {
        self.buckets.iter().map(|b| b.snapshot.load().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_track_first_and_last_subscriber_per_shard() {
        let t = SubscriptionTable::default();
        t.set("a", 0, true);
        t.set("a", 3, true);
        assert_eq!(t.shards_for("a"), 0b1001);
        t.set("a", 0, false);
        assert_eq!(t.shards_for("a"), 0b1000);
        t.set("a", 3, false);
        assert_eq!(t.shards_for("a"), 0);
        assert_eq!(t.channel_count(), 0);
    }

    #[test]
    fn a_change_copies_one_bucket_not_the_whole_table() {
        let t = SubscriptionTable::default();
        let n = 100_000;
        for i in 0..n {
            t.set(&format!("gateway:{i}"), i % 2, true);
        }
        assert_eq!(t.channel_count(), n);
        // Churn: the last subscriber of 1,000 channels leaves and comes back.
        let mut copied = 0;
        for i in 0..1000 {
            copied += t.set(&format!("gateway:{i}"), i % 2, false);
            copied += t.set(&format!("gateway:{i}"), i % 2, true);
        }
        let per_change = copied / 2000;
        // About n / BUCKETS (98) per change; a whole-map copy would be 100,000.
        assert!(
            per_change < 4 * n / BUCKETS,
            "{per_change} entries copied per change"
        );
        assert_eq!(t.channel_count(), n);
        assert_eq!(t.shards_for("gateway:7"), 0b10);
        assert_eq!(t.set("gateway:7", 1, true), 0, "no change, no copy");
    }
}
