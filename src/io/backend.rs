//! The one I/O interface a shard talks to. Two implementations: [`Epoll`] (readiness, mio) and
//! [`Uring`] (completions, io_uring). Shard and connection code see only [`Backend`] and
//! [`Event`]: bytes that arrived, a socket that closed, room to send, a new connection.
//!
//! Reads: the backend owns the read buffers (epoll: one per-shard scratch buffer; io_uring: a
//! provided-buffer ring), so an idle connection holds none. [`Event::Data`] borrows them for the
//! duration of the callback.
//! Sends: [`Backend::send`] is handed a connection's queued frames and answers how many bytes it
//! *took* ([`Sent`]); the caller drops those from its queue. epoll writes them at once (one
//! writev); io_uring keeps a reference to the frames and submits every send of the turn with
//! the next poll (one `io_uring_enter`), resubmitting the rest of a partial send itself. Either
//! way [`Event::Writable`] says "call send again": room on the socket, or the previous send done.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::time::Duration;

use bytes::Bytes;

use super::Waker;
use super::epoll::Epoll;
use super::uring::{Uring, UringOptions};

/// Which backend to run: `server.io_backend` itself (the config type; one enum, not a copy).
pub use crate::config::IoBackend as Kind;

/// What happened on the shard's sockets. `key` is the caller's connection key from
/// [`Backend::register`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A new connection on listener `listener` (non-blocking, close-on-exec).
    Accepted {
        listener: usize,
        stream: TcpStream,
        remote: SocketAddr,
    },
    /// Accepting on listener `listener` failed (EMFILE, ENFILE, ENOMEM …). The backend
    /// accepts on it again only after [`Backend::retry_accept`].
    AcceptFailed { listener: usize, error: io::Error },
    /// Bytes read from `key`. The callback returns whether it wants more bytes from this
    /// socket in this poll (false: the connection is dead, stop reading it).
    Data { key: usize, bytes: &'a [u8] },
    /// The peer closed (EOF), or reading or sending failed: the connection is over.
    Closed { key: usize },
    /// `key` can take more bytes: call [`Backend::send`] if anything is queued.
    Writable { key: usize },
}

/// Answer of [`Backend::send`]: bytes taken off the caller's queue, and whether to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// `n` bytes taken and the socket may take more now: call again if frames are left; when
    /// the queue is empty the connection's bytes are all on the wire.
    Ready(usize),
    /// `n` bytes taken; wait for [`Event::Writable`] before the next call.
    Wait(usize),
}

impl Sent {
    pub fn taken(self) -> usize {
        match self {
            Sent::Ready(n) | Sent::Wait(n) => n,
        }
    }
}

/// A shard's I/O driver.
#[derive(Debug)]
pub enum Backend {
    Epoll(Epoll),
    Uring(Box<Uring>),
}

impl Backend {
    /// Opens the backend `kind` for one shard. io_uring falls back to epoll (with a WARN log
    /// naming why) where it is disabled (`kernel.io_uring_disabled`), blocked (seccomp:
    /// EPERM), absent (ENOSYS) or too old for multishot receive and buffer rings (EINVAL).
    pub fn open(kind: Kind, waker: &Waker, shard: usize) -> io::Result<Backend> {
        if kind == Kind::Uring {
            match uring_unavailable() {
                Some(why) => {
                    tracing::warn!(shard, "io_uring unavailable ({why}); falling back to epoll")
                }
                None => match Uring::new(waker, UringOptions::default()) {
                    Ok(u) => return Ok(Backend::Uring(Box::new(u))),
                    Err(e) => {
                        let why = match e.raw_os_error() {
                            Some(libc::EPERM) => "EPERM: blocked by seccomp or sysctl",
                            Some(libc::ENOSYS) => "ENOSYS: kernel without io_uring",
                            Some(libc::EINVAL) => "EINVAL: kernel too old",
                            _ => "setup failed",
                        };
                        tracing::warn!(
                            shard,
                            "io_uring unavailable ({why}: {e}); falling back to epoll"
                        );
                    }
                },
            }
        }
        Ok(Backend::Epoll(Epoll::new(waker)?))
    }

    /// Call once on the thread that will poll, before the first poll (io_uring binds the ring
    /// to that thread).
    pub fn start(&mut self) -> io::Result<()> {
        match self {
            Backend::Epoll(_) => Ok(()),
            Backend::Uring(b) => b.start(),
        }
    }

    /// The backend actually running (after any fallback).
    pub fn kind(&self) -> Kind {
        match self {
            Backend::Epoll(_) => Kind::Epoll,
            Backend::Uring(_) => Kind::Uring,
        }
    }

    /// Starts accepting on `listener` (non-blocking); its connections arrive as
    /// [`Event::Accepted`] with `listener: idx`.
    pub fn add_listener(&mut self, idx: usize, listener: TcpListener) -> io::Result<()> {
        match self {
            Backend::Epoll(b) => b.add_listener(idx, listener),
            Backend::Uring(b) => b.add_listener(idx, listener),
        }
    }

    /// One `accept(2)` on listener `idx` now, outside the poll (shedding the backlog when out
    /// of descriptors). The stream is blocking: answer and close it.
    pub fn accept_now(&mut self, idx: usize) -> io::Result<(TcpStream, SocketAddr)> {
        match self {
            Backend::Epoll(b) => b.accept_now(idx),
            Backend::Uring(b) => b.accept_now(idx),
        }
    }

    /// Accepts on listener `idx` again after [`Event::AcceptFailed`] (at the next poll).
    pub fn retry_accept(&mut self, idx: usize) {
        match self {
            Backend::Epoll(b) => b.retry_accept(idx),
            Backend::Uring(b) => b.retry_accept(idx),
        }
    }

    /// Stops accepting and closes every listener (drain).
    pub fn close_listeners(&mut self) {
        match self {
            Backend::Epoll(b) => b.close_listeners(),
            Backend::Uring(b) => b.close_listeners(),
        }
    }

    /// Starts reading connection `key` on `fd` (the caller keeps owning the socket).
    pub fn register(&mut self, key: usize, fd: RawFd) -> io::Result<()> {
        match self {
            Backend::Epoll(b) => b.register(key, fd),
            Backend::Uring(b) => b.register(key, fd),
        }
    }

    /// Stops all I/O on `key` before the caller closes `fd`: no event names `key` afterwards
    /// (until it is registered again), whatever was in flight.
    pub fn deregister(&mut self, key: usize, fd: RawFd) {
        match self {
            Backend::Epoll(b) => b.deregister(key, fd),
            Backend::Uring(b) => b.deregister(key),
        }
    }

    /// Sends `frames` (the first from byte `head`) on `key`; see [`Sent`]. An error means the
    /// connection is broken.
    pub fn send<'a>(
        &mut self,
        key: usize,
        fd: RawFd,
        head: usize,
        frames: impl Iterator<Item = &'a Bytes>,
    ) -> io::Result<Sent> {
        match self {
            Backend::Epoll(b) => b.send(fd, head, frames),
            Backend::Uring(b) => b.send(key, fd, head, frames),
        }
    }

    /// Submits what the turn queued, waits up to `timeout` (None: forever) for I/O or a wake,
    /// and hands every event to `on`.
    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        on: impl FnMut(Event<'_>) -> bool,
    ) -> io::Result<()> {
        match self {
            Backend::Epoll(b) => b.poll(timeout, on),
            Backend::Uring(b) => b.poll(timeout, on),
        }
    }
}

/// Why io_uring cannot be used here, from `/proc/sys/kernel/io_uring_disabled` (2: disabled for
/// everyone; 1: only for members of `kernel.io_uring_group` or CAP_SYS_ADMIN, so try and see).
pub fn uring_unavailable() -> Option<String> {
    let v = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    (v.trim() == "2").then(|| "kernel.io_uring_disabled=2".to_string())
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
