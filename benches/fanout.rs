//! Hot-path benches: ring push/pop, subscription snapshot lookup, outbox push (a delivery),
//! and the per-turn writev of a connection's queued frames into a real loopback socket.

use std::hint::black_box;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanline::conn::outbox::Outbox;
use fanline::event::{Event, EventParts};
use fanline::fanout::{RingItem, ShardInbox, SubscriptionTable};
use fanline::io::IoVecs;

fn event(size: usize) -> Arc<Event> {
    let topic: Arc<str> = "bench".into();
    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(size));
    Arc::new(Event::new(
        EventParts {
            channel: "ticks",
            topic: &topic,
            partition: 0,
            offset: 1,
            ts_ms: 0,
            event_type: None,
            correlation_id: None,
            data_json: data.as_bytes(),
        },
        serde_json::Value::Null,
    ))
}

fn ring(c: &mut Criterion) {
    let waker = fanline::io::Waker::new().expect("waker");
    let inbox = ShardInbox::new(65_536, waker);
    let ev = event(64);
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    g.bench_function("push_pop", |b| {
        b.iter(|| {
            let _ = inbox.push(RingItem::Event(ev.clone()));
            black_box(inbox.pop());
        })
    });
    g.finish();
}

fn snapshot(c: &mut Criterion) {
    let t = SubscriptionTable::default();
    for i in 0..10_000 {
        t.set(&format!("chan:{i}"), i % 2, true);
    }
    c.bench_function("snapshot/shards_for (10k channels)", |b| {
        b.iter(|| black_box(t.shards_for(black_box("chan:4242"))))
    });
    // Subscribe/unsubscribe churn with 100k channels (a socket per `gateway:{id}` channel):
    // the last subscriber of one channel leaves and comes back.
    let big = SubscriptionTable::default();
    for i in 0..100_000 {
        big.set(&format!("gateway:{i}"), i % 2, true);
    }
    c.bench_function("snapshot/set churn (100k channels)", |b| {
        b.iter(|| {
            big.set(black_box("gateway:4242"), 0, false);
            big.set(black_box("gateway:4242"), 0, true);
        })
    });
}

fn outbox_push(c: &mut Criterion) {
    let ev = event(64);
    let mut g = c.benchmark_group("outbox");
    g.throughput(Throughput::Elements(1));
    g.bench_function("push_event (one delivery)", |b| {
        let mut o = Outbox::default();
        b.iter(|| {
            o.push_event(&ev, 1000, 4 << 20, |_| {});
            if o.len() >= 999 {
                o = Outbox::default();
            }
        })
    });
    g.finish();
}

/// One connection's turn: N queued frames → one writev into a loopback socket that a reader
/// thread drains. Reported per frame, the number that sets the delivery ceiling.
fn writev_turn(c: &mut Criterion) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut reader = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while reader.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    let ev = event(64);
    let mut iov = IoVecs::default();
    let mut g = c.benchmark_group("writev_turn");
    for frames in [1usize, 8, 64] {
        g.throughput(Throughput::Elements(frames as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(frames),
            &frames,
            |b, &frames| {
                let mut o = Outbox::default();
                b.iter(|| {
                    for _ in 0..frames {
                        o.push_event(&ev, 100_000, 64 << 20, |_| {});
                    }
                    while !o.is_empty() {
                        let _ = o.flush(&server, &mut iov);
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = ring, snapshot, outbox_push, writev_turn
}
criterion_main!(benches);
