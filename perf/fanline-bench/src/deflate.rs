//! WebSocket clients that negotiate `permessage-deflate` (`--transport ws-deflate`): a raw
//! RFC 6455 client (tungstenite has no deflate support) that offers the extension as browsers
//! do, requires it in the 101, answers pings, inflates RSV1 messages (raw DEFLATE + the
//! stripped `00 00 ff ff` tail, RFC 7692 §7.2.2; the server never takes context over, so the
//! inflater resets per message) and hands the JSON text to the shared accounting.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::shared::{ClientSpec, Shared};

/// Largest message accepted (inflated), like the server's default inbound limit ×16.
const MAX_MESSAGE: usize = 1 << 20;

/// A subscribed WebSocket stream with `permessage-deflate`.
pub struct DeflateStream {
    r: BufReader<TcpStream>,
    inflater: Decompress,
    /// The server keeps its LZ77 window across messages (it did not answer
    /// `server_no_context_takeover`, e.g. uWebSockets' dedicated compressor): keep ours too.
    takeover: bool,
    payload: Vec<u8>,
    text: Vec<u8>,
}

impl DeflateStream {
    /// The next text message (inflated if compressed); pings are answered, other frames
    /// skipped. `None` on close, EOF or a protocol error.
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            let mut h = [0u8; 2];
            self.r.read_exact(&mut h).await.ok()?;
            let len = match h[1] & 0x7f {
                126 => self.r.read_u16().await.ok()? as usize,
                127 => self.r.read_u64().await.ok()? as usize,
                n => n as usize,
            };
            if len > MAX_MESSAGE {
                return None;
            }
            self.payload.resize(len, 0);
            self.r.read_exact(&mut self.payload).await.ok()?;
            match (h[0] & 0x0f, h[0] & 0x80 != 0) {
                (0x9, _) => {
                    let pong = masked_frame(0xA, &self.payload);
                    self.r.get_mut().write_all(&pong).await.ok()?;
                }
                (0x8, _) => return None,
                (0x1, true) if h[0] & 0x40 != 0 => {
                    self.payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
                    let text = inflate(
                        &mut self.inflater,
                        &self.payload,
                        &mut self.text,
                        !self.takeover,
                    )?;
                    return String::from_utf8(text).ok();
                }
                (0x1, true) => return String::from_utf8(std::mem::take(&mut self.payload)).ok(),
                (0x0..=0x2, false) => return None, // fanline never fragments
                _ => continue,
            }
        }
    }

    /// Sends a close frame (best effort).
    pub async fn close(&mut self) {
        let f = masked_frame(0x8, &1000u16.to_be_bytes());
        let _ = self.r.get_mut().write_all(&f).await;
    }
}

/// Connects, upgrades offering `permessage-deflate`, reads `welcome`, subscribes and waits for
/// `subscribed`. Returns the stream and the channel's `sent` counter at that point.
pub async fn connect(spec: &ClientSpec, shared: &Shared) -> anyhow::Result<(DeflateStream, u64)> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(spec.source.into(), 0))
        .with_context(|| format!("bind {}", spec.source))?;
    let mut tcp = sock.connect(spec.target).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let rest = spec.url.strip_prefix("ws://").unwrap_or(&spec.url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, "v1/ws"));
    let auth = spec
        .token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n{auth}\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut r = BufReader::with_capacity(8192, tcp);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if !line.starts_with("HTTP/1.1 101") {
        bail!("upgrade refused: {:.200}", line.trim_end());
    }
    let mut negotiated = false;
    let mut takeover = false;
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("connection ended in the response head");
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let l = line.to_ascii_lowercase();
        if l.starts_with("sec-websocket-extensions:") && l.contains("permessage-deflate") {
            negotiated = true;
            takeover = !l.contains("server_no_context_takeover");
        }
    }
    if !negotiated {
        bail!("server did not accept permessage-deflate");
    }
    let mut s = DeflateStream {
        r,
        inflater: Decompress::new(false),
        takeover,
        payload: Vec::new(),
        text: Vec::new(),
    };
    let first = s.next_text().await.context("no welcome")?;
    if !first.contains("\"welcome\"") {
        bail!("expected welcome, got {first:.200}");
    }
    let sub = format!(
        r#"{{"type":"subscribe","id":"r1","channels":["{}"]}}"#,
        spec.channel
    );
    let f = masked_frame(0x1, sub.as_bytes());
    s.r.get_mut().write_all(&f).await?;
    loop {
        let t = s
            .next_text()
            .await
            .context("stream ended before subscribed")?;
        if t.contains("\"subscribed\"") {
            break;
        }
        if t.contains("\"error\"") {
            bail!("subscribe refused: {t:.200}");
        }
    }
    let start = shared.sent[spec.channel_idx].load(Ordering::Acquire);
    Ok((s, start))
}

/// Inflates one whole message (tail appended) into a fresh buffer; resets the window after
/// when `reset` (the server does not take its context over) or the stream ended.
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    scratch: &mut Vec<u8>,
    reset: bool,
) -> Option<Vec<u8>> {
    scratch.clear();
    scratch.reserve(input.len() * 4 + 256);
    let mut pos = 0;
    loop {
        let before = d.total_in();
        let st = d.decompress_vec(&input[pos..], scratch, FlushDecompress::Sync);
        pos += (d.total_in() - before) as usize;
        match st {
            Ok(Status::StreamEnd) => {
                d.reset(false);
                return Some(std::mem::take(scratch));
            }
            Ok(_) if pos == input.len() && scratch.len() < scratch.capacity() => break,
            Ok(_) if scratch.len() >= MAX_MESSAGE => {
                d.reset(false);
                return None;
            }
            Ok(_) => scratch.reserve(scratch.capacity()),
            Err(_) => {
                d.reset(false);
                return None;
            }
        }
    }
    if reset {
        d.reset(false);
    }
    Some(std::mem::take(scratch))
}

/// A final masked client frame with opcode `op` (fixed key: load generation, not security).
fn masked_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | op];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    #[test]
    fn inflates_a_sync_flushed_message_with_the_tail_stripped_and_re_added() {
        let msg = br#"{"type":"event","data":{"pad":[1,2,3,1,2,3,1,2,3]}}"#.repeat(20);
        let mut c = Compress::new(Compression::default(), false);
        let mut z = Vec::with_capacity(4096);
        c.compress_vec(&msg, &mut z, FlushCompress::Sync).unwrap();
        assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
        let mut d = Decompress::new(false);
        let mut scratch = Vec::new();
        for _ in 0..2 {
            // twice: the inflater is reset between messages
            assert_eq!(inflate(&mut d, &z, &mut scratch, true).unwrap(), msg);
        }
    }

    #[test]
    fn a_server_taking_its_context_over_is_followed_across_messages() {
        let msg = br#"{"type":"event","data":{"pad":"the same text again"}}"#.repeat(8);
        let mut c = Compress::new(Compression::default(), false);
        let mut d = Decompress::new(false);
        let mut scratch = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut z = Vec::with_capacity(4096);
            c.compress_vec(&msg, &mut z, FlushCompress::Sync).unwrap();
            sizes.push(z.len());
            assert_eq!(inflate(&mut d, &z, &mut scratch, false).unwrap(), msg);
        }
        assert!(sizes[1] < sizes[0], "later messages refer back: {sizes:?}");
    }

    #[test]
    fn masked_frame_unmasks_to_the_payload() {
        let f = masked_frame(0x1, b"hello");
        assert_eq!(&f[..2], &[0x81, 0x85]);
        let key = &f[2..6];
        let un: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(un, b"hello");
    }
}
