//! Server-Sent Events clients: `GET /v1/sse?channels=<channel>` from a chosen source address
//! (optional `Authorization: Bearer`), expect `200 text/event-stream`, wait for
//! `event: subscribed`, then hand every message's `data:` (the same JSON envelope as the
//! WebSocket frames) to the shared latency/loss accounting in `client.rs`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::shared::{ClientSpec, Shared};

/// Longest line accepted from the server (events are far smaller).
const MAX_LINE: usize = 4 << 20;

/// A subscribed SSE stream.
pub struct SseStream {
    r: BufReader<TcpStream>,
    line: String,
}

impl SseStream {
    /// The next message's `data` (multi-line data joined by `\n`); comments and messages
    /// without data are skipped. `None` at EOF or on a read error.
    pub async fn next_data(&mut self) -> Option<String> {
        let mut data = String::new();
        loop {
            self.line.clear();
            let n = self.r.read_line(&mut self.line).await.ok()?;
            if n == 0 || self.line.len() > MAX_LINE {
                return None;
            }
            let l = self.line.trim_end_matches(['\n', '\r']);
            if l.is_empty() {
                if !data.is_empty() {
                    return Some(data);
                }
                continue;
            }
            if let Some(v) = l.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}

/// Connects, sends the GET, checks the `200` and waits for `event: subscribed`. Returns the
/// stream and the channel's `sent` counter at that point (the first seq it must receive).
pub async fn connect(spec: &ClientSpec, shared: &Shared) -> anyhow::Result<(SseStream, u64)> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(spec.source.into(), 0))
        .with_context(|| format!("bind {}", spec.source))?;
    let mut tcp = sock.connect(spec.target).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let rest = spec.url.strip_prefix("http://").unwrap_or(&spec.url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, "v1/sse"));
    let sep = if path.contains('?') { '&' } else { '?' };
    let auth = spec
        .token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /{path}{sep}channels={} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{auth}\r\n",
        spec.channel
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut r = BufReader::with_capacity(8192, tcp);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if !line.starts_with("HTTP/1.1 200") {
        bail!("SSE refused: {:.200}", line.trim_end());
    }
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection ended in the response head");
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut s = SseStream { r, line };
    loop {
        let d = s
            .next_data()
            .await
            .context("stream ended before subscribed")?;
        if d.contains("\"subscribed\"") {
            break;
        }
        if d.contains("\"error\"") {
            bail!("subscribe refused: {d:.200}");
        }
    }
    let start = shared.sent[spec.channel_idx].load(Ordering::Acquire);
    Ok((s, start))
}
