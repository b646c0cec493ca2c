//! Tiered limits (SPEC §6) against the real binary with real API keys: `[limits.tier.<name>]`
//! chosen by the key's `tier` caps connections per identity (429 past it, a slot comes back
//! when a connection closes), the inbound message rate (the welcome says so; past the burst
//! the connection is closed 1008) and REST requests per minute (`X-RateLimit-*` on every
//! answer, 429 + `Retry-After` past the limit); an untiered key gets `[limits]`; a tier's
//! numbers change with a SIGHUP reload.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use util::binary::{Gateway, start};

const FREE_KEY: &str = "free-key-0123456789";
const PRO_KEY: &str = "pro-key-0123456789";
const PLAIN_KEY: &str = "plain-key-0123456789";

fn keys_file(tag: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("fanline-tiers-{}-{tag}.toml", std::process::id()));
    let entry = |key: &str, id: &str, tier: Option<&str>| {
        let tier = tier
            .map(|t| format!("tier = \"{t}\"\n"))
            .unwrap_or_default();
        format!(
            "[[key]]\nsha256 = \"{}\"\nidentity = \"{id}\"\nchannels = [\"news\"]\n{tier}",
            fanline::auth::sha256_hex(key)
        )
    };
    let text = [
        entry(FREE_KEY, "alice", Some("free")),
        entry(PRO_KEY, "bob", Some("pro")),
        entry(PLAIN_KEY, "carol", None),
    ]
    .join("\n");
    std::fs::write(&path, text).expect("write keys");
    path
}

/// The config file: `free` allows 1 connection, 1 msg/s (burst 3) and `free_rest` requests a
/// minute; `pro` 3 connections and 6 requests; `[limits]` itself caps nothing per identity.
fn config(keys: &std::path::Path, free_rest: u32) -> String {
    format!(
        "[kafka]\nmode = \"direct\"\n\n[auth.api_keys]\nfile = \"{}\"\n\n[limits]\ninbound_msgs_per_s = 100\ninbound_burst = 100\n\n\
         [limits.tier.free]\nconnections_per_identity = 1\ninbound_msgs_per_s = 1\ninbound_burst = 3\nrest_requests_per_min = {free_rest}\n\n\
         [limits.tier.pro]\nconnections_per_identity = 3\nrest_requests_per_min = 6\n",
        keys.display()
    )
}

fn gateway(tag: &str, free_rest: u32) -> (Gateway, std::path::PathBuf) {
    let keys = keys_file(tag);
    (start(tag, &config(&keys, free_rest)), keys)
}

/// A raw HTTP exchange with `X-API-Key: key`: (status, headers lower-cased, body).
fn request(
    addr: SocketAddr,
    key: &str,
    head_extra: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>, TcpStream) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{head_extra}X-API-Key: {key}\r\nHost: x\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read_exact(&mut b).is_err() {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = s.read_exact(&mut body);
    (status, headers, body, s)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn rest(gw: &Gateway, key: &str) -> (u16, Vec<(String, String)>, Value) {
    let (status, h, body, _) = request(
        gw.public,
        key,
        "GET /v1/channels/news/events HTTP/1.1\r\nConnection: close\r\n",
    );
    (
        status,
        h,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// A WebSocket upgrade with `key`: the status, and on 101 the socket and its welcome.
fn ws(gw: &Gateway, key: &str) -> (u16, Option<(TcpStream, Value)>) {
    let (status, _, _, mut s) = request(
        gw.public,
        key,
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    if status != 101 {
        return (status, None);
    }
    let (op, welcome) = util::read_frame(&mut s).expect("welcome frame");
    assert_eq!(op, 0x1);
    (
        status,
        Some((s, serde_json::from_slice(&welcome).expect("welcome json"))),
    )
}

fn rejected(gw: &Gateway, reason: &str) -> f64 {
    let (_, body) = util::http(gw.admin, "GET", "/metrics", None);
    let name = format!("fanline_handshake_rejected_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&name)?.parse().ok())
        .unwrap_or_else(|| panic!("{name} on /metrics"))
}

#[test]
fn rest_requests_per_minute_follow_the_keys_tier() {
    let (gw, keys) = gateway("rest", 3);
    for remaining in [2, 1, 0] {
        let (status, h, body) = rest(&gw, FREE_KEY);
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&h, "x-ratelimit-limit"), Some("3"));
        assert_eq!(
            header(&h, "x-ratelimit-remaining"),
            Some(&*remaining.to_string())
        );
        let reset: u64 = header(&h, "x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let (status, h, body) = rest(&gw, FREE_KEY);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rest_rate_limited");
    assert_eq!(header(&h, "x-ratelimit-remaining"), Some("0"));
    let retry: u64 = header(&h, "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(rejected(&gw, "rest_rate_limited"), 1.0);

    // Another tier, its own allowance and count.
    for remaining in (0..6).rev() {
        let (status, h, _) = rest(&gw, PRO_KEY);
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-ratelimit-limit"), Some("6"));
        assert_eq!(
            header(&h, "x-ratelimit-remaining"),
            Some(&*remaining.to_string())
        );
    }
    assert_eq!(rest(&gw, PRO_KEY).0, 429);
    // No tier: `[limits]` caps nothing, and no rate headers are sent.
    for _ in 0..10 {
        let (status, h, _) = rest(&gw, PLAIN_KEY);
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-ratelimit-limit"), None);
    }
    // A reload raises the free tier's allowance; the window's count so far is kept.
    gw.reload(&config(&keys, 5), |v| {
        v["fields"]["message"] == "configuration reloaded"
    });
    let (status, h, _) = rest(&gw, FREE_KEY);
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-ratelimit-limit"), Some("5"));
    assert_eq!(header(&h, "x-ratelimit-remaining"), Some("1"));
    let _ = std::fs::remove_file(keys);
}

#[test]
fn connections_per_identity_and_inbound_rate_follow_the_keys_tier() {
    let (gw, keys) = gateway("conns", 3);
    // free: one connection; its welcome states the tier's numbers.
    let (status, first) = ws(&gw, FREE_KEY);
    assert_eq!(status, 101);
    let (mut first, welcome) = first.unwrap();
    let limits = &welcome["limits"];
    assert_eq!(limits["tier"], "free", "{welcome}");
    assert_eq!(limits["connections_per_identity"], 1);
    assert_eq!(limits["inbound_msgs_per_s"], 1);
    assert_eq!(limits["inbound_burst"], 3);
    assert_eq!(ws(&gw, FREE_KEY).0, 429, "a second free connection");
    assert_eq!(rejected(&gw, "identity_limit"), 1.0);

    // pro: three.
    let pro: Vec<_> = (0..3).map(|_| ws(&gw, PRO_KEY)).collect();
    assert!(pro.iter().all(|(s, _)| *s == 101));
    assert_eq!(pro[0].1.as_ref().unwrap().1["limits"]["inbound_burst"], 100);
    assert_eq!(ws(&gw, PRO_KEY).0, 429, "a fourth pro connection");
    assert_eq!(rejected(&gw, "identity_limit"), 2.0);
    // untiered: no cap per identity.
    let plain: Vec<_> = (0..5).map(|_| ws(&gw, PLAIN_KEY)).collect();
    assert!(plain.iter().all(|(s, _)| *s == 101));
    assert_eq!(
        plain[0].1.as_ref().unwrap().1["limits"]["tier"],
        Value::Null
    );

    // free's inbound burst is 3: a fourth message at once closes it 1008.
    for _ in 0..4 {
        first.write_all(&util::client_frame(0x9, b"ping")).unwrap();
    }
    let (code, _) = util::read_until_close(&mut first);
    assert_eq!(code, Some(1008));
    drop(first);
    // Its slot comes back once the server has closed it.
    let mut status = 0;
    for _ in 0..50 {
        status = ws(&gw, FREE_KEY).0;
        if status == 101 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, 101, "a free connection after the first closed");
    let _ = std::fs::remove_file(keys);
}
