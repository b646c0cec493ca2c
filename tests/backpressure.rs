//! Backpressure and hostile clients over real sockets: a slow-but-alive client gets exact
//! `gap`s and the 4000 close (never a heartbeat timeout), a client that floods without reading
//! is closed 1008 with memory bounded.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use util::*;

/// These tests measure this process's memory and push hard on the loopback: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a trickle client saw on one channel.
#[derive(Debug, Default)]
struct Seen {
    events: u64,
    gaps: u64,
    close: Option<u16>,
    pings: u64,
    /// (event seq, gap sum owed before it, gap sum received) where they disagree.
    inexact: Vec<(i64, i64, u64)>,
}

/// Reads one frame every `every` (100 frames/s for 10 ms), answers pings, checks that the
/// `gap`s between two events add up to the events missing there. Stops at the close frame
/// or after `limit`.
fn trickle(mut c: TcpStream, every: Duration, published: u64, limit: Duration) -> Seen {
    let mut seen = Seen::default();
    let (mut next, mut owed) = (0i64, 0u64);
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let Ok((op, p)) = read_frame(&mut c) else {
            break;
        };
        match op {
            0x9 => {
                seen.pings += 1;
                let _ = c.write_all(&client_frame(0xA, &p));
            }
            0x8 => {
                seen.close = p.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                break;
            }
            0x1 => {
                let v: Value = serde_json::from_slice(&p).expect("json");
                match v["type"].as_str() {
                    Some("event") => {
                        let seq = v["data"]["seq"].as_i64().expect("seq");
                        if (seq - next) as u64 != owed {
                            seen.inexact.push((seq, seq - next, owed));
                        }
                        seen.events += 1;
                        (next, owed) = (seq + 1, 0);
                    }
                    Some("gap") => {
                        let n = v["dropped"].as_u64().expect("dropped");
                        seen.gaps += n;
                        owed += n;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        std::thread::sleep(every);
    }
    if seen.close.is_some() && (published as i64 - next) as u64 != owed {
        seen.inexact
            .push((published as i64, published as i64 - next, owed));
    }
    seen
}

fn subscribe_raw(c: &mut TcpStream, channel: &str) {
    let (op, _) = read_frame(c).expect("welcome");
    assert_eq!(op, 1);
    let sub = json!({"type":"subscribe","id":"s","channels":[channel]}).to_string();
    c.write_all(&client_frame(1, sub.as_bytes())).unwrap();
    let (op, p) = read_frame(c).expect("subscribed");
    assert_eq!(op, 1);
    let v: Value = serde_json::from_slice(&p).unwrap();
    assert_eq!(v["type"], "subscribed", "{v}");
}

#[test]
fn trickle_client_gets_exact_gaps_and_the_4000_close_never_a_heartbeat_timeout() {
    const N: u64 = 20_000;
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = start(|c| {
        c.server.heartbeat_ms = 2_000;
        c.limits.slow_consumer_close_s = 4;
    });
    let mut c = raw_upgrade(s.local_addr, "/v1/ws");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    subscribe_raw(&mut c, "feed");
    let reader = std::thread::spawn(move || {
        trickle(c, Duration::from_millis(10), N, Duration::from_secs(90))
    });
    let pad = "x".repeat(4096);
    for seq in 0..N {
        publish(&s, "feed", json!({"seq": seq, "pad": pad}));
    }
    let seen = reader.join().expect("reader");
    eprintln!("{seen:?}");
    assert_eq!(
        seen.close,
        Some(4000),
        "closed as a slow consumer, seen by the client"
    );
    assert_eq!(
        metric(&s, "fanline_closed_total{reason=\"heartbeat\"}"),
        0.0
    );
    assert!(seen.pings >= 1, "pings reach a slow client");
    assert!(
        seen.inexact.is_empty(),
        "gaps add up between events: {:?}",
        seen.inexact
    );
    assert_eq!(
        seen.events + seen.gaps,
        N,
        "delivered + dropped == published"
    );
    assert!(seen.gaps > 0);
    assert_eq!(
        metric(&s, "fanline_dropped_total{reason=\"slow_consumer\"}")
            + metric(&s, "fanline_dropped_total{reason=\"ring_full\"}"),
        seen.gaps as f64
    );
}

#[test]
fn ping_flood_from_a_never_reading_client_is_closed_1008_with_memory_bounded() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = start(|c| c.server.heartbeat_ms = 60_000);
    let rss0 = rss_kib();
    let mut c = raw_upgrade(s.local_addr, "/v1/ws");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ping = client_frame(0x9, b"0123456789abcdef0123456789abcdef");
    let mut burst = Vec::new();
    for _ in 0..1000 {
        burst.extend_from_slice(&ping);
    }
    // 200,000 pings, never reading; the server may cut us off part way.
    let mut sent = 0;
    for _ in 0..200 {
        if c.write_all(&burst).is_err() {
            break;
        }
        sent += 1000;
    }
    std::thread::sleep(Duration::from_millis(300));
    let queued = metric(&s, "fanline_outbox_bytes");
    let grown = rss_kib().saturating_sub(rss0);
    assert!(
        queued < 64.0 * 1024.0,
        "{queued} bytes queued after {sent} pings"
    );
    // A sanity bound on the whole test process (the queued-bytes gauge above is the exact one).
    assert!(grown < 48 * 1024, "RSS grew {grown} KiB after {sent} pings");
    let (code, _) = read_until_close(&mut c);
    assert_eq!(code, Some(1008), "after {sent} pings");
    assert_eq!(
        metric(
            &s,
            "fanline_handshake_rejected_total{reason=\"rate_limited\"}"
        ),
        1.0
    );
}

/// This process's resident set (the gateway runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
