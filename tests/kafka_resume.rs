//! Kafka under the gateway, end to end: records produced to Kafka reach WebSocket clients,
//! offsets are the resume position, broker faults are visible and heal without a restart.

#![cfg(feature = "kafka")]

mod util;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{Value, json};
use util::*;

/// `topic/partition` → last offset seen, from event ids.
fn positions(events: &[Value]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for e in events {
        let id = e["id"].as_str().unwrap();
        let (tp, off) = id.rsplit_once('/').unwrap();
        m.insert(tp.to_string(), json!(off.parse::<i64>().unwrap()));
    }
    m
}

async fn take(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut v = Vec::new();
    while v.len() < n {
        let e = next_json(ws).await;
        if e["type"] == "event" {
            v.push(e);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_inside_the_buffer_replays_exactly_the_missed_events_then_goes_live() {
    let s = start_kafka(|_| {});
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["orders"], None).await;
    for i in 0..6 {
        publish_keyed(&s, "orders", &format!("k{}", i % 3), json!({"n": i}));
    }
    let first = take(&mut ws, 6).await;
    drop(ws);
    for i in 6..12 {
        publish_keyed(&s, "orders", &format!("k{}", i % 3), json!({"n": i}));
    }
    // Make sure ingest has seen them before resuming (they are in the replay buffer).
    assert!(
        eventually(Duration::from_secs(10), || s
            .shared
            .metrics
            .ingest
            .events_ingested
            .get()
            >= 12)
        .await
    );
    let mut ws = connect(&s).await;
    let since = positions(&first);
    send_json(
        &mut ws,
        json!({"type":"subscribe","id":"r","channels":["orders"],"since":since}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["replayed"], 6, "{ack}");
    for i in 12..15 {
        publish_keyed(&s, "orders", &format!("k{}", i % 3), json!({"n": i}));
    }
    let rest = take(&mut ws, 9).await;
    let mut ns: Vec<i64> = rest
        .iter()
        .map(|e| e["data"]["n"].as_i64().unwrap())
        .collect();
    let ids: std::collections::HashSet<_> = rest
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 9, "no duplicates");
    ns.sort();
    assert_eq!(
        ns,
        (6..15).collect::<Vec<_>>(),
        "no gap: exactly the missed events, then live"
    );
    // Order per partition never changes.
    let mut last: HashMap<String, i64> = HashMap::new();
    for e in &rest {
        let (tp, off) = e["id"].as_str().unwrap().rsplit_once('/').unwrap();
        let off: i64 = off.parse().unwrap();
        assert!(
            last.insert(tp.to_string(), off).is_none_or(|p| p < off),
            "in order per partition"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_older_than_the_buffer_says_recovered_false_with_a_reason() {
    let s = start_kafka(|c| c.replay.max_records = 3);
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["feed"], None).await;
    let a = publish(&s, "feed", json!({"n":0}));
    let _ = take(&mut ws, 1).await;
    for i in 1..10 {
        publish(&s, "feed", json!({"n": i}));
    }
    let _ = take(&mut ws, 9).await;
    let mut ws2 = connect(&s).await;
    let key = format!("{}/{}", a.topic, a.partition);
    send_json(
        &mut ws2,
        json!({"type":"subscribe","id":"r","channels":["feed"],"since":{key: a.offset}}),
    )
    .await;
    let ack = next_json(&mut ws2).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["reason"], "too_old", "{ack}");
    assert!(
        ack["detail"]
            .as_str()
            .unwrap()
            .contains("older than the replay buffer"),
        "{ack}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_goes_through_kafka_and_arrives_with_its_offset() {
    let s = start_kafka(|_| {});
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["deploys"], None).await;
    let admin = s.admin_addr;
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(
            admin,
            "POST",
            "/v1/publish",
            Some(r#"{"channel":"deploys","event_type":"api.deployed","data":{"api":"pets"}}"#),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let ack: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ack["topic"], "fanline.events");
    let ev = next_json(&mut ws).await;
    assert_eq!(
        ev["id"],
        format!("fanline.events/{}/{}", ack["partition"], ack["offset"])
    );
    assert_eq!(ev["event_type"], "api.deployed");
    assert_eq!(ev["data"]["api"], "pets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_flips_readiness_and_status_and_delivery_resumes_without_restart() {
    let cluster = MockCluster::<DefaultProducerContext>::new(1).expect("mock cluster");
    cluster.create_topic("fanline.events", 3, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let s = start_kafka(|c| {
        c.kafka.brokers = brokers.clone();
        c.kafka.ready_grace_ms = 300;
    });
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["alerts"], None).await;
    publish(&s, "alerts", json!({"n":1}));
    assert_eq!(take(&mut ws, 1).await[0]["data"]["n"], 1);
    cluster.broker_down(1).expect("broker down");
    let st = next_json(&mut ws).await;
    assert_eq!(st, json!({"type":"status","kafka":"degraded"}));
    let admin = s.admin_addr;
    let ready = tokio::task::spawn_blocking(move || http(admin, "GET", "/health/ready", None).0)
        .await
        .unwrap();
    assert_eq!(ready, 503);
    let live = tokio::task::spawn_blocking(move || http(admin, "GET", "/health/live", None).0)
        .await
        .unwrap();
    assert_eq!(live, 200);
    cluster.broker_up(1).expect("broker up");
    let st = next_json(&mut ws).await;
    assert_eq!(st, json!({"type":"status","kafka":"ok"}));
    publish(&s, "alerts", json!({"n":2}));
    assert_eq!(
        take(&mut ws, 1).await[0]["data"]["n"],
        2,
        "same connection, no restart"
    );
    assert!(s.wait_ready(Duration::from_secs(10)));
}
