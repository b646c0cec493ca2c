//! REST over the replay buffer: polling with an offset cursor, latest values, ETag/304, and the
//! same credentials and ACL as the WebSocket upgrade.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use util::*;

/// GET with extra header lines; returns (status, headers, body).
fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_string(), body.to_string())
}

/// `data.n` of every event in a page, in order.
fn data_ns(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["n"].as_i64().unwrap())
        .collect()
}

fn etag(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .expect("ETag header")
        .to_string()
}

#[test]
fn polling_pages_through_the_buffer_with_an_offset_cursor_and_etag() {
    let s = start(|_| {});
    for n in 0..5 {
        publish_keyed(&s, "orders", "k", json!({"n": n}));
    }
    publish_keyed(&s, "other", "k", json!({"n": 99}));
    let (st, head, body) = get(s.local_addr, "/v1/channels/orders/events?limit=3", "");
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let ns = data_ns(&v);
    assert_eq!(ns, vec![0, 1, 2]);
    assert_eq!(v["recovered"], true);
    let next = v["next"].as_str().unwrap().to_string();
    let (_, _, body) = get(
        s.local_addr,
        &format!("/v1/channels/orders/events?since={next}"),
        "",
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    let ns = data_ns(&v);
    assert_eq!(
        ns,
        vec![3, 4],
        "the cursor continues exactly where the page ended"
    );
    let next = v["next"].as_str().unwrap().to_string();
    let path = format!("/v1/channels/orders/events?since={next}");
    let (st, head2, body) = get(s.local_addr, &path, "");
    assert_eq!(
        (
            st,
            serde_json::from_str::<Value>(&body).unwrap()["events"].clone()
        ),
        (200, json!([]))
    );
    let (st, _, _) = get(
        s.local_addr,
        &path,
        &format!("If-None-Match: {}\r\n", etag(&head2)),
    );
    assert_eq!(st, 304, "unchanged page → 304");
    publish_keyed(&s, "orders", "k", json!({"n": 5}));
    let (st, _, body) = get(
        s.local_addr,
        &path,
        &format!("If-None-Match: {}\r\n", etag(&head2)),
    );
    assert_eq!(st, 200, "a new event changes the page");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["events"][0]["data"]["n"],
        5
    );
    assert!(head.contains("Cache-Control: no-cache"));
}

#[test]
fn filters_apply_and_an_old_cursor_says_recovered_false() {
    let s = start(|c| c.replay.max_records = 3);
    let first = publish_keyed(&s, "alerts", "k", json!({"sev": "low"}));
    for sev in ["high", "low", "high", "low"] {
        publish_keyed(&s, "alerts", "k", json!({"sev": sev}));
    }
    let (_, _, body) = get(
        s.local_addr,
        "/v1/channels/alerts/events?filter.sev=high",
        "",
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["events"].as_array().unwrap().len(),
        1,
        "3 retained, 1 of them high: {v}"
    );
    let since = format!("{}/{}:{}", first.topic, first.partition, first.offset);
    let (_, _, body) = get(
        s.local_addr,
        &format!("/v1/channels/alerts/events?since={since}"),
        "",
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["recovered"], false, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("older than the replay buffer")
    );
    let (st, _, _) = get(s.local_addr, "/v1/channels/alerts/events?since=bogus", "");
    assert_eq!(st, 400);
}

#[test]
fn latest_values_per_channel_with_etag() {
    let s = start(|_| {});
    assert_eq!(get(s.local_addr, "/v1/channels/prices/latest", "").0, 404);
    publish_keyed(&s, "prices", "BTC", json!({"px": 1}));
    let a = publish_keyed(&s, "prices", "BTC", json!({"px": 2}));
    let (st, head, body) = get(s.local_addr, "/v1/channels/prices/latest", "");
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["px"], 2);
    assert_eq!(
        etag(&head),
        format!("\"{}/{}/{}\"", a.topic, a.partition, a.offset)
    );
    let (st, _, _) = get(
        s.local_addr,
        "/v1/channels/prices/latest",
        &format!("If-None-Match: {}\r\n", etag(&head)),
    );
    assert_eq!(st, 304);
    let (_, _, body) = get(s.local_addr, "/v1/latest?channels=prices,empty", "");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["prices"]["data"]["px"].as_i64(), v["empty"].clone()),
        (Some(2), Value::Null)
    );
}

#[test]
fn rest_needs_the_same_credentials_and_channel_grants_as_websocket() {
    use fanline::auth::JwtKeyConfig;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";
    let s = start(|c| {
        c.auth.jwt = vec![JwtKeyConfig {
            algorithms: vec!["HS256".into()],
            secret: Some(SECRET.into()),
            ..Default::default()
        }];
    });
    publish(&s, "issues", json!({"n": 1}));
    assert_eq!(get(s.local_addr, "/v1/channels/issues/latest", "").0, 401);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let t = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u1", "exp": exp, "channels": ["issues"]}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let auth = format!("Authorization: Bearer {t}\r\n");
    assert_eq!(
        get(s.local_addr, "/v1/channels/issues/latest", &auth).0,
        200
    );
    assert_eq!(
        get(s.local_addr, "/v1/channels/secret/latest", &auth).0,
        403
    );
    assert_eq!(
        get(
            s.local_addr,
            &format!("/v1/channels/issues/events?token={t}"),
            ""
        )
        .0,
        200
    );
}
