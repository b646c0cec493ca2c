//! Per-identity limits (SPEC §6 tiers): open connections per identity and REST requests per
//! identity per minute, with the numbers of the identity's tier
//! ([`crate::config::LimitsConfig::for_tier`]).
//!
//! [`IdentityLimiter`] is shared by every shard like [`super::ConnLimiter`]: it is on the
//! handshake and REST paths, never the delivery path. State lives in [`SHARDS`] mutex-protected
//! maps keyed by the identity's hash; an entry exists while the identity holds a connection or
//! its REST window is running, and is removed when neither is true (so memory is bounded by
//! identities seen in the last minute plus those connected).
//!
//! Anonymous clients share the id `anonymous`; they are counted per address instead
//! ([`IdentityKey::of`]), so one anonymous browser cannot use up another's allowance.
//!
//! REST requests are counted in fixed one-minute windows per identity (the window starts at its
//! first request), which is what `X-RateLimit-Limit/Remaining/Reset` describe: `Reset` is the
//! number of seconds until the window ends and the allowance is whole again.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Identity, IdentityKind};

/// Number of lock shards.
pub const SHARDS: usize = 16;
/// A shard's map larger than this drops its idle entries when a REST request comes.
const SWEEP_ABOVE: usize = 1024;
/// The REST window.
const WINDOW: Duration = Duration::from_secs(60);

/// Who is counted: the identity's id, or `anonymous@<address>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityKey(Arc<str>);

impl IdentityKey {
    pub fn of(identity: &Identity, client_ip: IpAddr) -> IdentityKey {
        match identity.kind {
            IdentityKind::Anonymous => IdentityKey(format!("anonymous@{client_ip}").into()),
            _ => IdentityKey(identity.id.clone()),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    conns: usize,
    /// Start of the running REST window and the requests counted in it.
    window: Option<(Instant, u32)>,
}

impl State {
    fn idle(&self, now: Instant) -> bool {
        self.conns == 0 && self.window.is_none_or(|(start, _)| now >= start + WINDOW)
    }
}

#[derive(Debug, Default)]
struct Inner {
    shards: [Mutex<HashMap<IdentityKey, State>>; SHARDS],
}

impl Inner {
    fn shard(&self, key: &IdentityKey) -> MutexGuard<'_, HashMap<IdentityKey, State>> {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize;
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Per-identity counters shared by all shards (`Clone` is an `Arc` clone).
#[derive(Debug, Clone, Default)]
pub struct IdentityLimiter(Arc<Inner>);

/// An open connection counted against its identity; released on drop.
#[derive(Debug)]
pub struct IdentityPermit {
    inner: Arc<Inner>,
    key: IdentityKey,
}

impl Drop for IdentityPermit {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut map = self.inner.shard(&self.key);
        if let Some(st) = map.get_mut(&self.key) {
            st.conns = st.conns.saturating_sub(1);
            if st.idle(now) {
                map.remove(&self.key);
            }
        }
    }
}

/// A REST request's standing in its identity's window (the `X-RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestQuota {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the window ends (at least 1).
    pub reset_s: u64,
}

impl RestQuota {
    /// The three `X-RateLimit-*` headers, and `Retry-After` when refused.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("X-RateLimit-Limit", self.limit.to_string()),
            ("X-RateLimit-Remaining", self.remaining.to_string()),
            ("X-RateLimit-Reset", self.reset_s.to_string()),
        ];
        if !self.allowed {
            h.push(("Retry-After", self.reset_s.to_string()));
        }
        h
    }
}

impl IdentityLimiter {
    pub fn new() -> IdentityLimiter {
        IdentityLimiter::default()
    }

    /// Counts one more open connection for `key` unless it already holds `max` (0 = no cap:
    /// nothing is counted and `Ok(None)` is returned, so an uncapped connection costs nothing).
    pub fn acquire_conn(
        &self,
        key: IdentityKey,
        max: usize,
    ) -> Result<Option<IdentityPermit>, usize> {
        if max == 0 {
            return Ok(None);
        }
        let mut map = self.0.shard(&key);
        let st = map.entry(key.clone()).or_default();
        if st.conns >= max {
            return Err(st.conns);
        }
        st.conns += 1;
        drop(map);
        Ok(Some(IdentityPermit {
            inner: self.0.clone(),
            key,
        }))
    }

    /// Counts a REST request for `key` at `now` against `per_min` (0 = no cap: `None`).
    pub fn rest_request(&self, key: &IdentityKey, per_min: u32, now: Instant) -> Option<RestQuota> {
        if per_min == 0 {
            return None;
        }
        let mut map = self.0.shard(key);
        if map.len() >= SWEEP_ABOVE {
            map.retain(|_, st| !st.idle(now));
        }
        let st = map.entry(key.clone()).or_default();
        let (start, used) = match st.window {
            Some((start, used)) if now < start + WINDOW => (start, used),
            _ => (now, 0),
        };
        let allowed = used < per_min;
        let used = used + u32::from(allowed);
        st.window = Some((start, used));
        let left = (start + WINDOW).saturating_duration_since(now);
        Some(RestQuota {
            allowed,
            limit: per_min,
            remaining: per_min - used,
            reset_s: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        })
    }

    /// Identities with state (connections held or a running REST window).
    pub fn tracked(&self) -> usize {
        self.0
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdentityKey {
        IdentityKey(s.into())
    }

    #[test]
    fn connections_are_capped_per_identity_and_given_back_on_drop() {
        let l = IdentityLimiter::new();
        let a = l.acquire_conn(key("a"), 2).unwrap();
        let b = l.acquire_conn(key("a"), 2).unwrap();
        assert_eq!(l.acquire_conn(key("a"), 2).unwrap_err(), 2);
        assert!(
            l.acquire_conn(key("b"), 2).unwrap().is_some(),
            "another identity"
        );
        drop(a);
        let c = l.acquire_conn(key("a"), 2).unwrap();
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(
            l.tracked(),
            0,
            "no state for identities without connections"
        );
        assert!(l.acquire_conn(key("a"), 0).unwrap().is_none(), "0 = no cap");
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn rest_requests_count_in_one_minute_windows() {
        let l = IdentityLimiter::new();
        let t0 = Instant::now();
        let q = |dt: u64| {
            l.rest_request(&key("a"), 3, t0 + Duration::from_secs(dt))
                .unwrap()
        };
        let first = q(0);
        assert_eq!(
            (first.allowed, first.limit, first.remaining, first.reset_s),
            (true, 3, 2, 60)
        );
        assert_eq!(q(10).remaining, 1);
        let third = q(20);
        assert_eq!(
            (third.allowed, third.remaining, third.reset_s),
            (true, 0, 40)
        );
        let refused = q(30);
        assert_eq!(
            (refused.allowed, refused.remaining, refused.reset_s),
            (false, 0, 30)
        );
        assert!(
            refused
                .headers()
                .contains(&("Retry-After", "30".to_string()))
        );
        assert!(!third.headers().iter().any(|(h, _)| *h == "Retry-After"));
        let next = q(60);
        assert_eq!((next.allowed, next.remaining, next.reset_s), (true, 2, 60));
        assert!(l.rest_request(&key("a"), 0, t0).is_none(), "0 = no cap");
    }

    #[test]
    fn finished_rest_windows_are_swept() {
        let l = IdentityLimiter::new();
        let t0 = Instant::now();
        for i in 0..(SWEEP_ABOVE * SHARDS * 2) {
            l.rest_request(&key(&format!("id-{i}")), 5, t0);
        }
        let later = t0 + WINDOW;
        for i in 0..SHARDS * 8 {
            l.rest_request(&key(&format!("new-{i}")), 5, later);
        }
        assert!(l.tracked() < SWEEP_ABOVE * SHARDS, "{}", l.tracked());
    }

    #[test]
    fn anonymous_clients_are_counted_per_address() {
        let anon = Identity::anonymous();
        let a = IdentityKey::of(&anon, "10.0.0.1".parse().unwrap());
        let b = IdentityKey::of(&anon, "10.0.0.2".parse().unwrap());
        assert_ne!(a, b);
        let l = IdentityLimiter::new();
        let _held = l.acquire_conn(a.clone(), 1).unwrap();
        assert!(l.acquire_conn(a, 1).is_err());
        assert!(l.acquire_conn(b, 1).is_ok());
    }
}
