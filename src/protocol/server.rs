//! Server → client messages as ready-to-write WebSocket text frames. Control-path only (the
//! per-event frame is built once by [`crate::event::Event`]).

use bytes::Bytes;
use serde_json::{Value, json};

use crate::ws::text_frame;

fn frame(v: Value) -> Bytes {
    text_frame(&v.to_string())
}

/// `welcome` on open; `epoch` names the log the offsets belong to (echo it in `since`).
pub fn welcome(connection_id: &str, epoch: u64, heartbeat_ms: u64, limits: Value) -> Bytes {
    frame(
        json!({"type":"welcome","connection_id":connection_id,"protocol":super::PROTOCOL_VERSION,
            "epoch":super::cursor::epoch_str(epoch),"heartbeat_ms":heartbeat_ms,"limits":limits}),
    )
}

/// What a resume (`since`) found: how many events it replays, and when it is not provably
/// complete, the reason (`partial_cursor`, `epoch_changed`, `too_old`) and a detail.
#[derive(Debug, Clone, Copy)]
pub struct Recovery<'a> {
    pub replayed: usize,
    pub lost: Option<(&'a str, &'a str)>,
}

/// The `subscribed` message body, shared by the WebSocket ack and the SSE stream's opening
/// event; `recovered:false` carries the reason the client must reload state.
pub fn subscribed_json(channels: &[String], recovered: Option<Recovery<'_>>) -> Value {
    let mut v = json!({"type":"subscribed","channels":channels});
    if let Some(r) = recovered {
        v["recovered"] = json!(r.lost.is_none());
        v["replayed"] = json!(r.replayed);
        if let Some((reason, detail)) = r.lost {
            v["reason"] = json!(reason);
            v["detail"] = json!(detail);
        }
    }
    v
}

/// `subscribed` ack for request `id`.
pub fn subscribed(id: Option<&str>, channels: &[String], recovered: Option<Recovery<'_>>) -> Bytes {
    let mut v = subscribed_json(channels, recovered);
    v["id"] = json!(id);
    frame(v)
}

/// `unsubscribed` ack.
pub fn unsubscribed(id: Option<&str>, channels: &[String]) -> Bytes {
    frame(json!({"type":"unsubscribed","id":id,"channels":channels}))
}

/// The `error` message body for request `id`.
pub fn error_json(id: Option<&str>, code: &str, message: &str) -> Value {
    json!({"type":"error","id":id,"code":code,"message":message})
}

/// `error` for request `id`.
pub fn error(id: Option<&str>, code: &str, message: &str) -> Bytes {
    frame(error_json(id, code, message))
}

/// App-level `pong`.
pub fn pong(id: Option<&str>) -> Bytes {
    match id {
        Some(id) => frame(json!({"type":"pong","id":id})),
        None => Bytes::from_static(b"\x81\x0f{\"type\":\"pong\"}"),
    }
}

/// The `gap` message body: the server dropped `dropped` events of `channel` for this client.
pub fn gap_json(channel: &str, dropped: u64, reason: &str) -> Value {
    json!({"type":"gap","channel":channel,"dropped":dropped,"reason":reason})
}

/// `gap` frame.
pub fn gap(channel: &str, dropped: u64, reason: &str) -> Bytes {
    frame(gap_json(channel, dropped, reason))
}

/// The `status` message body: the broker link changed.
pub fn status_json(kafka: &str) -> Value {
    json!({"type":"status","kafka":kafka})
}

/// `status` frame.
pub fn status(kafka: &str) -> Bytes {
    frame(status_json(kafka))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pong_is_a_valid_text_frame() {
        let p = pong(None);
        assert_eq!(p[0], 0x81);
        assert_eq!(p[1] as usize, p.len() - 2);
        assert_eq!(&p[2..], br#"{"type":"pong"}"#);
    }
}
