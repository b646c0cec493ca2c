//! A cross-thread wake-up for a shard's reactor: one eventfd that both backends watch (epoll
//! registers it like a socket, io_uring keeps a read armed on it). Ingest calls [`Waker::wake`];
//! the backend resets the counter when it sees the event.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Cloneable handle to a shard's eventfd.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// A fresh non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; a negative return is an error, checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd, is valid and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd: Arc::new(fd) })
    }

    /// Wakes the reactor (adds 1 to the counter). `WouldBlock` (counter saturated) counts as
    /// woken: a wake is already pending.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local u64 to an eventfd we own.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Resets the counter (epoll backend, after the wake event). Never blocks.
    pub(crate) fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local u64 from a non-blocking eventfd.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
