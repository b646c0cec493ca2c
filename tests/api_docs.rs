//! docs/openapi.yaml against the real server, both ways:
//! - every operation in the document is answered on its listener (not 404/405) with a status
//!   the document lists for it;
//! - every route the server answers is in the document. The candidates are every URL-path
//!   string literal in `src/` (where the routers spell their paths) plus the document's own
//!   paths, each tried with every method on both listeners.
//!
//! The document is read from docs/openapi.json (generated from the YAML by
//! `scripts/api-docs.sh --write`, which checks the two are equal); a test here checks that
//! the YAML and the JSON list the same operations.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fanline::server::Server;
use serde_json::Value;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
const PUBLIC_PORT: &str = ":8080";
const ADMIN_PORT: &str = ":9091";

/// Operations in the document that other work in flight adds to the server: while listed here
/// they may still answer 404/405. Remove an entry once the route has landed on main.
const PENDING: &[(&str, &str)] = &[];

/// Answers the server gives to a method it does not serve on a path that exists, which the
/// document does not list: (method, path template, status). None today; a 405 is always fine.
const KNOWN_DEVIATIONS: &[(&str, &str, u16)] = &[];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Listener {
    Public,
    Admin,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    let text =
        std::fs::read_to_string(root().join("docs/openapi.json")).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// (method, path template) → listeners, from the document's `paths` and `servers`.
fn operations(doc: &Value) -> BTreeMap<(String, String), BTreeSet<Listener>> {
    let listeners = |servers: &Value| -> BTreeSet<Listener> {
        servers
            .as_array()
            .expect("servers is a list")
            .iter()
            .map(|s| {
                let url = s["url"].as_str().expect("server url");
                if url.ends_with(ADMIN_PORT) {
                    Listener::Admin
                } else {
                    assert!(url.ends_with(PUBLIC_PORT), "unknown server {url}");
                    Listener::Public
                }
            })
            .collect()
    };
    let default = listeners(&doc["servers"]);
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let on = item
            .get("servers")
            .map_or_else(|| default.clone(), listeners);
        for m in METHODS {
            if let Some(op) = item.get(m.to_ascii_lowercase()) {
                let on = op.get("servers").map_or_else(|| on.clone(), listeners);
                out.insert((m.to_string(), path.clone()), on);
            }
        }
    }
    out
}

fn is_pending(method: &str, template: &str) -> bool {
    PENDING.iter().any(|(m, p)| *m == method && *p == template)
}

/// One request; returns the status (0 when there was no answer). Reads only the status line,
/// so streaming answers (SSE, 101) do not block.
fn status(addr: SocketAddr, method: &str, target: &str, headers: &str, body: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut got = Vec::new();
    let mut b = [0u8; 256];
    let end = Instant::now() + Duration::from_secs(10);
    while !got.windows(2).any(|w| w == b"\r\n") && Instant::now() < end {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    std::str::from_utf8(got.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// What a well-formed request for `method` on `path` carries (headers, body, query).
fn request_parts(method: &str, path: &str) -> (String, &'static str, &'static str) {
    let mut headers = String::new();
    let (mut body, mut query) = ("", "");
    match (method, path) {
        ("GET", "/v1/ws") => headers.push_str(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        ),
        ("GET", "/v1/sse" | "/v1/latest") => query = "?channels=docs",
        ("POST", "/v1/publish") => body = r#"{"channel":"docs","data":{"n":1}}"#,
        ("OPTIONS", _) => headers.push_str(
            "Origin: http://app.example\r\nAccess-Control-Request-Method: GET\r\n",
        ),
        _ => {}
    }
    (headers, body, query)
}

/// Fills `{channel}` and `{id}`.
fn instantiate(template: &str, conn_id: &str) -> String {
    template
        .replace("{channel}", "docs")
        .replace("{id}", conn_id)
}

fn addr(s: &Server, l: Listener) -> SocketAddr {
    match l {
        Listener::Public => s.local_addr,
        Listener::Admin => s.admin_addr,
    }
}

/// A WebSocket connection held open for the test; returns it with its `connection_id`.
fn open_connection(s: &Server) -> (TcpStream, String) {
    let mut ws = util::raw_upgrade(s.local_addr, "/v1/ws");
    let (op, payload) = util::read_frame(&mut ws).expect("welcome frame");
    assert_eq!(op, 1, "welcome is a text frame");
    let w: Value = serde_json::from_slice(&payload).expect("welcome is JSON");
    let id = w["connection_id"]
        .as_str()
        .expect("connection_id")
        .to_string();
    (ws, id)
}

/// Whether a concrete path matches a template (`{x}` matches one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// Every string literal in `src/` that looks like a URL path (`"/v1/…"`, `"/metrics"`, `"/"`).
fn source_paths(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let p = entry.expect("dir entry").path();
        if p.is_dir() {
            source_paths(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).expect("read source");
            for (i, _) in text.match_indices("\"/") {
                let rest = &text[i + 1..];
                let Some(end) = rest[1..].find('"') else {
                    continue;
                };
                let lit = &rest[..end + 1];
                if lit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
                {
                    out.insert(lit.to_string());
                }
            }
        }
    }
}

#[test]
fn yaml_and_json_list_the_same_operations() {
    let yaml = std::fs::read_to_string(root().join("docs/openapi.yaml")).expect("openapi.yaml");
    let mut from_yaml = BTreeSet::new();
    let mut in_paths = false;
    let mut current = None;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            current = Some(format!("/{p}"));
        } else if let (Some(p), Some(m)) = (&current, line.strip_prefix("    ")) {
            let key = m.split(':').next().unwrap_or("");
            if METHODS.iter().any(|x| x.eq_ignore_ascii_case(key)) {
                from_yaml.insert((key.to_ascii_uppercase(), p.clone()));
            }
        }
    }
    let from_json: BTreeSet<_> = operations(&document()).into_keys().collect();
    assert_eq!(
        from_yaml, from_json,
        "docs/openapi.json is stale: run scripts/api-docs.sh --write"
    );
    assert_eq!(from_json.len(), 23, "operations in the document");
}

#[test]
fn admin_serves_the_document() {
    let s = util::start(|_| {});
    let (status, body) = util::http(s.admin_addr, "GET", "/openapi.json", None);
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&body).expect("the served document is JSON");
    assert_eq!(
        served,
        document(),
        "GET /openapi.json serves docs/openapi.json"
    );
    assert_eq!(served["openapi"], "3.1.0");
    s.shutdown();
}

#[test]
fn every_documented_operation_is_answered_with_a_documented_status() {
    let s = util::start(|_| {});
    // Something to read back on channel "docs", and a connection to close.
    util::publish(&s, "docs", serde_json::json!({"n": 0}));
    let (_ws, conn_id) = open_connection(&s);
    let doc = document();
    let ops = operations(&doc);
    let mut checked = 0;
    let mut pending_answered = Vec::new();
    // DELETE last: it closes the connection the others do not need.
    let mut order: Vec<_> = ops.iter().collect();
    order.sort_by_key(|((m, _), _)| *m == "DELETE");
    for ((method, template), listeners) in order {
        let documented = &doc["paths"][template][method.to_ascii_lowercase()]["responses"];
        for l in listeners {
            let path = instantiate(template, &conn_id);
            let (headers, body, query) = request_parts(method, template);
            let got = status(
                addr(&s, *l),
                method,
                &format!("{path}{query}"),
                &headers,
                body,
            );
            checked += 1;
            let ok =
                got != 0 && got != 404 && got != 405 && documented.get(got.to_string()).is_some();
            if is_pending(method, template) {
                if ok {
                    pending_answered.push(format!("{method} {template}"));
                }
                continue;
            }
            assert!(
                ok,
                "{method} {path}{query} on {l:?} answered {got}; documented: {:?}",
                documented.as_object().map(|o| o.keys().collect::<Vec<_>>())
            );
        }
    }
    assert_eq!(checked, 25, "operation × listener pairs");
    if !pending_answered.is_empty() {
        eprintln!("answered now, remove from PENDING: {pending_answered:?}");
    }
    s.shutdown();
}

#[test]
fn every_answered_route_is_documented() {
    let s = util::start(|_| {});
    let (_ws, conn_id) = open_connection(&s);
    let doc = document();
    let ops = operations(&doc);
    let mut candidates = BTreeSet::new();
    source_paths(&root().join("src"), &mut candidates);
    assert!(
        candidates.contains("/v1/sse") && candidates.contains("/metrics"),
        "the scan finds the routers' literals: {candidates:?}"
    );
    for (_, template) in ops.keys() {
        candidates.insert(instantiate(template, &conn_id));
    }
    let mut undocumented = Vec::new();
    let mut answered = 0;
    for path in &candidates {
        for l in [Listener::Public, Listener::Admin] {
            for method in METHODS {
                // Never close the connection the instantiated paths name.
                if method == "DELETE" && path.ends_with(&conn_id) {
                    continue;
                }
                let template = ops
                    .keys()
                    .map(|(_, t)| t.as_str())
                    .find(|t| matches(t, path));
                let (headers, body, query) = request_parts(method, template.unwrap_or(path));
                let got = status(
                    addr(&s, l),
                    method,
                    &format!("{path}{query}"),
                    &headers,
                    body,
                );
                assert_ne!(got, 0, "{method} {path} on {l:?}: no answer");
                if got == 404 || got == 405 {
                    continue;
                }
                answered += 1;
                let documented = template.is_some_and(|t| {
                    ops.get(&(method.to_string(), t.to_string()))
                        .is_some_and(|on| on.contains(&l))
                });
                let known = KNOWN_DEVIATIONS
                    .iter()
                    .any(|(m, t, st)| *m == method && Some(*t) == template && *st == got);
                if !documented && !known {
                    undocumented.push(format!("{l:?} {method} {path} → {got}"));
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "answered but not in docs/openapi.yaml: {undocumented:#?}"
    );
    assert!(answered >= 15, "answered routes found: {answered}");
    s.shutdown();
}

/// `GET /v1/version`, `fanline_build_info` and the state gauges agree, and `/health/ready`
/// names what is not ready on both listeners (draining here).
#[test]
fn version_build_info_and_readiness_body() {
    let s = util::start(|c| c.limits.max_connections = 777);
    let (code, body) = util::http(s.admin_addr, "GET", "/v1/version", None);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("version JSON");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    // The backend the suite runs on (scripts/test.sh runs it on both).
    let backend = fanline::config::IoBackend::from_env_or_default().name();
    assert_eq!(v["backend"], backend, "{v}");
    let commit = v["git_commit"].as_str().expect("git_commit");
    assert!(!commit.is_empty(), "{v}");
    let (_, metrics) = util::http(s.admin_addr, "GET", "/metrics", None);
    let info = format!(
        "fanline_build_info{{version=\"{}\",commit=\"{commit}\",backend=\"{backend}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for line in [
        info.as_str(),
        "fanline_ready 1",
        "fanline_connections_max 777",
    ] {
        assert_eq!(
            metrics.lines().filter(|l| *l == line).count(),
            1,
            "{line} in {metrics}"
        );
    }
    let all_ok = serde_json::json!({"shards": "ok", "kafka_assignment": "ok", "broker_link": "ok", "draining": "ok"});
    for a in [s.local_addr, s.admin_addr] {
        let (code, body) = util::http(a, "GET", "/health/ready", None);
        assert_eq!(code, 200, "{body}");
        let r: Value = serde_json::from_str(&body).expect("ready JSON");
        assert_eq!(r["status"], "ready", "{r}");
        assert_eq!(r["not_ready"], serde_json::json!([]), "{r}");
        assert_eq!(r["checks"], all_ok, "{r}");
    }
    s.begin_shutdown();
    let (code, body) = util::http(s.admin_addr, "GET", "/health/ready", None);
    assert_eq!(code, 503, "{body}");
    let r: Value = serde_json::from_str(&body).expect("ready JSON");
    assert_eq!(r["not_ready"], serde_json::json!(["draining"]), "{r}");
    assert_eq!(r["checks"]["draining"], "not_ready", "{r}");
    assert_eq!(r["checks"]["shards"], "ok", "{r}");
    assert_eq!(util::metric(&s, "fanline_ready"), 0.0);
    s.shutdown();
}
