//! TLS cost, one number per transport: deliveries/s to N wss:// clients vs N ws:// clients.
//!
//! Starts the gateway in-process on loopback (self-signed cert from rcgen for the wss run),
//! connects N tokio-tungstenite clients subscribed to one channel, publishes at a fixed
//! offered rate for S seconds through the server's publish sink, and reports deliveries/s
//! received by the clients, `gap` frames (drops), and the shard threads' CPU-seconds per
//! million deliveries (from /proc, so client CPU is excluded). Bounded: fixed duration,
//! loopback only, the server is shut down at the end of each run.
//!
//! `cargo run --release --example tls_fanout -- [--clients 100] [--secs 5] [--rate 2000]
//! [--payload 200] [--shards 1]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fanline::config::{Config, TlsConfig};
use fanline::ingest::PublishRequest;
use fanline::server::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Args {
    clients: usize,
    secs: u64,
    rate: u64,
    payload: usize,
    shards: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        clients: 100,
        secs: 5,
        rate: 2000,
        payload: 200,
        shards: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v: usize = it
            .next()
            .and_then(|v| v.parse().ok())
            .expect("flag needs a number");
        match k.as_str() {
            "--clients" => a.clients = v,
            "--secs" => a.secs = v as u64,
            "--rate" => a.rate = v as u64,
            "--payload" => a.payload = v,
            "--shards" => a.shards = v,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// CPU-seconds used so far by this process's `fanline-shard-*` threads.
fn shard_cpu_secs() -> f64 {
    let mut ticks = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("fanline-shard") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of comm: state is field 3; utime, stime are fields 14, 15.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks as f64 / 100.0 // USER_HZ
}

async fn connect(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> anyhow::Result<Ws> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (scheme, connector) = match tls {
        Some(c) => ("wss", tokio_tungstenite::Connector::Rustls(c)),
        None => ("ws", tokio_tungstenite::Connector::Plain),
    };
    let url = format!("{scheme}://localhost:{}/v1/ws", addr.port());
    let (ws, _) =
        tokio_tungstenite::client_async_tls_with_config(url, tcp, None, Some(connector)).await?;
    Ok(ws)
}

struct Outcome {
    deliveries_per_s: f64,
    gaps: u64,
    shard_cpu_per_m: f64,
}

fn run(args: &Args, tls: bool, rt: &tokio::runtime::Runtime) -> anyhow::Result<Outcome> {
    let dir = std::env::temp_dir().join(format!("fanline-tls-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse()?;
    cfg.server.admin_listen = "127.0.0.1:0".parse()?;
    cfg.server.shards = args.shards;
    cfg.server.drain_ms = 200;
    cfg.kafka.mode = fanline::config::KafkaMode::Direct;
    let mut client_tls = None;
    if tls {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let (cert, key) = (dir.join("bench.crt"), dir.join("bench.key"));
        std::fs::write(&cert, ck.cert.pem())?;
        std::fs::write(&key, ck.signing_key.serialize_pem())?;
        cfg.tls = Some(TlsConfig {
            cert: cert.to_string_lossy().into_owned(),
            key: key.to_string_lossy().into_owned(),
            listen: None,
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        client_tls = Some(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ));
    }
    cfg.validate()?;
    let server = Server::start(cfg)?;
    anyhow::ensure!(
        server.wait_ready(Duration::from_secs(20)),
        "server not ready"
    );
    let addr = server.tls_addr.unwrap_or(server.local_addr);

    let received = Arc::new(AtomicU64::new(0));
    let gaps = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    rt.block_on(async {
        for _ in 0..args.clients {
            let mut ws = connect(addr, client_tls.clone()).await?;
            let sub = json!({"type":"subscribe","id":"s","channels":["bench"]});
            ws.send(Message::text(sub.to_string())).await?;
            // welcome + subscribed
            for _ in 0..2 {
                tokio::time::timeout(Duration::from_secs(10), ws.next()).await?;
            }
            let (received, gaps, stop) = (received.clone(), gaps.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(Ok(m))) =
                        tokio::time::timeout(Duration::from_millis(200), ws.next()).await
                    else {
                        continue;
                    };
                    if let Message::Text(t) = m {
                        if t.contains("\"type\":\"gap\"") {
                            gaps.fetch_add(1, Ordering::Relaxed);
                        } else {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let _ = ws.close(None).await;
            }));
        }
        anyhow::Ok(())
    })?;

    let blob = "x".repeat(args.payload);
    let cpu0 = shard_cpu_secs();
    let r0 = received.load(Ordering::Relaxed);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.secs);
    let mut sent = 0u64;
    while Instant::now() < end {
        let due = (start.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while sent < due {
            let req: PublishRequest =
                serde_json::from_value(json!({"channel":"bench","data":{"seq":sent,"blob":blob}}))?;
            let _ = server.sink.publish(req);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::Relaxed) - r0;
    let cpu = shard_cpu_secs() - cpu0;
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    });
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Outcome {
        deliveries_per_s: delivered as f64 / elapsed,
        gaps: gaps.load(Ordering::Relaxed),
        shard_cpu_per_m: cpu / (delivered.max(1) as f64 / 1e6),
    })
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    println!(
        "clients={} secs={} offered={} events/s ({} deliveries/s) payload={} B shards={}",
        args.clients,
        args.secs,
        args.rate,
        args.rate * args.clients as u64,
        args.payload,
        args.shards
    );
    println!("| transport | deliveries/s | gap frames | shard CPU-s / M deliveries |");
    println!("|---|---|---|---|");
    for (name, tls) in [("ws", false), ("wss", true)] {
        let o = run(&args, tls, &rt)?;
        println!(
            "| {name} | {:.0} | {} | {:.2} |",
            o.deliveries_per_s, o.gaps, o.shard_cpu_per_m
        );
    }
    Ok(())
}
