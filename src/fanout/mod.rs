//! Fan-out: from one published [`Event`] to the rings of the shards that have a subscriber.
//!
//! - [`SubscriptionTable`]: channel → bitmask of shards, read lock-free through an `arc-swap`ped
//!   snapshot on every publish; written (rarely) when a shard's first subscriber to a channel
//!   arrives or its last one leaves.
//! - [`ShardInbox`]: a bounded lock-free ring (crossbeam `ArrayQueue`) plus a mio `Waker`,
//!   woken only on the empty→non-empty edge of a turn, not once per event.
//! - [`Publisher`]: owned by the ingest thread (`&mut self`: one publisher, in order). It never
//!   waits: a full ring drops the event for that shard, counts it, and queues a `gap` notice
//!   that is delivered in order as soon as the ring has room again.

pub mod ring;
pub mod snapshot;

use std::sync::Arc;

pub use ring::{RingItem, ShardInbox};
pub use snapshot::SubscriptionTable;

use crate::event::Event;
use crate::metrics::Metrics;

/// The shared half of the fan-out: every shard's inbox and the subscription table.
#[derive(Debug)]
pub struct Fanout {
    pub inboxes: Vec<Arc<ShardInbox>>,
    pub subscriptions: SubscriptionTable,
}

impl Fanout {
    pub fn new(inboxes: Vec<Arc<ShardInbox>>) -> Fanout {
        Fanout {
            inboxes,
            subscriptions: SubscriptionTable::default(),
        }
    }
}

/// The ingest thread's handle on the fan-out. Not `Clone`: a single publisher keeps order.
#[derive(Debug)]
pub struct Publisher {
    fanout: Arc<Fanout>,
    metrics: Arc<Metrics>,
    /// Per shard: (channel, dropped) notices not yet delivered because the ring was full.
    pending_gaps: Vec<Vec<(Box<str>, u64)>>,
    /// Shards that received items since the last [`Publisher::flush`].
    touched: u64,
}

impl Publisher {
    pub fn new(fanout: Arc<Fanout>, metrics: Arc<Metrics>) -> Publisher {
        let n = fanout.inboxes.len();
        Publisher {
            fanout,
            metrics,
            pending_gaps: vec![Vec::new(); n],
            touched: 0,
        }
    }

    /// Hands `ev` to every shard that has a subscriber to its channel. Never blocks.
    /// Call [`Publisher::flush`] after a batch to wake the shards.
    pub fn publish(&mut self, ev: Arc<Event>) {
        let mut mask = self.fanout.subscriptions.shards_for(&ev.channel);
        while mask != 0 {
            let shard = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.push(shard, &ev);
        }
    }

    fn push(&mut self, shard: usize, ev: &Arc<Event>) {
        let inbox = &self.fanout.inboxes[shard];
        let gaps = &mut self.pending_gaps[shard];
        while let Some((channel, dropped)) = gaps.first() {
            let item = RingItem::Gap {
                channel: channel.clone(),
                dropped: *dropped,
            };
            if inbox.push(item).is_err() {
                break;
            }
            gaps.remove(0);
            self.touched |= 1 << shard;
        }
        if gaps.is_empty() && inbox.push(RingItem::Event(ev.clone())).is_ok() {
            self.touched |= 1 << shard;
            return;
        }
        self.metrics.ingest.ring_full_drops.inc();
        match gaps.iter_mut().find(|(c, _)| **c == *ev.channel) {
            Some((_, n)) => *n += 1,
            None => gaps.push((ev.channel.clone(), 1)),
        }
    }

    /// Wakes every shard that received something since the last flush.
    pub fn flush(&mut self) {
        let mut mask = std::mem::take(&mut self.touched);
        while mask != 0 {
            let shard = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.fanout.inboxes[shard].notify();
        }
    }
}

impl Publisher {
    /// Tells every shard that the broker link changed (`"ok"` / `"degraded"`).
    /// Retries a full ring a few times: status is rare and must not be lost.
    pub fn broadcast_status(&mut self, status: &'static str) {
        for inbox in &self.fanout.inboxes {
            for _ in 0..1000 {
                if inbox.push(RingItem::Status(status)).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            inbox.notify();
        }
    }
}
