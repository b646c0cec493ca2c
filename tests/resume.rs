//! Resume that never lies (SPEC §4, §6, §7), on one gateway with the in-process log (3
//! partitions, events keyed so they spread): every missed event replayed exactly once and in
//! order per partition over WebSocket `since`, SSE `Last-Event-ID` and the REST cursor; a
//! cursor that lacks partitions, or names another epoch, says so and drops nothing new.

mod resume_util;
mod util;

use resume_util::*;
use serde_json::{Value, json};
use util::*;

/// Publishes `data.n` for every n in `ns`, keyed over 10 keys (spreads over 3 partitions).
fn publish_spread(s: &fanline::server::Server, channel: &str, ns: std::ops::Range<i64>) {
    for n in ns {
        publish_keyed(s, channel, &format!("k{}", n % 10), json!({ "n": n }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_since_replays_every_partition_exactly_once() {
    let s = start(|_| {});
    let (mut ws, welcome) = connect_welcome(s.local_addr).await;
    let epoch = welcome["epoch"].clone();
    assert!(epoch.as_str().is_some_and(|e| e.len() == 16), "{welcome}");
    subscribe_since(&mut ws, &["orders"], None).await;
    publish_spread(&s, "orders", 0..30);
    let seen = take_events(&mut ws, 30).await;
    assert_eq!(partitions(&seen).len(), 3, "keys spread over 3 partitions");
    drop(ws);
    publish_spread(&s, "orders", 30..60); // missed while disconnected
    let (mut ws, _) = connect_welcome(s.local_addr).await;
    // the channel twice in one subscribe counts once
    let ack = subscribe_since(
        &mut ws,
        &["orders", "orders"],
        Some(since_of(&seen, &epoch)),
    )
    .await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["replayed"], 30, "{ack}");
    publish_spread(&s, "orders", 60..75); // live after the replay
    let got = take_events(&mut ws, 45).await;
    assert_exact(&got, 30..75);
    publish(&s, "orders", json!({"n": 75}));
    let next = take_events(&mut ws, 1).await;
    assert_eq!(next[0]["data"]["n"], 75, "nothing else was queued");
}

#[test]
fn sse_last_event_id_resumes_every_partition() {
    let s = start(|_| {});
    let target = "/v1/sse?channels=orders";
    let mut a = Sse::open(s.local_addr, target, None);
    assert_eq!(a.status, 200);
    a.subscribed();
    publish_spread(&s, "orders", 0..30);
    let seen = a.events(30);
    assert_eq!(partitions(&seen).len(), 3);
    let last = a.last_id.clone().expect("an id: was sent");
    drop(a);
    publish_spread(&s, "orders", 30..60);
    let mut b = Sse::open(s.local_addr, target, Some(&last));
    assert_eq!(b.status, 200);
    let sub = b.subscribed();
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["replayed"], 30, "{sub}");
    publish_spread(&s, "orders", 60..66);
    let mut got = b.events(36);
    assert_exact(&got, 30..66);
    // cut again in the middle: the id of the last event read resumes exactly after it
    let mid = b.last_id.clone().expect("id");
    drop(b);
    publish_spread(&s, "orders", 66..70);
    let mut c = Sse::open(s.local_addr, target, Some(&mid));
    let sub = c.subscribed();
    assert_eq!(
        (sub["recovered"].clone(), sub["replayed"].clone()),
        (json!(true), json!(4)),
        "{sub}"
    );
    got = c.events(4);
    assert_exact(&got, 66..70);
}

#[test]
fn rest_cursor_pages_every_partition_and_says_when_it_cannot() {
    let s = start(|_| {});
    publish_spread(&s, "orders", 0..30);
    let (st, page) = get_json(s.local_addr, "/v1/channels/orders/events?limit=1000");
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(30));
    assert_eq!(page["recovered"], true, "{page}");
    let next = page["next"].as_str().expect("next").to_string();
    assert!(
        next.starts_with("epoch:"),
        "the cursor names its log: {next}"
    );
    publish_spread(&s, "orders", 30..60);
    let (_, page) = get_json(
        s.local_addr,
        &format!("/v1/channels/orders/events?since={next}&limit=7"),
    );
    let mut got: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
    let mut next = page["next"].as_str().expect("next").to_string();
    for _ in 0..10 {
        let (_, page) = get_json(
            s.local_addr,
            &format!("/v1/channels/orders/events?since={next}&limit=7"),
        );
        assert_eq!(page["recovered"], true, "{page}");
        let evs = page["events"].as_array().cloned().unwrap_or_default();
        next = page["next"].as_str().expect("next").to_string();
        if evs.is_empty() {
            break;
        }
        got.extend(evs);
    }
    assert_exact(&got, 30..60);
    // one partition of three: partial
    let first = next
        .split(',')
        .find(|e| e.contains('/'))
        .expect("a position");
    let (_, page) = get_json(
        s.local_addr,
        &format!("/v1/channels/orders/events?since={first}"),
    );
    // all partitions are held from offset 0 here, so even that is provable
    assert_eq!(page["recovered"], true, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_lacking_partitions_is_partial_cursor() {
    // 5 records per partition: the early ones are evicted, so a partition missing from the
    // cursor cannot be proven complete.
    let s = start(|c| c.replay.max_records = 5);
    let (mut ws, welcome) = connect_welcome(s.local_addr).await;
    subscribe_since(&mut ws, &["orders"], None).await;
    publish_spread(&s, "orders", 0..30);
    let seen = take_events(&mut ws, 30).await;
    drop(ws);
    let full = since_of(&seen, &welcome["epoch"]);
    let obj = full.as_object().expect("object");
    let one_tp = obj
        .keys()
        .find(|k| k.contains('/'))
        .expect("a position")
        .clone();
    let partial = json!({"epoch": welcome["epoch"], one_tp.clone(): obj[&one_tp]});
    publish_spread(&s, "orders", 30..33);
    let (mut ws, _) = connect_welcome(s.local_addr).await;
    let ack = subscribe_since(&mut ws, &["orders"], Some(partial)).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["reason"], "partial_cursor", "{ack}");
    // the same over REST and SSE
    let part = one_tp.clone() + ":" + &obj[&one_tp].to_string();
    let (_, page) = get_json(
        s.local_addr,
        &format!("/v1/channels/orders/events?since={part}"),
    );
    assert_eq!(
        (page["recovered"].clone(), page["reason"].clone()),
        (json!(false), json!("partial_cursor")),
        "{page}"
    );
    let mut sse = Sse::open(
        s.local_addr,
        &format!("/v1/sse?channels=orders&since={part}"),
        None,
    );
    let sub = sse.subscribed();
    assert_eq!(
        (sub["recovered"].clone(), sub["reason"].clone()),
        (json!(false), json!("partial_cursor")),
        "{sub}"
    );
    // the full cursor, still inside the buffer, recovers
    let (mut ws2, _) = connect_welcome(s.local_addr).await;
    let ack = subscribe_since(&mut ws2, &["orders"], Some(full)).await;
    assert_eq!(
        (ack["recovered"].clone(), ack["replayed"].clone()),
        (json!(true), json!(3)),
        "{ack}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_an_old_cursor_is_epoch_changed_and_new_events_all_arrive() {
    let a = start(|_| {});
    let (mut ws, welcome) = connect_welcome(a.local_addr).await;
    subscribe_since(&mut ws, &["orders"], None).await;
    publish_spread(&a, "orders", 0..30);
    let seen = take_events(&mut ws, 30).await;
    let since = since_of(&seen, &welcome["epoch"]);
    let mut sse = Sse::open(a.local_addr, "/v1/sse?channels=orders", None);
    sse.subscribed();
    publish_spread(&a, "orders", 30..31);
    sse.events(1);
    let sse_id = sse.last_id.clone().expect("id");
    drop((ws, sse));
    a.shutdown();

    // The direct log starts again at offset 0: the old offsets name another log.
    let b = start(|_| {});
    let (mut ws, welcome_b) = connect_welcome(b.local_addr).await;
    assert_ne!(
        welcome_b["epoch"], welcome["epoch"],
        "a new epoch per start"
    );
    let ack = subscribe_since(&mut ws, &["orders"], Some(since)).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_eq!(ack["reason"], "epoch_changed", "{ack}");
    assert_eq!(ack["replayed"], 0, "{ack}");
    let mut sse = Sse::open(b.local_addr, "/v1/sse?channels=orders", Some(&sse_id));
    let sub = sse.subscribed();
    assert_eq!(sub["reason"], "epoch_changed", "{sub}");
    publish_spread(&b, "orders", 100..120); // offsets 0.. again, below the old watermarks
    assert_exact(&take_events(&mut ws, 20).await, 100..120);
    assert_exact(&sse.events(20), 100..120);
}

const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

fn token(claims: Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let mut c = claims;
    c["exp"] = json!(exp);
    c["sub"] = json!("u1");
    encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

#[test]
fn rest_latest_serves_the_newest_event_the_forced_filter_allows() {
    let s = start(|c| {
        c.auth.jwt = vec![fanline::auth::JwtKeyConfig {
            algorithms: vec!["HS256".into()],
            secret: Some(SECRET.into()),
            ..Default::default()
        }];
    });
    let t = token(json!({"channels": ["prices"], "filter": {"tenant": "acme"}}));
    publish_keyed(&s, "prices", "k1", json!({"n": 1, "tenant": "acme"}));
    publish_keyed(&s, "prices", "k2", json!({"n": 2, "tenant": "acme"}));
    publish_keyed(&s, "prices", "k2", json!({"n": 3, "tenant": "evil"})); // newest, not ours
    let (st, v) = get_json(
        s.local_addr,
        &format!("/v1/channels/prices/latest?token={t}"),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["n"], 2, "{v}");
    let (st, v) = get_json(
        s.local_addr,
        &format!("/v1/latest?channels=prices&token={t}"),
    );
    assert_eq!(
        (st, v["prices"]["data"]["n"].clone()),
        (200, json!(2)),
        "{v}"
    );
}

#[test]
fn rest_polling_does_not_spend_the_websocket_connect_rate() {
    let s = start(|c| {
        c.limits.connect_allowlist = Vec::new(); // loopback counts like anyone else
        c.limits.connect_per_ip_per_min = 10;
    });
    publish(&s, "prices", json!({"n": 1}));
    for i in 0..25 {
        let (st, v) = get_json(s.local_addr, "/v1/channels/prices/latest");
        assert_eq!(st, 200, "request {i}: {v}");
    }
    let raw = raw_upgrade(s.local_addr, "/v1/ws");
    drop(raw);
}
