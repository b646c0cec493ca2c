//! The epoll backend (mio, edge-triggered). Reads go through ONE per-shard scratch buffer, so a
//! connection holds no read buffer of its own; sends are one writev of the queued frames.

use std::io::{self, Read};
use std::net::{TcpListener as StdListener, TcpStream};
use std::os::fd::RawFd;
use std::time::Duration;

use bytes::Bytes;
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::backend::{Event, Sent};
use super::{IoVecs, Waker};

const WAKE: Token = Token(usize::MAX - 1);
/// Listener `i` has token `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 2;
/// Most listeners per shard.
const MAX_LISTENERS: usize = 8;
/// The per-shard read buffer.
pub const SCRATCH: usize = 64 * 1024;

#[derive(Debug)]
pub struct Epoll {
    poll: Poll,
    events: Events,
    waker: Waker,
    listeners: Vec<Option<TcpListener>>,
    /// Listeners to accept on at the next poll whatever their readiness (after a failure).
    retry: Vec<usize>,
    /// Connection key → its fd (-1: none), to read on a readiness event.
    fds: Vec<RawFd>,
    scratch: Box<[u8]>,
    iov: IoVecs,
}

impl Epoll {
    pub fn new(waker: &Waker) -> io::Result<Epoll> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&waker.raw_fd()), WAKE, Interest::READABLE)?;
        Ok(Epoll {
            poll,
            events: Events::with_capacity(1024),
            waker: waker.clone(),
            listeners: Vec::new(),
            retry: Vec::new(),
            fds: Vec::new(),
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            iov: IoVecs::default(),
        })
    }

    pub fn add_listener(&mut self, idx: usize, l: StdListener) -> io::Result<()> {
        if idx >= MAX_LISTENERS {
            return Err(io::Error::other("too many listeners"));
        }
        l.set_nonblocking(true)?;
        let mut l = TcpListener::from_std(l);
        self.poll
            .registry()
            .register(&mut l, Token(LISTENER_BASE - idx), Interest::READABLE)?;
        if self.listeners.len() <= idx {
            self.listeners.resize_with(idx + 1, || None);
        }
        self.listeners[idx] = Some(l);
        Ok(())
    }

    pub fn accept_now(&mut self, idx: usize) -> io::Result<(TcpStream, std::net::SocketAddr)> {
        match self.listeners.get(idx) {
            Some(Some(l)) => l.accept().map(|(s, a)| (TcpStream::from(s), a)),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Edge-triggered readiness will not fire again for a backlog already pending: accept on
    /// `idx` at the next poll.
    pub fn retry_accept(&mut self, idx: usize) {
        if !self.retry.contains(&idx) {
            self.retry.push(idx);
        }
    }

    pub fn close_listeners(&mut self) {
        for l in &mut self.listeners {
            if let Some(mut l) = l.take() {
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
    }

    pub fn register(&mut self, key: usize, fd: RawFd) -> io::Result<()> {
        self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        if self.fds.len() <= key {
            self.fds.resize(key + 1, -1);
        }
        self.fds[key] = fd;
        Ok(())
    }

    pub fn deregister(&mut self, key: usize, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if let Some(f) = self.fds.get_mut(key) {
            *f = -1;
        }
    }

    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        head: usize,
        frames: impl Iterator<Item = &'a Bytes>,
    ) -> io::Result<Sent> {
        match self.iov.write_counted(&fd, head, frames) {
            Ok((n, tried)) if n == tried => Ok(Sent::Ready(n)),
            Ok((n, _)) => Ok(Sent::Wait(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Sent::Wait(0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Sent::Ready(0)),
            Err(e) => Err(e),
        }
    }

    pub fn poll(
        &mut self,
        timeout: Option<Duration>,
        mut on: impl FnMut(Event<'_>) -> bool,
    ) -> io::Result<()> {
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        let Epoll {
            events,
            waker,
            listeners,
            retry,
            fds,
            scratch,
            ..
        } = self;
        for idx in retry.drain(..) {
            accept_all(idx, listeners, &mut on);
        }
        for ev in events.iter() {
            let Token(t) = ev.token();
            if ev.token() == WAKE {
                waker.reset();
            } else if t > LISTENER_BASE - MAX_LISTENERS {
                accept_all(LISTENER_BASE - t, listeners, &mut on);
            } else {
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    let fd = fds.get(t).copied().unwrap_or(-1);
                    if fd >= 0 {
                        read_all(t, fd, scratch, &mut on);
                    }
                }
                if ev.is_writable() && fds.get(t).is_some_and(|f| *f >= 0) {
                    on(Event::Writable { key: t });
                }
            }
        }
        Ok(())
    }
}

/// Accepts until the backlog is empty. EMFILE and friends: reported; the caller decides when
/// to try again ([`Epoll::retry_accept`]).
fn accept_all(
    idx: usize,
    listeners: &mut [Option<TcpListener>],
    on: &mut impl FnMut(Event<'_>) -> bool,
) {
    let Some(Some(l)) = listeners.get(idx) else {
        return;
    };
    loop {
        match l.accept() {
            Ok((stream, remote)) => {
                on(Event::Accepted {
                    listener: idx,
                    stream: TcpStream::from(stream),
                    remote,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                on(Event::AcceptFailed {
                    listener: idx,
                    error,
                });
                return;
            }
        }
    }
}

/// Reads until the socket would block (edge-triggered), or the callback stops wanting bytes.
fn read_all(key: usize, fd: RawFd, scratch: &mut [u8], on: &mut impl FnMut(Event<'_>) -> bool) {
    let mut file = FdRead(fd);
    loop {
        match file.read(scratch) {
            Ok(0) => {
                on(Event::Closed { key });
                return;
            }
            Ok(n) => {
                if !on(Event::Data {
                    key,
                    bytes: &scratch[..n],
                }) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                on(Event::Closed { key });
                return;
            }
        }
    }
}

/// `read(2)` on a borrowed fd.
struct FdRead(RawFd);

impl Read for FdRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes; the fd is a socket the
        // caller keeps open for this call.
        let n = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}
