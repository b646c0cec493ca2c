//! Admin routes. Each handler returns a complete HTTP/1.1 response.

use subtle::ConstantTimeEq;

use super::AdminState;
use crate::http::{self, Head};
use crate::ingest::PublishRequest;

pub fn handle(state: &AdminState, head: &Head<'_, '_>, body: &[u8], close: bool) -> Vec<u8> {
    let json = |status, v: serde_json::Value| {
        http::response(
            status,
            "application/json",
            &[],
            v.to_string().as_bytes(),
            close,
        )
    };
    let cfg = &state.shared.cfg;
    if let Some(token) = &cfg.server.admin_token {
        let given =
            http::header(head.headers, "authorization").and_then(|v| v.strip_prefix(b"Bearer "));
        let ok = given.is_some_and(|g| bool::from(g.ct_eq(token.as_bytes())));
        if !ok {
            return http::error_response(
                401,
                "unauthorized",
                "admin token required",
                &[("WWW-Authenticate", "Bearer")],
            );
        }
    }
    let shared = &state.shared;
    match (head.method, head.path) {
        ("GET", "/metrics") => {
            let mut out = String::with_capacity(8 * 1024);
            shared.metrics.render(&mut out);
            http::response(200, "text/plain; version=0.0.4", &[], out.as_bytes(), close)
        }
        ("GET", "/health/live") => json(200, serde_json::json!({"status":"ok"})),
        ("GET", "/health/ready") => match shared.not_ready_reason() {
            None => json(200, serde_json::json!({"status":"ready"})),
            Some(r) => json(503, serde_json::json!({"status":"not_ready","reason":r})),
        },
        ("GET", "/v1/stats") => {
            let m = &shared.metrics;
            json(
                200,
                serde_json::json!({
                    "connections": m.sum_gauge(|s| s.connections.get()),
                    "subscriptions": m.sum_gauge(|s| s.subscriptions.get()),
                    "channels": shared.fanout.subscriptions.channel_count(),
                    "deliveries": m.sum(|s| s.deliveries.get()),
                    "dropped": m.sum(|s| s.dropped_slow_consumer.get()) + m.ingest.ring_full_drops.get(),
                    "events_ingested": m.ingest.events_ingested.get(),
                    "writev_calls": m.sum(|s| s.writev_calls.get()),
                    "shards": shared.metrics.shards.iter().enumerate().map(|(i, s)| serde_json::json!({
                        "shard": i, "connections": s.connections.get(), "deliveries": s.deliveries.get(),
                        "ring_len": shared.fanout.inboxes[i].len(),
                    })).collect::<Vec<_>>(),
                    "uptime_s": shared.started.elapsed().as_secs(),
                    "draining": shared.is_draining(),
                }),
            )
        }
        ("GET", "/v1/connections") => {
            let identity = http::query_param(head.query, "identity").map(str::to_string);
            json(
                200,
                serde_json::json!({ "connections": connections(state, identity) }),
            )
        }
        ("POST", "/v1/publish") => publish(state, body, close),
        (_, "/v1/publish") => {
            http::error_response(405, "method_not_allowed", "use POST", &[("Allow", "POST")])
        }
        _ => http::error_response(404, "not_found", "no such admin route", &[]),
    }
}

fn publish(state: &AdminState, body: &[u8], close: bool) -> Vec<u8> {
    let req: PublishRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return http::error_response(
                400,
                "bad_request",
                &format!("invalid publish body: {e}"),
                &[],
            );
        }
    };
    let max = state.shared.cfg.limits.max_publish_bytes;
    if req.data.get().len() > max {
        return http::error_response(
            413,
            "payload_too_large",
            &format!("data exceeds {max} bytes"),
            &[],
        );
    }
    match state.sink.publish(req) {
        Ok(ack) => http::response(
            202,
            "application/json",
            &[],
            serde_json::to_string(&ack).unwrap_or_default().as_bytes(),
            close,
        ),
        Err(e) => http::error_response(
            e.http_status(),
            "publish_failed",
            &e.to_string(),
            &[("Retry-After", "1")],
        ),
    }
}

/// Asks every shard (through its ring, answered from its own turn) for its connections.
fn connections(state: &AdminState, identity: Option<String>) -> Vec<serde_json::Value> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut asked = 0;
    for inbox in &state.shared.fanout.inboxes {
        let item = crate::fanout::RingItem::Connections {
            identity: identity.clone(),
            reply: tx.clone(),
        };
        if inbox.push(item).is_ok() {
            inbox.notify();
            asked += 1;
        }
    }
    drop(tx);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut out = Vec::new();
    for _ in 0..asked {
        match rx.recv_deadline(deadline) {
            Ok(mut v) => out.append(&mut v),
            Err(_) => break,
        }
    }
    out
}
