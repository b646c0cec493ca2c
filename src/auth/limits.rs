//! Connection limits checked at accept/handshake time, and the per-connection inbound bucket.
//!
//! [`ConnLimiter`] is shared by every shard (`Clone` is an `Arc` clone; Send + Sync). It is on
//! the accept path, not the delivery path: the global count is one atomic; per-IP state lives
//! in [`SHARDS`] mutex-protected maps keyed by IP hash, so two shards contend only when they
//! accept clients whose addresses hash alike. IPv6 clients are counted per /64 (one host
//! usually owns a whole /64). Addresses in `limits.connect_allowlist` skip both per-IP limits
//! (never the global one). A limit of 0 disables that limit.
//!
//! Unfinished request heads ([`ConnLimiter::try_acquire_head`], taken at accept) hold a slot
//! too: they count against `max_connections` and their peer's `per_ip_connections`, and all of
//! them together against `max_pending_heads`, so half-sent heads cannot hold descriptors past
//! the caps. When the head is complete the slot is given back just before the connection's
//! own permit is taken ([`HeadSlot::release`]).
//!
//! Connection rate: a token bucket per IP of `connect_per_ip_per_min` tokens refilled evenly
//! over a minute; every attempt (accepted or not) takes one. Idle per-IP entries are swept
//! once their bucket is full again, so memory is bounded by the addresses seen in the last
//! minute plus those with open connections.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::clock::Stamp;

use ipnet::IpNet;

use super::AuthSetupError;
use super::proxy::{in_cidrs, parse_cidrs};
use crate::config::LimitsConfig;

/// Number of per-IP lock shards.
pub const SHARDS: usize = 16;
/// Per-IP maps larger than this are swept (at most every 10 s).
const SWEEP_ABOVE: usize = 1024;

/// Why a connection is refused before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReject {
    /// `max_connections` reached: answer 503 with `Retry-After`.
    MaxConnections,
    /// `per_ip_connections` reached for this address: answer 429 with `Retry-After`.
    PerIp,
    /// `connect_per_ip_per_min` exceeded: answer 429 with `Retry-After: retry_after_s`.
    Rate { retry_after_s: u32 },
    /// `max_pending_heads` unfinished request heads already: answer 503 with `Retry-After`.
    PendingHeads,
}

impl LimitReject {
    /// HTTP status to answer.
    pub fn status(self) -> u16 {
        match self {
            LimitReject::MaxConnections | LimitReject::PendingHeads => 503,
            _ => 429,
        }
    }

    /// Seconds for the `Retry-After` header.
    pub fn retry_after_s(self) -> u32 {
        match self {
            LimitReject::Rate { retry_after_s } => retry_after_s,
            LimitReject::MaxConnections | LimitReject::PerIp | LimitReject::PendingHeads => 5,
        }
    }

    /// Metrics/log label.
    pub fn label(self) -> &'static str {
        match self {
            LimitReject::MaxConnections => "max_connections",
            LimitReject::PerIp => "per_ip_connections",
            LimitReject::Rate { .. } => "connect_rate",
            LimitReject::PendingHeads => "max_pending_heads",
        }
    }
}

struct IpState {
    conns: usize,
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
struct Shard {
    ips: HashMap<IpAddr, IpState>,
    last_sweep: Option<Instant>,
}

struct Inner {
    max: usize,
    per_ip: usize,
    per_min: f64,
    allowlist: Vec<IpNet>,
    max_pending: usize,
    total: AtomicUsize,
    /// Unfinished request heads holding a [`HeadSlot`].
    pending: AtomicUsize,
    shards: [Mutex<Shard>; SHARDS],
}

/// Shared connection limiter (see module doc).
#[derive(Clone)]
pub struct ConnLimiter(Arc<Inner>);

impl std::fmt::Debug for ConnLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnLimiter")
            .field("active", &self.active())
            .field("max", &self.0.max)
            .finish()
    }
}

/// Holds one connection slot; dropping it releases the slot (global and per-IP).
#[must_use = "dropping the permit releases the connection slot"]
pub struct ConnPermit {
    inner: Arc<Inner>,
    /// The per-IP accounting key, packed (every open connection holds a permit).
    key: Option<PackedKey>,
}

/// An [`ip_key`] in 9 bytes: IPv4, or the /64 prefix of an IPv6 address.
#[derive(Debug, Clone, Copy)]
enum PackedKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl PackedKey {
    /// Packs a key made by [`ip_key`] (an IPv6 key keeps only its /64 prefix, which is all
    /// it has).
    fn pack(key: IpAddr) -> PackedKey {
        match key {
            IpAddr::V4(v4) => PackedKey::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut p = [0; 8];
                p.copy_from_slice(&v6.octets()[..8]);
                PackedKey::V6(p)
            }
        }
    }

    fn unpack(self) -> IpAddr {
        match self {
            PackedKey::V4(o) => IpAddr::from(o),
            PackedKey::V6(p) => {
                let mut o = [0; 16];
                o[..8].copy_from_slice(&p);
                IpAddr::from(o)
            }
        }
    }
}

impl std::fmt::Debug for ConnPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPermit")
            .field("ip", &self.key.map(PackedKey::unpack))
            .finish()
    }
}

/// The slot of a connection whose request head is not complete yet (see the module doc);
/// dropping it releases the slot.
#[derive(Debug)]
#[must_use = "dropping the slot releases it"]
pub struct HeadSlot(ConnPermit);

impl HeadSlot {
    /// Gives the slot back (the head is complete; the connection's own permit comes next).
    pub fn release(self) {}
}

impl Drop for HeadSlot {
    fn drop(&mut self) {
        self.0.inner.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The per-IP accounting key: IPv4 (also IPv4-mapped) as is, IPv6 masked to /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Inner {
    fn shard(&self, key: &IpAddr) -> MutexGuard<'_, Shard> {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize;
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn refill(&self, st: &mut IpState, now: Instant) {
        let dt = now.saturating_duration_since(st.last).as_secs_f64();
        st.tokens = (st.tokens + dt * self.per_min / 60.0).min(self.per_min);
        st.last = now;
    }

    fn take_global(&self) -> Result<(), LimitReject> {
        let prev = self.total.fetch_add(1, Ordering::AcqRel);
        if self.max > 0 && prev >= self.max {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitReject::MaxConnections);
        }
        Ok(())
    }
}

impl ConnLimiter {
    /// Builds the limiter from `[limits]`; fails on an unparsable `connect_allowlist` entry.
    pub fn new(cfg: &LimitsConfig) -> Result<Self, AuthSetupError> {
        Ok(ConnLimiter(Arc::new(Inner {
            max: cfg.max_connections,
            per_ip: cfg.per_ip_connections,
            per_min: cfg.connect_per_ip_per_min as f64,
            allowlist: parse_cidrs(&cfg.connect_allowlist, "limits.connect_allowlist")?,
            max_pending: cfg.max_pending_heads,
            total: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
        })))
    }

    /// A slot for a just-accepted connection from `peer` until its request head is complete:
    /// counted against `max_pending_heads`, `max_connections` and, unless `peer` is
    /// allowlisted or `per_ip_exempt` (a trusted proxy speaking for many clients), its
    /// `per_ip_connections`. Spends no connect rate (the head may be a REST request).
    pub fn try_acquire_head(
        &self,
        peer: IpAddr,
        per_ip_exempt: bool,
    ) -> Result<HeadSlot, LimitReject> {
        let inner = &self.0;
        let prev = inner.pending.fetch_add(1, Ordering::AcqRel);
        if inner.max_pending > 0 && prev >= inner.max_pending {
            inner.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitReject::PendingHeads);
        }
        let permit = match per_ip_exempt {
            true => inner.take_global().map(|()| ConnPermit {
                inner: inner.clone(),
                key: None,
            }),
            false => self.acquire(peer, Instant::now(), false),
        };
        match permit {
            Ok(p) => Ok(HeadSlot(p)),
            Err(r) => {
                inner.pending.fetch_sub(1, Ordering::AcqRel);
                Err(r)
            }
        }
    }

    /// Unfinished request heads holding a slot.
    pub fn pending_heads(&self) -> usize {
        self.0.pending.load(Ordering::Acquire)
    }

    /// Admits a connection attempt from `ip` now.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnPermit, LimitReject> {
        self.try_acquire_at(ip, Instant::now())
    }

    /// Admits a one-shot REST request from `ip`: the connection caps apply while it is
    /// answered, but it does not spend the per-IP connection-attempt rate (that limit is for
    /// WebSocket/SSE connects, SPEC §5; a polling client makes many requests a minute).
    pub fn try_acquire_request(&self, ip: IpAddr) -> Result<ConnPermit, LimitReject> {
        self.acquire(ip, Instant::now(), false)
    }

    /// [`Self::try_acquire`] at a given instant (tests, or a reactor's cached clock).
    pub fn try_acquire_at(&self, ip: IpAddr, now: Instant) -> Result<ConnPermit, LimitReject> {
        self.acquire(ip, now, true)
    }

    fn acquire(
        &self,
        ip: IpAddr,
        now: Instant,
        spend_rate: bool,
    ) -> Result<ConnPermit, LimitReject> {
        let inner = &self.0;
        let per_ip_limited = inner.per_ip > 0 || inner.per_min > 0.0;
        if !per_ip_limited || in_cidrs(&inner.allowlist, ip) {
            inner.take_global()?;
            return Ok(ConnPermit {
                inner: inner.clone(),
                key: None,
            });
        }
        let key = ip_key(ip);
        let mut shard = inner.shard(&key);
        let shard = &mut *shard;
        if shard.ips.len() > SWEEP_ABOVE
            && shard
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t).as_secs() >= 10)
        {
            shard.last_sweep = Some(now);
            shard.ips.retain(|_, st| {
                inner.refill(st, now);
                st.conns > 0 || st.tokens < inner.per_min
            });
        }
        let st = shard.ips.entry(key).or_insert(IpState {
            conns: 0,
            tokens: inner.per_min,
            last: now,
        });
        if inner.per_min > 0.0 && spend_rate {
            inner.refill(st, now);
            if st.tokens < 1.0 {
                let wait = (1.0 - st.tokens) * 60.0 / inner.per_min;
                return Err(LimitReject::Rate {
                    retry_after_s: (wait.ceil() as u32).max(1),
                });
            }
            st.tokens -= 1.0;
        }
        if inner.per_ip > 0 && st.conns >= inner.per_ip {
            return Err(LimitReject::PerIp);
        }
        inner.take_global()?;
        st.conns += 1;
        Ok(ConnPermit {
            inner: inner.clone(),
            key: Some(PackedKey::pack(key)),
        })
    }

    /// Connections currently holding a permit.
    pub fn active(&self) -> usize {
        self.0.total.load(Ordering::Acquire)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.inner.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = self.key.map(PackedKey::unpack) {
            let mut shard = self.inner.shard(&key);
            if let Some(st) = shard.ips.get_mut(&key) {
                st.conns = st.conns.saturating_sub(1);
            }
        }
    }
}

/// A message rate: `per_s` tokens a second into a bucket of `burst` (0 `per_s`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

/// Inbound message rate for ONE connection: its tokens and last refill; the [`Rate`] is the
/// credential's, kept once for all its sessions and passed in. Not shared: owned by the
/// connection, no synchronization. 8 bytes (every open connection has one): the last refill
/// is a [`Stamp`], exact within 24.8 days, so an owner that may stay silent longer calls
/// [`TokenBucket::refill`] now and then (the shard does at each heartbeat).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f32,
    last: Stamp,
}

impl TokenBucket {
    /// Starts full. A `burst` below 1 counts as 1.
    pub fn new(rate: Rate) -> Self {
        TokenBucket {
            tokens: rate.burst.max(1) as f32,
            // Read only once tokens fall below the burst, after a refill has set it.
            last: Stamp::default(),
        }
    }

    /// Adds the tokens earned since the last refill (none taken).
    pub fn refill(&mut self, now: Instant, rate: Rate) {
        let now = Stamp::at(now);
        let burst = rate.burst.max(1) as f32;
        if self.tokens < burst {
            let dt = now.since(self.last).as_secs_f64();
            let tokens = f64::from(self.tokens) + dt * f64::from(rate.per_s);
            self.tokens = tokens.min(f64::from(burst)) as f32;
        }
        self.last = now;
    }

    /// Takes one token if available.
    pub fn allow(&mut self, now: Instant, rate: Rate) -> bool {
        if rate.per_s == 0 {
            return true;
        }
        self.refill(now, rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_burst_then_rate() {
        let r = Rate {
            per_s: 10,
            burst: 20,
        };
        let mut b = TokenBucket::new(r);
        let t0 = Instant::now();
        assert_eq!((0..30).filter(|_| b.allow(t0, r)).count(), 20);
        assert!(!b.allow(t0, r));
        assert!(b.allow(t0 + Duration::from_millis(100), r));
        assert!(!b.allow(t0 + Duration::from_millis(100), r));
        assert_eq!(
            (0..30)
                .filter(|_| b.allow(t0 + Duration::from_secs(60), r))
                .count(),
            20
        );
    }

    #[test]
    fn ipv6_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:3::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_key(m), "10.0.0.1".parse::<IpAddr>().unwrap());
        for k in [ip_key(a), ip_key(m)] {
            assert_eq!(PackedKey::pack(k).unpack(), k);
        }
        assert!(std::mem::size_of::<ConnPermit>() <= 24);
    }

    #[test]
    fn rest_requests_do_not_spend_the_connect_rate() {
        let cfg = LimitsConfig {
            connect_per_ip_per_min: 2,
            connect_allowlist: Vec::new(),
            ..LimitsConfig::default()
        };
        let l = ConnLimiter::new(&cfg).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..50 {
            held.push(
                l.try_acquire_request(ip)
                    .expect("requests are not rate-limited here"),
            );
            held.pop();
        }
        held.push(l.try_acquire(ip).unwrap());
        held.push(l.try_acquire(ip).unwrap());
        assert!(matches!(l.try_acquire(ip), Err(LimitReject::Rate { .. })));
        assert!(l.try_acquire_request(ip).is_ok());
    }
}
