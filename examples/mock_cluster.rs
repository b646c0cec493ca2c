//! A standalone Kafka for tests: librdkafka's `MockCluster` (real Kafka protocol on real TCP
//! listeners) in a process of its own, so that several gateway instances can share one broker
//! (cross-replica resume, "two instances on one topic").
//!
//! ```text
//! mock_cluster [--brokers N] [--topic NAME[:PARTITIONS]]...
//! ```
//! - Creates every `--topic` (default: `fanline.events`, the default route's topic) with 3
//!   partitions unless `:PARTITIONS` says otherwise; replication factor 1.
//! - Prints the bootstrap address as the FIRST line of stdout, then flushes: a test reads that
//!   line and points its gateways at it.
//! - Reads commands from stdin, one per line, answering one line each (`ok` or `error: …`):
//!   `create TOPIC PARTITIONS`, `down BROKER_ID`, `up BROKER_ID`.
//! - Exits 0 on stdin EOF (the test dropped its pipe or died) or on SIGTERM/SIGINT.
//!
//! Built by `cargo test` (examples are) or `cargo build --release --example mock_cluster`;
//! `target/<profile>/examples/mock_cluster`.

use std::io::{BufRead, Write};
use std::sync::mpsc;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

const DEFAULT_TOPIC: &str = "fanline.events";
const DEFAULT_PARTITIONS: i32 = 3;

enum Command {
    Create(String, i32),
    Down(i32),
    Up(i32),
    Exit,
}

fn parse_topic(spec: &str) -> Result<(String, i32), String> {
    match spec.split_once(':') {
        None if !spec.is_empty() => Ok((spec.to_string(), DEFAULT_PARTITIONS)),
        Some((t, n)) if !t.is_empty() => n
            .parse::<i32>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (t.to_string(), n))
            .ok_or_else(|| format!("bad partition count in {spec:?}")),
        _ => Err(format!("bad topic {spec:?}: NAME[:PARTITIONS]")),
    }
}

fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |s: &str| s.parse::<i32>().map_err(|_| format!("bad number {s:?}"));
    match words.as_slice() {
        ["create", t, n] => Ok(Command::Create(t.to_string(), num(n)?)),
        ["down", id] => Ok(Command::Down(num(id)?)),
        ["up", id] => Ok(Command::Up(num(id)?)),
        ["exit"] => Ok(Command::Exit),
        _ => Err(format!("unknown command {line:?}")),
    }
}

fn main() {
    let mut brokers = 1;
    let mut topics: Vec<(String, i32)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        let result = match (a.as_str(), value) {
            ("--brokers", Some(v)) => v
                .parse()
                .map(|n| brokers = n)
                .map_err(|_| format!("bad --brokers {v:?}")),
            ("--topic", Some(v)) => parse_topic(&v).map(|t| topics.push(t)),
            (flag, _) => Err(format!(
                "unknown flag or missing value: {flag}\nusage: mock_cluster [--brokers N] [--topic NAME[:PARTITIONS]]..."
            )),
        };
        if let Err(e) = result {
            eprintln!("mock_cluster: {e}");
            std::process::exit(2);
        }
    }
    if topics.is_empty() {
        topics.push((DEFAULT_TOPIC.to_string(), DEFAULT_PARTITIONS));
    }
    let cluster = match MockCluster::<DefaultProducerContext>::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mock_cluster: cannot start: {e}");
            std::process::exit(1);
        }
    };
    for (t, n) in &topics {
        if let Err(e) = cluster.create_topic(t, *n, 1) {
            eprintln!("mock_cluster: cannot create {t}: {e}");
            std::process::exit(1);
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", cluster.bootstrap_servers());
    let _ = out.flush();

    let (tx, rx) = mpsc::channel::<Result<Command, String>>();
    let signals_tx = tx.clone();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    let _ = signals_tx.send(Ok(Command::Exit));
                }
            });
        }
        Err(e) => eprintln!("mock_cluster: no signal handling: {e}"),
    }
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            if tx.send(parse_command(&line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(Command::Exit)); // stdin EOF
    });
    while let Ok(cmd) = rx.recv() {
        let answer = match cmd {
            Ok(Command::Exit) => break,
            Ok(Command::Create(t, n)) => cluster.create_topic(&t, n, 1).map_err(|e| e.to_string()),
            Ok(Command::Down(id)) => cluster.broker_down(id).map_err(|e| e.to_string()),
            Ok(Command::Up(id)) => cluster.broker_up(id).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let _ = match answer {
            Ok(()) => writeln!(out, "ok"),
            Err(e) => writeln!(out, "error: {e}"),
        };
        let _ = out.flush();
    }
    drop(cluster);
}
