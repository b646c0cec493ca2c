//! `server.io_backend` picks the shards' I/O backend and everything above `src/io/` behaves the
//! same on both: each backend, set in the configuration (whatever FANLINE_SERVER_IO_BACKEND the
//! suite runs under), serves two shards of clients every event over three partitions exactly
//! once and in partition order, says which backend runs (`/v1/version`, `fanline_build_info`),
//! and an unknown backend is refused at startup naming the key.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use fanline::config::IoBackend;
use serde_json::{Value, json};
use util::{connect, http, next_json, publish_keyed, start_kafka, subscribe};

const CLIENTS: usize = 24;
const EVENTS: u64 = 90;

async fn every_event_once_in_order(backend: IoBackend) {
    let s = start_kafka(|c| {
        c.server.io_backend = backend;
        c.server.shards = 2;
    });
    assert_eq!(
        s.shared.io_backend,
        backend.name(),
        "no fallback on this machine"
    );
    let (code, body) = http(s.admin_addr, "GET", "/v1/version", None);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("version JSON");
    assert_eq!(v["backend"], backend.name(), "{v}");
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = connect(&s).await; // reads the welcome
        let ack = subscribe(&mut ws, &["feed"], None).await;
        assert_eq!(ack["type"], "subscribed", "{ack}");
        clients.push(ws);
    }
    let mut published: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for n in 0..EVENTS {
        let ack = publish_keyed(&s, "feed", &format!("key-{n}"), json!({"n": n}));
        published
            .entry(i64::from(ack.partition))
            .or_default()
            .push(ack.offset);
    }
    assert_eq!(published.len(), 3, "keys spread over 3 partitions");
    for ws in &mut clients {
        let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for _ in 0..EVENTS {
            let ev = tokio::time::timeout(Duration::from_secs(20), next_json(ws))
                .await
                .expect("every event within 20 s");
            assert_eq!(ev["type"], "event", "{ev}");
            let id = ev["id"].as_str().expect("event id");
            let mut parts = id.rsplitn(3, '/');
            let offset: i64 = parts.next().and_then(|o| o.parse().ok()).expect("offset");
            let partition: i64 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .expect("partition");
            seen.entry(partition).or_default().push(offset);
        }
        assert_eq!(
            seen,
            published,
            "{}: exactly the published offsets, in order",
            backend.name()
        );
    }
    s.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoll_delivers_every_event_once_in_partition_order() {
    every_event_once_in_order(IoBackend::Epoll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uring_delivers_every_event_once_in_partition_order() {
    every_event_once_in_order(IoBackend::Uring).await;
}

#[test]
fn an_unknown_backend_is_refused_naming_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanline"))
        .args(["--io-backend", "kqueue", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .output()
        .expect("run fanline");
    assert_eq!(out.status.code(), Some(2), "exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("io_backend") && err.contains("kqueue"),
        "the error names the key and the value: {err}"
    );
}
