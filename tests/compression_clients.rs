//! Real clients negotiate `permessage-deflate` with the gateway and decode its compressed events:
//! Python `websockets` (venv under target/, created on first run) and headless Chromium (served a
//! tiny page by this test; the page reports `ws.extensions` and what it decoded back over HTTP).
//! Both need their tool installed: the test fails, not skips, when it is missing.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use util::*;

fn big_data() -> Value {
    json!({"items": (0..40).map(|i| json!({"id": i, "severity": "critical", "host": format!("api-{i}")})).collect::<Vec<_>>()})
}

/// `target/compression-venv/bin/python` with `websockets` installed (created once).
fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/compression-venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv failed (install python3-venv)");
    }
    let has = Command::new(&py)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg("websockets>=13")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install websockets failed");
    }
    py
}

const PY_CLIENT: &str = r#"
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url):
    async with connect(url, max_size=2**20) as ws:  # permessage-deflate is offered by default
        exts = [type(e).__name__ + ":" + e.name for e in ws.protocol.extensions]
        welcome = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "subscribe", "id": "r" * 300, "channels": ["issues"]}))
        ack = json.loads(await ws.recv())
        print(json.dumps({"ready": True, "exts": exts, "welcome": welcome["type"], "ack": ack["type"]}), flush=True)
        events = []
        while len(events) < 2:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m["type"] == "event":
                events.append(m["data"])
        print(json.dumps({"events": events}), flush=True)

asyncio.run(main(sys.argv[1]))
"#;

#[test]
fn python_websockets_negotiates_and_decodes_compressed_events() {
    let py = python();
    let s = start(|_| {});
    let mut child = Command::new(&py)
        .args(["-c", PY_CLIENT, &ws_url(&s)])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready: Value = serde_json::from_str(&lines.next().expect("ready line").unwrap()).unwrap();
    assert_eq!(ready["ack"], "subscribed", "{ready}");
    assert_eq!(
        ready["exts"],
        json!(["PerMessageDeflate:permessage-deflate"]),
        "{ready}"
    );
    publish(&s, "issues", big_data());
    publish(&s, "issues", json!({"small": true}));
    let got: Value = serde_json::from_str(&lines.next().expect("events line").unwrap()).unwrap();
    assert_eq!(got["events"], json!([big_data(), {"small": true}]));
    let _ = child.wait();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    s.shutdown();
}

const PAGE: &str = r#"<!doctype html><script>
const ws = new WebSocket("WS_URL");
const report = (path, v) => fetch(path + "?" + encodeURIComponent(JSON.stringify(v)));
ws.onmessage = (m) => {
  const v = JSON.parse(m.data);
  if (v.type === "welcome") ws.send(JSON.stringify({type: "subscribe", id: "r".repeat(300), channels: ["issues"]}));
  if (v.type === "subscribed") report("/ready", {extensions: ws.extensions});
  if (v.type === "event") report("/event", {extensions: ws.extensions, data: v.data});
};
ws.onerror = () => report("/error", {});
</script>"#;

/// Accepts requests on `l` until a report arrives (bounded by `deadline`); returns its path and
/// query JSON.
/// `/` is answered with the page (connecting to `ws_url`) and not returned.
fn next_report(l: &TcpListener, deadline: Instant, ws_url: &str) -> (String, Value) {
    while Instant::now() < deadline {
        let Ok((mut c, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&c).read_line(&mut line);
        let target = line.split(' ').nth(1).unwrap_or("").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let body = if path == "/" {
            PAGE.replace("WS_URL", ws_url)
        } else {
            String::new()
        };
        let _ = write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        // Chromium also opens speculative connections that send nothing (empty path).
        if path.is_empty() || path == "/" || path == "/favicon.ico" {
            continue;
        }
        let decoded = percent_decode(query);
        return (
            path.to_string(),
            serde_json::from_str(&decoded).unwrap_or(Value::Null),
        );
    }
    panic!("no report from the browser before the deadline");
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn headless_chromium_negotiates_and_decodes_compressed_events() {
    let s = start(|_| {});
    let url = ws_url(&s);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let page = format!("http://{}/", l.local_addr().unwrap());
    let profile = std::env::temp_dir().join(format!("fanline-chromium-{}", std::process::id()));
    let mut child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&page)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (path, ready) = next_report(&l, deadline, &url);
    assert_eq!(path, "/ready", "{ready}");
    assert_eq!(
        ready["extensions"],
        "permessage-deflate; server_no_context_takeover"
    );
    publish(&s, "issues", big_data());
    let (path, ev) = next_report(&l, deadline, &url);
    assert_eq!(path, "/event", "{ev}");
    assert_eq!(ev["data"], big_data());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&profile);
    s.shutdown();
}
