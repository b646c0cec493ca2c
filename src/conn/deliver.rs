//! The delivery policy: what one live event does to one session's outbox. A pure function of
//! the session, the outbox and the event (no sockets, no shard), so it is unit-tested here.
//!
//! In order: the subscription's filter, then the resume dedup watermarks (an event replay
//! already sent is not sent again), then the outbox caps with drop-oldest. Every event dropped
//! for room is tallied once, in the session's pending `gap` notices ([`Session::note_drop`]).

use std::sync::Arc;
use std::time::Instant;

use super::Session;
use super::outbox::Outbox;
use crate::event::Event;
use crate::fanout::failed::{Reason, ShardFailed};
use crate::protocol::Filter;

/// What [`deliver`] did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued; nothing was dropped.
    Delivered,
    /// Not for this session: the filter refused it or replay already sent it.
    Filtered,
    /// Queued under pressure: `gap` events (oldest first, possibly this one) were dropped to
    /// respect the outbox caps, and are owed to the client as a `gap` notice.
    Dropped { gap: u64 },
}

/// Outbox caps from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub frames: usize,
    pub bytes: usize,
}

/// Applies the delivery policy for `ev` to one subscriber. Allocation-free on a WebSocket; an
/// SSE stream encodes its message (with its position as `id:`) per delivery.
#[inline]
pub fn deliver(
    s: &mut Session,
    outbox: &mut Outbox,
    filter: Option<&Filter>,
    ev: &Arc<Event>,
    caps: Caps,
    now: Instant,
    failed: ShardFailed<'_>,
) -> Delivery {
    if filter.is_some_and(|f| !f.matches(&ev.data)) {
        return Delivery::Filtered;
    }
    if s.has_watermarks && s.already_replayed(ev) {
        return Delivery::Filtered;
    }
    let mut gap = 0;
    s.queue_event(
        outbox,
        ev,
        (caps.frames, caps.bytes),
        now,
        |s: &Session, d: &Event| {
            failed.conn(
                &s.id.text(),
                &s.peer.grant.identity,
                d,
                Reason::SlowConsumer,
            );
            gap += 1;
        },
    );
    if gap == 0 {
        Delivery::Delivered
    } else {
        Delivery::Dropped { gap }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Peer, Sub};

    fn session(now: Instant) -> Session {
        let limits = crate::config::LimitsConfig::default();
        let limiter = crate::auth::ConnLimiter::new(&limits).expect("limiter");
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        Session {
            id: crate::conn::state::SessionId::new(0, 1),
            position: None,
            deflate: None,
            reader: None,
            subs: crate::conn::state::Subs::One(Sub {
                channel: "c".into(),
                watermarks: None,
            }),
            has_watermarks: false,
            next_ping: crate::clock::Stamp::at(now),
            ping: crate::conn::Ping::Idle,
            trouble: None,
            peer: Peer {
                grant: Arc::new(crate::conn::state::Grant {
                    identity: "anonymous".into(),
                    acl: crate::auth::ChannelAcl::all(),
                    forced_filter: None,
                    inbound: crate::auth::Rate {
                        per_s: limits.inbound_msgs_per_s,
                        burst: limits.inbound_burst,
                    },
                    max_inbound: 1024,
                }),
                permit: limiter.try_acquire(ip).expect("permit"),
                client: crate::conn::state::pack_ip(ip),
                identity_permit: None,
                bucket: crate::auth::TokenBucket::new(crate::auth::Rate {
                    per_s: limits.inbound_msgs_per_s,
                    burst: limits.inbound_burst,
                }),
            },
            connected_ms: 0,
        }
    }

    fn ev(offset: i64, data: &str) -> Arc<Event> {
        crate::event::test_event(offset, data, serde_json::from_str(data).expect("json"))
    }

    const ROOMY: Caps = Caps {
        frames: 100,
        bytes: 1 << 20,
    };

    #[test]
    fn filter_refuses_without_counting() {
        let now = Instant::now();
        let (mut s, mut o) = (session(now), Outbox::default());
        let log = crate::fanout::FailedLog::new(1);
        let f = Filter::parse(&serde_json::json!({"n": 2})).expect("filter");
        let got = deliver(
            &mut s,
            &mut o,
            Some(&f),
            &ev(1, r#"{"n":1}"#),
            ROOMY,
            now,
            log.shard(0),
        );
        assert_eq!(got, Delivery::Filtered);
        let got = deliver(
            &mut s,
            &mut o,
            Some(&f),
            &ev(2, r#"{"n":2}"#),
            ROOMY,
            now,
            log.shard(0),
        );
        assert_eq!(got, Delivery::Delivered);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn watermarks_drop_what_replay_already_sent() {
        let now = Instant::now();
        let (mut s, mut o) = (session(now), Outbox::default());
        let log = crate::fanout::FailedLog::new(1);
        s.subs[0].watermarks = Some(Box::new(vec![("t".into(), 0, 5)]));
        s.has_watermarks = true;
        assert_eq!(
            deliver(&mut s, &mut o, None, &ev(5, "1"), ROOMY, now, log.shard(0)),
            Delivery::Filtered
        );
        assert_eq!(
            deliver(&mut s, &mut o, None, &ev(6, "1"), ROOMY, now, log.shard(0)),
            Delivery::Delivered
        );
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn full_outbox_drops_oldest_into_one_gap_tally() {
        let now = Instant::now();
        let (mut s, mut o) = (session(now), Outbox::default());
        let log = crate::fanout::FailedLog::new(1);
        let caps = Caps {
            frames: 2,
            bytes: 1 << 20,
        };
        for i in 0..2 {
            assert_eq!(
                deliver(&mut s, &mut o, None, &ev(i, "1"), caps, now, log.shard(0)),
                Delivery::Delivered
            );
        }
        for i in 2..5 {
            let got = deliver(&mut s, &mut o, None, &ev(i, "1"), caps, now, log.shard(0));
            assert_eq!(got, Delivery::Dropped { gap: 1 });
        }
        assert_eq!((s.dropped(), o.len()), (3, 2));
        assert_eq!(s.trouble().pending_gaps, vec![("c".into(), 3)]);
        // One failed-deliveries entry per dropped event: the oldest three, offsets 0, 1, 2.
        let page = log.page(0, 10);
        let ids: Vec<_> = page.failed.iter().map(|f| f["event_id"].clone()).collect();
        assert_eq!(ids, ["t/0/0", "t/0/1", "t/0/2"]);
        assert!(
            page.failed
                .iter()
                .all(|f| f["connection_id"] == s.id.to_string().as_str()
                    && f["reason"] == "slow_consumer")
        );
        assert_eq!(s.overflow_since(), Some(now));
    }
}
