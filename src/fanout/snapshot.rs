//! Channel → shard mask, published as an immutable snapshot through `arc-swap`.
//!
//! Readers (the ingest thread, once per event) do a lock-free `load`. Writers (a shard whose
//! first subscriber to a channel arrives, or whose last one leaves) serialize on a mutex that
//! only writers take, copy the map, and swap it in: the RCU pattern of arc-swap's docs.
//! Shards are bits of a `u64`, so at most 64 shards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

/// Maximum shards a mask can address.
pub const MAX_SHARDS: usize = 64;

type Map = HashMap<Box<str>, u64>;

#[derive(Debug, Default)]
pub struct SubscriptionTable {
    snapshot: ArcSwap<Map>,
    writer: Mutex<()>,
}

impl SubscriptionTable {
    /// Shards with at least one subscriber to `channel`. Lock-free.
    #[inline]
    pub fn shards_for(&self, channel: &str) -> u64 {
        self.snapshot.load().get(channel).copied().unwrap_or(0)
    }

    /// Marks `shard` as having (or no longer having) subscribers to `channel`.
    pub fn set(&self, channel: &str, shard: usize, on: bool) {
        debug_assert!(shard < MAX_SHARDS);
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.snapshot.load();
        let old = cur.get(channel).copied().unwrap_or(0);
        let new = if on {
            old | (1 << shard)
        } else {
            old & !(1 << shard)
        };
        if new == old {
            return;
        }
        let mut next: Map = (**cur).clone();
        if new == 0 {
            next.remove(channel);
        } else {
            next.insert(channel.into(), new);
        }
        self.snapshot.store(Arc::new(next));
    }

    /// Channels with at least one subscriber somewhere.
    pub fn channel_count(&self) -> usize {
        self.snapshot.load().len()
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
}
