//! Kafka ingest against a real librdkafka mock cluster (real protocol over loopback TCP):
//! records produced with a real producer come out of a shard inbox as events.
//!
//! Every wait is bounded ([`WAIT`]); every ingest thread is stopped when its harness drops.

#![cfg(feature = "kafka")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanline::config::Config;
use fanline::event::Event;
use fanline::fanout::{Fanout, Publisher, RingItem, ShardInbox};
use fanline::ingest::replay::Start;
use fanline::ingest::{
    IngestStatus, PublishRequest, PublishSink, ReplayBuffer, RouteConfig, spawn_ingest,
};
use fanline::metrics::Metrics;
use fanline::protocol::Cursor;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const WAIT: Duration = Duration::from_secs(20);

/// One gateway's ingest side: a real eventfd waker, one shard inbox, the ingest thread.
struct Gateway {
    fanout: Arc<Fanout>,
    inbox: Arc<ShardInbox>,
    status: Arc<IngestStatus>,
    replay: Arc<ReplayBuffer>,
    metrics: Arc<Metrics>,
    sink: Arc<dyn PublishSink>,
    shutdown: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Gateway {
    #[track_caller]
    fn start(cfg: Config, channels: &[&str]) -> Gateway {
        let waker = fanline::io::Waker::new().expect("waker");
        let inbox = Arc::new(ShardInbox::new(1 << 16, waker));
        let fanout = Arc::new(Fanout::new(vec![inbox.clone()]));
        for c in channels {
            fanout.subscriptions.set(c, 0, true);
        }
        let metrics = Arc::new(Metrics::new(1));
        let replay = Arc::new(ReplayBuffer::new(&cfg.replay));
        let status = Arc::new(IngestStatus::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let publisher = Publisher::new(fanout.clone(), metrics.clone());
        let (handle, sink) = spawn_ingest(
            &cfg.kafka,
            &cfg.routes,
            publisher,
            replay.clone(),
            metrics.clone(),
            status.clone(),
            shutdown.clone(),
        )
        .expect("spawn_ingest");
        let gw = Gateway {
            fanout,
            inbox,
            status,
            replay,
            metrics,
            sink,
            shutdown,
            handle: Some(handle),
        };
        wait_for("partitions assigned", || {
            gw.status.assigned.load(Ordering::Acquire)
        });
        gw
    }

    /// Next ring item, or None after `within`.
    fn next_item(&self, within: Duration) -> Option<RingItem> {
        let deadline = Instant::now() + within;
        loop {
            self.inbox.begin_drain();
            if let Some(item) = self.inbox.pop() {
                return Some(item);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Collects `n` events (skipping status items), failing after [`WAIT`].
    #[track_caller]
    fn events(&self, n: usize) -> Vec<Arc<Event>> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left) {
                Some(RingItem::Event(e)) => out.push(e),
                Some(_) => {}
                None => panic!("got {} of {n} events within {WAIT:?}", out.len()),
            }
        }
        out
    }

    /// Waits for a `Status(want)` item, failing after [`WAIT`].
    #[track_caller]
    fn status_item(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left) {
                Some(RingItem::Status(s)) if s == want => return,
                Some(_) => {}
                None => panic!("no status {want:?} within {WAIT:?}"),
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[track_caller]
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn config(brokers: &str, routes: Vec<RouteConfig>) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers.to_string();
    cfg.kafka.metadata_refresh_ms = 300;
    cfg.kafka.ready_grace_ms = 500;
    cfg.routes = routes;
    cfg
}

fn route(topic: &str, channel: &str) -> RouteConfig {
    RouteConfig {
        topic: topic.into(),
        channel: channel.into(),
        ..Default::default()
    }
}

fn cluster(
    topics: &[(&str, i32)],
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mc = MockCluster::new(1).expect("mock cluster");
    for (t, n) in topics {
        mc.create_topic(t, *n, 1).expect("create topic");
    }
    mc
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Produces and waits until everything is acknowledged.
#[track_caller]
fn produce(
    p: &BaseProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &[u8],
    headers: &[(&str, &str)],
) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut rec = BaseRecord::to(topic).key(key).payload(value).headers(h);
    if let Some(part) = partition {
        rec = rec.partition(part);
    }
    let mut rec = Some(rec);
    let deadline = Instant::now() + WAIT;
    while let Some(r) = rec.take() {
        if let Err((e, r)) = p.send(r) {
            assert!(Instant::now() < deadline, "produce: {e}");
            p.poll(Duration::from_millis(10));
            rec = Some(r);
        }
    }
}

#[track_caller]
fn flush(p: &BaseProducer) {
    p.flush(WAIT).expect("flush");
}

#[test]
fn keyed_sequences_arrive_in_order_per_partition() {
    let mc = cluster(&[("orders", 3)]);
    let brokers = mc.bootstrap_servers();
    let mut r = route("orders", "orders");
    r.event_type = Some("/type".into());
    let gw = Gateway::start(config(&brokers, vec![r]), &["orders"]);
    let p = producer(&brokers);
    let keys = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
    let per_key = 100;
    for n in 0..per_key {
        for k in keys {
            let v = format!(r#"{{"type":"tick","k":"{k}","n":{n}}}"#);
            produce(&p, "orders", None, k, v.as_bytes(), &[]);
        }
    }
    flush(&p);
    let evs = gw.events(keys.len() * per_key);
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut last_n: HashMap<String, i64> = HashMap::new();
    let mut partitions = std::collections::HashSet::new();
    for e in &evs {
        assert_eq!(&*e.channel, "orders");
        assert_eq!(&*e.topic, "orders");
        if let Some(prev) = last_offset.insert(e.partition, e.offset) {
            assert!(
                e.offset > prev,
                "partition {} went {prev} -> {}",
                e.partition,
                e.offset
            );
        }
        let k = e.data["k"].as_str().expect("k").to_string();
        let n = e.data["n"].as_i64().expect("n");
        let expect = last_n.get(&k).map_or(0, |p| p + 1);
        assert_eq!(n, expect, "key {k} out of order");
        last_n.insert(k, n);
        partitions.insert(e.partition);
        let v: serde_json::Value = serde_json::from_slice(&e.json()).expect("envelope");
        assert_eq!(v["id"], format!("orders/{}/{}", e.partition, e.offset));
        assert_eq!(v["event_type"], "tick");
    }
    assert!(
        partitions.len() > 1,
        "keys spread over partitions: {partitions:?}"
    );
    assert_eq!(gw.metrics.ingest.events_ingested.get(), evs.len() as u64);
    // the replay buffer holds them too, and resumes exactly
    let part = evs[0].partition;
    let first = evs[0].offset;
    let c = Cursor::parse_query(&format!("orders/{part}:{first}")).unwrap();
    let r = gw.replay.resume(&["orders"], Start::Cursor(&c));
    assert!(r.lost.is_none(), "{:?}", r.lost);
    let this = r.parts.iter().find(|p| p.partition == part).unwrap();
    let expect: Vec<i64> = evs
        .iter()
        .filter(|e| e.partition == part && e.offset > first)
        .map(|e| e.offset)
        .collect();
    assert_eq!(
        r.events[this.events.clone()]
            .iter()
            .map(|e| e.offset)
            .collect::<Vec<_>>(),
        expect
    );
    // nothing beyond what was produced
    assert!(gw.next_item(Duration::from_millis(200)).is_none());
    // consumer lag per partition comes from librdkafka statistics (~1/s)
    wait_for("lag metric", || {
        let mut text = String::new();
        gw.metrics.render(&mut text);
        text.contains("fanline_kafka_lag{partition=\"orders/0\"} 0")
    });
}

#[test]
fn two_instances_on_one_topic_both_deliver_every_event() {
    let mc = cluster(&[("shared", 3)]);
    let brokers = mc.bootstrap_servers();
    let a = Gateway::start(config(&brokers, vec![route("shared", "s")]), &["s"]);
    let b = Gateway::start(config(&brokers, vec![route("shared", "s")]), &["s"]);
    let p = producer(&brokers);
    for i in 0..90 {
        produce(
            &p,
            "shared",
            None,
            &format!("k{i}"),
            format!(r#"{{"i":{i}}}"#).as_bytes(),
            &[],
        );
    }
    flush(&p);
    for gw in [&a, &b] {
        let mut got: Vec<i64> = gw
            .events(90)
            .iter()
            .map(|e| e.data["i"].as_i64().expect("i"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..90).collect::<Vec<_>>());
    }
}

#[test]
fn malformed_records_are_skipped_and_counted_while_good_ones_flow() {
    let mc = cluster(&[("mixed", 1)]);
    let brokers = mc.bootstrap_servers();
    let gw = Gateway::start(
        config(&brokers, vec![route("mixed", "m:{/room}")]),
        &["m:1"],
    );
    let p = producer(&brokers);
    for i in 0..30 {
        let v = match i % 3 {
            0 => format!(r#"{{"room":1,"i":{i}}}"#),
            1 => "this is not json {".to_string(),
            _ => format!(r#"{{"no_room":true,"i":{i}}}"#),
        };
        produce(&p, "mixed", Some(0), "k", v.as_bytes(), &[]);
    }
    produce(&p, "mixed", Some(0), "k", b"\xff\xfe\x00", &[]);
    produce(&p, "mixed", Some(0), "k", br#"{"room":1,"i":99}"#, &[]);
    flush(&p);
    let evs = gw.events(11);
    let got: Vec<i64> = evs
        .iter()
        .map(|e| e.data["i"].as_i64().expect("i"))
        .collect();
    let mut want: Vec<i64> = (0..30).filter(|i| i % 3 == 0).collect();
    want.push(99);
    assert_eq!(got, want);
    assert!(evs.iter().all(|e| &*e.channel == "m:1"));
    assert_eq!(gw.metrics.ingest.errors_not_json.get(), 11);
    assert_eq!(gw.metrics.ingest.errors_missing_field.get(), 10);
    let mut text = String::new();
    gw.metrics.render(&mut text);
    assert!(
        text.contains("fanline_ingest_errors_total{kind=\"not_json\"} 11"),
        "{text}"
    );
    assert!(
        text.contains("fanline_events_ingested_total{topic=\"mixed\"} 11"),
        "{text}"
    );
}

/// librdkafka's mock cluster cannot add partitions to an existing topic (no CreatePartitions),
/// so this creates a routed topic after ingest started: the same metadata-follow path assigns
/// its partitions from the beginning.
#[test]
fn partitions_that_appear_at_runtime_are_picked_up() {
    let mc = cluster(&[("early", 1)]);
    let brokers = mc.bootstrap_servers();
    let gw = Gateway::start(
        config(&brokers, vec![route("early", "e"), route("late", "l")]),
        &["e", "l"],
    );
    mc.create_topic("late", 2, 1).expect("create late");
    let p = producer(&brokers);
    // produced right away: before ingest has seen the new partitions, so they must be read
    // from their beginning
    for part in 0..2 {
        for i in 0..5 {
            produce(
                &p,
                "late",
                Some(part),
                "k",
                format!(r#"{{"i":{i}}}"#).as_bytes(),
                &[],
            );
        }
    }
    flush(&p);
    let evs = gw.events(10);
    assert!(
        evs.iter()
            .all(|e| &*e.topic == "late" && &*e.channel == "l")
    );
    for part in 0..2 {
        let offs: Vec<i64> = evs
            .iter()
            .filter(|e| e.partition == part)
            .map(|e| e.offset)
            .collect();
        assert_eq!(offs, (0..5).collect::<Vec<_>>());
    }
}

#[test]
fn broker_down_then_up_flips_degraded_and_delivery_resumes() {
    let mc = cluster(&[("health", 1)]);
    let brokers = mc.bootstrap_servers();
    let gw = Gateway::start(config(&brokers, vec![route("health", "h")]), &["h"]);
    let p = producer(&brokers);
    produce(&p, "health", Some(0), "k", br#"{"i":0}"#, &[]);
    flush(&p);
    assert_eq!(gw.events(1)[0].data["i"], 0);
    assert!(gw.status.ready());

    mc.broker_down(1).expect("broker down");
    wait_for("degraded", || gw.status.degraded.load(Ordering::Acquire));
    assert!(!gw.status.ready());
    gw.status_item("degraded");

    mc.broker_up(1).expect("broker up");
    wait_for("recovered", || !gw.status.degraded.load(Ordering::Acquire));
    gw.status_item("ok");
    assert!(gw.status.ready());
    produce(&p, "health", Some(0), "k", br#"{"i":1}"#, &[]);
    flush(&p);
    assert_eq!(gw.events(1)[0].data["i"], 1);
}

#[test]
fn publish_sink_round_trips_through_kafka() {
    let mc = cluster(&[("issues.enriched", 2), ("fanline.events", 3)]);
    let brokers = mc.bootstrap_servers();
    let gw = Gateway::start(
        config(&brokers, vec![route("issues.enriched", "issues")]),
        &["chat", "issues"],
    );
    let req = |channel: &str, data: &str| PublishRequest {
        channel: channel.into(),
        event_type: Some("msg".into()),
        correlation_id: Some("c-1".into()),
        key: None,
        data: serde_json::value::RawValue::from_string(data.into()).expect("raw"),
    };
    let ack = gw
        .sink
        .publish(req("chat", r#"{"m":1}"#))
        .expect("publish chat");
    assert_eq!(ack.topic, "fanline.events");
    let ev = &gw.events(1)[0];
    assert_eq!(
        (&*ev.channel, ev.partition, ev.offset),
        ("chat", ack.partition, ack.offset)
    );
    let v: serde_json::Value = serde_json::from_slice(&ev.json()).expect("json");
    assert_eq!(v["event_type"], "msg");
    assert_eq!(v["correlation_id"], "c-1");
    assert_eq!(v["data"]["m"], 1);

    let ack = gw
        .sink
        .publish(req("issues", r#"{"n":2}"#))
        .expect("publish issues");
    assert_eq!(ack.topic, "issues.enriched");
    let ev = &gw.events(1)[0];
    assert_eq!(
        (&*ev.channel, ev.partition, ev.offset),
        ("issues", ack.partition, ack.offset)
    );
    // same channel, same key: same partition, growing offsets
    let a2 = gw
        .sink
        .publish(req("chat", r#"{"m":2}"#))
        .expect("publish chat 2");
    assert_eq!(a2.partition, gw.events(1)[0].partition);
    assert!(gw.sink.publish(req("", "{}")).is_err());
    drop(gw);
    drop(mc);
}

#[test]
fn embedded_cluster_runs_with_no_brokers_configured() {
    let gw = Gateway::start(config("", Vec::new()), &["demo"]);
    let ack = gw
        .sink
        .publish(PublishRequest {
            channel: "demo".into(),
            event_type: None,
            correlation_id: None,
            key: Some("k".into()),
            data: serde_json::value::RawValue::from_string("[1,2]".into()).expect("raw"),
        })
        .expect("publish");
    let ev = &gw.events(1)[0];
    assert_eq!((ev.partition, ev.offset), (ack.partition, ack.offset));
    assert_eq!(ev.data, serde_json::json!([1, 2]));
    assert!(gw.fanout.subscriptions.shards_for("demo") == 1);
}

#[test]
fn warm_start_fills_the_replay_buffer_without_publishing_history() {
    let mc = cluster(&[("warm", 1)]);
    let brokers = mc.bootstrap_servers();
    let p = producer(&brokers);
    for i in 0..10 {
        produce(
            &p,
            "warm",
            Some(0),
            "k",
            format!(r#"{{"i":{i}}}"#).as_bytes(),
            &[],
        );
    }
    flush(&p);
    let mut cfg = config(&brokers, vec![route("warm", "w")]);
    cfg.kafka.start = fanline::config::KafkaStart::Warm;
    cfg.kafka.warm_records = 4;
    let gw = Gateway::start(cfg, &["w"]);
    wait_for("warm records", || gw.replay.usage("warm", 0).0 == 4);
    assert_eq!(gw.replay.complete_from("warm", 0), Some(6));
    let resume = |q: &str| {
        let c = Cursor::parse_query(q).unwrap();
        gw.replay.resume(&["w"], Start::Cursor(&c)).lost.is_none()
    };
    assert!(resume("warm/0:5"));
    assert!(!resume("warm/0:4"));
    produce(&p, "warm", Some(0), "k", br#"{"i":10}"#, &[]);
    flush(&p);
    let ev = &gw.events(1)[0];
    assert_eq!(ev.offset, 10, "history was not published live");
    assert_eq!(
        gw.replay.latest_matching("w", |_| true).map(|e| e.offset),
        Some(10)
    );
}
