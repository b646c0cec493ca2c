//! Both backends through the one interface, and the io_uring → epoll fallback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Backend, Event, Kind, Sent};
use crate::io::Waker;

/// One event, owned: ("accept"|"accept_failed"|"data"|"closed"|"writable", key, bytes).
type Got = (&'static str, usize, Vec<u8>);

fn poll(b: &mut Backend, t: Duration) -> (Vec<Got>, Vec<TcpStream>) {
    let mut got = Vec::new();
    let mut streams = Vec::new();
    b.poll(Some(t), |ev| {
        match ev {
            Event::Accepted {
                listener, stream, ..
            } => {
                got.push(("accept", listener, Vec::new()));
                streams.push(stream);
            }
            Event::Data { key, bytes } => got.push(("data", key, bytes.to_vec())),
            Event::Closed { key } => got.push(("closed", key, Vec::new())),
            Event::AcceptFailed { listener, .. } => got.push(("accept_failed", listener, vec![])),
            Event::Writable { key } => got.push(("writable", key, Vec::new())),
        }
        true
    })
    .unwrap();
    (got, streams)
}

/// The same script on either backend: accept, read, send with an offset, EOF.
fn roundtrip(kind: Kind) {
    let waker = Waker::new().unwrap();
    let mut b = Backend::open(kind, &waker, 0).unwrap();
    assert_eq!(b.kind(), kind);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    b.add_listener(1, l).unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    let s = loop {
        let (got, mut s) = poll(&mut b, Duration::from_millis(20));
        if let Some(s) = s.pop() {
            assert_eq!(got, vec![("accept", 1, Vec::new())]);
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no accept");
    };
    b.register(4, s.as_raw_fd()).unwrap();
    c.write_all(b"ping").unwrap();
    let mut data = Vec::new();
    while data.len() < 4 && start.elapsed() < Duration::from_secs(5) {
        for (what, key, bytes) in poll(&mut b, Duration::from_millis(20)).0 {
            if what == "data" {
                assert_eq!(key, 4);
                data.extend(bytes);
            }
        }
    }
    assert_eq!(data, b"ping");
    let frames = [Bytes::from_static(b"--po"), Bytes::from_static(b"ng")];
    let mut taken = 0;
    while start.elapsed() < Duration::from_secs(5) {
        match b.send(4, s.as_raw_fd(), 2 + taken, frames.iter()).unwrap() {
            Sent::Ready(n) => {
                taken += n;
                if taken == 4 {
                    break;
                }
            }
            Sent::Wait(n) => {
                taken += n;
                let mut writable = false;
                while !writable && start.elapsed() < Duration::from_secs(5) {
                    let (got, _) = poll(&mut b, Duration::from_millis(20));
                    writable = got.contains(&("writable", 4, Vec::new()));
                }
                if taken == 4 && kind == Kind::Uring {
                    // Done on the wire only once the next send finds nothing in flight.
                    assert_eq!(
                        b.send(4, s.as_raw_fd(), 0, [].iter()).unwrap(),
                        Sent::Ready(0)
                    );
                    break;
                }
            }
        }
    }
    assert_eq!(taken, 4);
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    drop(c);
    let mut closed = 0;
    while closed == 0 && start.elapsed() < Duration::from_secs(5) {
        let (got, _) = poll(&mut b, Duration::from_millis(20));
        closed += got.iter().filter(|g| g.0 == "closed" && g.1 == 4).count();
    }
    assert_eq!(closed, 1);
    b.deregister(4, s.as_raw_fd());
}

#[test]
fn epoll_roundtrip() {
    roundtrip(Kind::Epoll);
}

#[test]
fn uring_roundtrip() {
    roundtrip(Kind::Uring);
}

#[test]
fn epoll_reads_every_byte_through_the_shared_scratch() {
    let waker = Waker::new().unwrap();
    let mut b = Backend::open(Kind::Epoll, &waker, 0).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    b.register(0, s.as_raw_fd()).unwrap();
    // More than the scratch buffer: read in several chunks in one readiness event.
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let writer = std::thread::spawn(move || {
        c.write_all(&sent).unwrap();
        (c, sent)
    });
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 200_000 && start.elapsed() < Duration::from_secs(5) {
        for (what, _, bytes) in poll(&mut b, Duration::from_millis(20)).0 {
            if what == "data" {
                got.extend(bytes);
            }
        }
    }
    let (_c, sent) = writer.join().unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent);
}

#[test]
fn wake_ends_an_epoll_wait() {
    let waker = Waker::new().unwrap();
    let mut b = Backend::open(Kind::Epoll, &waker, 0).unwrap();
    for _ in 0..3 {
        let w = waker.clone();
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w.wake().unwrap();
        });
        let t = Instant::now();
        poll(&mut b, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5), "wake ignored");
        th.join().unwrap();
    }
}

/// A seccomp filter on this thread only: `io_uring_setup` fails with EPERM, as in a container
/// whose profile blocks io_uring.
#[cfg(target_arch = "x86_64")]
fn block_io_uring_on_this_thread() {
    let filter = [
        // A = syscall number
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: libc::BPF_RET as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: libc::BPF_RET as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with integer arguments only; affects this thread (and is required before
    // an unprivileged seccomp filter).
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        0
    );
    // SAFETY: `prog` points at `filter`, both alive for the call; no TSYNC flag, so only the
    // calling thread is filtered.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(r, 0, "seccomp: {}", std::io::Error::last_os_error());
}

#[cfg(target_arch = "x86_64")]
#[test]
fn uring_blocked_by_seccomp_falls_back_to_epoll() {
    let kind = std::thread::spawn(|| {
        block_io_uring_on_this_thread();
        let waker = Waker::new().unwrap();
        let b = Backend::open(Kind::Uring, &waker, 0).unwrap();
        b.kind()
    })
    .join()
    .unwrap();
    assert_eq!(kind, Kind::Epoll);
    // Other threads keep io_uring.
    let waker = Waker::new().unwrap();
    assert_eq!(
        Backend::open(Kind::Uring, &waker, 0).unwrap().kind(),
        Kind::Uring
    );
}

#[test]
fn kind_parses_config_values() {
    assert_eq!("epoll".parse::<Kind>(), Ok(Kind::Epoll));
    assert_eq!("uring".parse::<Kind>(), Ok(Kind::Uring));
    assert!("kqueue".parse::<Kind>().is_err());
}

#[test]
fn uring_opened_on_one_thread_runs_on_another() {
    // As the server does: open on the main thread, poll on the shard thread. The main thread
    // must not own any request: its blocking calls are not interrupted and accepts do not wait
    // for it.
    let waker = Waker::new().unwrap();
    let mut b = Backend::open(Kind::Uring, &waker, 0).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    b.add_listener(0, l).unwrap();
    let poller = std::thread::spawn(move || {
        b.start().unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let (got, streams) = poll(&mut b, Duration::from_millis(20));
            if let Some(s) = streams.into_iter().next() {
                // Wakes meanwhile: their completions must not land on the opening thread.
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(300) {
                    let _ = poll(&mut b, Duration::from_millis(20));
                }
                b.register(9, s.as_raw_fd()).unwrap();
                let hi = [Bytes::from_static(b"hi")];
                b.send(9, s.as_raw_fd(), 0, hi.iter()).unwrap();
                let _ = poll(&mut b, Duration::from_millis(20));
                return (got, Some(s));
            }
        }
        (Vec::new(), None)
    });
    let w = waker.clone();
    let waking = std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(10));
            w.wake().unwrap();
        }
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2];
    // Plain read (read_exact would hide EINTR by retrying).
    let r = c.read(&mut buf);
    assert!(
        matches!(r, Ok(2)),
        "blocking read on the opening thread: {r:?}"
    );
    assert_eq!(&buf, b"hi");
    waking.join().unwrap();
    let (got, s) = poller.join().unwrap();
    assert_eq!(got, vec![("accept", 0, Vec::new())]);
    drop(s);
}
