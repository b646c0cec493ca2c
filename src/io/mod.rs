//! The only module that calls libc: vectored writes, socket setup and the two I/O backends
//! (epoll via mio, io_uring) behind one interface, [`Backend`]. All `unsafe` and all platform
//! specifics of the I/O path live here, each block with a `// SAFETY:` line.

pub mod backend;
pub mod epoll;
pub mod uring;
mod waker;

pub use backend::{Backend, Event, Kind, Sent};
pub use waker::Waker;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use bytes::Bytes;

/// Bytes in a TCP socket's send queue not yet acknowledged by the peer (`TIOCOUTQ`); 0 when
/// the kernel does not say.
pub fn unsent_bytes(fd: &impl AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int through the pointer, which points to a live local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if r == 0 { n.max(0) as usize } else { 0 }
}

/// Most iovecs one `writev` takes (Linux `IOV_MAX`).
pub const IOV_MAX: usize = 1024;

/// A reusable iovec array, owned by one shard: building it allocates nothing after warm-up.
#[derive(Debug)]
pub struct IoVecs {
    iov: Vec<libc::iovec>,
}

// SAFETY: the raw pointers inside are only dereferenced by `writev` during `write_frames`,
// while the `Bytes` they point into are borrowed; between calls the vector is cleared.
unsafe impl Send for IoVecs {}

impl Default for IoVecs {
    fn default() -> Self {
        IoVecs {
            iov: Vec::with_capacity(IOV_MAX),
        }
    }
}

impl IoVecs {
    /// Writes `frames` (the first starting at byte `head_offset`) with ONE `writev` call.
    /// Returns the bytes written (may be partial) or the OS error (`WouldBlock` included).
    pub fn write_frames<'a>(
        &mut self,
        fd: &impl AsRawFd,
        head_offset: usize,
        frames: impl Iterator<Item = &'a Bytes>,
    ) -> io::Result<usize> {
        self.write_counted(fd, head_offset, frames).map(|(n, _)| n)
    }

    /// As [`IoVecs::write_frames`], also returning how many bytes the call tried to write
    /// (`written == tried` means the socket took all of it).
    pub fn write_counted<'a>(
        &mut self,
        fd: &impl AsRawFd,
        head_offset: usize,
        frames: impl Iterator<Item = &'a Bytes>,
    ) -> io::Result<(usize, usize)> {
        self.iov.clear();
        let mut tried = 0;
        for (i, f) in frames.take(IOV_MAX).enumerate() {
            let s: &[u8] = if i == 0 {
                &f[head_offset.min(f.len())..]
            } else {
                f
            };
            tried += s.len();
            self.iov.push(libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            });
        }
        if self.iov.is_empty() {
            return Ok((0, 0));
        }
        // SAFETY: every iovec points into a `Bytes` borrowed from `frames` for this call and
        // `iov_len` is that slice's length; the count is ≤ IOV_MAX; the fd is a live socket.
        let n = unsafe {
            libc::writev(
                fd.as_raw_fd(),
                self.iov.as_ptr(),
                self.iov.len() as libc::c_int,
            )
        };
        self.iov.clear();
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok((n as usize, tried))
        }
    }
}

/// A non-blocking listener with SO_REUSEPORT (one per shard, the kernel spreads accepts) and
/// SO_REUSEADDR, backlog 4096.
pub fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Per-process open-file soft limit raised to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit with cur ≤ max, as setrlimit requires.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writev_sends_all_frames_and_resumes_at_offset() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let frames = [Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
        let mut v = IoVecs::default();
        let n = v.write_frames(&s, 2, frames.iter()).unwrap();
        assert_eq!(n, 9);
        drop(s);
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "llo world");
    }

    #[test]
    fn two_reuseport_listeners_share_a_port() {
        let a = reuseport_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = reuseport_listener(a.local_addr().unwrap()).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
    }
}
