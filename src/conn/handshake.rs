//! The HTTP phase: one request head → a one-shot response (health, errors) or a WebSocket
//! upgrade. Every check that can refuse a client runs here, BEFORE the 101 (or, for a
//! Server-Sent Events stream on `/v1/sse`, before its `200`: same limits and auth).
//! CORS ([`super::cors`]) wraps the answers of REST, SSE and `/health/*`; `OPTIONS` there is a
//! preflight. With `server.demo`, `/` and `/fanline.js` serve the demo ([`super::demo`]).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::{ConnPermit, HeadSlot, Identity, RequestView, client_ip, redact_query};
use crate::http::{self, Head, MAX_HEADERS};
use crate::metrics::ShardMetrics;
use crate::protocol::Filter;
use crate::state::ServerState;

/// An accepted upgrade: who connected, the connection slot they hold, and their forced filter.
#[derive(Debug)]
pub struct Admitted {
    pub identity: Identity,
    pub permit: ConnPermit,
    pub identity_permit: Option<Box<crate::auth::IdentityPermit>>,
    /// The identity's tier limits.
    pub limits: crate::config::IdentityLimits,
    pub forced_filter: Option<Arc<Filter>>,
    pub client_ip: std::net::IpAddr,
    /// Set for a Server-Sent Events stream: what it subscribes to at open.
    pub sse: Option<super::sse::SseRequest>,
    /// `permessage-deflate`, when offered, enabled and accepted (never for SSE).
    pub deflate: Option<crate::ws::extensions::Deflate>,
}

/// What to do with a complete (or failed) request head.
#[derive(Debug)]
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
        admitted: Box<Admitted>,
    },
}

/// Decides the outcome for the bytes read so far. `slot` is the place the unfinished head
/// holds under the connection caps: given back once the head is complete, before the
/// connection's own permit is taken.
pub fn on_head(
    shared: &ServerState,
    m: &ShardMetrics,
    buf: &[u8],
    remote: SocketAddr,
    slot: &mut Option<HeadSlot>,
) -> Outcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let head = match http::parse_head(buf, &mut headers, shared.limits.load().max_head_bytes) {
        Ok(None) => return Outcome::NeedMore,
        Ok(Some(h)) => {
            release(slot);
            h
        }
        Err(e) => {
            release(slot);
            m.reject(e.metric_reason());
            return Outcome::Respond(http::error_response(
                e.status(),
                e.metric_reason(),
                "request head refused",
                &[],
            ));
        }
    };
    let cors = super::cors::Cors::of(&shared.limits.load().allowed_origins, &head);
    if head.method == "OPTIONS" && super::cors::is_cors_path(head.path) {
        return Outcome::Respond(cors.preflight());
    }
    match decide(shared, m, &head, buf, remote) {
        Outcome::Respond(r) => Outcome::Respond(cors.apply(r)),
        Outcome::Upgrade {
            response,
            echo,
            leftover,
            admitted,
        } if admitted.sse.is_some() => Outcome::Upgrade {
            response: cors.apply(response),
            echo,
            leftover,
            admitted,
        },
        other => other,
    }
}

/// The head is complete (or refused): its slot is given back before any permit is taken.
fn release(slot: &mut Option<HeadSlot>) {
    if let Some(s) = slot.take() {
        s.release();
    }
}

/// The outcome for a complete request head (before CORS headers).
fn decide(
    shared: &ServerState,
    m: &ShardMetrics,
    head: &Head<'_, '_>,
    buf: &[u8],
    remote: SocketAddr,
) -> Outcome {
    let echo = shared.cfg.testing.echo_path.as_deref() == Some(head.path);
    let is_sse = !echo && head.path == super::sse::PATH;
    let is_rest = !echo && super::rest::is_rest_path(head.path);
    if !echo && !is_sse && !is_rest && !shared.cfg.server.ws_paths.iter().any(|p| p == head.path) {
        return Outcome::Respond(plain_route(shared, head));
    }
    let auth = shared.auth.load();
    let ip = client_ip(remote.ip(), head.headers, auth.trusted_proxies());
    let refuse = |status: u16, reason: &'static str, msg: &str, extra: &[(&str, &str)]| {
        m.reject(reason);
        let query = head.query.map(redact_query);
        tracing::warn!(reason, status, remote = %ip, path = head.path, query = query.as_deref().unwrap_or(""), "upgrade refused: {msg}");
        Outcome::Respond(http::error_response(status, reason, msg, extra))
    };
    if is_sse && head.method != "GET" {
        return refuse(405, "bad_request", "SSE needs GET", &[("Allow", "GET")]);
    }
    let sse = match is_sse.then(|| super::sse::parse_request(head)) {
        Some(Err(msg)) => return refuse(400, "bad_request", &msg, &[]),
        Some(Ok(r)) => Some(r),
        None => None,
    };
    let rest_channels = match is_rest.then(|| super::rest::channels(head)) {
        Some(Err((status, msg))) => return refuse(status, "bad_request", &msg, &[]),
        Some(Ok(c)) => c,
        None => Vec::new(),
    };
    let key = match http::check_upgrade(head) {
        _ if sse.is_some() || is_rest => &b""[..],
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
        let limits = shared.limits.load();
        let allowed = &limits.allowed_origins;
        if !allowed.is_empty() && !allowed.iter().any(|o| o.as_bytes() == origin) {
            return refuse(403, "forbidden_origin", "Origin not allowed", &[]);
        }
    }
    // Limits before authentication: a flood of bad tokens must not buy signature checks.
    // A REST request is not a connection attempt: it does not spend the connect rate.
    let acquired = if is_rest {
        shared.limiter.try_acquire_request(ip)
    } else {
        shared.limiter.try_acquire(ip)
    };
    let permit = match acquired {
        Ok(p) => p,
        Err(r) => {
            let reason = match r {
                crate::auth::LimitReject::MaxConnections => "max_connections",
                crate::auth::LimitReject::PerIp => "per_ip_limit",
                crate::auth::LimitReject::Rate { .. } => "rate_limited",
                crate::auth::LimitReject::PendingHeads => "pending_heads",
            };
            let retry = r.retry_after_s().to_string();
            return refuse(r.status(), reason, r.label(), &[("Retry-After", &retry)]);
        }
    };
    let view = RequestView {
        path: head.path,
        query: head.query,
        headers: head.headers,
        remote: ip,
    };
    let identity = match auth.authenticate(&view) {
        Ok(id) => id,
        Err(e) => {
            let msg = format!("unauthorized: {}", e.label());
            return refuse(401, "unauthorized", &msg, &[("WWW-Authenticate", "Bearer")]);
        }
    };
    let forced_filter = match identity
        .forced_filter
        .as_ref()
        .map(Filter::parse)
        .transpose()
    {
        Ok(f) => f.map(Arc::new),
        Err(e) => return refuse(401, "unauthorized", &format!("filter claim: {e}"), &[]),
    };
    let wanted = sse.as_ref().map_or(&rest_channels, |r| &r.channels);
    if let Some(ch) = wanted.iter().find(|c| !identity.allows(c)) {
        let msg = format!("not allowed to subscribe to {ch:?}");
        return refuse(403, "forbidden_channel", &msg, &[]);
    }
    let limits = shared.limits.load().for_tier(identity.tier.as_deref());
    let who = crate::auth::IdentityKey::of(&identity, ip);
    if is_rest {
        let quota = shared.identities.rest_request(
            &who,
            limits.rest_requests_per_min,
            std::time::Instant::now(),
        );
        let headers = quota.map(|q| q.headers()).unwrap_or_default();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(h, v)| (*h, v.as_str())).collect();
        if quota.is_some_and(|q| !q.allowed) {
            let msg = format!(
                "{} REST requests per minute for this identity",
                limits.rest_requests_per_min
            );
            return refuse(429, "rest_rate_limited", &msg, &headers);
        }
        // The permit is released when this returns.
        let response = super::rest::handle(shared, head, forced_filter.as_deref(), &rest_channels);
        return Outcome::Respond(http::with_headers(response, &headers));
    }
    let identity_permit = match shared.identities.acquire_conn(who, limits.connections) {
        Ok(p) => p.map(Box::new),
        Err(open) => {
            let msg = format!("this identity already has {open} open connections");
            return refuse(429, "identity_limit", &msg, &[("Retry-After", "5")]);
        }
    };
    let deflate = match &sse {
        None if shared.cfg.compression.enabled => crate::ws::extensions::negotiate(
            head.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|h| h.value),
        ),
        _ => None,
    };
    let response = match &sse {
        Some(_) => super::sse::response_head(),
        None => http::switching_protocols(
            key,
            identity.subprotocol,
            deflate.map(|d| d.response()).as_deref(),
        ),
    };
    Outcome::Upgrade {
        response,
        echo,
        leftover: buf[head.len..].to_vec(),
        admitted: Box::new(Admitted {
            identity,
            permit,
            identity_permit,
            limits,
            forced_filter,
            client_ip: ip,
            sse,
            deflate,
        }),
    }
}

/// Plain HTTP routes on the public listener.
fn plain_route(shared: &ServerState, head: &Head<'_, '_>) -> Vec<u8> {
    let json =
        |status, body: &str| http::response(status, "application/json", &[], body.as_bytes(), true);
    match (head.method, head.path) {
        ("GET", "/health/live") => json(200, r#"{"status":"ok"}"#),
        ("GET", "/health/ready") => {
            let (status, body) = shared.readiness_answer();
            json(status, &body.to_string())
        }
        (method, path) => shared
            .cfg
            .server
            .demo
            .then(|| super::demo::route(method, path))
            .flatten()
            .unwrap_or_else(|| http::error_response(404, "not_found", "no such route", &[])),
    }
}
