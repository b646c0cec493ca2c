//! A WebSocket session's inbound side: decoded messages → protocol actions (subscribe,
//! unsubscribe, ping), echo on the conformance route, and the close handshake; and the
//! subscription core ([`attach`]) that a Server-Sent Events stream uses at open.

use std::sync::Arc;

use bytes::Bytes;

use super::sse::{self, SseRequest};
use super::{Conn, Env, Phase, Session, Sub, Transport};
use crate::event::Event;
use crate::fanout::failed::Reason;
use crate::ingest::replay::{Reason as ResumeReason, Start};
use crate::protocol::cursor::StreamPosition;
use crate::protocol::{ClientMessage, Filter, Since, server};
use crate::ws::{self, CloseFrame, Message, OpCode};

/// Queues a reply the client asked for in the control lane; a client with too many unread
/// replies (it floods without reading) is closed 1008 instead.
fn reply(ctx: &Env<'_>, conn: &mut Conn, frame: Bytes) {
    if conn.outbox.push_reply(frame).is_err() && conn.is_open() {
        ctx.metrics().reject("rate_limited");
        if let Phase::Open(s) = &conn.phase {
            tracing::warn!(connection_id = %s.id, remote = %s.peer.client_ip(), "too many unread replies; closing 1008");
        }
        conn.close(1008, "too many unread replies", ctx.now);
    }
}

/// Handles one decoded message. Returns false when the session is closing.
pub fn on_message(ctx: &mut Env<'_>, key: usize, conn: &mut Conn, msg: Message) -> bool {
    let now = ctx.now;
    let echo = conn.transport() == Transport::Echo;
    let Phase::Open(s) = &mut conn.phase else {
        return false;
    };
    // Data messages and pings take from the inbound bucket (pings cost us a pong each).
    let counted = matches!(
        msg,
        Message::Text(_) | Message::Binary(_) | Message::Ping(_)
    );
    if counted && !s.peer.bucket.allow(now, s.peer.grant.inbound) {
        ctx.metrics().reject("rate_limited");
        tracing::warn!(connection_id = %s.id, remote = %s.peer.client_ip(), "inbound message rate exceeded; closing 1008");
        conn.close(1008, "message rate limit exceeded", now);
        return false;
    }
    match msg {
        Message::Ping(p) => reply(ctx, conn, ws::pong_frame(&p)),
        Message::Pong(_) => {}
        Message::Close(frame) => {
            // Echo the peer's code (RFC 6455 §5.5.1), then we close the TCP side.
            let code = frame.as_ref().map_or(1000, |f: &CloseFrame| f.code);
            conn.close(code, "", now);
            return false;
        }
        // The echo route is a conformance tool: its echoes are not capped as replies.
        Message::Text(t) if echo => {
            conn.outbox
                .push_control(ws::encode::frame(OpCode::Text, &t));
        }
        Message::Binary(b) if echo => {
            conn.outbox
                .push_control(ws::encode::frame(OpCode::Binary, &b));
        }
        Message::Binary(_) => reply(
            ctx,
            conn,
            server::error(
                None,
                "bad_request",
                "binary messages are not part of protocol v1; send JSON text",
            ),
        ),
        Message::Text(t) => match ClientMessage::parse(&t) {
            Err(e) => reply(
                ctx,
                conn,
                server::error(e.id.as_deref(), e.code, &e.message),
            ),
            Ok(ClientMessage::Ping { id }) => reply(ctx, conn, server::pong(id.as_deref())),
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
                &dedup(&channels),
                filter.as_ref(),
                since,
            ),
            Ok(ClientMessage::Unsubscribe { id, channels }) => {
                unsubscribe(ctx, key, conn, id.as_deref(), &channels)
            }
        },
    }
    conn.is_open()
}

fn subscribe(
    ctx: &mut Env<'_>,
    key: usize,
    conn: &mut Conn,
    id: Option<&str>,
    channels: &[String],
    filter: Option<&serde_json::Value>,
    since: Option<Since>,
) {
    let Phase::Open(s) = &mut conn.phase else {
        return;
    };
    // A channel named twice counts once (in the limit, the replay and the ack).
    let mut unique: Vec<String> = Vec::with_capacity(channels.len());
    for c in channels {
        if !unique.contains(c) {
            unique.push(c.clone());
        }
    }
    let channels = &unique[..];
    let fail = |code: &str, msg: &str| server::error(id, code, msg);
    if let Some(ch) = channels.iter().find(|c| !s.peer.grant.acl.allows(c)) {
        ctx.metrics().reject("forbidden_channel");
        tracing::warn!(connection_id = %s.id, identity = %s.peer.grant.identity, channel = %ch, "subscribe refused: channel not allowed");
        let msg = format!("not allowed to subscribe to {:?}", clip(ch));
        return reply(ctx, conn, fail("forbidden_channel", &msg));
    }
    let combined = match combine(filter, s) {
        Ok(f) => f,
        Err(e) => return reply(ctx, conn, fail("bad_filter", &e)),
    };
    if let Err(e) = check_room(ctx, s, channels) {
        return reply(ctx, conn, fail("too_many_subscriptions", &e));
    }
    let Some(r) = attach(ctx, key, s, channels, combined, since.as_ref()) else {
        return reply(ctx, conn, server::subscribed(id, channels, None));
    };
    let ack = server::subscribed(id, channels, Some(r.recovery()));
    reply(ctx, conn, ack);
    push_replayed(ctx, conn, &r.events);
}

/// A channel name as quoted back in an error: at most 128 bytes.
fn clip(ch: &str) -> &str {
    let mut end = ch.len().min(128);
    while !ch.is_char_boundary(end) {
        end -= 1;
    }
    &ch[..end]
}

/// `channels` without repeats, first occurrence kept: a channel repeated in one request counts
/// (and replays) once. O(n): a request may carry thousands of names.
pub fn dedup(channels: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(channels.len());
    channels
        .iter()
        .filter(|c| seen.insert(c.as_str()))
        .cloned()
        .collect()
}

/// The user filter ANDed with the identity's forced filter.
fn combine(filter: Option<&serde_json::Value>, s: &Session) -> Result<Option<Arc<Filter>>, String> {
    let user = filter.map(Filter::parse).transpose()?;
    Ok(match (user, &s.peer.grant.forced_filter) {
        (Some(u), Some(f)) => Some(Arc::new(u.and(f))),
        (Some(u), None) => Some(Arc::new(u)),
        (None, f) => f.clone(),
    })
}

/// `max_subscriptions` after adding `channels`.
fn check_room(ctx: &Env<'_>, s: &Session, channels: &[String]) -> Result<(), String> {
    let new = channels
        .iter()
        .filter(|c| !s.subs.iter().any(|x| *x.channel == ***c))
        .count();
    let max = ctx.state.limits.load().max_subscriptions;
    if s.subs.len() + new > max || channels.len() > max {
        return Err(format!("at most {max} subscriptions per connection"));
    }
    Ok(())
}

/// What a `since` replay found: sent as `recovered`/`reason`/`replayed`, then the events.
#[derive(Debug)]
pub struct Resumed {
    /// `None`: recovered; else why not and a detail for humans.
    pub lost: Option<(ResumeReason, String)>,
    /// Replayed events that pass the subscription's filter, oldest first per partition.
    pub events: Vec<Arc<Event>>,
    /// The stream's position on every partition before the replay (see
    /// [`crate::ingest::replay::Resume::start_positions`]).
    pub start: Vec<(Arc<str>, i32, i64)>,
}

impl Resumed {
    /// The `subscribed` fields.
    pub fn recovery(&self) -> server::Recovery<'_> {
        server::Recovery {
            replayed: self.events.len(),
            lost: self.lost.as_ref().map(|(r, d)| (r.as_str(), d.as_str())),
        }
    }
}

/// The index/replay part of a subscription, shared by the WebSocket `subscribe` and the SSE
/// open: records and indexes `channels` (each once) with `filter`, then (with `since`)
/// replays what came after and sets the watermarks that drop the live overlap. Checks are the
/// caller's; a token cursor must be resolved already.
pub fn attach(
    ctx: &mut Env<'_>,
    key: usize,
    s: &mut Session,
    channels: &[String],
    filter: Option<Arc<Filter>>,
    since: Option<&Since>,
) -> Option<Resumed> {
    // Exactly what this subscribe adds: most connections hold one or two channels.
    for ch in channels {
        // Index first, replay second: every event is then either in what replay returns or
        // pushed to this shard's ring afterwards; the watermarks drop the overlap.
        let name = ctx.subs.subscribe(ch, key, filter.clone());
        if !s.subs.iter().any(|x| *x.channel == **ch) {
            s.subs.push(Sub {
                channel: name,
                watermarks: None,
            });
            ctx.metrics().subscriptions.add(1);
        }
    }
    let since = since?;
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let r = ctx.state.replay.resume(&names, Start::Cursor(since));
    let watermarks = r.watermarks();
    for sub in s
        .subs
        .iter_mut()
        .filter(|x| channels.iter().any(|c| *x.channel == **c))
    {
        sub.watermarks = (!watermarks.is_empty()).then(|| Box::new(watermarks.clone()));
    }
    s.has_watermarks = s.subs.iter().any(|x| x.watermarks.is_some());
    let start = r.start_positions().collect();
    let events = r
        .events
        .into_iter()
        .filter(|e| filter.as_ref().is_none_or(|f| f.matches(&e.data)))
        .collect();
    Some(Resumed {
        start,
        lost: r.lost,
        events,
    })
}

/// Queues replayed events (same caps and drop accounting as live deliveries: a `gap` and
/// `fanline_dropped_total{reason="slow_consumer"}`).
fn push_replayed(ctx: &mut Env<'_>, conn: &mut Conn, events: &[Arc<Event>]) {
    let Phase::Open(s) = &mut conn.phase else {
        return;
    };
    let (max_frames, max_bytes) = (
        ctx.state.cfg.limits.outbox_frames,
        ctx.state.cfg.limits.outbox_bytes,
    );
    let now = ctx.now;
    let before = conn.outbox.bytes();
    let mut dropped = 0;
    for ev in events {
        let failed = ctx.state.fanout.failed.shard(ctx.shard);
        s.queue_event(
            &mut conn.outbox,
            ev,
            (max_frames, max_bytes),
            now,
            |s, d| {
                failed.conn(
                    &s.id.text(),
                    &s.peer.grant.identity,
                    d,
                    Reason::SlowConsumer,
                );
                dropped += 1;
            },
        );
    }
    *ctx.outbox_bytes += conn.outbox.bytes() as i64 - before as i64;
    ctx.metrics().dropped_slow_consumer.add(dropped);
}

/// Opens a Server-Sent Events stream after its `200` (the connection is already open over
/// [`Transport::Sse`]): subscribes to the requested channels (channel ACL already checked before the `200`), sends
/// `event: subscribed`, then any replayed events. A refusal here is an `event: error` + close.
pub fn open_sse(ctx: &mut Env<'_>, key: usize, conn: &mut Conn, req: SseRequest) {
    let Phase::Open(s) = &mut conn.phase else {
        return;
    };
    let channels = dedup(&req.channels);
    let checked = combine(req.filter.as_ref(), s)
        .map_err(|e| ("bad_filter", e))
        .and_then(|f| {
            check_room(ctx, s, &channels).map_err(|e| ("too_many_subscriptions", e))?;
            Ok(f)
        });
    let combined = match checked {
        Ok(f) => f,
        Err((code, e)) => {
            conn.outbox.push_control(sse::error(code, &e));
            return conn.close(0, "", ctx.now);
        }
    };
    let mut since = req.since;
    if let Some(c) = &mut since {
        let replay = &ctx.state.replay;
        c.resolve(|h| replay.topic_for_hash(h));
    }
    let r = attach(ctx, key, s, &channels, combined, since.as_ref());
    // The stream's position on every partition it reads, before the replay: each replayed
    // and live event then moves it, and its token is that event's `id:`.
    let replay = &ctx.state.replay;
    let start = match &r {
        Some(r) => r.start.clone(),
        None => {
            let names: Vec<&str> = channels.iter().map(String::as_str).collect();
            replay
                .resume(&names, Start::Live)
                .start_positions()
                .collect()
        }
    };
    let epoch = replay.epoch();
    s.position = Some(Box::new(StreamPosition::new(epoch, start)));
    conn.outbox.push_control(sse::subscribed(
        &s.id.text(),
        epoch,
        &channels,
        r.as_ref().map(Resumed::recovery),
    ));
    if let Some(r) = r {
        push_replayed(ctx, conn, &r.events);
    }
}

fn unsubscribe(
    ctx: &mut Env<'_>,
    key: usize,
    conn: &mut Conn,
    id: Option<&str>,
    channels: &[String],
) {
    let Phase::Open(s) = &mut conn.phase else {
        return;
    };
    let channels = dedup(channels);
    let channels = &channels[..];
    for ch in channels {
        if let Some(i) = s.subs.iter().position(|x| *x.channel == **ch) {
            s.subs.swap_remove(i);
            ctx.metrics().subscriptions.add(-1);
            ctx.subs.unsubscribe(ch, key);
        }
    }
    s.has_watermarks = s.subs.iter().any(|x| x.watermarks.is_some());
    reply(ctx, conn, server::unsubscribed(id, channels));
}

/// Removes every subscription of a session that is going away.
pub fn drop_subscriptions(ctx: &mut Env<'_>, key: usize, conn: &mut Conn) {
    if let Phase::Open(s) = &mut conn.phase {
        for sub in s.subs.drain() {
            ctx.metrics().subscriptions.add(-1);
            ctx.subs.unsubscribe(&sub.channel, key);
        }
    }
}

/// How a `gap` notice (`channel`, `dropped`) is encoded on `transport`.
pub fn gap_encoder(transport: Transport) -> fn(&str, u64) -> Bytes {
    match transport {
        Transport::Sse => |c, n| sse::gap(c, n, "slow_consumer"),
        Transport::WebSocket | Transport::Echo => |c, n| server::gap(c, n, "slow_consumer"),
    }
}
