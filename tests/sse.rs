//! Server-Sent Events transport (`GET /v1/sse`) against the real gateway, with a raw
//! `TcpStream` client reading the stream line by line.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fanline::auth::JwtKeyConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use util::*;

/// One SSE message: its fields, or a comment (`comment` set, the rest empty).
#[derive(Debug, Default)]
struct Msg {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: bool,
}

impl Msg {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("data is JSON")
    }
}

struct Sse {
    r: BufReader<TcpStream>,
    status: u16,
    head: String,
}

/// Sends the GET and reads the response head.
fn open(addr: SocketAddr, target: &str, headers: &str) -> Sse {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{headers}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Sse { r, status, head }
}

impl Sse {
    /// The next message or comment (blocks up to the read timeout).
    fn next(&mut self) -> Option<Msg> {
        let mut m = Msg::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if any {
                    return Some(m);
                }
                continue;
            }
            any = true;
            if line.starts_with(':') {
                m.comment = true;
            } else if let Some(v) = line.strip_prefix("id: ") {
                m.id = Some(v.into());
            } else if let Some(v) = line.strip_prefix("event: ") {
                m.event = Some(v.into());
            } else if let Some(v) = line.strip_prefix("data: ") {
                m.data.push_str(v);
            }
        }
    }

    /// The next message that is not a comment.
    fn next_msg(&mut self) -> Msg {
        loop {
            let m = self.next().expect("an SSE message within 10 s");
            if !m.comment {
                return m;
            }
        }
    }

    /// Reads `event: subscribed` (sent at open).
    fn subscribed(&mut self) -> Value {
        let m = self.next_msg();
        assert_eq!(m.event.as_deref(), Some("subscribed"), "{m:?}");
        m.json()
    }
}

#[test]
fn events_arrive_with_id_event_and_envelope_and_filters_apply() {
    let s = start(|_| {});
    let mut all = open(s.local_addr, "/v1/sse?channels=c,other", "");
    assert_eq!(all.status, 200, "{}", all.head);
    let h = all.head.to_ascii_lowercase();
    assert!(h.contains("content-type: text/event-stream"), "{h}");
    assert!(h.contains("cache-control: no-cache"), "{h}");
    assert!(!h.contains("content-length"), "{h}");
    assert_eq!(all.subscribed()["channels"], json!(["c", "other"]));
    let mut high = open(
        s.local_addr,
        "/v1/sse?channels=c&filter.sev=high&filter.sev=critical&filter.n=2",
        "",
    );
    high.subscribed();
    let mut acks = Vec::new();
    for (i, sev) in ["low", "high", "critical", "high"].iter().enumerate() {
        acks.push(publish(&s, "c", json!({"seq": i, "sev": sev, "n": i})));
    }
    for (i, ack) in acks.iter().enumerate() {
        let m = all.next_msg();
        let id = format!("{}/{}/{}", ack.topic, ack.partition, ack.offset);
        // `id:` is the stream's position on every partition (a token); the envelope keeps
        // the event's own topic/partition/offset.
        let token = m.id.clone().expect("id:");
        assert!(!token.contains('/') && token.len() < 64, "{token}");
        assert_eq!(m.event.as_deref(), Some("c"));
        let v = m.json();
        assert_eq!(v["type"], "event");
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["channel"], "c");
        assert_eq!(v["data"]["seq"], i);
    }
    // sev in {high, critical} AND n == 2 (the query value "2" also matches the number 2).
    let m = high.next_msg();
    assert_eq!(m.json()["data"]["seq"], 2, "{m:?}");
    // Nothing else for the filtered stream: the next thing is a later publish that matches.
    publish(&s, "c", json!({"seq": 9, "sev": "critical", "n": 2}));
    assert_eq!(high.next_msg().json()["data"]["seq"], 9);
}

#[test]
fn last_event_id_resumes_the_partition_with_no_gap_and_no_duplicate() {
    let s = start(|c| c.kafka.mode = fanline::config::KafkaMode::Direct);
    let mut first = open(s.local_addr, "/v1/sse?channels=c", "");
    first.subscribed();
    for i in 0..3 {
        publish_keyed(&s, "c", "same-key", json!({"seq": i}));
    }
    let mut last_id = String::new();
    let mut last_event = String::new();
    for i in 0..3 {
        let m = first.next_msg();
        assert_eq!(m.json()["data"]["seq"], i);
        last_event = m.json()["id"].as_str().expect("id").to_string();
        last_id = m.id.expect("id");
    }
    drop(first);
    // Missed while disconnected.
    for i in 3..6 {
        publish_keyed(&s, "c", "same-key", json!({"seq": i}));
    }
    let mut again = open(
        s.local_addr,
        "/v1/sse?channels=c",
        &format!("Last-Event-ID: {last_id}\r\n"),
    );
    let sub = again.subscribed();
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["replayed"], 3, "{sub}");
    for i in 6..8 {
        publish_keyed(&s, "c", "same-key", json!({"seq": i}));
    }
    let seqs: Vec<i64> = (3..8)
        .map(|_| again.next_msg().json()["data"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4, 5, 6, 7]);
    // One partition through ?since= (REST form topic/p:offset): the others were held from
    // offset 0 and never had an event, so that is provably complete too.
    let (tp, off) = last_event.rsplit_once('/').unwrap();
    let mut q = open(
        s.local_addr,
        &format!("/v1/sse?channels=c&since={tp}:{off}"),
        "",
    );
    assert_eq!(q.subscribed()["replayed"], 5);
    assert_eq!(q.next_msg().json()["data"]["seq"], 3);
    let bad = open(
        s.local_addr,
        "/v1/sse?channels=c",
        "Last-Event-ID: nope\r\n",
    );
    assert_eq!(bad.status, 400);
}

const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

#[test]
fn unauthenticated_sse_on_a_secured_server_gets_401_and_a_token_works() {
    let s = start(|c| {
        c.auth.jwt = vec![JwtKeyConfig {
            algorithms: vec!["HS256".into()],
            secret: Some(SECRET.into()),
            audience: Some("fanline".into()),
            ..Default::default()
        }];
    });
    let r = open(s.local_addr, "/v1/sse?channels=issues", "");
    assert_eq!(r.status, 401, "{}", r.head);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub":"u","exp":now + 600,"aud":"fanline","channels":["issues"]});
    let t = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut ok = open(
        s.local_addr,
        &format!("/v1/sse?channels=issues&token={t}"),
        "",
    );
    assert_eq!(ok.status, 200, "{}", ok.head);
    ok.subscribed();
    let forbidden = open(
        s.local_addr,
        &format!("/v1/sse?channels=secret&token={t}"),
        "",
    );
    assert_eq!(forbidden.status, 403, "{}", forbidden.head);
}

#[test]
fn heartbeat_comment_arrives_and_a_silent_client_is_not_closed() {
    let s = start(|c| c.server.heartbeat_ms = 200);
    let mut c = open(s.local_addr, "/v1/sse?channels=c", "");
    c.subscribed();
    let t0 = Instant::now();
    let mut comments = 0;
    // 1.5 s of silence from the client: a WebSocket peer would be closed after 300 ms.
    while t0.elapsed() < Duration::from_millis(1500) {
        let m = c.next().expect("stream stays open");
        assert!(m.comment, "{m:?}");
        comments += 1;
    }
    assert!(comments >= 4, "{comments} heartbeats");
    publish(&s, "c", json!({"after": "heartbeats"}));
    assert_eq!(c.next_msg().json()["data"]["after"], "heartbeats");
}

#[test]
fn a_non_reading_sse_client_gets_drops_counted_and_a_gap_event() {
    let s = start(|c| {
        c.limits.outbox_frames = 20;
        c.server.heartbeat_ms = 60_000;
    });
    let mut slow = open(s.local_addr, "/v1/sse?channels=feed", "");
    slow.subscribed();
    let pad = "x".repeat(32 * 1024);
    let mut published = 0;
    while metric(&s, "fanline_dropped_total{reason=\"slow_consumer\"}") == 0.0 {
        assert!(published < 4000, "the SSE client never overflowed");
        for _ in 0..50 {
            publish(&s, "feed", json!({"seq": published, "pad": pad}));
            published += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reading again: the stream carries `event: gap` before the newest events.
    let end = Instant::now() + Duration::from_secs(10);
    let gap = loop {
        assert!(Instant::now() < end, "no gap event");
        let m = slow.next_msg();
        if m.event.as_deref() == Some("gap") {
            break m.json();
        }
    };
    assert_eq!(gap["type"], "gap");
    assert_eq!(gap["channel"], "feed");
    assert_eq!(gap["reason"], "slow_consumer");
    assert!(gap["dropped"].as_u64().unwrap() > 0);
}

#[test]
fn shutdown_drain_ends_the_stream_and_new_streams_get_503() {
    let s = start(|c| c.server.drain_ms = 300);
    let mut c = open(s.local_addr, "/v1/sse?channels=c", "");
    c.subscribed();
    s.begin_shutdown();
    let end = Instant::now() + Duration::from_secs(5);
    // Only comments or nothing until EOF: no WebSocket close frame bytes on an SSE stream.
    while let Some(m) = c.next() {
        assert!(m.comment || m.event.is_some(), "{m:?}");
        assert!(Instant::now() < end, "stream not closed by the drain");
    }
    // The listener may already be gone (0 = refused); if it answers, it is 503.
    let late = http(s.local_addr, "GET", "/v1/sse?channels=c", None).0;
    assert!(late == 503 || late == 0, "503 or refused, got {late}");
    s.join();
}
