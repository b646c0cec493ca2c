//! Request size limits (SPEC §4, §6; issue #10 item 5): a `since` cursor carries at most 1024
//! positions and a filter at most 16 keys of at most 64 values. Past a limit the request is
//! refused with a clear `error` frame (WebSocket) or 400 (REST, SSE) whose message names the
//! field; the connection, its other subscriptions and their events are untouched.

mod util;

use serde_json::{Map, Value, json};
use util::*;

const MAX_POSITIONS: usize = 1024;

fn since_json(n: usize) -> Value {
    let mut m = Map::new();
    for p in 0..n {
        m.insert(format!("t/{p}"), json!(1));
    }
    Value::Object(m)
}

fn since_query(n: usize) -> String {
    let v: Vec<String> = (0..n).map(|p| format!("t/{p}:1")).collect();
    v.join(",")
}

/// The next `error` frame (after the frames before it, which must be none).
async fn refused(ws: &mut Ws, msg: Value) -> Value {
    send_json(ws, msg).await;
    let e = next_json(ws).await;
    assert_eq!(e["type"], "error", "{e}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_oversized_since_and_filter_are_refused_and_nothing_else_is_lost() {
    let s = start(|_| {});
    let mut ws = connect(&s).await;
    subscribe(&mut ws, &["keep"], None).await;

    let e = refused(
        &mut ws,
        json!({"type":"subscribe","id":"big-since","channels":["other"],"since":since_json(MAX_POSITIONS + 1)}),
    )
    .await;
    assert_eq!(e["id"], "big-since", "{e}");
    assert_eq!(e["code"], "bad_request", "{e}");
    let m = e["message"].as_str().unwrap_or_default();
    assert!(m.contains("since") && m.contains("1024"), "{e}");

    let keys: Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!(1))).collect();
    let e = refused(
        &mut ws,
        json!({"type":"subscribe","id":"many-keys","channels":["other"],"filter":keys}),
    )
    .await;
    assert_eq!(
        (e["id"].as_str(), e["code"].as_str()),
        (Some("many-keys"), Some("bad_filter")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("filter has more than 16 keys"),
        "{e}"
    );

    let values: Vec<i64> = (0..65).collect();
    let e = refused(
        &mut ws,
        json!({"type":"subscribe","id":"many-values","channels":["other"],"filter":{"sev":values}}),
    )
    .await;
    assert_eq!(e["code"], "bad_filter", "{e}");
    let m = e["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("\"sev\"") && m.contains("more than 64 values"),
        "{e}"
    );

    // A huge key is named, but not echoed whole.
    let long_key = format!("{}/0", "x".repeat(20_000));
    let e = refused(
        &mut ws,
        json!({"type":"subscribe","id":"long-key","channels":["other"],"since":{ long_key: "no" }}),
    )
    .await;
    let m = e["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("since") && m.len() < 400,
        "{} bytes: {:.200}",
        m.len(),
        m
    );

    // At the limit is fine.
    send_json(
        &mut ws,
        json!({"type":"subscribe","id":"at-limit","channels":["third"],"since":since_json(MAX_POSITIONS)}),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("subscribed"), Some("at-limit")),
        "{ack}"
    );

    // Nothing else was lost: the connection is open, "keep" still delivers, the refused
    // subscriptions never happened.
    publish(&s, "other", json!({"n": 0}));
    publish(&s, "keep", json!({"n": 1}));
    publish(&s, "third", json!({"n": 2}));
    let a = next_json(&mut ws).await;
    let b = next_json(&mut ws).await;
    assert_eq!(
        (a["channel"].as_str(), a["data"]["n"].as_i64()),
        (Some("keep"), Some(1)),
        "{a}"
    );
    assert_eq!(
        (b["channel"].as_str(), b["data"]["n"].as_i64()),
        (Some("third"), Some(2)),
        "{b}"
    );
    send_json(&mut ws, json!({"type":"ping","id":"p"})).await;
    let p = next_json(&mut ws).await;
    assert_eq!(p, json!({"type":"pong","id":"p"}));
}

#[test]
fn rest_and_sse_oversized_since_and_filter_are_400_naming_the_field() {
    let s = start(|_| {});
    publish(&s, "c", json!({"n": 0}));
    let filters: String = (0..65).map(|i| format!("&filter.sev={i}")).collect();
    let keys: String = (0..17).map(|i| format!("&filter.k{i}=1")).collect();
    for base in ["/v1/channels/c/events?limit=10", "/v1/sse?channels=c"] {
        let (code, body) = http(
            s.local_addr,
            "GET",
            &format!("{base}&since={}", since_query(MAX_POSITIONS + 1)),
            None,
        );
        assert_eq!(code, 400, "{base}: {body}");
        assert!(
            body.contains("since has more than 1024 positions"),
            "{base}: {body}"
        );
        let (code, body) = http(s.local_addr, "GET", &format!("{base}{filters}"), None);
        assert_eq!(code, 400, "{base}: {body}");
        assert!(body.contains("filter"), "{base}: {body}");
        let (code, body) = http(s.local_addr, "GET", &format!("{base}{keys}"), None);
        assert_eq!(code, 400, "{base}: {body}");
        assert!(
            body.contains("filter has more than 16 keys"),
            "{base}: {body}"
        );
    }
    // At the limit the REST request is served.
    let (code, body) = http(
        s.local_addr,
        "GET",
        &format!("/v1/channels/c/events?since={}", since_query(MAX_POSITIONS)),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json page");
    assert_eq!(v["channel"], "c", "{v}");
}
