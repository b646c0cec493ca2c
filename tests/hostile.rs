//! Hostile or unlucky traffic (issue #10): a burst that fills a shard's ring in `direct` mode
//! and then goes quiet still shows its drop within 100 ms (SPEC §4); unfinished request heads
//! hold a place under the connection caps (one address cannot hold descriptors past its
//! per-IP cap, all together not past `max_pending_heads`).

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use util::*;

/// Upgrades, subscribes to `channel` and waits for the ack.
fn subscriber(addr: std::net::SocketAddr, channel: &str) -> TcpStream {
    let mut c = raw_upgrade(addr, "/v1/ws");
    let sub = json!({"type":"subscribe","id":"s","channels":[channel]}).to_string();
    c.write_all(&client_frame(0x1, sub.as_bytes()))
        .expect("send subscribe");
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let (op, p) = read_frame(&mut c).expect("a frame");
        if op == 0x1 && serde_json::from_slice::<Value>(&p).is_ok_and(|v| v["type"] == "subscribed")
        {
            return c;
        }
    }
    panic!("no subscribed ack within 10 s");
}

/// What one reader saw of `0..n` on one channel.
#[derive(Debug, Default)]
struct Seen {
    events: u64,
    dropped: u64,
    /// (event n, missing before it, gaps announced before it) where they differ.
    inexact: Vec<(u64, u64, u64)>,
    /// When the last of `n` was accounted for (delivered or announced).
    complete_at: Option<Instant>,
}

/// Reads until events + announced drops reach `n` or nothing comes for 3 s.
fn account(mut c: TcpStream, n: u64) -> Seen {
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut seen = Seen::default();
    let (mut next, mut announced) = (0u64, 0u64);
    while seen.events + seen.dropped < n {
        let Ok((op, p)) = read_frame(&mut c) else {
            break;
        };
        if op != 0x1 {
            continue;
        }
        let v: Value = serde_json::from_slice(&p).expect("json");
        match v["type"].as_str() {
            Some("event") => {
                let got = v["data"]["n"].as_u64().expect("data.n");
                if got - next != announced {
                    seen.inexact.push((got, got - next, announced));
                }
                (next, announced) = (got + 1, 0);
                seen.events += 1;
            }
            Some("gap") => {
                let d = v["dropped"].as_u64().expect("dropped");
                announced += d;
                seen.dropped += d;
            }
            _ => {}
        }
    }
    if seen.events + seen.dropped == n {
        seen.complete_at = Some(Instant::now());
    }
    seen
}

#[test]
fn direct_mode_ring_full_gap_arrives_without_a_further_publish() {
    const N: u64 = 2_000;
    let s = start(|c| {
        c.server.shards = 1;
        c.server.ring_capacity = 16;
    });
    let measured = subscriber(s.local_addr, "burst");
    // 300 more subscribers that never read keep the one shard busy (a write per delivery
    // until their buffers fill), so a fast burst overruns its 16-slot ring.
    let _idle: Vec<TcpStream> = (0..300)
        .map(|_| subscriber(s.local_addr, "burst"))
        .collect();
    let reader = std::thread::spawn(move || account(measured, N));
    for n in 0..N {
        publish(&s, "burst", json!({ "n": n }));
    }
    let quiet_from = Instant::now(); // no publish after this
    let seen = reader.join().expect("reader");
    let ring_full = metric(&s, "fanline_dropped_total{reason=\"ring_full\"}");
    eprintln!(
        "{seen:?}; ring_full {ring_full}; complete {:?} after the last publish",
        seen.complete_at
            .map(|t| t.saturating_duration_since(quiet_from))
    );
    assert!(seen.dropped > 0, "the burst overran the ring");
    assert!(
        seen.inexact.is_empty(),
        "gaps add up between events: {:?}",
        seen.inexact
    );
    assert_eq!(
        seen.events + seen.dropped,
        N,
        "delivered + announced == published"
    );
    assert_eq!(
        ring_full, seen.dropped as f64,
        "every drop was a ring-full one"
    );
    let late = seen
        .complete_at
        .expect("complete")
        .saturating_duration_since(quiet_from);
    // SPEC: within 100 ms; the bound leaves room for a loaded CI box.
    assert!(
        late < Duration::from_secs(1),
        "last gap {late:?} after the last publish"
    );
}

/// A TCP connection to `to` from `from` (any loopback address is local on Linux).
fn connect_from(from: &str, to: std::net::SocketAddr) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let local: std::net::SocketAddr = format!("{from}:0").parse().expect("address");
    sock.bind(&local.into()).expect("bind");
    sock.connect(&to.into()).expect("connect");
    sock.into()
}

const HALF_HEAD: &[u8] = b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n";
const REST_OF_HEAD: &[u8] = b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// The status line's code of the response to a completed upgrade head (0: none within 5 s).
fn status_of(c: &mut TcpStream) -> u16 {
    use std::io::Read;
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 12];
    match c.read_exact(&mut buf) {
        Ok(()) => std::str::from_utf8(&buf[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Whether the server has closed (or answered) `c`, without blocking.
fn refused(c: &mut TcpStream) -> bool {
    use std::io::Read;
    c.set_nonblocking(true).unwrap();
    let mut b = [0u8; 512];
    let gone = !matches!(c.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    c.set_nonblocking(false).unwrap();
    gone
}

/// Waits until `want` of `held` are refused (up to 5 s); returns how many are.
fn wait_refused(held: &mut [TcpStream], want: usize) -> usize {
    let end = Instant::now() + Duration::from_secs(5);
    let mut gone = vec![false; held.len()];
    loop {
        for (c, g) in held.iter_mut().zip(gone.iter_mut()) {
            *g = *g || refused(c);
        }
        let n = gone.iter().filter(|g| **g).count();
        if n >= want || Instant::now() >= end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn half_sent_heads_from_one_address_are_capped_while_another_connects_at_once() {
    let s = start(|c| {
        c.limits.per_ip_connections = 50;
        c.limits.connect_allowlist = Vec::new(); // 127.0.0.2 and .3 are capped per IP
        c.limits.connect_per_ip_per_min = 0;
        c.server.upgrade_timeout_ms = 10_000;
    });
    let mut held: Vec<TcpStream> = (0..400)
        .map(|_| {
            let mut c = connect_from("127.0.0.2", s.local_addr);
            c.write_all(HALF_HEAD).expect("half a head");
            c
        })
        .collect();
    let t0 = Instant::now();
    let mut other = connect_from("127.0.0.3", s.local_addr);
    other.write_all(HALF_HEAD).unwrap();
    other.write_all(REST_OF_HEAD).unwrap();
    assert_eq!(status_of(&mut other), 101, "another address upgrades");
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "at once, not after {waited:?}"
    );
    // Long before the 10 s upgrade timeout: all but the per-IP cap are refused and closed.
    assert_eq!(
        wait_refused(&mut held, 350),
        350,
        "refused beyond the per-IP cap"
    );
    std::thread::sleep(Duration::from_millis(200));
    let gone = held.iter_mut().map(refused).filter(|g| *g).count();
    assert_eq!(gone, 350, "the 50 within the cap stay open");
    assert_eq!(
        metric(
            &s,
            "fanline_handshake_rejected_total{reason=\"per_ip_limit\"}"
        ),
        350.0
    );
    // A held head that completes becomes a connection in its own slot (not counted twice).
    let mut open = held
        .into_iter()
        .filter_map(|mut c| (!refused(&mut c)).then_some(c));
    let mut first = open.next().expect("a held head");
    first.write_all(REST_OF_HEAD).unwrap();
    assert_eq!(
        status_of(&mut first),
        101,
        "a held head completes within the cap"
    );
    assert_eq!(open.count(), 49);
}

#[test]
fn unfinished_heads_have_a_global_budget() {
    let s = start(|c| c.limits.max_pending_heads = 20);
    // Loopback is exempt from the per-IP caps, not from the budget.
    let mut held: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut c = connect_from("127.0.0.1", s.local_addr);
            c.write_all(HALF_HEAD).expect("half a head");
            c
        })
        .collect();
    assert_eq!(wait_refused(&mut held, 10), 10, "past the budget: refused");
    assert_eq!(
        metric(
            &s,
            "fanline_handshake_rejected_total{reason=\"pending_heads\"}"
        ),
        10.0
    );
    // Finishing heads gives their places back.
    let mut open: Vec<TcpStream> = held
        .into_iter()
        .filter_map(|mut c| (!refused(&mut c)).then_some(c))
        .collect();
    assert_eq!(open.len(), 20);
    for c in &mut open {
        c.write_all(REST_OF_HEAD).unwrap();
        assert_eq!(status_of(c), 101);
    }
    let mut late = connect_from("127.0.0.1", s.local_addr);
    late.write_all(HALF_HEAD).unwrap();
    late.write_all(REST_OF_HEAD).unwrap();
    assert_eq!(status_of(&mut late), 101, "the budget is free again");
}

/// The gateway binary started under `prlimit --nofile=N:N` (killed on drop).
fn start_with_nofile(n: u32) -> util::binary::Gateway {
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={n}:{n}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_fanline"))
        .env("FANLINE_KAFKA_MODE", "direct")
        // No connection cap, so connections, not the cap derived from `nofile`, run the
        // process out of descriptors.
        .env("FANLINE_LIMITS_MAX_CONNECTIONS", "0")
        .env("FANLINE_SERVER_DRAIN_MS", "200")
        .env("RUST_LOG", "info");
    util::binary::spawn(cmd, None)
}

/// A metric's value from the admin listener at `admin`.
fn metric_at(admin: std::net::SocketAddr, name_with_labels: &str) -> f64 {
    let (_, body) = http(admin, "GET", "/metrics", None);
    body.lines()
        .filter(|l| l.starts_with(name_with_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How the server answered a connection that sent a whole upgrade head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Upgraded,
    Refused,
}

/// The answer so far, without blocking (`None`: nothing yet).
fn answer(c: &mut TcpStream) -> Option<Answer> {
    use std::io::Read;
    c.set_nonblocking(true).unwrap();
    let mut b = [0u8; 512];
    let got = match c.read(&mut b) {
        Ok(n) if n >= 12 && &b[9..12] == b"101" => Some(Answer::Upgraded),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        _ => Some(Answer::Refused), // 503, EOF or reset
    };
    c.set_nonblocking(false).unwrap();
    got
}

#[test]
fn out_of_descriptors_the_backlog_is_shed_without_a_new_arrival() {
    const N: usize = 120;
    let gw = start_with_nofile(64);
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|_| {
            let mut c = TcpStream::connect(gw.public).expect("connect");
            // A connection shed at once may be closed before the head is written.
            let _ = c
                .write_all(HALF_HEAD)
                .and_then(|()| c.write_all(REST_OF_HEAD));
            c
        })
        .collect();
    // No new arrival from here on: every connection must still get its answer.
    let mut answers: Vec<Option<Answer>> = vec![None; N];
    let end = Instant::now() + Duration::from_secs(5);
    while answers.iter().any(Option::is_none) && Instant::now() < end {
        for (c, a) in conns.iter_mut().zip(answers.iter_mut()) {
            if a.is_none() {
                *a = answer(c);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let count = |w: Option<Answer>| answers.iter().filter(|a| **a == w).count();
    let (up, refused, waiting) = (
        count(Some(Answer::Upgraded)),
        count(Some(Answer::Refused)),
        count(None),
    );
    eprintln!("upgraded {up}, refused {refused}, still waiting {waiting}");
    assert_eq!(
        waiting, 0,
        "no connection waits in the backlog for a new arrival"
    );
    assert!(up > 0 && refused > 0, "{up} upgraded, {refused} refused");
    assert_eq!(up + refused, N);
    // Descriptors come back: the server serves again once it has seen the clients go (an
    // attempt before that is shed too, so try for a while).
    drop(conns.drain(..));
    let end = Instant::now() + Duration::from_secs(5);
    let mut statuses = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let mut late = TcpStream::connect(gw.public).expect("connect");
        let status = late
            .write_all(HALF_HEAD)
            .and_then(|()| late.write_all(REST_OF_HEAD))
            .map_or(0, |()| status_of(&mut late));
        statuses.push(status);
        if status == 101 || Instant::now() > end {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&101),
        "serving again once descriptors are free: {statuses:?}"
    );
    // Every shed connection was counted as such (late attempts shed before the server saw
    // the clients go included). The admin listener answers now that descriptors are free.
    let shed_late = statuses.iter().filter(|s| **s != 101).count();
    assert_eq!(
        metric_at(
            gw.admin,
            "fanline_handshake_rejected_total{reason=\"fd_limit\"}"
        ),
        (refused + shed_late) as f64,
        "{up} upgraded, {refused} refused, late attempts {statuses:?}"
    );
}
