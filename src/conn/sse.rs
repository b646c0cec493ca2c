//! Server-Sent Events transport (`GET /v1/sse`): request parsing, the `200 text/event-stream`
//! head, and the SSE encodings of the control messages (gap, status, heartbeat comment).
//!
//! An SSE stream is a [`Session`](super::Session) with `sse = true`: it subscribes once at
//! open (same index/replay code as the WebSocket `subscribe`), events are written as
//! [`Event::sse_frame`](crate::event::Event::sse_frame), and the client never sends anything
//! (reads are discarded; EOF closes).
//!
//! Resume: the `id:` of each event is the stream's position on EVERY partition it reads (a
//! compact token, [`crate::protocol::cursor`]), so `Last-Event-ID` (sent by `EventSource` on
//! reconnect) resumes all of them, on this replica or another reading the same Kafka cluster.
//! `?since=epoch:…,topic/p:o,…` (the REST cursor form) works too; `Last-Event-ID` wins when
//! both are present. The legacy `topic/partition/offset` id is still read (one partition).

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use crate::auth::credentials::percent_decode;
use crate::event::Event;
use crate::http::{self, Head};
use crate::protocol::cursor::StreamPosition;
use crate::protocol::server;
use crate::protocol::{Cursor, Filter, Since};

/// The path of the SSE endpoint on the public listener.
pub const PATH: &str = "/v1/sse";

/// Most `filter.*` parameters accepted (the filter itself caps its keys too).
const MAX_FILTER_VALUES: usize = 64;

/// The heartbeat: an SSE comment line, ignored by `EventSource`.
pub const HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

/// What an SSE request asks for, parsed before the `200`.
#[derive(Debug, Clone, PartialEq)]
pub struct SseRequest {
    pub channels: Vec<String>,
    /// `{"field": value-or-[values]}` from `filter.<field>=v` (already validated).
    pub filter: Option<Value>,
    pub since: Option<Since>,
}

/// Query parameters shared by SSE and REST: `channels=a,b`, `filter.<field>=v` (repeat = OR),
/// `since=topic/p:offset,…`, `limit=N`. `Err` is a 400 message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryParams {
    pub channels: Vec<String>,
    pub filter: Option<Value>,
    pub since: Option<Since>,
    pub limit: Option<usize>,
}

/// Parses [`QueryParams`] from a raw query string.
pub fn parse_query(query: Option<&str>) -> Result<QueryParams, String> {
    let mut q = QueryParams::default();
    let mut filter: Map<String, Value> = Map::new();
    let mut n_filters = 0;
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(v).ok_or_else(|| format!("bad percent-encoding in {k:?}"))?;
        if k == "channels" {
            for c in v.split(',').filter(|c| !c.is_empty()) {
                if c.len() > crate::protocol::client::MAX_CHANNEL_LEN {
                    return Err("channel name too long".into());
                }
                if !q.channels.iter().any(|x: &String| x == c) {
                    q.channels.push(c.to_string());
                }
            }
        } else if let Some(field) = k.strip_prefix("filter.") {
            n_filters += 1;
            if n_filters > MAX_FILTER_VALUES {
                return Err(format!("at most {MAX_FILTER_VALUES} filter values"));
            }
            let field = percent_decode(field).ok_or("bad percent-encoding in a filter name")?;
            let list = filter
                .entry(field.into_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = list {
                a.extend(filter_values(&v));
            }
        } else if k == "since" {
            q.since = Some(Cursor::parse_query(&v)?);
        } else if k == "limit" {
            q.limit = Some(
                v.parse()
                    .map_err(|_| "limit must be a positive integer".to_string())?,
            );
        }
    }
    q.filter = (!filter.is_empty()).then_some(Value::Object(filter));
    if let Some(f) = &q.filter {
        Filter::parse(f).map_err(|e| format!("bad filter: {e}"))?;
    }
    Ok(q)
}

/// Parses channels, filters and the resume cursor. `Err` is a 400 message.
pub fn parse_request(head: &Head<'_, '_>) -> Result<SseRequest, String> {
    if head.method != "GET" {
        return Err("SSE needs GET".into());
    }
    let q = parse_query(head.query)?;
    if q.channels.is_empty() {
        return Err("channels=a,b is required".into());
    }
    let since = match http::header(head.headers, "last-event-id") {
        Some(v) if !v.is_empty() => {
            let v = std::str::from_utf8(v).map_err(|_| "Last-Event-ID is not UTF-8".to_string())?;
            Some(Cursor::parse_event_id(v)?)
        }
        _ => q.since,
    };
    Ok(SseRequest {
        channels: q.channels,
        filter: q.filter,
        since,
    })
}

/// A query value as filter alternatives: always the string; also the typed value when it reads
/// as a JSON number or boolean (`filter.level=3` matches `3` and `"3"`).
fn filter_values(v: &str) -> Vec<Value> {
    let mut out = vec![Value::String(v.to_string())];
    if let Ok(t @ (Value::Number(_) | Value::Bool(_))) = serde_json::from_str::<Value>(v) {
        out.push(t);
    }
    out
}

/// The response head; the body is the event stream, delimited by the connection's close.
pub fn response_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
      Connection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\n"
        .to_vec()
}

/// One event for this stream: `id: <stream position>\n` then the event's shared
/// `event:`/`data:` lines. Advances `pos` first, so the id covers this event. Costs the
/// token (O(partitions), [`StreamPosition::token`]) and one copy of the message.
pub fn event_message(ev: &Event, pos: &mut StreamPosition) -> Bytes {
    pos.advance(&ev.topic, ev.partition, ev.offset);
    let token = pos.token();
    let mut b = BytesMut::with_capacity(5 + token.len() + ev.sse_frame.len());
    b.extend_from_slice(b"id: ");
    b.extend_from_slice(token.as_bytes());
    b.extend_from_slice(b"\n");
    b.extend_from_slice(&ev.sse_frame);
    b.freeze()
}

/// `event: <name>\ndata: <json>\n\n`.
fn message(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// `gap` for an SSE stream (the WebSocket `gap` JSON).
pub fn gap(channel: &str, dropped: u64, reason: &str) -> Bytes {
    message("gap", &server::gap_json(channel, dropped, reason))
}

/// `status` for an SSE stream.
pub fn status(kafka: &str) -> Bytes {
    message("status", &server::status_json(kafka))
}

/// `event: subscribed` at open: the channels, and with a resume cursor whether the replay
/// covered it (`recovered:false` + `reason`: reload state) and how many events it replays.
pub fn subscribed(
    connection_id: &str,
    epoch: u64,
    channels: &[String],
    resumed: Option<server::Recovery<'_>>,
) -> Bytes {
    let mut v = server::subscribed_json(channels, resumed);
    v["connection_id"] = json!(connection_id);
    v["epoch"] = json!(crate::protocol::cursor::epoch_str(epoch));
    message("subscribed", &v)
}

/// `error` for an SSE stream (a subscribe-time refusal after the 200, e.g. too many channels).
pub fn error(code: &str, msg: &str) -> Bytes {
    message("error", &server::error_json(None, code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, extra: &str) -> Result<SseRequest, String> {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let mut h = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
        let head = http::parse_head(raw.as_bytes(), &mut h, 16 * 1024)
            .unwrap()
            .unwrap();
        parse_request(&head)
    }

    #[test]
    fn channels_filters_and_cursors() {
        let r = req(
            "/v1/sse?channels=a,b%3Ax,a&filter.sev=high&filter.sev=low&filter.n=3&since=t/0:5,t/1:7",
            "",
        )
        .unwrap();
        assert_eq!(r.channels, vec!["a", "b:x"]);
        let f = r.filter.unwrap();
        assert_eq!(f["sev"], json!(["high", "low"]));
        assert_eq!(f["n"], json!(["3", 3]));
        assert_eq!(r.since.unwrap().to_query(), "t/0:5,t/1:7");
        let r = req(
            "/v1/sse?channels=a&since=t/0:5",
            "Last-Event-ID: x.y/2/9\r\n",
        )
        .unwrap();
        assert_eq!(r.since.unwrap().to_query(), "x.y/2:9");
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(req("/v1/sse", "").is_err());
        assert!(req("/v1/sse?channels=a&since=t:5", "").is_err());
        assert!(req("/v1/sse?channels=a", "Last-Event-ID: nope\r\n").is_err());
        assert!(req("/v1/sse?channels=a&filter.x=%zz", "").is_err());
    }

    #[test]
    fn every_event_carries_the_stream_position_on_all_partitions() {
        use std::sync::Arc;
        let t: Arc<str> = "t".into();
        let mut pos = StreamPosition::new(9, (0..3).map(|p| (t.clone(), p, 10)));
        let ev = Event::new(
            crate::event::EventParts {
                channel: "c",
                topic: &t,
                partition: 1,
                offset: 12,
                ts_ms: 0,
                event_type: None,
                correlation_id: None,
                data_json: b"1",
            },
            Value::Null,
        );
        let m = event_message(&ev, &mut pos);
        let text = std::str::from_utf8(&m).unwrap();
        let (id_line, rest) = text.split_once('\n').unwrap();
        assert!(
            rest.starts_with("event: c\ndata: {") && rest.ends_with("\n\n"),
            "{text}"
        );
        let mut c = Cursor::parse_event_id(id_line.strip_prefix("id: ").unwrap()).unwrap();
        c.resolve(|_| Some(t.clone()));
        assert_eq!(c.epoch, Some(9));
        assert_eq!(c.to_query(), "epoch:0000000000000009,t/0:10,t/1:12,t/2:10");
    }

    #[test]
    fn control_messages_are_sse() {
        assert_eq!(
            &status("ok")[..],
            b"event: status\ndata: {\"kafka\":\"ok\",\"type\":\"status\"}\n\n"
        );
        assert!(gap("c", 3, "slow_consumer").starts_with(b"event: gap\ndata: {"));
    }
}
