//! Open-loop publisher: event `i` of the schedule is due at `start + i / rate`, carries that
//! intended time (unix nanos) and its per-channel sequence number in `data`, and is sent when
//! due whatever happened to earlier events. A slow server therefore shows up as latency (the
//! intended time is in the payload) instead of hiding behind a slower send rate: no
//! coordinated omission.
//!
//! One std thread per publisher connection, blocking keep-alive HTTP/1.1 over a raw
//! `TcpStream`. Channel `c` always goes through connection `c % pub_conns`, so events of one
//! channel are sent in order. `sent[c]` is raised *before* a request is written: a client that
//! reads `sent[c] == s` after its subscription is confirmed must receive every seq ≥ s.
//!
//! Publishing straight to Kafka (`--publish kafka:BROKERS:TOPIC`) is a planned extension with
//! this shape: a `KafkaSink` next to `HttpSink` owning an rdkafka `BaseProducer`
//! (`linger.ms=0`), writing the same `data` object as the record value to TOPIC with the record
//! key and the header `channel` set to the channel name (what fanline's default route reads),
//! polled from the same thread. The schedule, `sent` counters and stats stay as they are. Until
//! then the variant parses and is refused with an explicit error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// Where events are published.
#[derive(Debug, Clone)]
pub enum PublishTarget {
    /// This process only subscribes; another process publishes the same schedule.
    None,
    /// `POST` to fanline's (or a peer's) publish endpoint.
    Http {
        addr: SocketAddr,
        host: String,
        path: String,
    },
    /// Produce to Kafka directly (planned; see the module doc).
    Kafka { brokers: String, topic: String },
}

impl PublishTarget {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        if s == "none" {
            return Ok(Self::None);
        }
        if let Some(rest) = s.strip_prefix("kafka:") {
            let (brokers, topic) = rest
                .rsplit_once(':')
                .context("expected kafka:BROKERS:TOPIC")?;
            return Ok(Self::Kafka {
                brokers: brokers.to_owned(),
                topic: topic.to_owned(),
            });
        }
        let rest = s
            .strip_prefix("http://")
            .context("--publish must be http://HOST:PORT/PATH, kafka:BROKERS:TOPIC or none")?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/v1/publish"),
        };
        let addr = host
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .next()
            .context("no address for --publish")?;
        Ok(Self::Http {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// The open-loop schedule shared by every generator process of one run.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub start_unix_ns: u64,
    pub rate: f64,
    pub events: u64,
    pub channels: Vec<String>,
    /// Appended to every event's `data` after `t` and `seq` (`,"pad":[…]` or empty).
    pub pad: String,
}

/// `,"pad":[…]` of about `bytes` bytes: objects with pseudo-random ids, levels, hosts and
/// timestamps (realistic redundancy for compression, not one repeated string). Empty for 0.
pub fn pad(bytes: usize) -> String {
    if bytes == 0 {
        return String::new();
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut items = Vec::new();
    let mut len = 10;
    while len < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let item = format!(
            r#"{{"id":{},"severity":"{}","host":"api-{}","ts":{}}}"#,
            x % 1_000_000,
            ["low", "medium", "high", "critical"][(x % 4) as usize],
            x % 97,
            1_732_280_000_000u64 + x % 10_000_000
        );
        len += item.len() + 1;
        items.push(item);
    }
    format!(r#","pad":[{}]"#, items.join(","))
}

impl Schedule {
    /// Intended send time of event `i` (unix nanos).
    pub fn due_ns(&self, i: u64) -> u64 {
        self.start_unix_ns + (i as f64 * 1e9 / self.rate) as u64
    }

    /// Number of events the schedule sends to channel `c`.
    pub fn per_channel(&self, c: usize) -> u64 {
        let k = self.channels.len() as u64;
        self.events / k + u64::from((c as u64) < self.events % k)
    }
}

/// What a publisher thread did.
#[derive(Debug, Default, Clone)]
pub struct PubStats {
    pub ok: u64,
    pub errors: u64,
    pub max_lag_us: u64,
    pub first_error: Option<String>,
}

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Starts `pub_conns` publisher threads. `sent[c]` counts seqs handed to the wire per channel.
pub fn spawn(
    target: &PublishTarget,
    sched: Arc<Schedule>,
    pub_conns: u32,
    sent: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<JoinHandle<PubStats>>> {
    let (addr, host, path) = match target {
        PublishTarget::None => return Ok(Vec::new()),
        PublishTarget::Kafka { brokers, topic } => bail!(
            "--publish kafka:{brokers}:{topic}: producing to Kafka directly is not in this \
             build; publish through fanline with --publish http://HOST:PORT/v1/publish"
        ),
        PublishTarget::Http { addr, host, path } => (*addr, host.clone(), path.clone()),
    };
    let p = pub_conns.min(sched.channels.len() as u32).max(1) as u64;
    let mut handles = Vec::new();
    for j in 0..p {
        let mut sink = HttpSink::new(addr, host.clone(), path.clone());
        let (sched, sent, stop) = (sched.clone(), sent.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let k = sched.channels.len() as u64;
            let mut st = PubStats::default();
            for i in 0..sched.events {
                let c = (i % k) as usize;
                if (c as u64) % p != j {
                    continue;
                }
                let due = sched.due_ns(i);
                let now = unix_ns();
                if due > now {
                    std::thread::sleep(Duration::from_nanos(due - now));
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seq = i / k;
                sent[c].store(seq + 1, Ordering::Release);
                st.max_lag_us = st.max_lag_us.max(unix_ns().saturating_sub(due) / 1000);
                let ch = &sched.channels[c];
                let pad = &sched.pad;
                let body = format!(
                    r#"{{"channel":"{ch}","key":"{ch}","data":{{"t":{due},"seq":{seq}{pad}}}}}"#
                );
                match sink.post(&body) {
                    Ok(()) => st.ok += 1,
                    Err(e) => {
                        st.errors += 1;
                        st.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            st
        }));
    }
    Ok(handles)
}

/// Keep-alive HTTP/1.1 client for one publish connection (no pipelining). The read timeout is
/// long (30 s) on purpose: a request abandoned early may still be served after its successor
/// on a new connection, which would reorder events; a slow server shows as send lag and
/// latency instead.
struct HttpSink {
    addr: SocketAddr,
    host: String,
    path: String,
    conn: Option<BufReader<TcpStream>>,
}

impl HttpSink {
    fn new(addr: SocketAddr, host: String, path: String) -> Self {
        Self {
            addr,
            host,
            path,
            conn: None,
        }
    }

    fn post(&mut self, body: &str) -> anyhow::Result<()> {
        let res = self.try_post(body);
        if res.is_err() {
            self.conn = None;
        }
        res
    }

    fn try_post(&mut self, body: &str) -> anyhow::Result<()> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
                .with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.set_write_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.path,
            self.host,
            body.len()
        );
        conn.get_mut().write_all(req.as_bytes())?;
        let (status, close) = read_response(conn)?;
        if close {
            self.conn = None;
        }
        if !(200..300).contains(&status) {
            bail!("publish answered HTTP {status}");
        }
        Ok(())
    }
}

/// Reads one response; returns its status and whether the server closes the connection.
fn read_response(r: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("publish connection closed");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let (mut len, mut close) = (0usize, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("publish connection closed in headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().context("bad content-length")?;
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((status, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_splits_events_over_channels() {
        let s = Schedule {
            start_unix_ns: 0,
            rate: 10.0,
            events: 7,
            channels: vec!["a".into(), "b".into(), "c".into()],
            pad: String::new(),
        };
        assert_eq!(
            (s.per_channel(0), s.per_channel(1), s.per_channel(2)),
            (3, 2, 2)
        );
        assert_eq!(s.due_ns(3), 300_000_000);
    }

    #[test]
    fn parses_targets() {
        assert!(matches!(
            PublishTarget::parse("none").unwrap(),
            PublishTarget::None
        ));
        assert!(matches!(
            PublishTarget::parse("kafka:127.0.0.1:9092:t").unwrap(),
            PublishTarget::Kafka { topic, .. } if topic == "t"
        ));
        match PublishTarget::parse("http://127.0.0.1:9091/v1/publish").unwrap() {
            PublishTarget::Http { path, .. } => assert_eq!(path, "/v1/publish"),
            other => panic!("{other:?}"),
        }
    }
}
