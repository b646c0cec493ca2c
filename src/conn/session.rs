//! A WebSocket session's inbound side: decoded messages → protocol actions (subscribe,
//! unsubscribe, ping), echo on the conformance route, and the close handshake.

use std::sync::Arc;

use bytes::Bytes;

use super::{Conn, Phase, Sub};
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
    let user = match filter.map(Filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => return conn.outbox.push_control(fail("bad_filter", &e)),
    };
    let combined = match (user, &s.forced_filter) {
        (Some(u), Some(f)) => Some(Arc::new(u.and(f))),
        (Some(u), None) => Some(Arc::new(u)),
        (None, f) => f.clone(),
    };
    let new = channels
        .iter()
        .filter(|c| !s.subs.iter().any(|x| *x.channel == ***c))
        .count();
    let max = ctx.shared.cfg.limits.max_subscriptions;
    if s.subs.len() + new > max {
        return conn.outbox.push_control(fail(
            "too_many_subscriptions",
            &format!("at most {max} subscriptions per connection"),
        ));
    }
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
                filter: combined.clone(),
            },
        );
    }
    let Some(since) = since else {
        return conn
            .outbox
            .push_control(server::subscribed(id, channels, None));
    };
    let (mut recovered, mut reason, mut replayed) = (true, None, Vec::new());
    for ch in channels {
        let r = ctx.shared.replay.replay(ch, &since);
        recovered &= r.recovered;
        reason = reason.or(r.reason);
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
        replayed.extend(
            r.events
                .into_iter()
                .filter(|e| combined.as_ref().is_none_or(|f| f.matches(&e.data))),
        );
    }
    s.has_watermarks = true;
    conn.outbox.push_control(server::subscribed(
        id,
        channels,
        Some((recovered, reason.as_deref(), replayed.len())),
    ));
    let (max_frames, max_bytes) = (
        ctx.shared.cfg.limits.outbox_frames,
        ctx.shared.cfg.limits.outbox_bytes,
    );
    let now = ctx.now;
    for ev in &replayed {
        let before = conn.outbox.bytes();
        conn.outbox
            .push_event(ev, max_frames, max_bytes, |d| s.note_drop(d, now));
        ctx.outbox_bytes += conn.outbox.bytes() as i64 - before as i64;
        s.sent += 1;
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

/// A frame that must reach the client before anything else queued (used for `gap`).
pub fn gap_frames(pending: &mut Vec<(Box<str>, u64)>) -> impl Iterator<Item = Bytes> + '_ {
    pending
        .drain(..)
        .map(|(c, n)| server::gap(&c, n, "slow_consumer"))
}
