//! Max sustained records/s of the ingest thread against librdkafka's mock cluster.
//!
//! Pre-produces `N` records (default 200,000, ~200 B JSON, 16 partitions), then starts ingest at
//! `earliest` and times how long it takes to turn the whole backlog into events (fetch, route,
//! parse, encode, replay append, publish to one subscribed shard whose inbox a drain thread
//! empties). The mock broker runs in this process and competes for the same 2 cores; it serves
//! one producer batch per partition per fetch, so records are produced in ~1 MB batches.
//!
//! `cargo run --release --example ingest_throughput -- [N] [payload_bytes]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fanline::config::Config;
use fanline::fanout::{Fanout, Publisher, ShardInbox};
use fanline::ingest::{IngestStatus, ReplayBuffer, RouteConfig, spawn_ingest};
use fanline::metrics::Metrics;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The mock broker keeps only the last 5 MiB of each partition: spread the backlog so that
/// nothing is deleted before ingest reads it (keep `N * payload / PARTITIONS` under ~4 MiB).
const PARTITIONS: i32 = 16;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let mc = MockCluster::new(1)?;
    mc.create_topic("bench", PARTITIONS, 1)?;
    let brokers = mc.bootstrap_servers();

    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        // The mock broker returns ONE record batch per partition per fetch and finds it by a
        // linear scan over the log, so small batches make the mock, not ingest, the bottleneck.
        .set("linger.ms", "200")
        .set("batch.num.messages", "100000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let pad = "x".repeat(size.saturating_sub(60));
    let t0 = Instant::now();
    for i in 0..n {
        let v = format!(r#"{{"sym":"s{}","seq":{i},"pad":"{pad}"}}"#, i % 16);
        let key = format!("k{}", i % 256);
        let mut rec = BaseRecord::to("bench").key(&key).payload(&v);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    anyhow::ensure!(Instant::now() < deadline, "produce: {e}");
                    p.poll(Duration::from_millis(5));
                    rec = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(60))?;
    eprintln!("produced {n} records of ~{size} B in {:?}", t0.elapsed());

    let waker = fanline::io::Waker::new()?;
    let inbox = Arc::new(ShardInbox::new(1 << 16, waker));
    let fanout = Arc::new(Fanout::new(vec![inbox.clone()]));
    for s in 0..16 {
        fanout.subscriptions.set(&format!("b:s{s}"), 0, true);
    }
    let metrics = Arc::new(Metrics::new(1));
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers;
    cfg.kafka.start = fanline::config::KafkaStart::Earliest;
    // KAFKA_PROPS="k=v,k2=v2": extra librdkafka properties for the ingest consumer.
    for kv in std::env::var("KAFKA_PROPS").unwrap_or_default().split(',') {
        if let Some((k, v)) = kv.split_once('=') {
            cfg.kafka.properties.insert(k.into(), v.into());
        }
    }
    cfg.routes = vec![RouteConfig {
        topic: "bench".into(),
        channel: "b:{/sym}".into(),
        ..Default::default()
    }];
    let shutdown = Arc::new(AtomicBool::new(false));
    let status = Arc::new(IngestStatus::default());
    let drained = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let drain = {
        let (inbox, shutdown, drained) = (inbox.clone(), shutdown.clone(), drained.clone());
        std::thread::spawn(move || {
            while !shutdown.load(Ordering::Acquire) {
                inbox.begin_drain();
                let mut k = 0;
                while inbox.pop().is_some() {
                    k += 1;
                }
                drained.fetch_add(k, Ordering::Relaxed);
                if k == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let t1 = Instant::now();
    let (handle, _sink) = spawn_ingest(
        &cfg.kafka,
        &cfg.routes,
        Publisher::new(fanout, metrics.clone()),
        Arc::new(ReplayBuffer::new(&cfg.replay)),
        metrics.clone(),
        status,
        shutdown.clone(),
    )?;
    let deadline = t1 + Duration::from_secs(120);
    let mut report = t1 + Duration::from_secs(1);
    while metrics.ingest.events_ingested.get() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        if Instant::now() >= report {
            eprintln!(
                "  {:?}: {} ingested, errors {} {} {}",
                t1.elapsed(),
                metrics.ingest.events_ingested.get(),
                metrics.ingest.errors_not_json.get(),
                metrics.ingest.errors_missing_field.get(),
                metrics.ingest.errors_kafka.get()
            );
            report += Duration::from_secs(1);
        }
    }
    let el = t1.elapsed();
    let got = metrics.ingest.events_ingested.get();
    let cpu = thread_cpu_seconds("fanline-ingest");
    shutdown.store(true, Ordering::Release);
    let _ = handle.join();
    let _ = drain.join();
    println!(
        "ingested {got}/{n} records of ~{size} B in {:.3} s: {:.0} records/s (ring drops {}, delivered to shard {}, kafka errors {})",
        el.as_secs_f64(),
        got as f64 / el.as_secs_f64(),
        metrics.ingest.ring_full_drops.get(),
        drained.load(Ordering::Relaxed),
        metrics.ingest.errors_kafka.get(),
    );
    if let Some(cpu) = cpu {
        println!(
            "ingest thread CPU {cpu:.3} s = {:.2} us/record (utime+stime; less sensitive to load than wall time)",
            cpu * 1e6 / got.max(1) as f64
        );
    }
    Ok(())
}

/// utime+stime of this process's thread named `name` (Linux /proc), in seconds.
fn thread_cpu_seconds(name: &str) -> Option<f64> {
    // Linux USER_HZ (clock ticks in /proc stat) is 100 on every mainstream architecture.
    const HZ: f64 = 100.0;
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        return Some((utime + stime) / HZ);
    }
    None
}
