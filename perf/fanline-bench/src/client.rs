//! Clients: connect from a chosen source address; WebSocket ones read `welcome`, subscribe and
//! wait for `subscribed` (SSE ones: see [`crate::sse`]), then record every `event` frame: latency = receive time − intended send
//! time carried in `data.t` (µs, into the shared HdrHistogram), and delivery accounting by
//! `data.seq` in a per-client bitset (lost, duplicated, reordered).
//!
//! Invariant: a client must receive every seq from `start_seq` (the channel's `sent` counter
//! read once its subscription was confirmed; 0 for clients that joined before publishing)
//! up to the channel's final count; anything missing there is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::publisher::unix_ns;
use crate::shared::{ClientSpec, ClientStats, MAX_LATENCY_US, Shared};

/// A connected, subscribed client stream of either transport.
enum Stream {
    Ws(Box<Ws>),
    Sse(crate::sse::SseStream),
    Deflate(Box<crate::deflate::DeflateStream>),
}

impl Stream {
    /// The next server message's JSON text; `None` when the stream ended.
    async fn next_text(&mut self) -> Option<String> {
        match self {
            Stream::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => return Some(t.as_str().to_owned()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            },
            Stream::Sse(s) => s.next_data().await,
            Stream::Deflate(s) => s.next_text().await,
        }
    }
}

/// Connects, subscribes and reads until `stop` turns true. `ready` is released once the
/// subscription is confirmed (or the attempt failed). Returns `None` for a failed client.
pub async fn run(
    spec: ClientSpec,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    ready: tokio::sync::mpsc::Sender<bool>,
) -> Option<ClientStats> {
    let permit = gate.acquire_owned().await.ok()?;
    let setup = tokio::time::timeout(Duration::from_secs(15), async {
        match spec.transport {
            crate::args::Transport::Sse => crate::sse::connect(&spec, &shared)
                .await
                .map(|(s, n)| (Stream::Sse(s), n)),
            crate::args::Transport::WsDeflate => crate::deflate::connect(&spec, &shared)
                .await
                .map(|(s, n)| (Stream::Deflate(Box::new(s)), n)),
            crate::args::Transport::Ws => connect(&spec, &shared)
                .await
                .map(|(w, n)| (Stream::Ws(Box::new(w)), n)),
        }
    })
    .await;
    drop(permit);
    let (mut stream, start_seq) = match setup {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            shared.connect_failed.fetch_add(1, Ordering::Relaxed);
            shared.error(&e);
            let _ = ready.send(false).await;
            return None;
        }
        Err(_) => {
            shared.connect_failed.fetch_add(1, Ordering::Relaxed);
            shared.error(&anyhow::anyhow!("connect + subscribe timed out after 15 s"));
            let _ = ready.send(false).await;
            return None;
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let _ = ready.send(true).await;
    drop(ready);
    if spec.slow {
        let _ = stop.wait_for(|s| *s).await;
        return None;
    }
    let mut seen = SeqSet::default();
    loop {
        let msg = tokio::select! {
            m = stream.next_text() => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(text) = msg else {
            shared.closed_early.fetch_add(1, Ordering::Relaxed);
            let _ = stop.wait_for(|s| *s).await;
            break;
        };
        let now = unix_ns();
        match classify(text.as_str()) {
            Frame::Event { t, seq } => {
                let lat_us = (now.saturating_sub(t) / 1000).clamp(1, MAX_LATENCY_US);
                shared
                    .hist
                    .lock()
                    .expect("not poisoned")
                    .saturating_record(lat_us);
                shared.deliveries.fetch_add(1, Ordering::Relaxed);
                shared.last_rx_ns.fetch_max(now, Ordering::Relaxed);
                seen.insert(seq);
            }
            Frame::Gap { dropped } => {
                shared.gaps.fetch_add(1, Ordering::Relaxed);
                shared.gap_dropped.fetch_add(dropped, Ordering::Relaxed);
            }
            Frame::Other => {}
        }
    }
    let end = shared.end_seq.lock().expect("not poisoned")[spec.channel_idx];
    let mut st = seen.stats;
    st.lost = seen.missing(start_seq, end);
    match &mut stream {
        Stream::Ws(ws) => {
            let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
        }
        Stream::Deflate(s) => {
            let _ = tokio::time::timeout(Duration::from_millis(200), s.close()).await;
        }
        Stream::Sse(_) => {}
    }
    Some(st)
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(spec: &ClientSpec, shared: &Shared) -> anyhow::Result<(Ws, u64)> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(spec.source.into(), 0))
        .with_context(|| format!("bind {}", spec.source))?;
    let tcp = sock.connect(spec.target).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let mut req = spec.url.as_str().into_client_request()?;
    if let Some(t) = &spec.token {
        let v = HeaderValue::from_str(&format!("Bearer {t}")).context("--token")?;
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(cfg))
        .await
        .context("websocket handshake")?;
    let first = next_text(&mut ws).await?;
    if !first.contains("\"welcome\"") {
        bail!("expected welcome, got {first:.200}");
    }
    let sub = format!(
        r#"{{"type":"subscribe","id":"r1","channels":["{}"]}}"#,
        spec.channel
    );
    ws.send(Message::text(sub)).await?;
    loop {
        let t = next_text(&mut ws).await?;
        if t.contains("\"subscribed\"") {
            break;
        }
        if t.contains("\"error\"") {
            bail!("subscribe refused: {t:.200}");
        }
    }
    let start = shared.sent[spec.channel_idx].load(Ordering::Acquire);
    Ok((ws, start))
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => bail!("closed by server: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// What a server frame means to the benchmark.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Event { t: u64, seq: u64 },
    Gap { dropped: u64 },
    Other,
}

/// Classifies a frame without a full JSON parse: the generator shares the CPU with the server,
/// so it reads only `"type"`, and `"t"`/`"seq"` (events) or `"dropped"` (gaps).
pub fn classify(s: &str) -> Frame {
    if s.contains(r#""type":"event""#) {
        match (number_after(s, r#""t":"#), number_after(s, r#""seq":"#)) {
            (Some(t), Some(seq)) => Frame::Event { t, seq },
            _ => Frame::Other,
        }
    } else if s.contains(r#""type":"gap""#) {
        Frame::Gap {
            dropped: number_after(s, r#""dropped":"#).unwrap_or(0),
        }
    } else {
        Frame::Other
    }
}

fn number_after(s: &str, key: &str) -> Option<u64> {
    let rest = s[s.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Received seqs of one client as a growable bitset.
#[derive(Debug, Default)]
pub struct SeqSet {
    bits: Vec<u64>,
    max: Option<u64>,
    stats: ClientStats,
}

impl SeqSet {
    pub fn insert(&mut self, seq: u64) {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        if self.bits[w] & (1 << b) != 0 {
            self.stats.duplicated += 1;
            return;
        }
        self.bits[w] |= 1 << b;
        if self.max.is_some_and(|m| seq < m) {
            self.stats.reordered += 1;
        }
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
    }

    /// Seqs in `from..to` never received.
    pub fn missing(&self, from: u64, to: u64) -> u64 {
        (from..to)
            .filter(|&s| {
                let w = (s / 64) as usize;
                self.bits.get(w).is_none_or(|x| x & (1 << (s % 64)) == 0)
            })
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_frames() {
        let ev = r#"{"type":"event","channel":"c","id":"fanline.events/0/7","ts":1,"data":{"t":123,"seq":4}}"#;
        assert_eq!(classify(ev), Frame::Event { t: 123, seq: 4 });
        let gap = r#"{"type":"gap","channel":"c","dropped":17,"reason":"slow_consumer"}"#;
        assert_eq!(classify(gap), Frame::Gap { dropped: 17 });
        assert_eq!(classify(r#"{"type":"pong"}"#), Frame::Other);
    }

    #[test]
    fn counts_lost_duplicated_reordered() {
        let mut s = SeqSet::default();
        for seq in [0, 1, 3, 2, 3, 5, 70] {
            s.insert(seq);
        }
        assert_eq!(s.stats.duplicated, 1);
        assert_eq!(s.stats.reordered, 1);
        assert_eq!(s.missing(0, 72), 72 - 6);
        assert_eq!(s.missing(2, 4), 0);
    }
}
