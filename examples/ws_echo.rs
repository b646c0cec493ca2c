//! Minimal thread-per-connection WebSocket echo server over fanline's own codec (`fanline::ws`).
//!
//! Exists to run Autobahn|Testsuite against the codec before the real server's echo route
//! lands (`FANLINE_BIN=target/release/examples/ws_echo scripts/autobahn.sh`). Not production
//! code: blocking std sockets, no auth, no limits beyond the decoder's message size.
//!
//! Accepts the real server's flag set: `--listen ADDR --admin-listen ADDR --echo-path PATH`
//! (`--admin-listen` is ignored) and `--max-message-bytes N` (default 64 MiB: Autobahn 9.x sends
//! 16 MiB messages).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use base64::Engine;
use bytes::BytesMut;
use fanline::ws::{self, DecodeError, Decoder, Message, OpCode};
use sha1::{Digest, Sha1};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEAD: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let mut listen = "127.0.0.1:9001".to_string();
    let mut path = "/echo".to_string();
    let mut max = 64 << 20;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("flag needs a value");
        match a.as_str() {
            "--listen" => listen = val(),
            "--echo-path" => path = val(),
            "--admin-listen" => drop(val()),
            "--max-message-bytes" => max = val().parse().expect("number"),
            other => panic!("unknown flag {other}"),
        }
    }
    let listener = TcpListener::bind(&listen)?;
    eprintln!("ws_echo: listening on ws://{listen}{path}");
    for stream in listener.incoming() {
        let stream = stream?;
        let path = path.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &path, max) {
                eprintln!("ws_echo: connection error: {e}");
            }
        });
    }
    Ok(())
}

fn serve(mut s: TcpStream, path: &str, max: usize) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    if !handshake(&mut s, &mut buf, path)? {
        return Ok(());
    }
    let mut dec = Decoder::new(max);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Message::Text(t))) => send(&mut s, OpCode::Text, &t)?,
                Ok(Some(Message::Binary(b))) => send(&mut s, OpCode::Binary, &b)?,
                Ok(Some(Message::Ping(p))) => s.write_all(&ws::pong_frame(&p))?,
                Ok(Some(Message::Pong(_))) => {}
                Ok(Some(Message::Close(c))) => {
                    // Client-initiated: echo its code, then the server closes TCP first (§7.1.1).
                    let code = c.map_or(1000, |c| c.code);
                    s.write_all(&ws::close_frame(code, ""))?;
                    return linger_close(s, &mut scratch);
                }
                Err(e) => return fail(s, e, &mut scratch),
            }
        }
        let n = s.read(&mut scratch)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&scratch[..n]);
    }
}

/// Sends one unfragmented frame: header and payload in a single write.
fn send(s: &mut TcpStream, op: OpCode, payload: &[u8]) -> io::Result<()> {
    let (h, n) = ws::frame_header(op, payload.len());
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
    s.write_all(&out)
}

/// Server-initiated close after a protocol error: send the code, then close like any other.
fn fail(mut s: TcpStream, e: DecodeError, scratch: &mut [u8]) -> io::Result<()> {
    s.write_all(&ws::close_frame(e.close_code(), ""))?;
    linger_close(s, scratch)
}

/// Closes TCP after our close frame went out: the server sends FIN first (§7.1.1: the server
/// closes the TCP connection), then discards whatever the client still sends (its close frame)
/// until EOF or 2 s, so that unread input never turns our close into an RST.
fn linger_close(s: TcpStream, scratch: &mut [u8]) -> io::Result<()> {
    let _ = s.shutdown(Shutdown::Write);
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut s = s;
    let mut got = 0usize;
    while let Ok(n) = s.read(scratch) {
        got += n;
        if n == 0 || got > (1 << 20) {
            break;
        }
    }
    Ok(())
}

/// Reads the HTTP upgrade request and answers 101 (true) or 400/404 (false). Leftover bytes
/// after the head stay in `buf` for the decoder.
fn handshake(s: &mut TcpStream, buf: &mut BytesMut, path: &str) -> io::Result<bool> {
    let mut scratch = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let req_path = req.path.unwrap_or("").split('?').next().unwrap_or("");
                let key = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
                    .map(|h| h.value.to_vec());
                let Some(key) = key.filter(|_| req_path == path) else {
                    s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")?;
                    return Ok(false);
                };
                let mut sha = Sha1::new();
                sha.update(&key);
                sha.update(GUID.as_bytes());
                let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
                bytes::Buf::advance(buf, len);
                write!(
                    s,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )?;
                return Ok(true);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => {
                s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")?;
                return Ok(false);
            }
        }
        let n = s.read(&mut scratch)?;
        if n == 0 {
            return Ok(false);
        }
        buf.extend_from_slice(&scratch[..n]);
    }
}
