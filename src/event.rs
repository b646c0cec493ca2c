//! `Event`: one routed record, its envelope encoded ONCE.
//!
//! The ingest thread builds an `Event` per record; every shard and every connection then shares
//! it through an `Arc`, and every WebSocket delivery is a clone of [`Event::ws_frame`] (O(1), a
//! reference-count increment). Nothing about an `Event` changes after it is built.
//! The Server-Sent Events encoding ([`Event::sse_frame`]) is built at the same time, in the
//! same allocation, so an SSE delivery costs the same as a WebSocket one.

use std::sync::Arc;
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
    /// The same envelope as one SSE message:
    /// `id: <topic>/<partition>/<offset>\nevent: <channel>\ndata: <envelope>\n\n`.
    pub sse_frame: Bytes,
    /// When ingest built this event (for the ingest→write histogram).
    pub ingested_at: Instant,
}

impl Event {
    /// Encodes the envelope once. `data` is the parsed form of `parts.data_json` for filters.
    pub fn new(parts: EventParts<'_>, data: serde_json::Value) -> Event {
        let json = encode_envelope(&parts);
        let (header, hlen) = ws::frame_header(ws::OpCode::Text, json.len());
        // One buffer: [ws header | json][id: …\nevent: …\ndata: json\n\n], sliced twice.
        let id_len = parts.topic.len() + 24;
        let mut frame =
            Vec::with_capacity(2 * json.len() + hlen + id_len + parts.channel.len() + 24);
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
        }
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

/// `id: t/p/o\nevent: <channel>\n`. Line breaks in a channel name would end the SSE field, so
/// they are replaced (channel names never contain them in practice).
fn push_sse_head(out: &mut Vec<u8>, p: &EventParts<'_>) {
    use std::io::Write;
    let _ = write!(out, "id: {}/{}/{}\nevent: ", p.topic, p.partition, p.offset);
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            sse,
            format!("id: issues.enriched/1/42\nevent: issues\"x\ndata: {json}\n\n")
        );
    }
}
