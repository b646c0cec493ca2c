//! The HTTP phase: one request head → a one-shot response (health, errors) or a WebSocket
//! upgrade. Every check that can refuse a client runs here, BEFORE the 101.

use crate::http::{self, Head, MAX_HEADERS};
use crate::metrics::ShardMetrics;
use crate::shard::Shared;

/// What to do with a complete (or failed) request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Keep reading.
    NeedMore,
    /// Write this response, then close.
    Respond(Vec<u8>),
    /// Write the 101; `leftover` bytes already belong to the WebSocket stream.
    Upgrade {
        response: Vec<u8>,
        echo: bool,
        leftover: Vec<u8>,
    },
}

/// Decides the outcome for the bytes read so far.
pub fn on_head(shared: &Shared, m: &ShardMetrics, buf: &[u8]) -> Outcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = match http::parse_head(buf, &mut headers, shared.cfg.limits.max_head_bytes) {
        Ok(None) => return Outcome::NeedMore,
        Ok(Some(h)) => h,
        Err(e) => {
            m.reject(e.metric_reason());
            return Outcome::Respond(http::error_response(
                e.status(),
                e.metric_reason(),
                "request head refused",
                &[],
            ));
        }
    };
    let echo = shared.cfg.testing.echo_path.as_deref() == Some(head.path);
    if !echo && !shared.cfg.server.ws_paths.iter().any(|p| p == head.path) {
        return Outcome::Respond(plain_route(shared, &head));
    }
    let refuse = |status: u16, reason: &'static str, msg: &str, extra: &[(&str, &str)]| {
        m.reject(reason);
        tracing::warn!(reason, status, "upgrade refused: {msg}");
        Outcome::Respond(http::error_response(status, reason, msg, extra))
    };
    let key = match http::check_upgrade(&head) {
        Ok(k) => k,
        Err((status, msg)) => {
            let extra: &[(&str, &str)] = if status == 426 {
                &[("Sec-WebSocket-Version", "13")]
            } else {
                &[]
            };
            return refuse(status, "bad_request", msg, extra);
        }
    };
    if shared.is_draining() {
        return refuse(
            503,
            "draining",
            "server is draining",
            &[("Retry-After", "5")],
        );
    }
    if let Some(origin) = http::header(head.headers, "origin") {
        let allowed = &shared.cfg.limits.allowed_origins;
        if !allowed.is_empty() && !allowed.iter().any(|o| o.as_bytes() == origin) {
            return refuse(403, "forbidden_origin", "Origin not allowed", &[]);
        }
    }
    if shared.ws_connections() >= shared.cfg.limits.max_connections {
        return refuse(
            503,
            "max_connections",
            "too many connections",
            &[("Retry-After", "5")],
        );
    }
    Outcome::Upgrade {
        response: http::switching_protocols(key, None),
        echo,
        leftover: buf[head.len..].to_vec(),
    }
}

/// Plain HTTP routes on the public listener.
fn plain_route(shared: &Shared, head: &Head<'_, '_>) -> Vec<u8> {
    let json =
        |status, body: &str| http::response(status, "application/json", &[], body.as_bytes(), true);
    match (head.method, head.path) {
        ("GET", "/health/live") => json(200, r#"{"status":"ok"}"#),
        ("GET", "/health/ready") => match shared.not_ready_reason() {
            None => json(200, r#"{"status":"ready"}"#),
            Some(why) => json(
                503,
                &serde_json::json!({ "status": "not_ready", "reason": why }).to_string(),
            ),
        },
        _ => http::error_response(404, "not_found", "no such route", &[]),
    }
}
