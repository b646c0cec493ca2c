//! Heap held per idle connection (issue #14's memory target, docs/tuning.md §6): a counting
//! global allocator measures what the gateway keeps for each idle WebSocket, first upgraded,
//! then subscribed to one channel, on the backend the suite runs under. The clients are raw
//! std sockets that keep nothing on the heap, so the delta is the server's.
//!
//! Bytes are counted as the allocator holds them (glibc: 8-byte header, 16-byte steps, 32-byte
//! minimum), which is what RSS pays; the perf harness's idle-10k measures the same from outside.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use util::{client_frame, raw_upgrade, read_frame, start};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
/// Live blocks per chunk size (16-byte steps up to 4 KiB; larger in the last slot): what the
/// failure message prints, so a regression names the size that grew.
static SIZES: [AtomicIsize; 257] = [const { AtomicIsize::new(0) }; 257];

fn count(size: usize, d: isize) {
    let c = chunk(size);
    LIVE.fetch_add(c * d, Ordering::Relaxed);
    BLOCKS.fetch_add(d, Ordering::Relaxed);
    SIZES[(c as usize / 16).min(256)].fetch_add(d, Ordering::Relaxed);
}

fn sizes() -> Vec<isize> {
    SIZES.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

/// What glibc's malloc takes for a request of `size` bytes.
fn chunk(size: usize) -> isize {
    (size + 8).div_ceil(16).max(2) as isize * 16
}

// SAFETY: every call forwards to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size(), 1);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(l.size(), -1);
        // SAFETY: `p` came from `alloc`/`realloc` above with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size(), 1);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(l.size(), -1);
        count(new, 1);
        // SAFETY: `p` came from this allocator with layout `l`; `new` is the caller's size.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Per idle WebSocket (bytes, the slab's `Conn` included): upgraded with no subscription, and
/// subscribed to one channel. Measured 287 / 294 on epoll and 306 / 312 on io_uring (its
/// per-connection completion state) at 1ae1d40..; 895 / 1,108 before issue #14's cuts.
const OPEN_BUDGET: isize = 320;
const SUBSCRIBED_BUDGET: isize = 330;
const N: usize = 1500;

fn open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = raw_upgrade(addr, "/v1/ws");
    let (op, welcome) = read_frame(&mut s).expect("welcome");
    assert_eq!(op, 1, "{}", String::from_utf8_lossy(&welcome));
    s
}

fn subscribe(s: &mut TcpStream) {
    let msg = br#"{"type":"subscribe","id":"s","channels":["idle"]}"#;
    s.write_all(&client_frame(1, msg)).expect("subscribe");
    let (_, ack) = read_frame(s).expect("ack");
    let ack = String::from_utf8_lossy(&ack);
    assert!(ack.contains("\"subscribed\""), "{ack}");
}

fn live() -> isize {
    // Let the shards finish their turn (acks are written before the turn ends).
    std::thread::sleep(Duration::from_millis(300));
    LIVE.load(Ordering::Relaxed)
}

/// This process's resident set, bytes (what the heap's holes and pages add to [`live`]).
fn rss() -> isize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<isize>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// "size B × blocks per connection" for every chunk size whose live count moved by ≥ 0.05 per
/// connection between `a` and `b`.
fn retained(a: &[isize], b: &[isize]) -> String {
    let mut out = Vec::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let per = (y - x) as f64 / N as f64;
        if per.abs() >= 0.05 {
            let size = if i == 256 {
                ">4096".to_string()
            } else {
                (i * 16).to_string()
            };
            out.push(format!("{size} B × {per:.2}"));
        }
    }
    out.join(", ")
}

#[test]
fn an_idle_connection_holds_at_most_its_budget_of_heap() {
    let s = start(|c| c.server.shards = 2);
    // Warm up: the channel's index entry, shard scratch, lazily built tables.
    let mut warm: Vec<TcpStream> = (0..64).map(|_| open(s.local_addr)).collect();
    warm.iter_mut().for_each(subscribe);
    let mut socks: Vec<TcpStream> = Vec::with_capacity(N);
    let blocks0 = BLOCKS.load(Ordering::Relaxed);
    let before = live();
    let rss0 = rss();
    let sizes0 = sizes();
    for _ in 0..N {
        socks.push(open(s.local_addr));
    }
    let opened = live();
    let sizes1 = sizes();
    let blocks1 = BLOCKS.load(Ordering::Relaxed);
    socks.iter_mut().for_each(subscribe);
    let subscribed = live();
    let rss2 = rss();
    let sizes2 = sizes();
    let blocks2 = BLOCKS.load(Ordering::Relaxed);
    let n = N as isize;
    // The shard's slab is allocated ahead (1,024 entries per shard), so the `Conn` each
    // connection fills in it is added by size rather than seen growing.
    let slot = std::mem::size_of::<fanline::conn::Conn>() as isize;
    let per_open = (opened - before) / n + slot;
    let per_sub = (subscribed - before) / n + slot;
    eprintln!(
        "backend {}: Conn {slot} B in the slab; open {per_open} B/conn ({:.2} blocks), subscribed {per_sub} B/conn ({:.2} blocks)",
        s.shared.io_backend,
        (blocks1 - blocks0) as f64 / N as f64,
        (blocks2 - blocks0) as f64 / N as f64,
    );
    eprintln!(
        "  process RSS grew {} B/conn (heap counted {} B/conn, the slab's pages included in RSS)",
        (rss2 - rss0) / n,
        (subscribed - before) / n
    );
    eprintln!(
        "  retained per connection, by chunk size: open {}",
        retained(&sizes0, &sizes1)
    );
    eprintln!(
        "  added by the subscription: {}",
        retained(&sizes1, &sizes2)
    );
    assert!(
        per_open <= OPEN_BUDGET,
        "an upgraded idle connection holds {per_open} B (budget {OPEN_BUDGET})"
    );
    assert!(
        per_sub <= SUBSCRIBED_BUDGET,
        "a subscribed idle connection holds {per_sub} B (budget {SUBSCRIBED_BUDGET})"
    );
    drop(socks);
    drop(warm);
    s.shutdown();
}
