//! Browsers of other origins (SPEC §6): REST, SSE and `/health/*` answer with
//! `Access-Control-Allow-Origin` for an origin `limits.allowed_origins` allows (any when
//! empty), `OPTIONS` is a preflight (204 with methods and headers), `Vary: Origin` throughout;
//! the demo page is served at `/` unless `server.demo = false`.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;

/// One raw HTTP/1.1 request; returns (status, lower-cased head, body). For a stream (SSE)
/// it reads until `until` appears in what arrived.
fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    until: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if let Some(u) = until
            && String::from_utf8_lossy(&out).contains(u)
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

const APP: &str = "http://app.example:3000";

fn assert_allows(head: &str, origin: &str) {
    assert!(
        head.contains(&format!(
            "\r\naccess-control-allow-origin: {}\r\n",
            origin.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(head.contains("\r\nvary: origin\r\n"), "{head}");
}

#[test]
fn any_origin_gets_cors_on_rest_sse_and_health_when_the_list_is_empty() {
    let s = util::start(|_| {});
    util::publish(&s, "c", json!({"n": 1}));
    let o = [("Origin", APP)];
    for path in [
        "/health/live",
        "/health/ready",
        "/v1/channels/c/latest",
        "/v1/latest?channels=c",
        "/v1/channels/c/events",
    ] {
        let (status, head, _) = request(s.local_addr, "GET", path, &o, None);
        assert_eq!(status, 200, "{path}: {head}");
        assert_allows(&head, APP);
        assert!(
            head.contains("access-control-expose-headers: etag"),
            "{path}: {head}"
        );
    }
    // SSE: the stream's head carries it, the stream then flows.
    let (status, head, body) = request(
        s.local_addr,
        "GET",
        "/v1/sse?channels=c",
        &o,
        Some("event: subscribed"),
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert_allows(&head, APP);
    assert!(body.contains("event: subscribed"), "{body}");
    // Errors carry it too, so the page can read why.
    let (status, head, _) = request(s.local_addr, "GET", "/v1/sse", &o, None);
    assert_eq!(status, 400);
    assert_allows(&head, APP);
    // No Origin: no CORS headers; the WebSocket path is not CORS.
    let (_, head, _) = request(s.local_addr, "GET", "/health/live", &[], None);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    s.begin_shutdown();
    s.join();
}

#[test]
fn preflight_answers_204_with_methods_and_headers() {
    let s = util::start(|_| {});
    for path in [
        "/v1/sse?channels=c",
        "/v1/channels/c/events",
        "/health/ready",
    ] {
        let (status, head, body) = request(
            s.local_addr,
            "OPTIONS",
            path,
            &[
                ("Origin", APP),
                ("Access-Control-Request-Method", "GET"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, last-event-id",
                ),
            ],
            None,
        );
        assert_eq!(status, 204, "{path}: {head}");
        assert_allows(&head, APP);
        assert!(
            head.contains("\r\naccess-control-allow-methods: get, head, options\r\n"),
            "{head}"
        );
        let allowed = head
            .lines()
            .find_map(|l| l.strip_prefix("access-control-allow-headers: "))
            .expect("allow-headers");
        for h in ["authorization", "last-event-id", "x-api-key"] {
            assert!(allowed.split(", ").any(|x| x == h), "{h} in {allowed}");
        }
        assert!(body.is_empty());
    }
    s.begin_shutdown();
    s.join();
}

#[test]
fn only_listed_origins_are_echoed() {
    let s = util::start(|c| c.limits.allowed_origins = vec![APP.to_string()]);
    let (status, head, _) = request(
        s.local_addr,
        "GET",
        "/v1/channels/c/latest",
        &[("Origin", APP)],
        None,
    );
    assert_eq!(status, 404, "no event yet: {head}");
    assert_allows(&head, APP);
    let evil = [("Origin", "http://evil.example")];
    let (status, head, _) = request(s.local_addr, "GET", "/v1/channels/c/latest", &evil, None);
    assert_eq!(status, 403, "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    assert!(head.contains("\r\nvary: origin\r\n"), "{head}");
    let (status, _, _) = request(s.local_addr, "OPTIONS", "/v1/sse", &evil, None);
    assert_eq!(status, 403);
    // Health answers (it is not refused) but the browser may not read it.
    let (status, head, _) = request(s.local_addr, "GET", "/health/live", &evil, None);
    assert_eq!(status, 200);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    s.begin_shutdown();
    s.join();
}

#[test]
fn the_demo_page_and_client_are_served_unless_turned_off() {
    let s = util::start(|_| {});
    let (status, head, body) = request(s.local_addr, "GET", "/", &[], None);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("<title>fanline demo</title>"));
    let (status, head, body) = request(s.local_addr, "GET", "/fanline.js", &[], None);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(body.contains("FanlineClient"));
    s.begin_shutdown();
    s.join();
    let s = util::start(|c| c.server.demo = false);
    assert_eq!(request(s.local_addr, "GET", "/", &[], None).0, 404);
    assert_eq!(
        request(s.local_addr, "GET", "/fanline.js", &[], None).0,
        404
    );
    s.begin_shutdown();
    s.join();
}
