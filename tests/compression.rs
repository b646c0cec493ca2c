//! `permessage-deflate` (SPEC §9) against the real gateway with a raw client: negotiation in the
//! 101, events above `min_bytes` compressed ONCE (byte-identical frames for every socket),
//! small events plain, compressed client messages inflated, a decompression bomb closed 1009
//! without allocating its size, `[compression] enabled = false` honoured. Python `websockets`
//! and headless Chromium are in `compression_clients.rs`.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use fanline::ws::deflate::{Inflater, compressed_frame};
use fanline::ws::extensions::ContextTakeover;
use fanline::ws::{OpCode, masked_frame};
use serde_json::{Value, json};
use util::*;

/// Upgrades offering `offer` (if any); returns the stream and the 101's extensions header.
fn upgrade(addr: SocketAddr, offer: Option<&str>) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ext = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Extensions: {o}\r\n")
    });
    write!(
        s,
        "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("response head");
        head.push(b[0]);
    }
    let head = String::from_utf8(head).expect("ascii head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let ext = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_string);
    (s, ext)
}

/// One server frame: (first header byte, payload).
fn read_raw(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).expect("frame payload");
    (h[0], p)
}

fn inflate(body: &[u8]) -> Vec<u8> {
    let mut inf = Inflater::new(ContextTakeover::Reset);
    let mut out = Vec::new();
    inf.frame(body, &mut out, 1 << 24).expect("valid deflate");
    inf.finish(&mut out, 1 << 24).expect("valid deflate");
    out
}

/// Reads the next data frame (skipping pings) and returns (compressed?, JSON, raw frame body).
fn next_event(s: &mut TcpStream) -> (bool, Value, Vec<u8>) {
    loop {
        let (b0, p) = read_raw(s);
        match b0 & 0x0f {
            0x9 | 0xA => continue,
            0x1 => {
                let rsv1 = b0 & 0x40 != 0;
                let json = if rsv1 { inflate(&p) } else { p.clone() };
                return (rsv1, serde_json::from_slice(&json).expect("JSON"), p);
            }
            op => panic!("unexpected opcode {op}"),
        }
    }
}

fn send_text(s: &mut TcpStream, text: &str, compress: bool) {
    let f = if compress {
        let c = compressed_frame(OpCode::Text, text.as_bytes());
        let skip = match c[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let mut f = masked_frame(true, OpCode::Text, &c[skip..], [9, 8, 7, 6]);
        f[0] |= 0x40;
        f
    } else {
        masked_frame(true, OpCode::Text, text.as_bytes(), [9, 8, 7, 6])
    };
    s.write_all(&f).unwrap();
}

/// Subscribes to `ch` (optionally with a compressed request) and waits for the ack.
fn subscribe_raw(s: &mut TcpStream, ch: &str, compress: bool) {
    let (_, welcome, _) = next_event(s);
    assert_eq!(welcome["type"], "welcome");
    // A long id puts the request over min_bytes, so compressing it does real work.
    let req = json!({"type":"subscribe","id": "r".repeat(400),"channels":[ch]});
    send_text(s, &req.to_string(), compress);
    let (_, ack, _) = next_event(s);
    assert_eq!(ack["type"], "subscribed", "{ack}");
}

fn big_data() -> Value {
    json!({"items": (0..30).map(|i| json!({"id": i, "severity": "high", "component": "api"})).collect::<Vec<_>>()})
}

#[test]
fn browser_offer_negotiates_and_large_events_arrive_compressed_once_for_all_sockets() {
    let s = start(|_| {});
    let offer = Some("permessage-deflate; client_max_window_bits");
    let (mut a, ext_a) = upgrade(s.local_addr, offer);
    let (mut b, _) = upgrade(s.local_addr, offer);
    assert_eq!(
        ext_a.as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    subscribe_raw(&mut a, "issues", true);
    subscribe_raw(&mut b, "issues", false);

    publish(&s, "issues", big_data());
    publish(&s, "issues", json!({"small": 1}));
    let (rsv_a, ev_a, body_a) = next_event(&mut a);
    let (rsv_b, ev_b, body_b) = next_event(&mut b);
    assert!(rsv_a && rsv_b, "events over min_bytes are compressed");
    assert_eq!(ev_a["data"], big_data());
    assert_eq!(ev_a, ev_b);
    assert_eq!(body_a, body_b, "one compressed frame for every socket");
    let plain_len = ev_a.to_string().len();
    assert!(
        body_a.len() * 3 < plain_len,
        "{} vs {plain_len}",
        body_a.len()
    );
    let (rsv_small, small, _) = next_event(&mut a);
    assert!(!rsv_small, "events under min_bytes go plain");
    assert_eq!(small["data"], json!({"small": 1}));
    s.shutdown();
}

#[test]
fn no_offer_or_disabled_or_declined_offer_means_plain_frames() {
    let s = start(|c| c.compression.enabled = false);
    let (mut c, ext) = upgrade(s.local_addr, Some("permessage-deflate"));
    assert_eq!(ext, None);
    subscribe_raw(&mut c, "issues", false);
    publish(&s, "issues", big_data());
    assert!(!next_event(&mut c).0);
    s.shutdown();

    let s = start(|_| {});
    for offer in [None, Some("permessage-deflate; server_max_window_bits=7")] {
        let (mut c, ext) = upgrade(s.local_addr, offer);
        assert_eq!(ext, None, "{offer:?}");
        subscribe_raw(&mut c, "issues", false);
        publish(&s, "issues", big_data());
        assert!(!next_event(&mut c).0);
    }
    // RSV1 without a negotiated extension is a protocol error.
    let (mut c, _) = upgrade(s.local_addr, None);
    let _ = next_event(&mut c);
    send_text(&mut c, r#"{"type":"ping"}"#, true);
    assert_eq!(read_until_close(&mut c).0, Some(1002));
    s.shutdown();
}

#[test]
fn small_server_window_gets_plain_frames_for_longer_events() {
    let s = start(|_| {});
    let (mut c, ext) = upgrade(
        s.local_addr,
        Some("permessage-deflate; server_max_window_bits=9"),
    );
    assert_eq!(
        ext.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=9")
    );
    subscribe_raw(&mut c, "issues", true);
    publish(&s, "issues", big_data()); // > 512 bytes: may not fit a 512-byte window
    publish(&s, "issues", json!({"pad": "y".repeat(300)})); // 256..512: compressed
    assert!(!next_event(&mut c).0);
    assert!(next_event(&mut c).0);
    s.shutdown();
}

/// Peak resident set of this process (tests and gateway share it), KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn decompression_bomb_is_closed_1009_with_bounded_memory() {
    let s = start(|_| {});
    let (mut c, ext) = upgrade(s.local_addr, Some("permessage-deflate"));
    assert!(ext.is_some());
    let _ = next_event(&mut c);
    // ~60 KiB on the wire (under max_inbound_bytes = 64 KiB) inflating to ~60 MiB.
    let zeros = vec![b' '; 60 << 20];
    let bomb = compressed_frame(OpCode::Text, &zeros);
    let body = &bomb[4..];
    assert!(body.len() < 64 << 10, "bomb is {} bytes", body.len());
    let before = vm_hwm_kib();
    let mut f = masked_frame(true, OpCode::Text, body, [1, 2, 3, 4]);
    f[0] |= 0x40;
    c.write_all(&f).unwrap();
    assert_eq!(read_until_close(&mut c).0, Some(1009));
    let grown_kib = vm_hwm_kib().saturating_sub(before);
    assert!(grown_kib < 16 << 10, "peak RSS grew by {grown_kib} KiB");
    assert_eq!(metric(&s, "fanline_closed_total{reason=\"too_big\"}"), 1.0);
    drop(zeros); // alive until here, so the server's allocations add to the measured peak
    s.shutdown();
}
