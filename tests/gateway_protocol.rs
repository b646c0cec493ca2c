//! Protocol v1 behaviours over real sockets: subscribe, filters, unsubscribe, ping, errors,
//! health routes, publish over HTTP.

mod util;

use std::time::Duration;

use serde_json::json;
use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_client_receives_published_event_envelope() {
    let s = start(|_| {});
    let mut ws = connect(&s).await;
    let ack = subscribe(&mut ws, &["issues"], None).await;
    assert_eq!(ack["channels"], json!(["issues"]));
    let a = publish(&s, "issues", json!({"title":"t1"}));
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["type"], "event");
    assert_eq!(ev["channel"], "issues");
    assert_eq!(ev["data"]["title"], "t1");
    assert_eq!(
        ev["id"],
        format!("{}/{}/{}", a.topic, a.partition, a.offset)
    );
    assert!(ev["ts"].as_i64().unwrap() > 1_700_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_only_matching_events() {
    let s = start(|_| {});
    let mut ws = connect(&s).await;
    subscribe(
        &mut ws,
        &["issues"],
        Some(json!({"severity":["high","critical"],"/meta/component":"api"})),
    )
    .await;
    publish(
        &s,
        "issues",
        json!({"n":1,"severity":"low","meta":{"component":"api"}}),
    );
    publish(
        &s,
        "issues",
        json!({"n":2,"severity":"high","meta":{"component":"db"}}),
    );
    publish(
        &s,
        "issues",
        json!({"n":3,"severity":"critical","meta":{"component":"api"}}),
    );
    publish(
        &s,
        "issues",
        json!({"n":4,"severity":"high","meta":{"component":"api"}}),
    );
    assert_eq!(next_json(&mut ws).await["data"]["n"], 3);
    assert_eq!(next_json(&mut ws).await["data"]["n"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery_and_other_channels_continue() {
    let s = start(|_| {});
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["a", "b"], None).await;
    send_json(
        &mut ws,
        json!({"type":"unsubscribe","id":"u1","channels":["a"]}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("unsubscribed"), Some("u1"))
    );
    publish(&s, "a", json!({"n":1}));
    publish(&s, "b", json!({"n":2}));
    let ev = next_json(&mut ws).await;
    assert_eq!(
        (ev["channel"].as_str(), ev["data"]["n"].as_i64()),
        (Some("b"), Some(2))
    );
    assert!(
        util::eventually(Duration::from_secs(2), || s
            .shared
            .fanout
            .subscriptions
            .shards_for("a")
            == 0)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_ping_gets_pong_and_bad_messages_get_explained_errors() {
    let s = start(|_| {});
    let mut ws = connect(&s).await;
    send_json(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    send_json(&mut ws, json!({"type":"subscribe","id":"r7","channels":[]})).await;
    let e = next_json(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["id"].as_str(), e["code"].as_str()),
        (Some("error"), Some("r7"), Some("bad_request"))
    );
    send_json(
        &mut ws,
        json!({"type":"subscribe","id":"r8","channels":["x"],"filter":{"a":[]}}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "bad_filter");
    // The connection survives bad input.
    subscribe(&mut ws, &["x"], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_limit_is_enforced_per_connection() {
    let s = start(|c| c.limits.max_subscriptions = 2);
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["a", "b"], None).await;
    send_json(
        &mut ws,
        json!({"type":"subscribe","id":"r","channels":["c"]}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["code"], "too_many_subscriptions");
}

#[test]
fn health_routes_answer_on_the_public_listener_and_unknown_paths_404() {
    let s = start(|_| {});
    assert_eq!(http(s.local_addr, "GET", "/health/live", None).0, 200);
    assert_eq!(http(s.local_addr, "GET", "/health/ready", None).0, 200);
    assert_eq!(http(s.local_addr, "GET", "/nope", None).0, 404);
    assert_eq!(http(s.local_addr, "GET", "/v1/ws", None).0, 426);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_on_admin_reaches_websocket_clients_with_its_offset() {
    let s = start(|_| {});
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["deploys"], None).await;
    let admin = s.admin_addr;
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(admin, "POST", "/v1/publish", Some(r#"{"channel":"deploys","event_type":"api.deployed","correlation_id":"c-1","data":{"api":"pets"}}"#))
    })
    .await
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let ack: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event_type"], "api.deployed");
    assert_eq!(ev["correlation_id"], "c-1");
    assert_eq!(
        ev["id"],
        format!(
            "{}/{}/{}",
            ack["topic"].as_str().unwrap(),
            ack["partition"],
            ack["offset"]
        )
    );
    let (status, body) =
        tokio::task::spawn_blocking(move || http(admin, "POST", "/v1/publish", Some("{nope")))
            .await
            .unwrap();
    assert_eq!(status, 400, "{body}");
}
