//! The admin listener (loopback by default): metrics, stats, health and `POST /v1/publish`.
//!
//! It runs on its own threads (an acceptor plus one short-lived thread per admin connection,
//! at most [`MAX_ADMIN_CONNS`]), so nothing it does can block a shard. Requests are read with
//! the same sans-I/O head parser as the public listener and a 10 s socket timeout.

mod failed;
pub mod info;
mod routes;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::http::{self, MAX_HEADERS};
use crate::ingest::PublishSink;
use crate::state::ServerState;

/// Concurrent admin connections; more are answered 503.
pub const MAX_ADMIN_CONNS: usize = 64;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running admin listener.
#[derive(Debug)]
pub struct Admin {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What admin handlers need.
#[derive(Debug)]
pub struct AdminState {
    pub shared: Arc<ServerState>,
    pub sink: Arc<dyn PublishSink>,
    active: AtomicUsize,
}

impl Admin {
    /// Binds `addr` and serves until [`Admin::stop`].
    pub fn spawn(
        addr: SocketAddr,
        shared: Arc<ServerState>,
        sink: Arc<dyn PublishSink>,
    ) -> std::io::Result<Admin> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(AdminState {
            shared,
            sink,
            active: AtomicUsize::new(0),
        });
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fanline-admin".into())
            .spawn(move || {
                while !stop2.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((s, _)) => accept(s, &state),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::warn!("admin accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Admin {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept(mut s: TcpStream, state: &Arc<AdminState>) {
    if state.active.fetch_add(1, Ordering::AcqRel) >= MAX_ADMIN_CONNS {
        state.active.fetch_sub(1, Ordering::AcqRel);
        let _ = s.write_all(&http::error_response(
            503,
            "busy",
            "too many admin connections",
            &[("Retry-After", "1")],
        ));
        return;
    }
    let state = state.clone();
    let spawned = std::thread::Builder::new()
        .name("fanline-admin-conn".into())
        .spawn(move || {
            let _ = serve(s, &state);
            state.active.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        tracing::warn!("cannot spawn an admin connection thread");
    }
}

/// Serves keep-alive requests on one admin connection.
/// The request body's length: `Content-Length` (absent: 0). A body sent with
/// `Transfer-Encoding` is refused 411 (send a length); an unparsable or repeated, differing
/// `Content-Length` is refused 400 (it would desynchronize the connection's framing).
fn body_length(head: &http::Head<'_, '_>) -> Result<usize, (u16, &'static str)> {
    if http::header(head.headers, "transfer-encoding").is_some() {
        return Err((
            411,
            "Transfer-Encoding is not accepted; send Content-Length",
        ));
    }
    let mut len = None;
    for h in head.headers.iter() {
        if !h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let n = std::str::from_utf8(h.value)
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or((400, "bad Content-Length"))?;
        if len.is_some_and(|l| l != n) {
            return Err((400, "conflicting Content-Length headers"));
        }
        len = Some(n);
    }
    Ok(len.unwrap_or(0))
}

fn serve(mut s: TcpStream, state: &AdminState) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = s.set_nodelay(true);
    let limits = state.shared.limits.load();
    let max_head = limits.max_head_bytes;
    let max_body = limits.max_publish_bytes + 64 * 1024;
    drop(limits);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match http::parse_head(&buf, &mut headers, max_head) {
            Ok(Some(h)) => h,
            Ok(None) => {
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                continue;
            }
            Err(e) => {
                s.write_all(&http::error_response(
                    e.status(),
                    e.metric_reason(),
                    "request head refused",
                    &[],
                ))?;
                return Ok(());
            }
        };
        let content_length = match body_length(&head) {
            Ok(n) => n,
            Err((status, why)) => {
                s.write_all(&http::error_response(status, "bad_request", why, &[]))?;
                return Ok(());
            }
        };
        if content_length > max_body {
            s.write_all(&http::error_response(
                413,
                "too_large",
                "request body too large",
                &[],
            ))?;
            return Ok(());
        }
        let head_len = head.len;
        let close =
            http::header(head.headers, "connection").is_some_and(|v| http::has_token(v, "close"));
        while buf.len() < head_len + content_length {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        // Re-parse: the head borrowed `buf`, which may have grown (and moved) while reading.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(Some(head)) = http::parse_head(&buf, &mut headers, max_head) else {
            return Ok(());
        };
        let body = &buf[head_len..head_len + content_length];
        let resp = routes::handle(state, &head, body, close);
        s.write_all(&resp)?;
        if close {
            return Ok(());
        }
        buf.drain(..head_len + content_length);
    }
}
