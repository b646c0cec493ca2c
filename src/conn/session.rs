//! A WebSocket session's inbound side: decoded messages → protocol actions (subscribe,
//! unsubscribe, ping), echo on the conformance route, and the close handshake; and the
//! subscription core ([`attach`]) that a Server-Sent Events stream uses at open.

use std::sync::Arc;

use bytes::Bytes;

use super::sse::{self, SseRequest};
use super::{Conn, Phase, Session, Sub};
use crate::event::Event;
use crate::protocol::{ClientMessage, Filter, Since, server};
use crate::shard::Ctx;
use crate::shard::index::Entry;
use crate::ws::{self, CloseFrame, Message, OpCode};

/// Handles one decoded message. Returns false when the session is closing.
pub fn on_message(ctx: &mut Ctx, key: usize, conn: &mut Conn, msg: Message) -> bool {
    let now = ctx.now;
    let Phase::Ws(s) = &mut conn.phase else {
        return false;
    };
    if matches!(msg, Message::Text(_) | Message::Binary(_)) && !s.peer.bucket.allow(now) {
        ctx.metrics().reject("rate_limited");
        tracing::warn!(connection_id = %s.id, remote = %s.peer.client_ip, "inbound message rate exceeded; closing 1008");
        conn.close(1008, "message rate limit exceeded", now);
        return false;
    }
    match msg {
        Message::Ping(p) => conn.outbox.push_control(ws::pong_frame(&p)),
        Message::Pong(_) => {}
        Message::Close(frame) => {
            // Echo the peer's code (RFC 6455 §5.5.1), then we close the TCP side.
            let code = frame.as_ref().map_or(1000, |f: &CloseFrame| f.code);
            conn.close(code, "", now);
            return false;
        }
        Message::Text(t) if s.echo => conn
            .outbox
            .push_control(ws::encode::frame(OpCode::Text, &t)),
        Message::Binary(b) if s.echo => conn
            .outbox
            .push_control(ws::encode::frame(OpCode::Binary, &b)),
        Message::Binary(_) => conn.outbox.push_control(server::error(
            None,
            "bad_request",
            "binary messages are not part of protocol v1; send JSON text",
        )),
        Message::Text(t) => match ClientMessage::parse(&t) {
            Err(e) => conn
                .outbox
                .push_control(server::error(e.id.as_deref(), e.code, &e.message)),
            Ok(ClientMessage::Ping { id }) => conn.outbox.push_control(server::pong(id.as_deref())),
            Ok(ClientMessage::Subscribe {
                id,
                channels,
                filter,
                since,
            }) => subscribe(
                ctx,
                key,
                conn,
                id.as_deref(),
                &channels,
                filter.as_ref(),
                since,
            ),
            Ok(ClientMessage::Unsubscribe { id, channels }) => {
                unsubscribe(ctx, key, conn, id.as_deref(), &channels)
            }
        },
    }
    true
}

fn subscribe(
    ctx: &mut Ctx,
    key: usize,
    conn: &mut Conn,
    id: Option<&str>,
    channels: &[String],
    filter: Option<&serde_json::Value>,
    since: Option<Since>,
) {
    let Phase::Ws(s) = &mut conn.phase else {
        return;
    };
    let fail = |code: &str, msg: &str| server::error(id, code, msg);
    if let Some(ch) = channels.iter().find(|c| !s.peer.identity.allows(c)) {
        ctx.metrics().reject("forbidden_channel");
        tracing::warn!(connection_id = %s.id, identity = %s.peer.identity.id, channel = %ch, "subscribe refused: channel not allowed");
        return conn.outbox.push_control(fail(
            "forbidden_channel",
            &format!("not allowed to subscribe to {ch:?}"),
        ));
    }
    let combined = match combine(filter, s) {
        Ok(f) => f,
        Err(e) => return conn.outbox.push_control(fail("bad_filter", &e)),
    };
    if let Err(e) = check_room(ctx, s, channels) {
        return conn.outbox.push_control(fail("too_many_subscriptions", &e));
    }
    let Some(r) = attach(ctx, key, s, channels, combined, since.as_ref()) else {
        return conn
            .outbox
            .push_control(server::subscribed(id, channels, None));
    };
    conn.outbox.push_control(server::subscribed(
        id,
        channels,
        Some((r.recovered, r.reason.as_deref(), r.events.len())),
    ));
    push_replayed(ctx, conn, &r.events);
}

/// The user filter ANDed with the identity's forced filter.
fn combine(filter: Option<&serde_json::Value>, s: &Session) -> Result<Option<Arc<Filter>>, String> {
    let user = filter.map(Filter::parse).transpose()?;
    Ok(match (user, &s.forced_filter) {
        (Some(u), Some(f)) => Some(Arc::new(u.and(f))),
        (Some(u), None) => Some(Arc::new(u)),
        (None, f) => f.clone(),
    })
}

/// `max_subscriptions` after adding `channels`.
fn check_room(ctx: &Ctx, s: &Session, channels: &[String]) -> Result<(), String> {
    let new = channels
        .iter()
        .filter(|c| !s.subs.iter().any(|x| *x.channel == ***c))
        .count();
    let max = ctx.shared.cfg.limits.max_subscriptions;
    if s.subs.len() + new > max {
        return Err(format!("at most {max} subscriptions per connection"));
    }
    Ok(())
}

/// What a `since` replay found: sent as `recovered`/`reason`/`replayed`, then the events.
#[derive(Debug)]
pub struct Resumed {
    pub recovered: bool,
    pub reason: Option<String>,
    /// Replayed events that pass the subscription's filter, oldest first per partition.
    pub events: Vec<Arc<Event>>,
}

/// The index/replay part of a subscription, shared by the WebSocket `subscribe` and the SSE
/// open: records and indexes `channels` with `filter`, then (with `since`) replays what came
/// after and sets the watermarks that drop the live overlap. Checks are the caller's.
pub fn attach(
    ctx: &mut Ctx,
    key: usize,
    s: &mut Session,
    channels: &[String],
    filter: Option<Arc<Filter>>,
    since: Option<&Since>,
) -> Option<Resumed> {
    for ch in channels {
        if !s.subs.iter().any(|x| *x.channel == **ch) {
            s.subs.push(Sub {
                channel: ch.as_str().into(),
                watermarks: Vec::new(),
            });
            ctx.metrics().subscriptions.add(1);
        }
        // Index first, replay second: every event is then either in what replay returns or
        // pushed to this shard's ring afterwards; the watermarks drop the overlap.
        ctx.index.insert(
            ctx.id,
            &ctx.shared.fanout.subscriptions,
            ch,
            Entry {
                conn: key,
                filter: filter.clone(),
            },
        );
    }
    let since = since?;
    let mut out = Resumed {
        recovered: true,
        reason: None,
        events: Vec::new(),
    };
    for ch in channels {
        let r = ctx.shared.replay.replay(ch, since);
        out.recovered &= r.recovered;
        out.reason = out.reason.or(r.reason);
        let Some(sub) = s.subs.iter_mut().find(|x| *x.channel == **ch) else {
            continue;
        };
        sub.watermarks = since
            .iter()
            .map(|(t, p, o)| {
                let last = r
                    .events
                    .iter()
                    .filter(|e| *e.topic == **t && e.partition == *p)
                    .map(|e| e.offset)
                    .max();
                (
                    Arc::<str>::from(t.as_str()),
                    *p,
                    last.map_or(*o, |l| l.max(*o)),
                )
            })
            .collect();
        out.events.extend(
            r.events
                .into_iter()
                .filter(|e| filter.as_ref().is_none_or(|f| f.matches(&e.data))),
        );
    }
    s.has_watermarks = true;
    Some(out)
}

/// Queues replayed events (same caps and drop accounting as live deliveries).
fn push_replayed(ctx: &mut Ctx, conn: &mut Conn, events: &[Arc<Event>]) {
    let Phase::Ws(s) = &mut conn.phase else {
        return;
    };
    let (max_frames, max_bytes) = (
        ctx.shared.cfg.limits.outbox_frames,
        ctx.shared.cfg.limits.outbox_bytes,
    );
    let now = ctx.now;
    for ev in events {
        let before = conn.outbox.bytes();
        conn.outbox
            .push_event(ev, max_frames, max_bytes, |d| s.note_drop(d, now));
        ctx.outbox_bytes += conn.outbox.bytes() as i64 - before as i64;
        s.sent += 1;
    }
}

/// Opens a Server-Sent Events stream after its `200`: switches the outbox to SSE, subscribes
/// to the requested channels (channel ACL already checked before the `200`), sends
/// `event: subscribed`, then any replayed events. A refusal here is an `event: error` + close.
pub fn open_sse(ctx: &mut Ctx, key: usize, conn: &mut Conn, req: SseRequest) {
    conn.outbox.set_sse(true);
    let Phase::Ws(s) = &mut conn.phase else {
        return;
    };
    s.sse = true;
    let checked = combine(req.filter.as_ref(), s)
        .map_err(|e| ("bad_filter", e))
        .and_then(|f| {
            check_room(ctx, s, &req.channels).map_err(|e| ("too_many_subscriptions", e))?;
            Ok(f)
        });
    let combined = match checked {
        Ok(f) => f,
        Err((code, e)) => {
            conn.outbox.push_control(sse::error(code, &e));
            return conn.close(0, "", ctx.now);
        }
    };
    let r = attach(ctx, key, s, &req.channels, combined, req.since.as_ref());
    let resumed = r
        .as_ref()
        .map(|r| (r.recovered, r.reason.as_deref(), r.events.len()));
    conn.outbox
        .push_control(sse::subscribed(&s.id, &req.channels, resumed));
    if let Some(r) = r {
        push_replayed(ctx, conn, &r.events);
    }
}

fn unsubscribe(ctx: &mut Ctx, key: usize, conn: &mut Conn, id: Option<&str>, channels: &[String]) {
    let Phase::Ws(s) = &mut conn.phase else {
        return;
    };
    for ch in channels {
        if let Some(i) = s.subs.iter().position(|x| *x.channel == **ch) {
            s.subs.swap_remove(i);
            ctx.metrics().subscriptions.add(-1);
            ctx.index
                .remove(ctx.id, &ctx.shared.fanout.subscriptions, ch, key);
        }
    }
    s.has_watermarks = s.subs.iter().any(|x| !x.watermarks.is_empty());
    conn.outbox.push_control(server::unsubscribed(id, channels));
}

/// Removes every subscription of a session that is going away.
pub fn drop_subscriptions(ctx: &mut Ctx, key: usize, conn: &mut Conn) {
    if let Phase::Ws(s) = &mut conn.phase {
        for sub in s.subs.drain(..) {
            ctx.metrics().subscriptions.add(-1);
            ctx.index
                .remove(ctx.id, &ctx.shared.fanout.subscriptions, &sub.channel, key);
        }
    }
}

/// A frame that must reach the client before anything else queued (used for `gap`), in the
/// session's transport.
pub fn gap_frames(
    pending: &mut Vec<(Box<str>, u64)>,
    sse: bool,
) -> impl Iterator<Item = Bytes> + '_ {
    pending.drain(..).map(move |(c, n)| {
        if sse {
            sse::gap(&c, n, "slow_consumer")
        } else {
            server::gap(&c, n, "slow_consumer")
        }
    })
}
