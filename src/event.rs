//! `Event`: one routed record, its envelope encoded ONCE.
//!
//! The ingest thread builds an `Event` per record; every shard and every connection then shares
//! it through an `Arc`, and every WebSocket delivery is a clone of [`Event::ws_frame`] (O(1), a
//! reference-count increment). Nothing about an `Event` changes after it is built.
//! The Server-Sent Events encoding ([`Event::sse_frame`]) is built at the same time, in the
//! same allocation; it has no `id:` line: each SSE stream writes its own (its position on every
//! partition it reads, see `conn::sse`), so an SSE delivery copies the message once.
//! The `permessage-deflate` frame ([`Event::ws_frame_deflated`]) is made at most once per
//! event, lazily, by the first shard that delivers the event to a connection that negotiated
//! compression (so an event nobody compressed for costs nothing extra); every later delivery is
//! again a reference-count increment. With `server_no_context_takeover` the compressed bytes
//! depend only on the envelope, so one frame serves every such socket.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::ws;

/// The routing result for one record, before encoding.
#[derive(Debug, Clone)]
pub struct EventParts<'a> {
    /// Channel the event is published on.
    pub channel: &'a str,
    /// Kafka topic (or the direct publisher's pseudo-topic).
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp, unix milliseconds.
    pub ts_ms: i64,
    pub event_type: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    /// The `data` member, already valid JSON text (copied verbatim into the envelope).
    pub data_json: &'a [u8],
}

/// A routed event with its encoded frames. Immutable; shared as `Arc<Event>`.
#[derive(Debug)]
pub struct Event {
    pub channel: Box<str>,
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub ts_ms: i64,
    pub correlation_id: Option<Box<str>>,
    /// Parsed `data`, used by subscription filters (`Value::Null` when it is not needed).
    pub data: serde_json::Value,
    /// The envelope as a complete unmasked WebSocket text frame (header + JSON).
    pub ws_frame: Bytes,
    /// Byte range of the JSON envelope inside `ws_frame` (for SSE / REST transports).
    pub json_start: usize,
    /// The same envelope as one SSE message without its `id:` line:
    /// `event: <channel>\ndata: <envelope>\n\n`.
    pub sse_frame: Bytes,
    /// When ingest built this event (for the ingest→write histogram).
    pub ingested_at: Instant,
    /// The compressed frame (RSV1), or a clone of `ws_frame` when compressing did not make it
    /// smaller; made on first use by [`Event::ws_frame_deflated`].
    deflated: OnceLock<Bytes>,
}

impl Event {
    /// Encodes the envelope once. `data` is the parsed form of `parts.data_json` for filters.
    pub fn new(parts: EventParts<'_>, data: serde_json::Value) -> Event {
        let json = encode_envelope(&parts);
        let (header, hlen) = ws::frame_header(ws::OpCode::Text, json.len());
        // One buffer: [ws header | json][event: …\ndata: json\n\n], sliced twice.
        let mut frame = Vec::with_capacity(2 * json.len() + hlen + parts.channel.len() + 24);
        frame.extend_from_slice(&header[..hlen]);
        frame.extend_from_slice(&json);
        let ws_len = frame.len();
        push_sse_head(&mut frame, &parts);
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(&json);
        frame.extend_from_slice(b"\n\n");
        let all = Bytes::from(frame);
        Event {
            channel: parts.channel.into(),
            topic: parts.topic.clone(),
            partition: parts.partition,
            offset: parts.offset,
            ts_ms: parts.ts_ms,
            correlation_id: parts.correlation_id.map(Into::into),
            data,
            ws_frame: all.slice(..ws_len),
            json_start: hlen,
            sse_frame: all.slice(ws_len..),
            ingested_at: Instant::now(),
            deflated: OnceLock::new(),
        }
    }

    /// The frame for a connection that negotiated `permessage-deflate`: compressed when the
    /// envelope has at least `min_bytes` and at most `max_payload` bytes (the connection's
    /// `server_max_window_bits` bound), else the plain frame. `min_bytes` must be the same on
    /// every call (it is the process-wide `[compression] min_bytes`). The first call over
    /// `min_bytes` compresses (one DEFLATE pass, racing shards block on the same `OnceLock`);
    /// every other call is O(1).
    pub fn ws_frame_deflated(&self, min_bytes: usize, max_payload: usize) -> &Bytes {
        let len = self.ws_frame.len() - self.json_start;
        if len < min_bytes || len > max_payload {
            return &self.ws_frame;
        }
        self.deflated.get_or_init(|| {
            let f =
                ws::deflate::compressed_frame(ws::OpCode::Text, &self.ws_frame[self.json_start..]);
            if f.len() < self.ws_frame.len() {
                f
            } else {
                self.ws_frame.clone()
            }
        })
    }

    /// Whether the compressed frame has been made (tests, metrics).
    pub fn is_deflated(&self) -> bool {
        self.deflated.get().is_some()
    }

    /// The JSON envelope (without the WebSocket header). O(1).
    pub fn json(&self) -> Bytes {
        self.ws_frame.slice(self.json_start..)
    }

    /// `topic/partition/offset`, the event id and resume position.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// `{"type":"event","channel":…,"id":"t/p/o","ts":…,"event_type":…,"correlation_id":…,"data":…}`
fn encode_envelope(p: &EventParts<'_>) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(96 + p.channel.len() + p.data_json.len());
    out.extend_from_slice(b"{\"type\":\"event\",\"channel\":");
    push_json_str(&mut out, p.channel);
    out.extend_from_slice(b",\"id\":");
    push_json_str(
        &mut out,
        &format!("{}/{}/{}", p.topic, p.partition, p.offset),
    );
    let _ = write!(out, ",\"ts\":{}", p.ts_ms);
    if let Some(t) = p.event_type {
        out.extend_from_slice(b",\"event_type\":");
        push_json_str(&mut out, t);
    }
    if let Some(c) = p.correlation_id {
        out.extend_from_slice(b",\"correlation_id\":");
        push_json_str(&mut out, c);
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(p.data_json);
    out.push(b'}');
    out
}

/// `event: <channel>\n`. Line breaks in a channel name would end the SSE field, so they are
/// replaced (channel names never contain them in practice).
fn push_sse_head(out: &mut Vec<u8>, p: &EventParts<'_>) {
    out.extend_from_slice(b"event: ");
    out.extend(
        p.channel
            .bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.push(b'\n');
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping cannot fail for a &str into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A test event on channel `c`, topic `t`, partition 0, with `data_json` as its `data` and
/// `data` as the parsed form filters see (`Null` when a test does not filter).
#[cfg(test)]
pub(crate) fn test_event(offset: i64, data_json: &str, data: serde_json::Value) -> Arc<Event> {
    let topic: Arc<str> = "t".into();
    Arc::new(Event::new(
        EventParts {
            channel: "c",
            topic: &topic,
            partition: 0,
            offset,
            ts_ms: 0,
            event_type: None,
            correlation_id: None,
            data_json: data_json.as_bytes(),
        },
        data,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data_json: &[u8]) -> Event {
        let topic: Arc<str> = "t".into();
        Event::new(
            EventParts {
                channel: "c",
                topic: &topic,
                partition: 0,
                offset: 7,
                ts_ms: 1,
                event_type: None,
                correlation_id: None,
                data_json,
            },
            serde_json::Value::Null,
        )
    }

    #[test]
    fn deflated_frame_is_made_once_and_only_above_min_bytes() {
        let small = event(br#"{"a":1}"#);
        assert_eq!(
            small.ws_frame_deflated(256, usize::MAX).as_ptr(),
            small.ws_frame.as_ptr()
        );
        assert!(
            !small.is_deflated(),
            "under min_bytes nothing is compressed"
        );

        let data = format!(
            "{{\"items\":[{}]}}",
            r#"{"k":"value","n":12345},"#.repeat(40) + "0"
        );
        let big = event(data.as_bytes());
        assert!(
            !big.is_deflated(),
            "lazy: nothing before the first deflate delivery"
        );
        let a = big.ws_frame_deflated(256, usize::MAX).clone();
        let b = big.ws_frame_deflated(256, usize::MAX).clone();
        assert_eq!(a[0], 0xC1, "FIN + RSV1 + text");
        assert!(a.len() < big.ws_frame.len() / 3);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "one allocation shared by every delivery"
        );
        // A connection with a small server window gets the plain frame.
        assert_eq!(big.ws_frame_deflated(256, 512), &big.ws_frame);
        let mut inf = ws::deflate::Inflater::new(ws::extensions::ContextTakeover::Reset);
        let mut out = Vec::new();
        let skip = if a[1] & 0x7f == 126 { 4 } else { 2 };
        inf.frame(&a[skip..], &mut out, 1 << 20).unwrap();
        inf.finish(&mut out, 1 << 20).unwrap();
        assert_eq!(&out[..], &big.json()[..]);
    }

    #[test]
    fn envelope_is_valid_json_and_frame_is_text() {
        let topic: Arc<str> = "issues.enriched".into();
        let ev = Event::new(
            EventParts {
                channel: "issues\"x",
                topic: &topic,
                partition: 1,
                offset: 42,
                ts_ms: 1_732_280_000_000,
                event_type: Some("issue.created"),
                correlation_id: None,
                data_json: br#"{"a":1}"#,
            },
            serde_json::Value::Null,
        );
        assert_eq!(ev.ws_frame[0], 0x81);
        let v: serde_json::Value = serde_json::from_slice(&ev.json()).unwrap();
        assert_eq!(v["id"], "issues.enriched/1/42");
        assert_eq!(v["channel"], "issues\"x");
        assert_eq!(v["data"]["a"], 1);
        assert_eq!(v["event_type"], "issue.created");
        assert!(v.get("correlation_id").is_none());
        assert_eq!(ev.ws_frame.len(), ev.json_start + ev.json().len());
        let sse = std::str::from_utf8(&ev.sse_frame).unwrap();
        let json = std::str::from_utf8(&ev.json()).unwrap().to_string();
        assert_eq!(sse, format!("event: issues\"x\ndata: {json}\n\n"));
    }
}
