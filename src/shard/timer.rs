//! A hashed timer wheel with lazy cancellation: `arm` is O(1), a tick touches one slot.
//!
//! Each entry carries the owner's key and a generation; the owner keeps its current
//! generation, so re-arming simply bumps it and stale entries are skipped when they fire.
//! Resolution is one tick (default 50 ms): deadlines fire at most one tick late.

use std::time::{Duration, Instant};

const SLOTS: usize = 512;

/// 16 bytes: every open connection has one armed (slab keys fit 32 bits: a shard holds far
/// fewer connections than that).
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u32,
    generation: u32,
    tick: u64,
}

/// Timer wheel owned by one shard.
#[derive(Debug)]
pub struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    start: Instant,
    tick: Duration,
    /// Next tick to process.
    next: u64,
    len: usize,
}

impl TimerWheel {
    pub fn new(start: Instant, tick: Duration) -> TimerWheel {
        TimerWheel {
            slots: vec![Vec::new(); SLOTS],
            start,
            tick,
            next: 0,
            len: 0,
        }
    }

    fn tick_of(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.start).as_nanos() / self.tick.as_nanos()) as u64
    }

    /// Fires `(key, generation)` at or after `at`.
    pub fn arm(&mut self, key: usize, generation: u32, at: Instant) {
        let tick = self.tick_of(at).max(self.next);
        self.slots[(tick % SLOTS as u64) as usize].push(Entry {
            key: key as u32,
            generation,
            tick,
        });
        self.len += 1;
    }

    /// Collects every entry due by `now` into `fired`.
    pub fn advance(&mut self, now: Instant, fired: &mut Vec<(usize, u32)>) {
        let now_tick = self.tick_of(now);
        while self.next <= now_tick {
            let slot = &mut self.slots[(self.next % SLOTS as u64) as usize];
            let due = self.next;
            let before = slot.len();
            slot.retain(|e| {
                if e.tick <= due {
                    fired.push((e.key as usize, e.generation));
                    false
                } else {
                    true
                }
            });
            self.len -= before - slot.len();
            self.next += 1;
            if self.len == 0 {
                self.next = self.next.max(now_tick + 1);
                break;
            }
        }
    }

    /// Time until the next tick boundary (the poll timeout), or `None` when nothing is armed.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let next_at = self.start + self.tick * (self.next as u32).max(1);
        Some(next_at.saturating_duration_since(now).min(self.tick))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_due_entries_once_and_keeps_future_rounds() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(10);
        let mut w = TimerWheel::new(t0, tick);
        w.arm(1, 0, t0 + Duration::from_millis(25));
        w.arm(2, 0, t0 + tick * (SLOTS as u32 + 3)); // same slot, a later round
        w.arm(3, 7, t0); // due now
        let mut fired = Vec::new();
        w.advance(t0 + Duration::from_millis(5), &mut fired);
        assert_eq!(fired, vec![(3, 7)]);
        fired.clear();
        w.advance(t0 + Duration::from_millis(40), &mut fired);
        assert_eq!(fired, vec![(1, 0)]);
        fired.clear();
        w.advance(t0 + tick * (SLOTS as u32 + 4), &mut fired);
        assert_eq!(fired, vec![(2, 0)]);
        assert!(w.is_empty());
    }

    #[test]
    fn arming_in_the_past_fires_on_next_advance() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, Duration::from_millis(10));
        let mut fired = Vec::new();
        w.advance(t0 + Duration::from_millis(100), &mut fired);
        w.arm(9, 1, t0);
        w.advance(t0 + Duration::from_millis(111), &mut fired);
        assert_eq!(fired, vec![(9, 1)]);
    }
}
