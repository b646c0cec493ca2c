//! The load run: connect, settle, publish open-loop (or step connections up), drain, report.
//!
//! Threads: clients run on a tokio runtime with `--threads` workers; publishers are std
//! threads (precise sleeps, blocking I/O); a progress task prints one line per second on
//! stderr; a kill-switch thread exits the process after the hard timeout.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::args::RunArgs;
use crate::client;
use crate::procstat;
use crate::publisher::{self, PubStats, PublishTarget, Schedule, unix_ns};
use crate::report::{RunResult, ServerStats, Step, encode_hist};
use crate::shared::{ClientSpec, ClientStats, Shared, new_histogram};

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let hard = args.hard_timeout_secs();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(hard));
        eprintln!("fanline-bench: hard timeout of {hard:.0} s reached, exiting");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    let res = rt.block_on(run(args.clone()))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    print!("{}", res.table());
    if let Some(p) = &args.json {
        res.save(p)?;
    }
    Ok(if res.failed() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

struct Fleet {
    args: RunArgs,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    stop_rx: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<Option<ClientStats>>>,
    spawned: u32,
}

impl Fleet {
    /// Starts clients up to `target` and waits until each is subscribed or failed.
    async fn grow_to(&mut self, target: u32) -> anyhow::Result<()> {
        let ws = self.args.ws_target()?;
        let (tx, mut rx) = mpsc::channel(1024);
        let first_slow = self.args.conns - self.args.slow;
        let token: Option<Arc<str>> = self.args.token.as_deref().map(Arc::from);
        let n = target.saturating_sub(self.spawned);
        for i in self.spawned..target {
            let c = i % self.args.channels;
            let spec = ClientSpec {
                target: ws.addr,
                url: ws.url.clone(),
                source: self.args.source_addr(i),
                channel: self.args.channel_name(c),
                channel_idx: c as usize,
                slow: i >= first_slow,
                token: token.clone(),
                transport: self.args.transport,
            };
            self.tasks.push(tokio::spawn(client::run(
                spec,
                self.shared.clone(),
                self.gate.clone(),
                self.stop_rx.clone(),
                tx.clone(),
            )));
        }
        drop(tx);
        self.spawned = target.max(self.spawned);
        for _ in 0..n {
            if rx.recv().await.is_none() {
                break;
            }
        }
        Ok(())
    }
}

fn progress(shared: Arc<Shared>, quiet: bool, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if quiet {
                continue;
            }
            let d = shared.deliveries.load(Ordering::Relaxed);
            let (p50, p99) = {
                let h = shared.hist.lock().expect("not poisoned");
                let q = |q| {
                    if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(q) as f64 / 1e3
                    }
                };
                (q(0.5), q(0.99))
            };
            eprintln!(
                "[{:>4}s] conns {} (failed {}, closed {}) deliv/s {} p50 {p50:.2} ms \
                 p99 {p99:.2} ms gaps {}",
                t0.elapsed().as_secs(),
                shared.connected.load(Ordering::Relaxed),
                shared.connect_failed.load(Ordering::Relaxed),
                shared.closed_early.load(Ordering::Relaxed),
                d - last,
                shared.gaps.load(Ordering::Relaxed),
            );
            last = d;
        }
    })
}

fn server_cpu(pid: Option<u32>) -> f64 {
    pid.and_then(procstat::cpu_secs).unwrap_or(0.0)
}

fn server_rss(pid: Option<u32>) -> u64 {
    pid.and_then(procstat::rss_kib).unwrap_or(0)
}

async fn sleep_until_unix(t: f64) {
    let now = unix_ns() as f64 / 1e9;
    if t > now {
        tokio::time::sleep(Duration::from_secs_f64(t - now)).await;
    }
}

async fn join_publishers(h: Vec<std::thread::JoinHandle<PubStats>>) -> PubStats {
    tokio::task::spawn_blocking(move || {
        let mut total = PubStats::default();
        for h in h {
            let s = h.join().unwrap_or_default();
            total.ok += s.ok;
            total.errors += s.errors;
            total.max_lag_us = total.max_lag_us.max(s.max_lag_us);
            total.first_error = total.first_error.or(s.first_error);
        }
        total
    })
    .await
    .unwrap_or_default()
}

async fn run(args: RunArgs) -> anyhow::Result<RunResult> {
    let target = PublishTarget::parse(&args.publish)?;
    if let PublishTarget::Kafka { .. } = target {
        publisher::spawn(
            &target,
            Arc::new(dummy_schedule()),
            1,
            Arc::new(vec![]),
            stop(),
        )?;
    }
    let pid = args.server_pid;
    let gen_cpu0 = procstat::cpu_secs(std::process::id()).unwrap_or(0.0);
    let started_unix = unix_ns() as f64 / 1e9;
    let shared = Arc::new(Shared::new(args.channels as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let prog = progress(shared.clone(), args.quiet, stop_rx.clone());
    let rss_before = server_rss(pid);
    let mut fleet = Fleet {
        args: args.clone(),
        shared: shared.clone(),
        gate: Arc::new(Semaphore::new(args.connect_concurrency as usize)),
        stop_rx,
        tasks: Vec::new(),
        spawned: 0,
    };
    let channels: Vec<String> = (0..args.channels).map(|c| args.channel_name(c)).collect();
    let pub_stop = stop();
    let mut res = RunResult {
        label: args.label.clone(),
        processes: 1,
        started_unix,
        conns_target: args.conns.into(),
        slow: args.slow.into(),
        channels: args.channels,
        rate: args.rate,
        duration_s: args.duration,
        ..Default::default()
    };
    let t_connect = Instant::now();
    let first = if args.step_up {
        args.step.min(args.conns)
    } else {
        args.conns
    };
    fleet.grow_to(first).await?;
    res.connect_secs = t_connect.elapsed().as_secs_f64();
    if shared.connected.load(Ordering::Relaxed) == 0 {
        stop_tx.send(true).ok();
        let why = shared.first_error.lock().ok().and_then(|e| e.clone());
        anyhow::bail!("no connection succeeded: {}", why.unwrap_or_default());
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    if let Some(t) = args.start_at {
        sleep_until_unix(t - 0.3).await;
    }
    let rss_idle = server_rss(pid);
    res.idle_conns = shared.connected.load(Ordering::Relaxed);
    if let Some(t) = args.start_at {
        sleep_until_unix(t).await;
    }
    let cpu0 = server_cpu(pid);
    let start_ns = match args.start_at {
        Some(t) => (t * 1e9) as u64,
        None => unix_ns() + 5_000_000,
    };
    let events = if args.rate > 0.0 {
        (args.rate * args.duration).floor() as u64
    } else {
        0
    };
    let sched = Arc::new(Schedule {
        start_unix_ns: start_ns,
        rate: args.rate.max(1e-9),
        events,
        channels,
        pad: publisher::pad(args.payload_bytes),
    });
    *shared.hist.lock().expect("not poisoned") = new_histogram();
    let pubs = publisher::spawn(
        &target,
        sched.clone(),
        args.pub_conns,
        shared.sent.clone(),
        pub_stop.clone(),
    )?;
    let mut total_hist = new_histogram();

    if args.step_up {
        let mut target_conns = first;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let fresh = std::mem::replace(
                &mut *shared.hist.lock().expect("not poisoned"),
                new_histogram(),
            );
            drop(fresh);
            let d0 = shared.deliveries.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs_f64(args.step_secs)).await;
            let h = std::mem::replace(
                &mut *shared.hist.lock().expect("not poisoned"),
                new_histogram(),
            );
            let d = shared.deliveries.load(Ordering::Relaxed) - d0;
            let q = |q| {
                if h.is_empty() {
                    f64::INFINITY
                } else {
                    h.value_at_quantile(q) as f64 / 1e3
                }
            };
            let step = Step {
                conns: shared.connected.load(Ordering::Relaxed),
                p50_ms: q(0.5),
                p99_ms: q(0.99),
                deliveries_per_s: d as f64 / args.step_secs,
            };
            eprintln!(
                "step: {} conns p50 {:.2} ms p99 {:.2} ms {:.0} deliv/s",
                step.conns, step.p50_ms, step.p99_ms, step.deliveries_per_s
            );
            let within = step.p99_ms <= args.p99_bound_ms
                && shared.connect_failed.load(Ordering::Relaxed) == 0;
            total_hist.add(&h).ok();
            if within {
                res.capacity_conns = Some(step.conns);
            }
            res.steps.push(step);
            let elapsed = (unix_ns() - start_ns) as f64 / 1e9;
            if !within
                || target_conns >= args.conns
                || elapsed + args.step_secs + 2.0 > args.duration
            {
                break;
            }
            target_conns = (target_conns + args.step).min(args.conns);
            fleet.grow_to(target_conns).await?;
        }
        pub_stop.store(true, Ordering::Relaxed);
    }
    let ps = join_publishers(pubs).await;
    if matches!(target, PublishTarget::None) && !args.step_up {
        // Another process publishes: the schedule, not a publisher thread, says when it ends.
        sleep_until_unix(sched.due_ns(events) as f64 / 1e9).await;
    }
    let end: Vec<u64> = if matches!(target, PublishTarget::None) {
        (0..sched.channels.len())
            .map(|c| sched.per_channel(c))
            .collect()
    } else {
        shared
            .sent
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .collect()
    };
    let expected_live: u64 = (0..args.conns - args.slow)
        .map(|i| end[(i % args.channels) as usize])
        .sum();
    *shared.end_seq.lock().expect("not poisoned") = end;
    // Drain: stop when everything expected arrived, or after `--drain` seconds without any
    // delivery (a lagging server keeps the run going while events still flow; the hard
    // timeout bounds it).
    let quiet = Duration::from_secs_f64(args.drain);
    let (mut last_count, mut last_change) = (u64::MAX, Instant::now());
    loop {
        let d = shared.deliveries.load(Ordering::Relaxed);
        if !args.step_up && d >= expected_live {
            break;
        }
        if d != last_count {
            (last_count, last_change) = (d, Instant::now());
        } else if last_change.elapsed() >= quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu1 = server_cpu(pid);
    stop_tx.send(true).ok();
    let mut stats = Vec::new();
    for t in fleet.tasks.drain(..) {
        if let Ok(Some(s)) = t.await {
            stats.push(s);
        }
    }
    prog.await.ok();
    if !args.step_up {
        total_hist = shared.hist.lock().expect("not poisoned").clone();
    }
    res.conns_connected = shared.connected.load(Ordering::Relaxed);
    res.connect_failed = shared.connect_failed.load(Ordering::Relaxed);
    res.published = ps.ok;
    res.publish_errors = ps.errors;
    res.publish_max_lag_us = ps.max_lag_us;
    res.deliveries = shared.deliveries.load(Ordering::Relaxed);
    for s in &stats {
        res.lost += s.lost;
        res.duplicated += s.duplicated;
        res.reordered += s.reordered;
        res.clients_with_loss += u64::from(s.lost > 0);
    }
    res.expected_deliveries = (res.deliveries + res.lost).saturating_sub(res.duplicated);
    res.gaps = shared.gaps.load(Ordering::Relaxed);
    res.gap_dropped = shared.gap_dropped.load(Ordering::Relaxed);
    res.closed_early = shared.closed_early.load(Ordering::Relaxed);
    let last_rx = shared.last_rx_ns.load(Ordering::Relaxed);
    res.window_s = if last_rx > start_ns {
        (last_rx - start_ns) as f64 / 1e9
    } else {
        args.duration
    };
    res.server = pid.map(|pid| ServerStats {
        pid,
        cpu_s: cpu1 - cpu0,
        rss_before_kib: rss_before,
        rss_idle_kib: rss_idle,
        rss_end_kib: server_rss(Some(pid)),
    });
    res.generator_cpu_s = procstat::cpu_secs(std::process::id()).unwrap_or(0.0) - gen_cpu0;
    res.first_error = ps
        .first_error
        .or_else(|| shared.first_error.lock().ok()?.clone());
    res.hist_v2_b64 = encode_hist(&total_hist);
    Ok(res)
}

fn stop() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

fn dummy_schedule() -> Schedule {
    Schedule {
        start_unix_ns: 0,
        rate: 1.0,
        events: 0,
        channels: vec![String::new()],
        pad: String::new(),
    }
}
