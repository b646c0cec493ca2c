//! Resume across replicas (SPEC §6 "also on another replica"): two gateways read one Kafka
//! cluster (the `examples/mock_cluster` helper process, 3 partitions); a client consumes on A,
//! is cut, and resumes on B over WebSocket `since`, SSE `Last-Event-ID` and the REST cursor:
//! every missed event exactly once, in order per partition.

#![cfg(feature = "kafka")]

mod resume_util;
mod util;

use fanline::server::Server;
use resume_util::*;
use serde_json::json;
use util::*;

/// Two gateways on one broker, both reading every partition from the start.
fn pair(brokers: &str) -> (Server, Server) {
    let one = || {
        start_kafka(|c| {
            c.kafka.brokers = brokers.to_string();
        })
    };
    (one(), one())
}

/// Publishes `data.n` for every n in `ns` (through A's producer), keyed over 10 keys.
fn publish_spread(s: &Server, channel: &str, ns: std::ops::Range<i64>) {
    for n in ns {
        publish_keyed(s, channel, &format!("k{}", n % 10), json!({ "n": n }));
    }
}

/// Both replicas have ingested `n` events.
fn wait_both(a: &Server, b: &Server, n: u64) {
    wait_ingested(a, n);
    wait_ingested(b, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_on_a_resume_on_b_over_websocket_sse_and_rest() {
    let cluster = MockClusterProc::start();
    let (a, b) = pair(&cluster.brokers);

    // consume on A: WebSocket and SSE
    let (mut ws, welcome_a) = connect_welcome(a.local_addr).await;
    let (_, welcome_b) = connect_welcome(b.local_addr).await;
    assert_eq!(
        welcome_a["epoch"], welcome_b["epoch"],
        "one Kafka cluster, one epoch on every replica"
    );
    subscribe_since(&mut ws, &["orders"], None).await;
    let mut sse = Sse::open(a.local_addr, "/v1/sse?channels=orders", None);
    sse.subscribed();
    publish_spread(&a, "orders", 0..30);
    let seen = take_events(&mut ws, 30).await;
    assert_eq!(partitions(&seen).len(), 3, "keys spread over 3 partitions");
    sse.events(30);
    let (_, page) = get_json(a.local_addr, "/v1/channels/orders/events?limit=1000");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(30), "{page}");
    let rest_next = page["next"].as_str().expect("next").to_string();
    let since = since_of(&seen, &welcome_a["epoch"]);
    let sse_id = sse.last_id.clone().expect("id");
    drop((ws, sse)); // cut

    publish_spread(&a, "orders", 30..60); // missed
    wait_both(&a, &b, 60);

    // resume on B
    let (mut ws, _) = connect_welcome(b.local_addr).await;
    let ack = subscribe_since(&mut ws, &["orders"], Some(since)).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["replayed"], 30, "{ack}");
    let mut sse = Sse::open(b.local_addr, "/v1/sse?channels=orders", Some(&sse_id));
    let sub = sse.subscribed();
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["replayed"], 30, "{sub}");
    let (_, page) = get_json(
        b.local_addr,
        &format!("/v1/channels/orders/events?since={rest_next}&limit=1000"),
    );
    assert_eq!(page["recovered"], true, "{page}");
    assert_exact(page["events"].as_array().expect("events"), 30..60);

    publish_spread(&b, "orders", 60..70); // live on B
    assert_exact(&take_events(&mut ws, 40).await, 30..70);
    assert_exact(&sse.events(40), 30..70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_cursor_from_a_is_partial_on_b() {
    let cluster = MockClusterProc::start();
    let (a, b) = pair(&cluster.brokers);
    let (mut ws, welcome) = connect_welcome(a.local_addr).await;
    subscribe_since(&mut ws, &["orders"], None).await;
    publish_spread(&a, "orders", 0..30);
    let seen = take_events(&mut ws, 30).await;
    drop(ws);
    wait_both(&a, &b, 30);
    // Restart B: it now reads from the end of the log, so it holds no partition from offset 0
    // and cannot prove that what the cursor lacks was not missed.
    b.shutdown();
    let b = start_kafka(|c| c.kafka.brokers = cluster.brokers.clone());
    let full = since_of(&seen, &welcome["epoch"]);
    let obj = full.as_object().expect("object");
    let tp = obj
        .keys()
        .find(|k| k.contains('/'))
        .expect("a position")
        .clone();
    let partial = json!({"epoch": welcome["epoch"], tp.clone(): obj[&tp]});
    let (mut ws, welcome_b) = connect_welcome(b.local_addr).await;
    assert_eq!(
        welcome_b["epoch"], welcome["epoch"],
        "stable across a restart"
    );
    let ack = subscribe_since(&mut ws, &["orders"], Some(partial)).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["reason"], "partial_cursor", "{ack}");
    // the full cursor is at the end of the log, where B starts: nothing is missing
    let (mut ws2, _) = connect_welcome(b.local_addr).await;
    let ack = subscribe_since(&mut ws2, &["orders"], Some(full)).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["replayed"], 0, "{ack}");
    publish_spread(&a, "orders", 30..40);
    assert_exact(&take_events(&mut ws2, 10).await, 30..40);
}
