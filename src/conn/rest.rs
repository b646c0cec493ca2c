//! REST over the replay buffer (SPEC §6): the polling fallback and the "current value" pattern,
//! with Kafka offsets as the cursor, answered on the public listener after the same limits,
//! credentials and channel ACL as an upgrade.
//!
//! - `GET /v1/channels/{channel}/events?since=topic/p:offset,…&limit=100&filter.<field>=v`:
//!   retained events after the cursor (everything retained when `since` is absent), oldest
//!   first per partition, at most `limit` (≤ 1000); `next` is the cursor to poll with next;
//!   `recovered:false` + `reason` when the cursor is older than the buffer. ETag / If-None-Match.
//! - `GET /v1/channels/{channel}/latest`: the last retained event; ETag = its id.
//! - `GET /v1/latest?channels=a,b`: the last event of each channel (`null` when none).

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use crate::auth::credentials::percent_decode;
use crate::event::push_json_str;
use crate::http::{self, Head};
use crate::protocol::{Filter, Since};
use crate::shard::Shared;

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
    shared: &Shared,
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
    shared: &Shared,
    channel: &str,
    forced: Option<&Filter>,
) -> Option<std::sync::Arc<crate::event::Event>> {
    shared
        .replay
        .latest(channel)
        .filter(|ev| forced.is_none_or(|f| f.matches(&ev.data)))
}

fn events(
    shared: &Shared,
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
    // No cursor: everything retained, from each partition's start.
    let mut cursor: Since = since.unwrap_or_else(|| {
        shared
            .replay
            .partitions()
            .into_iter()
            .filter_map(|(t, p, from)| Some((t.to_string(), p, from? - 1)))
            .collect()
    });
    let r = shared.replay.replay(channel, &cursor);
    let mut body = b"{\"channel\":".to_vec();
    push_json_str(&mut body, channel);
    body.extend_from_slice(b",\"events\":[");
    let mut n = 0;
    for ev in &r.events {
        if n == limit {
            break;
        }
        // Examined events move the cursor whether or not the filter keeps them.
        if let Some(c) = cursor
            .iter_mut()
            .find(|(t, p, _)| *t == *ev.topic && *p == ev.partition)
        {
            c.2 = c.2.max(ev.offset);
        }
        if filter.as_ref().is_some_and(|f| !f.matches(&ev.data)) {
            continue;
        }
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&ev.json());
        n += 1;
    }
    let mut next = String::new();
    for (i, (t, p, o)) in cursor.iter().enumerate() {
        let _ = write!(next, "{}{t}/{p}:{o}", if i > 0 { "," } else { "" });
    }
    body.extend_from_slice(b"],\"next\":");
    push_json_str(&mut body, &next);
    body.extend_from_slice(if r.recovered {
        b",\"recovered\":true"
    } else {
        b",\"recovered\":false"
    });
    if let Some(reason) = &r.reason {
        body.extend_from_slice(b",\"reason\":");
        push_json_str(&mut body, reason);
    }
    body.push(b'}');
    let mut tag = std::collections::hash_map::DefaultHasher::new();
    (channel, &next, n).hash(&mut tag);
    cached(
        format!("\"{:x}-{:x}\"", shared.replay.epoch(), tag.finish()),
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
