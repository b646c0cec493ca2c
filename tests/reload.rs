//! SIGHUP reload against the real binary and a real config file: a route added to the file
//! starts delivering its topic (3 partitions, keys spread over all of them); a lowered
//! `max_subscriptions` applies to new subscribes while existing subscriptions stay; an invalid
//! file is refused with an ERROR naming the key and the running configuration keeps serving;
//! connections opened before every reload stay open and keep receiving.

#![cfg(feature = "kafka")]

mod util;

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use util::binary::start;
use util::{Ws, next_json, send_json, subscribe};

fn reloaded(v: &Value) -> bool {
    v["fields"]["message"] == "configuration reloaded"
}

/// Sends a subscribe and returns the answer (ack or error).
async fn try_subscribe(ws: &mut Ws, channels: &[&str]) -> Value {
    send_json(ws, json!({"type":"subscribe","id":"s","channels":channels})).await;
    next_json(ws).await
}

async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == "event" {
            return v;
        }
    }
}

const DIRECT: &str = "[kafka]\nmode = \"direct\"\n";

fn limits(max_subs: &str) -> String {
    format!("{DIRECT}[limits]\nmax_subscriptions = {max_subs}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_max_subscriptions_applies_to_new_subscribes_and_existing_ones_stay() {
    let gw = start("subs", &limits("3"));
    let mut a = gw.connect().await;
    subscribe(&mut a, &["a", "b", "c"], None).await;
    gw.reload(&limits("2"), reloaded);
    // the open connection keeps its three subscriptions and keeps receiving on each
    for (i, ch) in ["a", "b", "c"].into_iter().enumerate() {
        gw.publish(ch, i as u64);
        let e = next_event(&mut a).await;
        assert_eq!(
            (e["channel"].as_str(), e["data"]["n"].as_u64()),
            (Some(ch), Some(i as u64))
        );
    }
    // a new subscribe on it gets the new limit
    let refused = try_subscribe(&mut a, &["d"]).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("at most 2 subscriptions"),
        "{refused}"
    );
    // so does a new connection: two fine, a third refused
    let mut b = gw.connect().await;
    subscribe(&mut b, &["x", "y"], None).await;
    let refused = try_subscribe(&mut b, &["z"]).await;
    assert_eq!(refused["type"], "error", "{refused}");
    // raising it again lets `a` subscribe once more
    gw.reload(&limits("4"), reloaded);
    subscribe(&mut a, &["d"], None).await;
    assert_eq!(gw.lines(reloaded), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_naming_the_key_and_the_running_config_serves() {
    let gw = start("bad", &limits("2"));
    let mut a = gw.connect().await;
    subscribe(&mut a, &["a"], None).await;
    let refused = |v: &Value| {
        v["level"] == "ERROR"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("limits.max_subscriptions"))
    };
    gw.reload(&limits("\"many\""), refused);
    assert_eq!(gw.lines(reloaded), 0, "nothing was reloaded");
    // an impossible value is refused the same way, naming its key
    let refused_heartbeat = |v: &Value| {
        v["level"] == "ERROR"
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("server.heartbeat_ms"))
    };
    gw.reload(
        &format!("{}[server]\nheartbeat_ms = 1\n", limits("50")),
        refused_heartbeat,
    );
    assert_eq!(gw.lines(reloaded), 0, "nothing was reloaded");
    // the old limit (2) still holds, and the open connection still receives
    subscribe(&mut a, &["b"], None).await;
    let r = try_subscribe(&mut a, &["c"]).await;
    assert_eq!(r["type"], "error", "{r}");
    gw.publish("a", 7);
    assert_eq!(next_event(&mut a).await["data"]["n"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_to_the_file_delivers_its_topic_on_every_partition() {
    let mc = MockCluster::new(1).expect("mock cluster");
    mc.create_topic("t.one", 3, 1).expect("topic");
    mc.create_topic("t.new", 3, 1).expect("topic");
    let brokers = mc.bootstrap_servers();
    let base = format!(
        "[kafka]\nbrokers = \"{brokers}\"\nmetadata_refresh_ms = 60000\n\
         [[route]]\ntopic = \"t.one\"\nchannel = \"one\"\n"
    );
    let gw = start("route", &base);
    let mut ws = gw.connect().await;
    subscribe(&mut ws, &["one", "orders"], None).await;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let produce = |topic: &str, n: usize| {
        for i in 0..n {
            let key = format!("k{i}");
            let value = json!({"n": i}).to_string();
            producer
                .send(BaseRecord::to(topic).key(&key).payload(&value))
                .expect("queue record");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
    };
    let assigned_new = |v: &Value| {
        v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("kafka: assigned t.new/2"))
    };
    gw.reload(
        &format!("{base}[[route]]\ntopic = \"t.new\"\nchannel = \"orders\"\n"),
        assigned_new,
    );
    assert_eq!(gw.lines(reloaded), 1);
    produce("t.new", 30);
    let mut ns = BTreeSet::new();
    let mut partitions = BTreeSet::new();
    for _ in 0..30 {
        let e = next_event(&mut ws).await;
        assert_eq!(e["channel"], "orders", "{e}");
        ns.insert(e["data"]["n"].as_u64().expect("n"));
        let id = e["id"].as_str().expect("id").to_string();
        partitions.insert(id.split('/').nth(1).expect("partition").to_string());
    }
    assert_eq!(ns.len(), 30, "every record once");
    assert_eq!(
        partitions.len(),
        3,
        "keys spread over 3 partitions: {partitions:?}"
    );
    // the route that was there before still delivers on the same connection
    produce("t.one", 1);
    assert_eq!(next_event(&mut ws).await["channel"], "one");
}
