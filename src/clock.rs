//! [`Stamp`]: a 4-byte millisecond time for per-connection deadlines and "last seen" times.
//! An `Instant` is 16 bytes and every open connection keeps several; these times are only
//! ever compared within a bounded window (a heartbeat, a linger, a rate bucket's refill), so
//! a wrapping 32-bit millisecond count (49.7 days) on one process-wide clock does.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds on the process clock, wrapping every 2^32 ms. Comparisons are exact while the
/// two times are less than 24.8 days apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp(u32);

fn epoch(now: Instant) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // An hour before the first reading, so instants taken just before it still map.
    *EPOCH.get_or_init(|| now.checked_sub(Duration::from_secs(3600)).unwrap_or(now))
}

impl std::ops::Add<Duration> for Stamp {
    type Output = Stamp;
    /// `d` later (rounded down to the millisecond).
    fn add(self, d: Duration) -> Stamp {
        Stamp(self.0.wrapping_add(d.as_millis() as u32))
    }
}

impl Stamp {
    /// The stamp of `t`.
    pub fn at(t: Instant) -> Stamp {
        Stamp(t.saturating_duration_since(epoch(t)).as_millis() as u32)
    }

    /// Signed distance `self − other` in milliseconds.
    fn diff(self, other: Stamp) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Time from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Stamp) -> Duration {
        Duration::from_millis(self.diff(earlier).max(0) as u64)
    }

    /// `self` is at or after `t`.
    pub fn reached(self, t: Stamp) -> bool {
        self.diff(t) >= 0
    }

    /// The earlier of two stamps.
    pub fn min(self, other: Stamp) -> Stamp {
        if self.diff(other) <= 0 { self } else { other }
    }

    /// The instant this stamp stands for, read next to `now` (which it must be within 24.8
    /// days of).
    pub fn instant(self, now: Instant) -> Instant {
        let d = self.diff(Stamp::at(now));
        let ms = Duration::from_millis(u64::from(d.unsigned_abs()));
        if d >= 0 {
            now + ms
        } else {
            now.checked_sub(ms).unwrap_or(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_and_maps_back_to_instants() {
        let t0 = Instant::now();
        let a = Stamp::at(t0);
        let b = a + Duration::from_millis(1500);
        assert!(b.reached(a) && !a.reached(b) && a.reached(a));
        assert_eq!(b.since(a), Duration::from_millis(1500));
        assert_eq!(a.since(b), Duration::ZERO);
        assert_eq!(a.min(b), a);
        assert_eq!(b.min(a), a);
        let back = b.instant(t0);
        let err =
            back.max(t0 + Duration::from_millis(1500)) - back.min(t0 + Duration::from_millis(1500));
        assert!(err < Duration::from_millis(2), "{err:?}");
        assert!(a.instant(t0 + Duration::from_secs(60)) <= t0);
    }

    #[test]
    fn ordering_survives_the_wrap() {
        let before = Stamp(u32::MAX - 10);
        let after = before + Duration::from_millis(20); // wraps to 9
        assert_eq!(after, Stamp(9));
        assert!(after.reached(before) && !before.reached(after));
        assert_eq!(after.since(before), Duration::from_millis(20));
        assert_eq!(before.min(after), before);
    }
}
