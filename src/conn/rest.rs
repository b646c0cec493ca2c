//! REST over the replay buffer (SPEC §6): the polling fallback and the "current value" pattern,
//! with Kafka offsets as the cursor, answered on the public listener after the same limits,
//! credentials and channel ACL as an upgrade.
//!
//! - `GET /v1/channels/{channel}/events?since=topic/p:offset,…&limit=100&filter.<field>=v`:
//!   retained events after the cursor (everything retained when `since` is absent), oldest
//!   first per partition, at most `limit` (≤ 1000); `next` is the cursor to poll with next
//!   (`epoch:…,topic/p:offset,…` over every partition of the channel); `recovered:false` +
//!   `reason` (`partial_cursor`, `epoch_changed`, `too_old`) + `detail` under the same rules as
//!   WebSocket `since` ([`crate::ingest::replay::resume`]). ETag / If-None-Match.
//! - `GET /v1/channels/{channel}/latest`: the last retained event that the identity's forced
//!   filter lets through; ETag = its id.
//! - `GET /v1/latest?channels=a,b`: the last event of each channel (`null` when none).

use std::hash::{Hash, Hasher};

use crate::auth::credentials::percent_decode;
use crate::event::push_json_str;
use crate::http::{self, Head};
use crate::ingest::replay::Start;
use crate::protocol::cursor::Position;
use crate::protocol::{Cursor, Filter, Since};
use crate::state::ServerState;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Whether `path` is one of the REST routes.
pub fn is_rest_path(path: &str) -> bool {
    path == "/v1/latest" || path.starts_with("/v1/channels/")
}

/// Channels a REST request reads (for the ACL), or a 400/404 message.
pub fn channels(head: &Head<'_, '_>) -> Result<Vec<String>, (u16, String)> {
    if head.method != "GET" {
        return Err((405, "use GET".into()));
    }
    if head.path == "/v1/latest" {
        let q = super::sse::parse_query(head.query).map_err(|e| (400, e))?;
        if q.channels.is_empty() {
            return Err((400, "channels=a,b is required".into()));
        }
        return Ok(q.channels);
    }
    let rest = head.path.trim_start_matches("/v1/channels/");
    let (raw, _) = rest
        .rsplit_once('/')
        .filter(|(c, tail)| !c.is_empty() && matches!(*tail, "events" | "latest"))
        .ok_or((404, "no such route".to_string()))?;
    let channel =
        percent_decode(raw).ok_or((400, "bad percent-encoding in the channel".to_string()))?;
    Ok(vec![channel.into_owned()])
}

/// Answers an admitted REST request (ACL already checked for `channels`).
pub fn handle(
    shared: &ServerState,
    head: &Head<'_, '_>,
    forced: Option<&Filter>,
    channels: &[String],
) -> Vec<u8> {
    let q = match super::sse::parse_query(head.query) {
        Ok(q) => q,
        Err(e) => return http::error_response(400, "bad_request", &e, &[]),
    };
    let if_none_match = http::header(head.headers, "if-none-match");
    if head.path == "/v1/latest" {
        let mut body = b"{".to_vec();
        let mut tag = std::collections::hash_map::DefaultHasher::new();
        for (i, c) in channels.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            push_json_str(&mut body, c);
            body.push(b':');
            match latest(shared, c, forced) {
                Some(ev) => {
                    (c, &*ev.topic, ev.partition, ev.offset).hash(&mut tag);
                    body.extend_from_slice(&ev.json());
                }
                None => body.extend_from_slice(b"null"),
            }
        }
        body.push(b'}');
        return cached(
            format!("\"{:x}-{:x}\"", shared.replay.epoch(), tag.finish()),
            if_none_match,
            &body,
        );
    }
    let channel = &channels[0];
    if head.path.ends_with("/latest") {
        return match latest(shared, channel, forced) {
            Some(ev) => cached(format!("\"{}\"", ev.id()), if_none_match, &ev.json()),
            None => http::error_response(404, "no_event", "no retained event on this channel", &[]),
        };
    }
    events(
        shared,
        channel,
        q.since,
        q.limit,
        q.filter.as_ref(),
        forced,
        if_none_match,
    )
}

fn latest(
    shared: &ServerState,
    channel: &str,
    forced: Option<&Filter>,
) -> Option<std::sync::Arc<crate::event::Event>> {
    shared
        .replay
        .latest_matching(channel, |ev| forced.is_none_or(|f| f.matches(&ev.data)))
}

fn events(
    shared: &ServerState,
    channel: &str,
    since: Option<Since>,
    limit: Option<usize>,
    filter: Option<&serde_json::Value>,
    forced: Option<&Filter>,
    if_none_match: Option<&[u8]>,
) -> Vec<u8> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let user = match filter.map(Filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => return http::error_response(400, "bad_filter", &e, &[]),
    };
    let filter = match (user, forced) {
        (Some(u), Some(f)) => Some(u.and(f)),
        (Some(u), None) => Some(u),
        (None, f) => f.cloned(),
    };
    let replay = &shared.replay;
    let mut since = since;
    if let Some(c) = &mut since {
        c.resolve(|h| replay.topic_for_hash(h));
    }
    // No cursor: everything retained, from each partition's start.
    let start = since.as_ref().map_or(Start::Retained, Start::Cursor);
    let r = replay.resume(&[channel], start);
    let mut body = b"{\"channel\":".to_vec();
    push_json_str(&mut body, channel);
    body.extend_from_slice(b",\"events\":[");
    let mut n = 0;
    let mut next = Cursor {
        epoch: Some(replay.epoch()),
        ..Cursor::default()
    };
    for part in &r.parts {
        let mut pos = part.after.unwrap_or(part.tail);
        let mut examined_all = true;
        for ev in &r.events[part.events.clone()] {
            if n == limit {
                examined_all = false;
                break;
            }
            // Examined events move the cursor whether or not the filter keeps them.
            pos = ev.offset;
            if filter.as_ref().is_some_and(|f| !f.matches(&ev.data)) {
                continue;
            }
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&ev.json());
            n += 1;
        }
        if examined_all {
            pos = part.tail;
        }
        next.positions.push(Position {
            topic: part.topic.to_string(),
            partition: part.partition,
            offset: pos,
        });
    }
    let next = next.to_query();
    body.extend_from_slice(b"],\"next\":");
    push_json_str(&mut body, &next);
    match &r.lost {
        None => body.extend_from_slice(b",\"recovered\":true"),
        Some((reason, detail)) => {
            body.extend_from_slice(b",\"recovered\":false,\"reason\":");
            push_json_str(&mut body, reason.as_str());
            body.extend_from_slice(b",\"detail\":");
            push_json_str(&mut body, detail);
        }
    }
    body.push(b'}');
    let mut tag = std::collections::hash_map::DefaultHasher::new();
    (channel, &next, n).hash(&mut tag);
    cached(
        format!("\"{:x}-{:x}\"", replay.epoch(), tag.finish()),
        if_none_match,
        &body,
    )
}

/// 200 with `ETag`, or 304 when the client already has it.
fn cached(etag: String, if_none_match: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
    let extra = [("ETag", etag.as_str()), ("Cache-Control", "no-cache")];
    if if_none_match.is_some_and(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes())
    }) {
        return http::response(304, "application/json", &extra, b"", true);
    }
    http::response(200, "application/json", &extra, body, true)
}
