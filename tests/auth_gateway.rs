//! Authentication, authorization and limits, enforced by the real gateway BEFORE the 101.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanline::auth::{ApiKeysConfig, JwtKeyConfig, sha256_hex};
use fanline::config::Config;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http::HeaderName, http::HeaderValue};
use util::*;

const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

fn token(extra: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut c = json!({"sub":"gw-1","exp":now + 600,"aud":"fanline","channels":["issues","predictions:*","gateway:{sub}"]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn keys_file(tag: &str, keys: &[(&str, &str, &[&str])]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fanline-keys-{tag}-{}.toml", std::process::id()));
    let mut s = String::new();
    for (key, identity, channels) in keys {
        s.push_str(&format!(
            "[[key]]\nsha256 = \"{}\"\nidentity = \"{identity}\"\nchannels = {channels:?}\ntier = \"pro\"\n",
            sha256_hex(key)
        ));
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn secured(c: &mut Config, keys: Option<&PathBuf>) {
    c.auth.jwt = vec![JwtKeyConfig {
        algorithms: vec!["HS256".into()],
        secret: Some(SECRET.into()),
        audience: Some("fanline".into()),
        ..Default::default()
    }];
    c.auth.api_keys = keys.map(|k| ApiKeysConfig {
        file: k.display().to_string(),
    });
}

/// Connects with extra headers; Ok(ws after welcome) or Err(HTTP status of the refusal).
async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            if let Some(p) = resp.headers().get("sec-websocket-protocol") {
                assert_eq!(p, "bearer");
            }
            assert_eq!(next_json(&mut ws).await["type"], "welcome");
            Ok(ws)
        }
        Err(WsError::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_is_accepted_from_header_query_and_subprotocol_and_bad_ones_get_401() {
    let s = start(|c| secured(c, None));
    let url = ws_url(&s);
    let t = token(json!({}));
    assert!(
        try_connect(&url, &[("authorization", &format!("Bearer {t}"))])
            .await
            .is_ok()
    );
    assert!(try_connect(&format!("{url}?token={t}"), &[]).await.is_ok());
    assert!(
        try_connect(&url, &[("sec-websocket-protocol", &format!("bearer, {t}"))])
            .await
            .is_ok()
    );
    assert_eq!(
        try_connect(&url, &[]).await.err(),
        Some(401),
        "no credentials"
    );
    let expired = token(json!({"exp": 1_000_000}));
    assert_eq!(
        try_connect(&url, &[("authorization", &format!("Bearer {expired}"))])
            .await
            .err(),
        Some(401)
    );
    let wrong_aud = token(json!({"aud": "other"}));
    assert_eq!(
        try_connect(&url, &[("authorization", &format!("Bearer {wrong_aud}"))])
            .await
            .err(),
        Some(401)
    );
    let forged = format!("{}x", &t[..t.len() - 1]);
    assert_eq!(
        try_connect(&url, &[("authorization", &format!("Bearer {forged}"))])
            .await
            .err(),
        Some(401)
    );
    assert!(
        metric(
            &s,
            "fanline_handshake_rejected_total{reason=\"unauthorized\"}"
        ) >= 4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_work_and_a_revoked_key_is_refused_after_reload_without_dropping_connections() {
    let keys = keys_file(
        "reload",
        &[
            ("key-one", "gw-1", &["gateway:gw-1"]),
            ("key-two", "gw-2", &["gateway:gw-2"]),
        ],
    );
    let s = start(|c| secured(c, Some(&keys)));
    let url = ws_url(&s);
    let mut one = try_connect(&url, &[("x-api-key", "key-one")])
        .await
        .expect("valid key");
    assert!(try_connect(&url, &[("api-key", "key-two")]).await.is_ok());
    assert_eq!(
        try_connect(&url, &[("x-api-key", "nope")]).await.err(),
        Some(401)
    );
    // Revoke key-two and reload (what SIGHUP does).
    let _ = keys_file("reload", &[("key-one", "gw-1", &["gateway:gw-1"])]);
    s.reload().expect("reload");
    assert_eq!(
        try_connect(&url, &[("x-api-key", "key-two")]).await.err(),
        Some(401)
    );
    // The existing connection was not dropped.
    subscribe(&mut one, &["gateway:gw-1"], None).await;
    publish(&s, "gateway:gw-1", json!({"deployed":"pets"}));
    assert_eq!(next_json(&mut one).await["data"]["deployed"], "pets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_channel_is_refused_and_nothing_else_changes() {
    let s = start(|c| secured(c, None));
    let t = token(json!({}));
    let mut ws = try_connect(&ws_url(&s), &[("authorization", &format!("Bearer {t}"))])
        .await
        .unwrap();
    send_json(
        &mut ws,
        json!({"type":"subscribe","id":"r1","channels":["issues","secret"]}),
    )
    .await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_str()),
        (Some("error"), Some("forbidden_channel"), Some("r1"))
    );
    assert_eq!(
        s.shared.fanout.subscriptions.shards_for("issues"),
        0,
        "no partial subscription"
    );
    subscribe(&mut ws, &["predictions:BTC", "gateway:gw-1"], None).await;
    send_json(
        &mut ws,
        json!({"type":"subscribe","id":"r2","channels":["gateway:gw-2"]}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "forbidden_channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_forced_filter_is_anded_into_every_subscription() {
    let s = start(|c| secured(c, None));
    let t = token(json!({"filter": {"tenant": "acme"}}));
    let mut ws = try_connect(&ws_url(&s), &[("authorization", &format!("Bearer {t}"))])
        .await
        .unwrap();
    subscribe(&mut ws, &["issues"], Some(json!({"severity":"high"}))).await;
    publish(
        &s,
        "issues",
        json!({"n":1,"tenant":"evil","severity":"high"}),
    );
    publish(
        &s,
        "issues",
        json!({"n":2,"tenant":"acme","severity":"low"}),
    );
    publish(
        &s,
        "issues",
        json!({"n":3,"tenant":"acme","severity":"high"}),
    );
    assert_eq!(next_json(&mut ws).await["data"]["n"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_of_one_identity_receives_its_gateway_channel() {
    let s = start(|c| secured(c, None));
    let t = token(json!({}));
    let h = format!("Bearer {t}");
    let mut a = try_connect(&ws_url(&s), &[("authorization", &h)])
        .await
        .unwrap();
    let mut b = try_connect(&ws_url(&s), &[("authorization", &h)])
        .await
        .unwrap();
    subscribe(&mut a, &["gateway:gw-1"], None).await;
    subscribe(&mut b, &["gateway:gw-1"], None).await;
    publish(&s, "gateway:gw-1", json!({"api":"deployed"}));
    assert_eq!(next_json(&mut a).await["data"]["api"], "deployed");
    assert_eq!(next_json(&mut b).await["data"]["api"], "deployed");
    // Both connections are visible to operators under the one identity.
    let admin = s.admin_addr;
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(admin, "GET", "/v1/connections?identity=gw-1", None)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2, "{v}");
    for c in conns {
        assert_eq!(c["identity"], "gw-1");
        assert_eq!(c["subscriptions"], json!(["gateway:gw-1"]));
        assert_eq!(c["sent"], 1);
        assert_eq!(c["healthy"], true);
    }
    let (_, body) = tokio::task::spawn_blocking(move || {
        http(admin, "GET", "/v1/connections?identity=nobody", None)
    })
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["connections"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_gets_403_never_101() {
    let s = start(|c| c.limits.allowed_origins = vec!["https://app.example".into()]);
    let url = ws_url(&s);
    assert_eq!(
        try_connect(&url, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert!(
        try_connect(&url, &[("origin", "https://app.example")])
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_answer_429_and_503_with_retry_after() {
    let s = start(|c| {
        c.limits.connect_allowlist = vec![];
        c.limits.connect_per_ip_per_min = 3;
    });
    let url = ws_url(&s);
    for _ in 0..3 {
        assert!(try_connect(&url, &[]).await.is_ok());
    }
    assert_eq!(
        try_connect(&url, &[]).await.err(),
        Some(429),
        "4th attempt in a minute"
    );
    let s = start(|c| {
        c.limits.connect_allowlist = vec![];
        c.limits.per_ip_connections = 2;
    });
    let url = ws_url(&s);
    let _a = try_connect(&url, &[]).await.unwrap();
    let _b = try_connect(&url, &[]).await.unwrap();
    assert_eq!(
        try_connect(&url, &[]).await.err(),
        Some(429),
        "3rd concurrent from one IP"
    );
    let s = start(|c| c.limits.max_connections = 2);
    let url = ws_url(&s);
    let _a = try_connect(&url, &[]).await.unwrap();
    let _b = try_connect(&url, &[]).await.unwrap();
    assert_eq!(try_connect(&url, &[]).await.err(), Some(503));
    // The raw response carries Retry-After.
    let mut c = TcpStream::connect(s.local_addr).unwrap();
    c.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut out = String::new();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.read_to_string(&mut out);
    assert!(
        out.starts_with("HTTP/1.1 503") && out.contains("Retry-After:"),
        "{out}"
    );
}

#[test]
fn inbound_message_rate_past_the_burst_is_closed_with_1008() {
    let s = start(|c| {
        c.limits.inbound_msgs_per_s = 1;
        c.limits.inbound_burst = 3;
    });
    let mut c = raw_upgrade(s.local_addr, "/v1/ws");
    for _ in 0..6 {
        c.write_all(&client_frame(1, br#"{"type":"ping"}"#))
            .unwrap();
    }
    let (code, texts) = read_until_close(&mut c);
    assert_eq!(code, Some(1008), "{texts:?}");
    assert_eq!(texts.iter().filter(|t| t["type"] == "pong").count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_half_sent_upgrades_do_not_stop_a_real_client() {
    let s = start(|c| c.server.upgrade_timeout_ms = 2_000);
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut c = TcpStream::connect(s.local_addr).unwrap();
        c.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n").unwrap();
        idle.push(c);
    }
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["x"], None).await;
    publish(&s, "x", json!({"ok":true}));
    assert_eq!(next_json(&mut ws).await["data"]["ok"], true);
    // And the half-sent ones are cut at the deadline.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut c = idle.pop().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(c.read(&mut b).unwrap_or(0), 0);
    assert!(metric(&s, "fanline_handshake_rejected_total{reason=\"timeout\"}") >= 300.0);
}

#[test]
fn eight_mib_header_and_two_thousand_headers_get_431() {
    let s = start(|_| {});
    for req in [
        {
            let mut r = b"GET /v1/ws HTTP/1.1\r\nX-Big: ".to_vec();
            r.resize(8 * 1024 * 1024, b'a');
            r
        },
        {
            let mut r = b"GET /v1/ws HTTP/1.1\r\n".to_vec();
            for i in 0..2000 {
                r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
            r
        },
    ] {
        let mut c = TcpStream::connect(s.local_addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(&req); // the server may stop reading and close early
        let mut out = vec![0u8; 64];
        let n = c.read(&mut out).unwrap_or(0);
        let head = String::from_utf8_lossy(&out[..n]);
        assert!(n == 0 || head.starts_with("HTTP/1.1 431"), "{head}");
    }
    assert!(
        metric(
            &s,
            "fanline_handshake_rejected_total{reason=\"head_too_large\"}"
        ) >= 2.0
    );
}

fn proxy_v2(src: [u8; 4], src_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h
}

fn connections(s: &fanline::server::Server) -> Vec<Value> {
    let (_, body) = http(s.admin_addr, "GET", "/v1/connections", None);
    serde_json::from_str::<Value>(&body).unwrap()["connections"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn proxy_v2_and_x_forwarded_for_are_honoured_only_from_trusted_proxies() {
    let upgrade = "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let s = start(|c| c.auth.trusted_proxies = vec!["127.0.0.0/8".into()]);
    let mut a = TcpStream::connect(s.local_addr).unwrap();
    a.write_all(&proxy_v2([203, 0, 113, 7], 4242)).unwrap();
    a.write_all(format!("{upgrade}\r\n").as_bytes()).unwrap();
    let _ = read_frame_after_101(&mut a);
    let mut b = TcpStream::connect(s.local_addr).unwrap();
    b.write_all(format!("{upgrade}X-Forwarded-For: 198.51.100.9\r\n\r\n").as_bytes())
        .unwrap();
    let _ = read_frame_after_101(&mut b);
    let mut remotes: Vec<String> = connections(&s)
        .iter()
        .map(|c| c["remote"].as_str().unwrap().to_string())
        .collect();
    remotes.sort();
    assert_eq!(remotes, vec!["198.51.100.9", "203.0.113.7"]);
    // Nobody trusted: the PROXY header is not HTTP (400) and XFF is ignored.
    let s = start(|_| {});
    let mut c = TcpStream::connect(s.local_addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&proxy_v2([203, 0, 113, 7], 4242)).unwrap();
    c.write_all(format!("{upgrade}\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let mut d = TcpStream::connect(s.local_addr).unwrap();
    d.write_all(format!("{upgrade}X-Forwarded-For: 198.51.100.9\r\n\r\n").as_bytes())
        .unwrap();
    let _ = read_frame_after_101(&mut d);
    assert_eq!(connections(&s)[0]["remote"], "127.0.0.1");
}

/// Reads the 101 head and the welcome frame.
fn read_frame_after_101(s: &mut TcpStream) -> Value {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (_, p) = read_frame(s).unwrap();
    serde_json::from_slice(&p).unwrap()
}
