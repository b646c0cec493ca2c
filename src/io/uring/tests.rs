//! The completion paths of the io_uring driver against real loopback sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Uring, UringOptions};
use crate::io::{Event, Sent, Waker};

/// What one poll reported, owned.
#[derive(Debug, PartialEq)]
enum Got {
    Accepted(usize),
    AcceptFailed(usize),
    Data(usize, Vec<u8>),
    Closed(usize),
    Writable(usize),
}

fn poll(u: &mut Uring, timeout: Duration) -> (Vec<Got>, Vec<TcpStream>) {
    let mut got = Vec::new();
    let mut streams = Vec::new();
    u.poll(Some(timeout), |ev| {
        match ev {
            Event::Accepted {
                listener, stream, ..
            } => {
                got.push(Got::Accepted(listener));
                streams.push(stream);
            }
            Event::Data { key, bytes } => got.push(Got::Data(key, bytes.to_vec())),
            Event::Closed { key } => got.push(Got::Closed(key)),
            Event::AcceptFailed { listener, .. } => got.push(Got::AcceptFailed(listener)),
            Event::Writable { key } => got.push(Got::Writable(key)),
        }
        true
    })
    .unwrap();
    (got, streams)
}

fn uring(o: UringOptions) -> Uring {
    Uring::new(&Waker::new().unwrap(), o).expect("io_uring available on the test machine")
}

/// A connected pair: (server side, client side).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    (s, c)
}

/// Polls until `done` says so, at most 200 polls / 5 s; returns every event seen.
fn poll_until(u: &mut Uring, mut done: impl FnMut(&[Got]) -> bool) -> Vec<Got> {
    let start = Instant::now();
    let mut all = Vec::new();
    for _ in 0..200 {
        let (got, _) = poll(u, Duration::from_millis(25));
        all.extend(got);
        if done(&all) || start.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    all
}

fn data_of(events: &[Got], key: usize) -> Vec<u8> {
    events
        .iter()
        .filter_map(|g| match g {
            Got::Data(k, d) if *k == key => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn multishot_accept_then_recv_and_send() {
    let mut u = uring(UringOptions::default());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    u.add_listener(3, l).unwrap();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut accepted = Vec::new();
    for _ in 0..100 {
        let (got, s) = poll(&mut u, Duration::from_millis(20));
        assert!(got.iter().all(|g| *g == Got::Accepted(3)), "{got:?}");
        accepted.extend(s);
        if accepted.len() == 3 {
            break;
        }
    }
    assert_eq!(
        accepted.len(),
        3,
        "one multishot accept takes every connection"
    );
    let s = &accepted[0];
    u.register(7, s.as_raw_fd()).unwrap();
    let me = s.peer_addr().unwrap();
    let c = clients
        .iter_mut()
        .find(|c| c.local_addr().unwrap() == me)
        .unwrap();
    c.write_all(b"hello").unwrap();
    let got = poll_until(&mut u, |g| data_of(g, 7).len() >= 5);
    assert_eq!(data_of(&got, 7), b"hello");
    let frames = [Bytes::from_static(b"xxwor"), Bytes::from_static(b"ld")];
    assert_eq!(
        u.send(7, s.as_raw_fd(), 2, frames.iter()).unwrap(),
        Sent::Wait(5)
    );
    assert_eq!(
        u.send(7, s.as_raw_fd(), 0, frames.iter()).unwrap(),
        Sent::Wait(0),
        "one send in flight per connection"
    );
    let got = poll_until(&mut u, |g| g.contains(&Got::Writable(7)));
    assert_eq!(got, vec![Got::Writable(7)]);
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"world");
    drop(clients);
    let got = poll_until(&mut u, |g| g.contains(&Got::Closed(7)));
    assert_eq!(got, vec![Got::Closed(7)], "EOF reported once");
}

#[test]
fn partial_send_resubmits_the_rest_in_order() {
    let mut u = uring(UringOptions {
        max_send_bytes: usize::MAX, // one send of all 1,000 frames
        ..UringOptions::default()
    });
    let (s, mut c) = pair();
    socket2::SockRef::from(&s)
        .set_send_buffer_size(4096)
        .unwrap();
    u.register(0, s.as_raw_fd()).unwrap();
    // 1,000 frames × 1 KiB, each frame's bytes = its index: order is checkable.
    let frames: Vec<Bytes> = (0..1000u32)
        .map(|i| Bytes::from(vec![(i % 251) as u8; 1024]))
        .collect();
    let total = 1000 * 1024;
    assert_eq!(
        u.send(0, s.as_raw_fd(), 0, frames.iter()).unwrap(),
        Sent::Wait(total)
    );
    drop(frames); // the driver holds its own references
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(total);
        let mut buf = [0u8; 3000];
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while got.len() < total {
            std::thread::sleep(Duration::from_micros(200));
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    let events = poll_until(&mut u, |g| g.contains(&Got::Writable(0)));
    assert_eq!(events, vec![Got::Writable(0)]);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), total);
    for (i, chunk) in got.chunks(1024).enumerate() {
        assert!(
            chunk.iter().all(|b| *b == (i % 251) as u8),
            "frame {i} torn"
        );
    }
    assert!(
        u.stats.partial_sends > 0,
        "the send was never short: {:?}",
        u.stats
    );
    assert_eq!(u.sends.len(), 0);
}

#[test]
fn short_reads_and_buffer_ring_exhaustion_lose_no_byte() {
    // 4 buffers of 64 bytes: 20 KiB arrives in ≥320 short reads and empties the ring often.
    let mut u = uring(UringOptions {
        bufs: 4,
        buf_size: 64,
        ..UringOptions::default()
    });
    let (s, mut c) = pair();
    u.register(2, s.as_raw_fd()).unwrap();
    let sent: Vec<u8> = (0..20 * 1024u32).map(|i| (i % 253) as u8).collect();
    c.write_all(&sent).unwrap();
    let got = poll_until(&mut u, |g| data_of(g, 2).len() >= sent.len());
    let reads = got.iter().filter(|g| matches!(g, Got::Data(..))).count();
    let data = data_of(&got, 2);
    assert_eq!(data.len(), sent.len());
    assert!(data == sent, "bytes reordered or corrupted");
    assert!(reads >= 320, "{reads} reads");
    assert!(
        u.stats.recv_rearms > 0,
        "ENOBUFS never re-armed: {:?}",
        u.stats
    );
    // Still armed after exhaustion: later bytes arrive too.
    c.write_all(b"tail").unwrap();
    let got = poll_until(&mut u, |g| data_of(g, 2).len() >= 4);
    assert_eq!(data_of(&got, 2), b"tail");
}

#[test]
fn close_while_a_send_is_in_flight_touches_no_reused_slot() {
    let mut u = uring(UringOptions::default());
    let (s, c) = pair();
    socket2::SockRef::from(&s)
        .set_send_buffer_size(4096)
        .unwrap();
    socket2::SockRef::from(&c)
        .set_recv_buffer_size(4096)
        .unwrap();
    u.register(5, s.as_raw_fd()).unwrap();
    let frames: Vec<Bytes> = (0..512).map(|_| Bytes::from(vec![b'z'; 4096])).collect();
    assert!(matches!(
        u.send(5, s.as_raw_fd(), 0, frames.iter()).unwrap(),
        Sent::Wait(_)
    ));
    drop(frames);
    // Submit it; the client never reads, so it stays in flight.
    let (got, _) = poll(&mut u, Duration::from_millis(50));
    assert_eq!(got, vec![]);
    assert_eq!(u.sends.len(), 1, "the send is still in flight");
    u.deregister(5);
    drop(s);
    // Slot 5 is reused at once by a new connection.
    let (s2, mut c2) = pair();
    u.register(5, s2.as_raw_fd()).unwrap();
    c2.write_all(b"new").unwrap();
    let got = poll_until(&mut u, |g| data_of(g, 5).len() >= 3);
    assert_eq!(got.len(), 1, "no stale event");
    assert!(
        got[0] == Got::Data(5, b"new".to_vec()),
        "only the new bytes"
    );
    let got = poll_until(&mut u, |_| false);
    assert_eq!(got, vec![], "the cancelled send reports nothing");
    assert_eq!(u.sends.len(), 0, "the cancelled send's buffers are freed");
    drop(c);
}

#[test]
fn cq_overflow_loses_no_completion() {
    // An 8-entry CQ and 64 connections that all have bytes waiting.
    let mut u = uring(UringOptions {
        sq_entries: 8,
        cq_entries: 8,
        ..UringOptions::default()
    });
    let pairs: Vec<(TcpStream, TcpStream)> = (0..64).map(|_| pair()).collect();
    for (k, (s, _)) in pairs.iter().enumerate() {
        u.register(k, s.as_raw_fd()).unwrap();
    }
    poll(&mut u, Duration::ZERO); // arm every recv
    for (k, (_, c)) in pairs.iter().enumerate() {
        (&*c).write_all(&[k as u8]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let got = poll_until(&mut u, |g| g.len() >= 64);
    let mut keys: Vec<usize> = got
        .iter()
        .map(|g| match g {
            Got::Data(k, d) => {
                assert_eq!(d, &vec![*k as u8]);
                *k
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (0..64).collect::<Vec<_>>());
    assert!(u.stats.overflow_flushes > 0, "no overflow: {:?}", u.stats);
    assert_eq!(u.stats.dropped_cqes, 0);
    // The receives survived the overflow (re-armed where the kernel ended them).
    (&pairs[9].1).write_all(b"again").unwrap();
    let got = poll_until(&mut u, |g| data_of(g, 9).len() >= 5);
    assert_eq!(data_of(&got, 9), b"again");
}

#[test]
fn sends_of_a_turn_share_one_enter() {
    let mut u = uring(UringOptions::default());
    let pairs: Vec<(TcpStream, TcpStream)> = (0..200).map(|_| pair()).collect();
    for (k, (s, _)) in pairs.iter().enumerate() {
        u.register(k, s.as_raw_fd()).unwrap();
    }
    poll(&mut u, Duration::ZERO);
    let frame = [Bytes::from_static(b"\x81\x02hi")];
    for (k, (s, _)) in pairs.iter().enumerate() {
        u.send(k, s.as_raw_fd(), 0, frame.iter()).unwrap();
    }
    let before = u.stats.enters;
    let (mut got, _) = poll(&mut u, Duration::ZERO);
    assert_eq!(u.stats.enters - before, 1, "200 sends, one io_uring_enter");
    let first = got.len();
    got.extend(poll_until(&mut u, |g| g.len() + first >= 200));
    got.sort_by_key(|g| match g {
        Got::Writable(k) => *k,
        _ => usize::MAX,
    });
    assert_eq!(got, (0..200).map(Got::Writable).collect::<Vec<_>>());
    for (_, c) in &pairs {
        let mut b = [0u8; 4];
        (&*c).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"\x81\x02hi");
    }
}

#[test]
fn wake_and_timeout_end_the_wait() {
    let waker = Waker::new().unwrap();
    let mut u = Uring::new(&waker, UringOptions::default()).unwrap();
    let t = Instant::now();
    let (got, _) = poll(&mut u, Duration::from_millis(60));
    assert_eq!(got, vec![]);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    for _ in 0..3 {
        let w = waker.clone();
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w.wake().unwrap();
        });
        let t = Instant::now();
        poll(&mut u, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5), "wake ignored");
        th.join().unwrap();
    }
}

#[test]
fn defer_taskrun_ring_sends_and_receives() {
    let mut u = uring(UringOptions {
        defer_taskrun: true,
        ..UringOptions::default()
    });
    u.start().unwrap();
    let (s, mut c) = pair();
    u.register(1, s.as_raw_fd()).unwrap();
    c.write_all(b"abc").unwrap();
    let got = poll_until(&mut u, |g| data_of(g, 1).len() >= 3);
    assert_eq!(data_of(&got, 1), b"abc");
    let frame = [Bytes::from_static(b"xyz")];
    assert_eq!(
        u.send(1, s.as_raw_fd(), 0, frame.iter()).unwrap(),
        Sent::Wait(3)
    );
    let got = poll_until(&mut u, |g| g.contains(&Got::Writable(1)));
    assert_eq!(got, vec![Got::Writable(1)]);
    let mut b = [0u8; 3];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"xyz");
}

#[test]
fn one_send_takes_at_most_max_send_bytes_and_at_least_one_frame() {
    let mut u = uring(UringOptions {
        max_send_bytes: 64 * 1024,
        ..UringOptions::default()
    });
    let (s, mut c) = pair();
    u.register(1, s.as_raw_fd()).unwrap();
    let frame = Bytes::from(vec![7u8; 40 * 1024]);
    let frames = vec![frame.clone(); 4];
    // 40 KiB < 64 KiB: a second frame goes in; 80 KiB ≥ 64 KiB: the rest stays queued.
    assert_eq!(
        u.send(1, s.as_raw_fd(), 0, frames.iter()).unwrap(),
        Sent::Wait(80 * 1024)
    );
    let got = poll_until(&mut u, |g| g.contains(&Got::Writable(1)));
    assert!(got.contains(&Got::Writable(1)), "{got:?}");
    // A frame larger than the cap still goes whole.
    let big = [Bytes::from(vec![9u8; 100 * 1024])];
    assert_eq!(
        u.send(1, s.as_raw_fd(), 0, big.iter()).unwrap(),
        Sent::Wait(100 * 1024)
    );
    let reader = std::thread::spawn(move || {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 180 * 1024];
        c.read_exact(&mut buf).map(|_| buf)
    });
    let got = poll_until(&mut u, |g| g.contains(&Got::Writable(1)));
    assert!(got.contains(&Got::Writable(1)), "{got:?}");
    let buf = reader.join().unwrap().expect("180 KiB");
    assert!(buf[..80 * 1024].iter().all(|b| *b == 7));
    assert!(buf[80 * 1024..].iter().all(|b| *b == 9));
}
