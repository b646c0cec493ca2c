//! Server → client messages as ready-to-write WebSocket text frames. Control-path only (the
//! per-event frame is built once by [`crate::event::Event`]).

use bytes::Bytes;
use serde_json::{Value, json};

use crate::ws::text_frame;

fn frame(v: Value) -> Bytes {
    text_frame(&v.to_string())
}

/// `welcome` on open.
pub fn welcome(connection_id: &str, heartbeat_ms: u64, limits: Value) -> Bytes {
    frame(
        json!({"type":"welcome","connection_id":connection_id,"protocol":super::PROTOCOL_VERSION,"heartbeat_ms":heartbeat_ms,"limits":limits}),
    )
}

/// `subscribed` ack; `recovered:false` carries the reason the client must reload state.
pub fn subscribed(
    id: Option<&str>,
    channels: &[String],
    recovered: Option<(bool, Option<&str>, usize)>,
) -> Bytes {
    let mut v = json!({"type":"subscribed","id":id,"channels":channels});
    if let Some((ok, reason, replayed)) = recovered {
        v["recovered"] = json!(ok);
        v["replayed"] = json!(replayed);
        if let Some(r) = reason {
            v["reason"] = json!(r);
        }
    }
    frame(v)
}

/// `unsubscribed` ack.
pub fn unsubscribed(id: Option<&str>, channels: &[String]) -> Bytes {
    frame(json!({"type":"unsubscribed","id":id,"channels":channels}))
}

/// `error` for request `id`.
pub fn error(id: Option<&str>, code: &str, message: &str) -> Bytes {
    frame(json!({"type":"error","id":id,"code":code,"message":message}))
}

/// App-level `pong`.
pub fn pong(id: Option<&str>) -> Bytes {
    match id {
        Some(id) => frame(json!({"type":"pong","id":id})),
        None => Bytes::from_static(b"\x81\x0f{\"type\":\"pong\"}"),
    }
}

/// `gap`: the server dropped `dropped` events of `channel` for this connection.
pub fn gap(channel: &str, dropped: u64, reason: &str) -> Bytes {
    frame(json!({"type":"gap","channel":channel,"dropped":dropped,"reason":reason}))
}

/// `status`: the broker link changed.
pub fn status(kafka: &str) -> Bytes {
    frame(json!({"type":"status","kafka":kafka}))
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
