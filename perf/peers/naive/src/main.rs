//! Naive fan-out peer for fanline-bench: tokio + tokio-tungstenite + `tokio::sync::broadcast`,
//! one broadcast channel per channel name, one forwarding task per subscription, one writer task
//! per connection. Speaks the subset of fanline protocol v1 the benchmark uses: `welcome` on
//! open, `subscribe` → `subscribed`, `event` frames, `gap` when a receiver lagged, `ping` →
//! `pong`; `POST /v1/publish` on a second port through a minimal HTTP/1.1 handler.
//!
//! Usage: `naive-peer [--listen 127.0.0.1:8080] [--admin-listen 127.0.0.1:9091]`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Frame = Utf8Bytes;

#[derive(Default)]
struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Frame>>>,
    offset: AtomicU64,
    conn_ids: AtomicU64,
}

impl Hub {
    fn sender(&self, channel: &str) -> broadcast::Sender<Frame> {
        let mut map = self.channels.lock().unwrap();
        map.entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let listen = flag("--listen", "127.0.0.1:8080");
    let admin = flag("--admin-listen", "127.0.0.1:9091");
    let hub = Arc::new(Hub::default());
    let ws = TcpListener::bind(&listen).await?;
    let http = TcpListener::bind(&admin).await?;
    eprintln!("naive-peer: ws on {listen}, publish on {admin}");
    let h2 = hub.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = http.accept().await {
            tokio::spawn(serve_http(s, h2.clone()));
        }
    });
    loop {
        let (s, _) = ws.accept().await?;
        tokio::spawn(serve_ws(s, hub.clone()));
    }
}

async fn serve_ws(stream: TcpStream, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Frame>(1024);
    let id = hub.conn_ids.fetch_add(1, Ordering::Relaxed);
    let welcome = json!({"type":"welcome","connection_id":format!("naive-{id}"),"protocol":1,
        "heartbeat_ms":20000,"limits":{}});
    let writer = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if sink.send(Message::Text(f)).await.is_err() {
                break;
            }
        }
    });
    let _ = tx.send(welcome.to_string().into()).await;
    let mut forwarders = Vec::new();
    while let Some(Ok(msg)) = source.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        match v["type"].as_str() {
            Some("subscribe") => {
                let chans: Vec<String> = v["channels"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                for ch in &chans {
                    let mut brx = hub.sender(ch).subscribe();
                    let (tx, ch) = (tx.clone(), ch.clone());
                    forwarders.push(tokio::spawn(async move {
                        loop {
                            let f = match brx.recv().await {
                                Ok(f) => f,
                                Err(broadcast::error::RecvError::Lagged(n)) => json!({"type":"gap",
                                    "channel":ch,"dropped":n,"reason":"slow_consumer"})
                                    .to_string()
                                    .into(),
                                Err(broadcast::error::RecvError::Closed) => break,
                            };
                            if tx.send(f).await.is_err() {
                                break;
                            }
                        }
                    }));
                }
                let reply = json!({"type":"subscribed","id":v["id"],"channels":chans,
                    "recovered":true,"replayed":0});
                let _ = tx.send(reply.to_string().into()).await;
            }
            Some("ping") => {
                let _ = tx.send(r#"{"type":"pong"}"#.into()).await;
            }
            _ => {}
        }
    }
    for f in forwarders {
        f.abort();
    }
    writer.abort();
}

async fn serve_http(stream: TcpStream, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let post = line.starts_with("POST /v1/publish ");
        let mut len = 0usize;
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let (status, resp) = match (post, serde_json::from_slice::<Value>(&body)) {
            (true, Ok(v)) if v["channel"].is_string() => {
                let ch = v["channel"].as_str().unwrap_or_default();
                let off = hub.offset.fetch_add(1, Ordering::Relaxed);
                let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
                let ev = json!({"type":"event","channel":ch,"id":format!("naive/0/{off}"),
                    "ts":ts,"data":v["data"]});
                let _ = hub.sender(ch).send(ev.to_string().into());
                ("202 Accepted", json!({"topic":"naive","partition":0,"offset":off}))
            }
            (true, _) => ("400 Bad Request", json!({"error":"bad publish body"})),
            (false, _) => ("404 Not Found", json!({"error":"not found"})),
        };
        let body = resp.to_string();
        let out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if r.get_mut().write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}
