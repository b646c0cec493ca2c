//! Helpers of the resume tests: a WebSocket client that keeps `welcome`, exact-delivery checks,
//! a raw SSE reader, REST GETs, and the mock-cluster helper process (`examples/mock_cluster`).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use fanline::server::Server;
use serde_json::{Map, Value, json};

use crate::util::{Ws, next_json, send_json};

/// Connects and returns the socket with its `welcome`.
pub async fn connect_welcome(addr: SocketAddr) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .expect("websocket connects");
    let w = next_json(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    (ws, w)
}

/// The next `n` event frames; any `gap` fails the test (these tests never overflow).
pub async fn take_events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut v = Vec::new();
    while v.len() < n {
        let e = next_json(ws).await;
        assert_ne!(e["type"], "gap", "no drops expected: {e}");
        if e["type"] == "event" {
            v.push(e);
        }
    }
    v
}

/// Subscribes with an optional `since` and returns the ack.
pub async fn subscribe_since(ws: &mut Ws, channels: &[&str], since: Option<Value>) -> Value {
    let mut m = json!({"type":"subscribe","id":"r","channels":channels});
    if let Some(s) = since {
        m["since"] = s;
    }
    send_json(ws, m).await;
    let ack = next_json(ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

/// (topic/partition, offset) of an event id `topic/partition/offset`.
pub fn split_id(id: &str) -> (String, i64) {
    let (tp, off) = id.rsplit_once('/').expect("topic/partition/offset");
    (tp.to_string(), off.parse().expect("offset"))
}

/// The WebSocket `since` after `events` (last offset per partition), with `epoch`.
pub fn since_of(events: &[Value], epoch: &Value) -> Value {
    let mut m = Map::new();
    m.insert("epoch".into(), epoch.clone());
    for e in events {
        let (tp, off) = split_id(e["id"].as_str().expect("id"));
        let cur = m.get(&tp).and_then(Value::as_i64).unwrap_or(-1);
        m.insert(tp, json!(off.max(cur)));
    }
    Value::Object(m)
}

/// Partitions (`topic/partition`) the events came from.
pub fn partitions(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| split_id(e["id"].as_str().expect("id")).0)
        .collect()
}

/// Exactly the events `data.n` in `want` (each once), in order per partition.
#[track_caller]
pub fn assert_exact(events: &[Value], want: std::ops::Range<i64>) {
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "no duplicate: {events:?}");
    let mut ns: Vec<i64> = events
        .iter()
        .map(|e| e["data"]["n"].as_i64().expect("data.n"))
        .collect();
    ns.sort_unstable();
    assert_eq!(
        ns,
        want.collect::<Vec<_>>(),
        "every missed event exactly once"
    );
    let mut last: HashMap<String, i64> = HashMap::new();
    for e in events {
        let (tp, off) = split_id(e["id"].as_str().expect("id"));
        assert!(
            last.insert(tp.clone(), off).is_none_or(|p| p < off),
            "order per partition ({tp})"
        );
    }
}

/// Waits until the gateway has ingested `n` events in total.
#[track_caller]
pub fn wait_ingested(s: &Server, n: u64) {
    let end = Instant::now() + Duration::from_secs(20);
    while s.shared.metrics.ingest.events_ingested.get() < n {
        assert!(Instant::now() < end, "ingested {n} within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One SSE message (comments skipped).
#[derive(Debug, Default)]
pub struct Msg {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("data is JSON")
    }
}

/// A raw `GET /v1/sse` reader; `last_id` is what `EventSource` would send on reconnect.
pub struct Sse {
    r: BufReader<TcpStream>,
    pub status: u16,
    pub last_id: Option<String>,
}

impl Sse {
    pub fn open(addr: SocketAddr, target: &str, last_event_id: Option<&str>) -> Sse {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let extra = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
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
        Sse {
            r,
            status,
            last_id: last_event_id.map(str::to_string),
        }
    }

    /// The next message that is not a comment; tracks `id:` as `EventSource` does (an `id:`
    /// line sets it when its message is dispatched, with or without data).
    pub fn next_msg(&mut self) -> Msg {
        loop {
            let mut m = Msg::default();
            let mut fields = false;
            loop {
                let mut line = String::new();
                let n = self
                    .r
                    .read_line(&mut line)
                    .expect("an SSE line within 10 s");
                assert!(n > 0, "stream open");
                let line = line.trim_end_matches('\n');
                if line.is_empty() {
                    break;
                }
                if line.starts_with(':') {
                    continue;
                }
                fields = true;
                if let Some(v) = line.strip_prefix("id: ") {
                    m.id = Some(v.into());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    m.event = Some(v.into());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    m.data.push_str(v);
                }
            }
            if !fields {
                continue;
            }
            if let Some(id) = &m.id {
                self.last_id = Some(id.clone());
            }
            if !m.data.is_empty() {
                return m;
            }
        }
    }

    /// `event: subscribed` (the first message).
    pub fn subscribed(&mut self) -> Value {
        let m = self.next_msg();
        assert_eq!(m.event.as_deref(), Some("subscribed"), "{m:?}");
        m.json()
    }

    /// The next `n` events' JSON.
    pub fn events(&mut self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|_| {
                let v = self.next_msg().json();
                assert_eq!(v["type"], "event", "{v}");
                v
            })
            .collect()
    }
}

/// GET; returns (status, body as JSON or Null).
pub fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `examples/mock_cluster` running as a child process; killed (by pid) on drop.
pub struct MockClusterProc {
    child: Child,
    stdin: Option<ChildStdin>,
    pub brokers: String,
}

impl MockClusterProc {
    /// Starts the helper (built by `cargo test` or `cargo build --release --examples`) with
    /// `fanline.events` (3 partitions).
    pub fn start() -> MockClusterProc {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> → target/<profile>/examples/mock_cluster
        let helper = exe
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("examples").join("mock_cluster"))
            .expect("target dir");
        assert!(
            helper.exists(),
            "{} is missing: run `cargo build --release --examples` (cargo test builds it)",
            helper.display()
        );
        let mut child = Command::new(&helper)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("mock_cluster starts");
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut brokers = String::new();
        out.read_line(&mut brokers).expect("bootstrap address line");
        let brokers = brokers.trim().to_string();
        assert!(brokers.contains(':'), "bootstrap address, got {brokers:?}");
        MockClusterProc {
            child,
            stdin,
            brokers,
        }
    }
}

impl Drop for MockClusterProc {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the helper exits on its own
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
