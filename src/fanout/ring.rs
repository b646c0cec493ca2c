//! One shard's inbox: a bounded lock-free MPMC ring (crossbeam `ArrayQueue`) and a waker.
//!
//! Wake protocol (no lost wake-ups, at most one `eventfd` write per shard turn):
//! the producer pushes, then `notified.swap(true)`; only a `false → true` edge calls
//! `Waker::wake`. The shard calls [`ShardInbox::begin_drain`] (stores `false`) *before* popping,
//! so an item pushed after its last pop always finds `false` and wakes it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::event::Event;

/// What ingest hands a shard.
#[derive(Debug)]
pub enum RingItem {
    Event(Arc<Event>),
    /// `dropped` events of `channel` never reached this shard (its ring was full).
    Gap {
        channel: Box<str>,
        dropped: u64,
    },
    /// The broker link changed (`"ok"` / `"degraded"`): tell every connection.
    Status(&'static str),
}

/// A shard's inbox. Push from any thread; pop only from the owning shard.
#[derive(Debug)]
pub struct ShardInbox {
    queue: ArrayQueue<RingItem>,
    waker: crate::io::Waker,
    notified: AtomicBool,
}

impl ShardInbox {
    pub fn new(capacity: usize, waker: crate::io::Waker) -> ShardInbox {
        ShardInbox {
            queue: ArrayQueue::new(capacity),
            waker,
            notified: AtomicBool::new(false),
        }
    }

    /// Queues `item`; hands it back when the ring is full (the caller picks the policy).
    #[inline]
    pub fn push(&self, item: RingItem) -> Result<(), RingItem> {
        self.queue.push(item)
    }

    /// Wakes the shard unless a wake is already pending.
    #[inline]
    pub fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            // A failed eventfd write means the shard is gone (shutdown); nothing to do.
            let _ = self.waker.wake();
        }
    }

    /// Owning shard only: call before draining with [`ShardInbox::pop`].
    #[inline]
    pub fn begin_drain(&self) {
        self.notified.store(false, Ordering::SeqCst);
    }

    /// Owning shard only.
    #[inline]
    pub fn pop(&self) -> Option<RingItem> {
        self.queue.pop()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
