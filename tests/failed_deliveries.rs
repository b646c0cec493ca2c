//! `GET /v1/deliveries/failed` against the real binary: a real client that subscribes and then
//! never reads (tiny outbox caps, small receive buffer) while events with correlation ids flow.
//! Every event dropped for it is in the log once, with its channel, event id and correlation
//! id; paging with `next` returns each entry once; the log stays at its cap; the ERROR lines
//! are rate-limited and what is not logged is counted; bad `since`/`limit` are 400s naming
//! the parameter; closing the stalled client records what was still queued (`closed`).

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use util::binary::Gateway;

/// The log's per-shard cap (`fanout::failed::PER_SHARD`); the binary runs one shard.
const CAP: u64 = 512;

/// One shard, tiny outbox caps, no slow-consumer close or heartbeat within the test.
fn start() -> Gateway {
    util::binary::start(
        "failed",
        "[kafka]\nmode = \"direct\"\n\n[server]\nheartbeat_ms = 600000\ndrain_ms = 200\n\n\
         [limits]\noutbox_frames = 4\noutbox_bytes = 1000000\nslow_consumer_close_s = 600\n",
    )
}

/// A WebSocket client with a 4 KiB receive buffer that subscribes to `channel`, reads the
/// ack, and from then on never reads.
fn stalled_client(addr: SocketAddr, channel: &str) -> TcpStream {
    let mut s = util::raw_upgrade_rcvbuf(addr, "/v1/ws", 4096);
    let sub = json!({"type":"subscribe","id":"s","channels":[channel]}).to_string();
    s.write_all(&util::client_frame(0x1, sub.as_bytes()))
        .unwrap();
    for _ in 0..5 {
        let (op, p) = util::read_frame(&mut s).expect("a frame");
        if op == 0x1 && serde_json::from_slice::<Value>(&p).unwrap()["type"] == "subscribed" {
            return s;
        }
    }
    panic!("no subscribed ack");
}

fn get(gw: &Gateway, path: &str) -> (u16, Value) {
    let (status, body) = util::http(gw.admin, "GET", path, None);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn metric(gw: &Gateway, name: &str) -> u64 {
    let (_, body) = util::http(gw.admin, "GET", "/metrics", None);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} on /metrics"))
}

fn the_connection(gw: &Gateway) -> Value {
    let (status, v) = get(gw, "/v1/connections");
    assert_eq!(status, 200);
    let list = v["connections"].as_array().expect("connections");
    assert_eq!(list.len(), 1, "{v}");
    list[0].clone()
}

#[test]
fn a_stalled_client_fills_the_failed_deliveries_log() {
    let gw = start();
    let client = stalled_client(gw.public, "orders");
    let conn = the_connection(&gw);
    let conn_id = conn["id"].as_str().expect("id").to_string();
    assert_eq!(conn["outbox_frames"], 0, "{conn}");
    assert_eq!(conn["outbox_bytes"], 0, "{conn}");
    assert_eq!(conn["outbox_oldest_ms"], Value::Null, "{conn}");

    // Publish 16 KiB events with correlation ids until well past the log's cap of drops.
    let pad = "x".repeat(16 * 1024);
    let mut corr_of: BTreeMap<String, String> = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(60);
    let mut dropped = 0;
    for i in 0..6000 {
        let corr = format!("corr-{i}");
        let body = json!({"channel":"orders","correlation_id":corr,"data":{"i":i,"pad":pad}});
        let (status, ack) = util::http(gw.admin, "POST", "/v1/publish", Some(&body.to_string()));
        assert_eq!(status, 202, "{ack}");
        let ack: Value = serde_json::from_str(&ack).unwrap();
        let id = format!(
            "{}/{}/{}",
            ack["topic"].as_str().unwrap(),
            ack["partition"],
            ack["offset"]
        );
        corr_of.insert(id, corr);
        if i % 50 == 49 {
            dropped = the_connection(&gw)["dropped"].as_u64().unwrap_or(0);
            if dropped >= CAP + 200 || Instant::now() > end {
                break;
            }
        }
    }
    // Let the shard take every published event.
    std::thread::sleep(Duration::from_millis(300));
    let conn = the_connection(&gw);
    let dropped_now = conn["dropped"].as_u64().unwrap();
    assert!(
        dropped_now >= dropped && dropped_now > CAP,
        "dropped {dropped_now}"
    );
    let dropped = dropped_now;
    assert!(conn["failed"].as_u64().unwrap() >= 1, "{conn}");
    assert_eq!(conn["last_failure"]["reason"], "slow_consumer", "{conn}");
    assert!(conn["last_failure"]["at"].as_i64().is_some(), "{conn}");
    // Its outbox is full (a cap of 4 event frames of 16 KiB each, plus the `gap` behind them)
    // and its oldest event has waited at least the 300 ms slept above.
    let frames = conn["outbox_frames"].as_u64().expect("outbox_frames");
    let queued = conn["outbox_bytes"].as_u64().expect("outbox_bytes");
    assert!((4..=6).contains(&frames), "{conn}");
    assert!((3 * 16384..=6 * 17 * 1024).contains(&queued), "{conn}");
    assert!(
        conn["outbox_oldest_ms"].as_u64().expect("oldest") >= 300,
        "{conn}"
    );

    // Every drop was recorded; the log holds exactly its cap, the newest.
    assert_eq!(
        metric(
            &gw,
            "fanline_failed_deliveries_total{reason=\"slow_consumer\"}"
        ),
        dropped
    );
    assert_eq!(metric(&gw, "fanline_failed_deliveries_log_entries"), CAP);

    // Page through with `next`: each entry once, in seq order, the newest CAP of them.
    let mut since = 0;
    let mut seqs = Vec::new();
    let mut first_missed = None;
    for _ in 0..100 {
        let (status, page) = get(
            &gw,
            &format!("/v1/deliveries/failed?since={since}&limit=100"),
        );
        assert_eq!(status, 200, "{page}");
        first_missed.get_or_insert(page["missed"].as_u64().unwrap());
        let items = page["failed"].as_array().expect("failed").clone();
        if items.is_empty() {
            assert_eq!(page["next"].as_u64(), Some(since));
            break;
        }
        assert!(items.len() <= 100);
        for f in &items {
            assert_eq!(f["reason"], "slow_consumer", "{f}");
            assert_eq!(f["channel"], "orders", "{f}");
            assert_eq!(f["connection_id"].as_str(), Some(conn_id.as_str()), "{f}");
            assert_eq!(f["identity"], conn["identity"], "{f}");
            let id = f["event_id"].as_str().expect("event_id");
            assert_eq!(
                f["correlation_id"].as_str(),
                corr_of.get(id).map(String::as_str),
                "{f}"
            );
            assert!(f["at"].as_i64().is_some_and(|t| t > 1_600_000_000_000));
            seqs.push(f["seq"].as_u64().unwrap());
        }
        since = page["next"].as_u64().expect("next");
        assert_eq!(since, *seqs.last().unwrap());
    }
    assert_eq!(seqs.len() as u64, CAP);
    assert_eq!(seqs, ((dropped - CAP + 1)..=dropped).collect::<Vec<u64>>());
    assert_eq!(first_missed, Some(dropped - CAP));
    let ids: BTreeSet<_> = seqs.iter().collect();
    assert_eq!(ids.len() as u64, CAP);

    // Bad parameters name themselves.
    for (q, name) in [
        ("since=abc", "since"),
        ("since=-3", "since"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("since=1&limit=100000", "limit"),
    ] {
        let (status, body) = get(&gw, &format!("/v1/deliveries/failed?{q}"));
        assert_eq!(status, 400, "{q}: {body}");
        let msg = body["message"].as_str().unwrap_or("");
        assert!(msg.starts_with(&format!("{name}:")), "{q}: {body}");
    }

    // ERROR lines: one per failure up to the budget, the rest counted, none lost.
    let suppressed = metric(&gw, "fanline_failed_delivery_lines_suppressed_total");
    assert!(
        suppressed > 0,
        "a storm of {dropped} failures is rate-limited"
    );
    let lines = || -> Vec<Value> {
        gw.log
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["level"] == "ERROR" && v["fields"]["message"] == "delivery failed")
            .cloned()
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(5);
    while (lines().len() as u64) + suppressed < dropped && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let logged = lines();
    assert_eq!(logged.len() as u64 + suppressed, dropped);
    for l in &logged {
        let id = l["fields"]["event_id"].as_str().expect("event_id");
        assert_eq!(
            l["fields"]["correlation_id"].as_str(),
            corr_of.get(id).map(String::as_str),
            "{l}"
        );
    }

    // Closing the stalled client: what was still queued for it is recorded as `closed`.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let end = Instant::now() + Duration::from_secs(10);
    let mut closed = 0;
    while Instant::now() < end {
        closed = metric(&gw, "fanline_failed_deliveries_total{reason=\"closed\"}");
        if closed > 0 && get(&gw, "/v1/connections").1["connections"] == json!([]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!((1..=4).contains(&closed), "closed {closed}");
    let (_, page) = get(&gw, &format!("/v1/deliveries/failed?since={since}"));
    let items = page["failed"].as_array().unwrap();
    assert_eq!(items.len() as u64, closed, "{page}");
    assert!(
        items
            .iter()
            .all(|f| f["reason"] == "closed" && f["connection_id"].as_str() == Some(&conn_id))
    );
    assert_eq!(metric(&gw, "fanline_failed_deliveries_log_entries"), CAP);
}
