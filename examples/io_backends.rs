//! Fan-out send cost of the two I/O backends, side by side, at the driver level: N loopback
//! connections, each round queues one 66-byte frame per connection and polls once (what a
//! shard turn does for a broadcast). A reader thread drains the client ends. Reports process
//! CPU (minus the reader thread's) per send and wall time per round.
//!
//! `cargo run --release --example io_backends -- [conns] [rounds] [frames_per_send]`

use std::collections::VecDeque;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fanline::io::{Backend, Event, Kind, Sent, Waker};

fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(clock, &mut ts)
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn run(kind: Kind, conns: usize, rounds: usize, per_send: usize) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut pairs = Vec::with_capacity(conns);
    for _ in 0..conns {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        s.set_nodelay(true).unwrap();
        pairs.push((s, c));
    }
    let (servers, clients): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let stop = Arc::new(AtomicBool::new(false));
    let reader_cpu = Arc::new(AtomicU64::new(0));
    let total = (conns * rounds * per_send * 66) as u64;
    let reader = {
        let (stop, reader_cpu) = (stop.clone(), reader_cpu.clone());
        std::thread::spawn(move || {
            let mut poll = mio::Poll::new().unwrap();
            let mut clients: Vec<mio::net::TcpStream> = clients
                .into_iter()
                .map(|c| {
                    c.set_nonblocking(true).unwrap();
                    mio::net::TcpStream::from_std(c)
                })
                .collect();
            for (i, c) in clients.iter_mut().enumerate() {
                poll.registry()
                    .register(c, mio::Token(i), mio::Interest::READABLE)
                    .unwrap();
            }
            let mut events = mio::Events::with_capacity(1024);
            let mut buf = vec![0u8; 65536];
            let mut got = 0u64;
            let start = Instant::now();
            while got < total
                && !stop.load(Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(60)
            {
                poll.poll(&mut events, Some(Duration::from_millis(100)))
                    .unwrap();
                for ev in events.iter() {
                    let c = &mut clients[ev.token().0];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got += n as u64;
                    }
                }
            }
            reader_cpu.store(
                cpu(libc::CLOCK_THREAD_CPUTIME_ID).as_nanos() as u64,
                Ordering::Relaxed,
            );
            got
        })
    };
    let waker = Waker::new().unwrap();
    let mut b = Backend::open(kind, &waker, 0).unwrap();
    for (k, s) in servers.iter().enumerate() {
        b.register(k, s.as_raw_fd()).unwrap();
    }
    let frame = Bytes::from(vec![b'x'; 66]);
    let mut queues: Vec<VecDeque<Bytes>> = vec![VecDeque::new(); conns];
    let mut head = vec![0usize; conns];
    let mut waiting = vec![false; conns];
    let cpu0 = cpu(libc::CLOCK_PROCESS_CPUTIME_ID);
    let t0 = Instant::now();
    let mut sends = 0u64;
    let flush = |k: usize, b: &mut Backend, q: &mut VecDeque<Bytes>, head: &mut usize| {
        loop {
            let r = b.send(k, servers[k].as_raw_fd(), *head, q.iter()).unwrap();
            let mut n = r.taken() + *head;
            while let Some(f) = q.front() {
                if n < f.len() {
                    break;
                }
                n -= f.len();
                q.pop_front();
            }
            *head = n;
            match r {
                Sent::Ready(_) if q.is_empty() => return false,
                Sent::Ready(_) => {}
                Sent::Wait(_) => return true,
            }
        }
    };
    for _ in 0..rounds {
        for k in 0..conns {
            for _ in 0..per_send {
                queues[k].push_back(frame.clone());
            }
            if !waiting[k] {
                sends += 1;
                waiting[k] = flush(k, &mut b, &mut queues[k], &mut head[k]);
            }
        }
        let mut writable = Vec::new();
        b.poll(Some(Duration::ZERO), |ev| {
            if let Event::Writable { key } = ev {
                writable.push(key);
            }
            true
        })
        .unwrap();
        for k in writable {
            waiting[k] = flush(k, &mut b, &mut queues[k], &mut head[k]);
        }
    }
    // Drain what is still queued.
    let deadline = Instant::now() + Duration::from_secs(20);
    while queues.iter().any(|q| !q.is_empty()) && Instant::now() < deadline {
        let mut writable = Vec::new();
        b.poll(Some(Duration::from_millis(5)), |ev| {
            if let Event::Writable { key } = ev {
                writable.push(key);
            }
            true
        })
        .unwrap();
        for k in writable {
            waiting[k] = flush(k, &mut b, &mut queues[k], &mut head[k]);
        }
    }
    let got = reader.join().unwrap();
    let wall = t0.elapsed();
    let server_cpu = cpu(libc::CLOCK_PROCESS_CPUTIME_ID)
        - cpu0
        - Duration::from_nanos(reader_cpu.load(Ordering::Relaxed));
    let frames = (conns * rounds * per_send) as f64;
    println!(
        "{:5}  conns {conns}  rounds {rounds}  frames/send {per_send}  bytes {got}/{total}  send calls {sends}  server CPU {:.2} µs/frame  wall {:.2} s",
        kind.name(),
        server_cpu.as_secs_f64() * 1e6 / frames,
        wall.as_secs_f64()
    );
}

fn main() {
    let _ = fanline::io::raise_nofile_limit();
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (conns, rounds, per_send) = (arg(1, 1000), arg(2, 100), arg(3, 1));
    for kind in [Kind::Epoll, Kind::Uring, Kind::Epoll, Kind::Uring] {
        run(kind, conns, rounds, per_send);
    }
}
