//! TLS on the public listener: wss:// and https:// with a self-signed certificate generated
//! per test, non-TLS clients rejected (`handshake_rejected{reason="tls"}`), a plain listener
//! beside a TLS one, and certificate reload (what SIGHUP does).

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use fanline::config::TlsConfig;
use serde_json::json;
use util::*;

fn tls_cfg(c: &TestCert, listen: Option<std::net::SocketAddr>) -> TlsConfig {
    TlsConfig {
        cert: c.cert_path.clone(),
        key: c.key_path.clone(),
        listen,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_round_trip_delivers_an_event() {
    let cert = write_test_cert("round-trip", "a");
    let s = start(|c| c.tls = Some(tls_cfg(&cert, None)));
    assert_eq!(s.tls_addr, Some(s.local_addr));
    let mut ws = connect_wss(s.local_addr, &[&cert.der]).await;
    subscribe(&mut ws, &["issues"], None).await;
    publish(&s, "issues", json!({"id": 7, "title": "over tls"}));
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["type"], "event", "{ev}");
    assert_eq!(ev["data"]["title"], "over tls");
    // A larger burst crosses several TLS records and rustls's 64 KiB buffer.
    let blob = "x".repeat(8 * 1024);
    for i in 0..40 {
        publish(&s, "issues", json!({"id": i, "blob": blob}));
    }
    for i in 0..40 {
        let ev = next_json(&mut ws).await;
        assert_eq!(ev["data"]["id"], i, "in order");
    }
    s.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_live_over_https_is_200() {
    let cert = write_test_cert("health", "a");
    let s = start(|c| c.tls = Some(tls_cfg(&cert, None)));
    let (status, _) = https(s.local_addr, &[&cert.der], "/health/live").await;
    assert_eq!(status, 200);
    s.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_closed_and_counted() {
    let cert = write_test_cert("plain-to-tls", "a");
    let s = start(|c| c.tls = Some(tls_cfg(&cert, None)));
    let addr = s.local_addr;
    let reply = tokio::task::spawn_blocking(move || {
        let mut t = std::net::TcpStream::connect(addr).expect("connect");
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut out = Vec::new();
        let r = t.read_to_end(&mut out);
        (r.is_ok(), out)
    })
    .await
    .expect("client thread");
    assert!(reply.0, "the server closed the socket (EOF, not a timeout)");
    assert!(!reply.1.starts_with(b"HTTP/"), "no plaintext HTTP answer");
    let counted = eventually(Duration::from_secs(5), || {
        metric(&s, "fanline_handshake_rejected_total{reason=\"tls\"}") >= 1.0
    })
    .await;
    assert!(counted, "handshake_rejected{{reason=\"tls\"}} went up");
    // A real wss client still works.
    let mut ws = connect_wss(addr, &[&cert.der]).await;
    subscribe(&mut ws, &["issues"], None).await;
    publish(&s, "issues", json!({"ok": true}));
    assert_eq!(next_json(&mut ws).await["data"]["ok"], true);
    s.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tls_listeners_both_deliver() {
    let cert = write_test_cert("both", "a");
    let s = start(|c| c.tls = Some(tls_cfg(&cert, Some("127.0.0.1:0".parse().unwrap()))));
    let tls_addr = s.tls_addr.expect("tls listener bound");
    assert_ne!(tls_addr, s.local_addr);
    let mut plain = connect(&s).await;
    let mut secure = connect_wss(tls_addr, &[&cert.der]).await;
    subscribe(&mut plain, &["issues"], None).await;
    subscribe(&mut secure, &["issues"], None).await;
    publish(&s, "issues", json!({"id": 42}));
    assert_eq!(next_json(&mut plain).await["data"]["id"], 42);
    assert_eq!(next_json(&mut secure).await["data"]["id"], 42);
    // The plain listener stays plain: HTTP works without TLS there.
    let addr = s.local_addr;
    let (status, _) = tokio::task::spawn_blocking(move || http(addr, "GET", "/health/live", None))
        .await
        .expect("client thread");
    assert_eq!(status, 200);
    s.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let a = write_test_cert("reload", "server");
    let s = start(|c| c.tls = Some(tls_cfg(&a, None)));
    let mut old = connect_wss(s.local_addr, &[&a.der]).await;
    assert_eq!(peer_cert(&old), a.der);
    // Cert B replaces A on disk (same paths), then SIGHUP's reload.
    let b = write_test_cert("reload", "server");
    assert_ne!(a.der, b.der);
    s.reload().expect("reload");
    let fresh = connect_wss(s.local_addr, &[&a.der, &b.der]).await;
    assert_eq!(peer_cert(&fresh), b.der, "a new connection sees cert B");
    // A client trusting only A is now refused; the established connection keeps working.
    assert!(try_connect_wss(s.local_addr, &[&a.der]).await.is_err());
    subscribe(&mut old, &["issues"], None).await;
    publish(&s, "issues", json!({"after": "reload"}));
    assert_eq!(next_json(&mut old).await["data"]["after"], "reload");
    // A broken file keeps B in force.
    std::fs::write(&b.cert_path, "not a pem").expect("write");
    assert!(s.reload().is_err());
    let again = connect_wss(s.local_addr, &[&b.der]).await;
    assert_eq!(peer_cert(&again), b.der);
    drop((fresh, again));
    s.shutdown();
}

#[test]
fn a_missing_cert_is_a_startup_error_naming_the_setting() {
    let mut cfg = fanline::config::Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.shards = 1;
    cfg.kafka.mode = fanline::config::KafkaMode::Direct;
    cfg.tls = Some(TlsConfig {
        cert: "/nonexistent/fanline.crt".into(),
        key: "/nonexistent/fanline.key".into(),
        listen: None,
    });
    let err = fanline::server::Server::start(cfg).expect_err("startup fails");
    assert!(err.to_string().contains("tls.cert"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_over_tls_streams_sse_encoded_events() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert = write_test_cert("sse", "a");
    let s = start(|c| c.tls = Some(tls_cfg(&cert, None)));
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(&[&cert.der]));
    let tcp = tokio::net::TcpStream::connect(s.local_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /v1/sse?channels=issues HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let mut published = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !got.contains("over tls sse") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SSE event over TLS: {got:?}"
        );
        if !published && got.contains("event: subscribed") {
            publish(&s, "issues", json!({"title": "over tls sse"}));
            published = true;
        }
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf)).await
        {
            assert!(n > 0, "stream ended: {got:?}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    let ev = got
        .split("\n\n")
        .find(|e| e.contains("over tls sse"))
        .unwrap();
    assert!(
        ev.contains("event: issues") && ev.contains("\ndata: {\"type\":\"event\""),
        "SSE framing, not WebSocket: {ev:?}"
    );
}
