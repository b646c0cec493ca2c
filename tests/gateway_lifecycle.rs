//! Connection lifecycle over real sockets: timeouts, heartbeats, size limits, backpressure,
//! graceful shutdown.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;

#[test]
fn half_sent_upgrade_is_cut_at_the_upgrade_timeout() {
    let s = start(|c| c.server.upgrade_timeout_ms = 300);
    let mut c = TcpStream::connect(s.local_addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "server closes without answering");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(
        metric(&s, "fanline_handshake_rejected_total{reason=\"timeout\"}"),
        1.0
    );
}

#[test]
fn oversized_request_head_gets_431() {
    let s = start(|_| {});
    let mut c = TcpStream::connect(s.local_addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = b"GET /v1/ws HTTP/1.1\r\nX-Big: ".to_vec();
    req.resize(20 * 1024, b'a');
    let _ = c.write_all(&req);
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
}

#[test]
fn oversized_message_is_closed_with_1009() {
    let s = start(|c| c.limits.max_inbound_bytes = 1024);
    let mut c = raw_upgrade(s.local_addr, "/v1/ws");
    let (op, _) = read_frame(&mut c).unwrap(); // welcome
    assert_eq!(op, 1);
    c.write_all(&client_frame(1, &vec![b'x'; 2000])).unwrap();
    let (code, _) = read_until_close(&mut c);
    assert_eq!(code, Some(1009));
}

#[test]
fn frozen_client_is_closed_after_one_and_a_half_heartbeats() {
    let s = start(|c| c.server.heartbeat_ms = 300);
    let mut c = raw_upgrade(s.local_addr, "/v1/ws");
    // Never answer pings; read nothing until the server gives up on us.
    std::thread::sleep(Duration::from_millis(1200));
    let (code, _) = read_until_close(&mut c);
    assert_eq!(code, Some(1001));
    assert_eq!(
        metric(&s, "fanline_closed_total{reason=\"heartbeat\"}"),
        1.0
    );
}

#[test]
fn client_answering_pings_stays_connected_past_heartbeats() {
    let s = start(|c| c.server.heartbeat_ms = 200);
    let mut c = raw_upgrade(s.local_addr, "/v1/ws");
    let end = Instant::now() + Duration::from_millis(1000);
    let mut pings = 0;
    while Instant::now() < end {
        let (op, p) = read_frame(&mut c).unwrap();
        if op == 0x9 {
            pings += 1;
            c.write_all(&client_frame(0xA, &p)).unwrap();
        }
        assert_ne!(op, 0x8, "must not be closed");
    }
    assert!(pings >= 3, "{pings} pings");
}

#[test]
fn client_close_is_answered_with_the_same_code_and_the_server_closes_tcp() {
    let s = start(|_| {});
    let mut c = raw_upgrade(s.local_addr, "/v1/ws");
    let _ = read_frame(&mut c).unwrap();
    c.write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
        .unwrap();
    let (code, _) = read_until_close(&mut c);
    assert_eq!(code, Some(1000));
    let mut b = [0u8; 1];
    assert_eq!(
        c.read(&mut b).unwrap_or(0),
        0,
        "server closes the TCP connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_client_gets_gap_then_4000_while_others_get_everything() {
    let s = start(|c| {
        c.limits.outbox_frames = 50;
        c.limits.slow_consumer_close_s = 1;
        c.server.heartbeat_ms = 60_000;
    });
    let mut good = connect(&s).await;
    subscribe(&mut good, &["feed"], None).await;
    let mut slow = raw_upgrade(s.local_addr, "/v1/ws");
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = read_frame(&mut slow).unwrap(); // welcome
    slow.write_all(&client_frame(
        1,
        br#"{"type":"subscribe","id":"s","channels":["feed"]}"#,
    ))
    .unwrap();
    assert_eq!(read_frame(&mut slow).unwrap().0, 1); // subscribed
    let big = "x".repeat(8 * 1024);
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let target = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let (seen, want) = (progress.clone(), target.clone());
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < want.load(std::sync::atomic::Ordering::Acquire) {
            let Ok(ev) =
                tokio::time::timeout(Duration::from_millis(200), next_json(&mut good)).await
            else {
                continue;
            };
            assert_eq!(
                ev["type"], "event",
                "the reading client is never behind: {ev}"
            );
            got.push(ev["data"]["seq"].as_i64().unwrap());
            seen.store(got.len(), std::sync::atomic::Ordering::Relaxed);
        }
        got
    });
    // Publish, paced on the reading client, until the never-reading one overflows.
    let mut published = 0usize;
    while metric(&s, "fanline_dropped_total{reason=\"slow_consumer\"}") == 0.0 {
        assert!(published < 20_000, "the slow client never overflowed");
        for _ in 0..50 {
            while published - progress.load(std::sync::atomic::Ordering::Relaxed) > 20 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            publish(&s, "feed", json!({"seq":published,"pad":big}));
            published += 1;
        }
    }
    target.store(published, std::sync::atomic::Ordering::Release);
    let got = reader.await.unwrap();
    assert_eq!(
        got,
        (0..published as i64).collect::<Vec<_>>(),
        "the reading client misses nothing"
    );
    // Stay unread past slow_consumer_close_s, then read what the server still sends.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (code, texts) = tokio::task::spawn_blocking(move || read_until_close(&mut slow))
        .await
        .unwrap();
    let total = published;
    let gaps: Vec<_> = texts.iter().filter(|t| t["type"] == "gap").collect();
    assert!(!gaps.is_empty(), "a gap frame reports the drops");
    assert_eq!(gaps[0]["channel"], "feed");
    assert_eq!(gaps[0]["reason"], "slow_consumer");
    assert_eq!(code, Some(4000));
    let delivered = texts.iter().filter(|t| t["type"] == "event").count() as u64;
    let dropped: u64 = gaps.iter().map(|g| g["dropped"].as_u64().unwrap()).sum();
    assert!(
        delivered + dropped <= total as u64 && dropped > 0,
        "{delivered} + {dropped}"
    );
    // Memory stayed bounded: the slow connection never held more than its outbox cap.
    assert!(metric(&s, "fanline_dropped_total{reason=\"slow_consumer\"}") >= dropped as f64);
    assert!(metric(&s, "fanline_outbox_bytes") < 1024.0 * 1024.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_client_with_1001_and_readiness_turns_503() {
    let s = start(|c| c.server.drain_ms = 300);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut ws = connect(&s).await;
        subscribe(&mut ws, &["x"], None).await;
        clients.push(ws);
    }
    s.begin_shutdown();
    assert_ne!(
        http(s.local_addr, "GET", "/health/ready", None).0,
        200,
        "503 or refused"
    );
    assert_eq!(http(s.admin_addr, "GET", "/health/ready", None).0, 503);
    let mut codes = Vec::new();
    for mut ws in clients {
        use futures_util::StreamExt;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
                    codes.push(u16::from(f.code));
                    break;
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
    assert!(codes.iter().all(|c| *c == 1001), "{codes:?}");
    tokio::task::spawn_blocking(move || s.join()).await.unwrap();
}
