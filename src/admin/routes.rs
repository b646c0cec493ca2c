//! Admin routes. Each handler returns a complete HTTP/1.1 response.

use subtle::ConstantTimeEq;

use super::AdminState;
use crate::http::{self, Head};
use crate::ingest::PublishRequest;
use crate::state::AdminQuery;

/// The OpenAPI document of both listeners: docs/openapi.json, generated from docs/openapi.yaml
/// by `scripts/api-docs.sh --write` (which checks that the two agree).
const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

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
            shared.fanout.failed.render_metrics(&mut out);
            super::info::render_metrics(shared, &mut out);
            http::response(200, "text/plain; version=0.0.4", &[], out.as_bytes(), close)
        }
        ("GET", "/health/live") => json(200, serde_json::json!({"status":"ok"})),
        ("GET", "/health/ready") => {
            let (status, body) = shared.readiness_answer();
            json(status, body)
        }
        ("GET", "/v1/version") => json(200, super::info::version(shared)),
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
        ("DELETE", p) if p.starts_with("/v1/connections/") => {
            close_connection(state, &p["/v1/connections/".len()..], close)
        }
        ("GET", "/v1/deliveries/failed") => {
            super::failed::handle(&shared.fanout.failed, head.query, close)
        }
        ("GET", "/openapi.json") => {
            http::response(200, "application/json", &[], OPENAPI_JSON.as_bytes(), close)
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
    let max = state.shared.limits.load().max_publish_bytes;
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

/// Asks every shard (on its admin queue, answered from its own turn) for its connections.
fn connections(state: &AdminState, identity: Option<String>) -> Vec<serde_json::Value> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = &state.shared;
    let asked = (0..shared.shards())
        .filter(|&i| {
            let q = AdminQuery::Connections {
                identity: identity.clone(),
                reply: tx.clone(),
            };
            shared.ask(i, q)
        })
        .count();
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

/// `DELETE /v1/connections/{id}`: the shard holding it closes it with 1012; 404 if none does.
fn close_connection(state: &AdminState, id: &str, close: bool) -> Vec<u8> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = &state.shared;
    let asked = (0..shared.shards())
        .filter(|&i| {
            let q = AdminQuery::Close {
                id: id.to_string(),
                reply: tx.clone(),
            };
            shared.ask(i, q)
        })
        .count();
    drop(tx);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut found = false;
    for _ in 0..asked {
        match rx.recv_deadline(deadline) {
            Ok(here) => found |= here,
            Err(_) => break,
        }
    }
    if found {
        http::response(
            200,
            "application/json",
            &[],
            serde_json::json!({ "closed": id }).to_string().as_bytes(),
            close,
        )
    } else {
        http::error_response(404, "not_found", "no such connection", &[])
    }
}
