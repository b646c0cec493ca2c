//! The ingest thread: one rdkafka `BaseConsumer` that assigns every partition of every routed
//! topic itself (no consumer group is joined, so every gateway instance reads everything), and
//! turns each record into an event: route → `Event` → replay buffer → fan-out.
//!
//! Threading contract: [`spawn_ingest`] starts exactly one thread that owns the consumer and the
//! [`Publisher`]; nothing else touches them. Per poll batch it drains what librdkafka has
//! already fetched (up to [`BATCH`] records, no waiting), then calls [`Publisher::flush`] once,
//! so shards are woken once per batch, not once per record.
//!
//! Broker health: librdkafka reports "all brokers down" through [`ClientContext::error`]; a
//! failed metadata refresh counts too. When the link has been down for `ready_grace_ms` the
//! thread sets [`IngestStatus::degraded`] and broadcasts `"degraded"` to every shard. While the
//! link is down, metadata is probed every 500 ms; the first successful round trip clears it
//! and broadcasts `"ok"` (records alone do not: they may have been prefetched before the break).
//!
//! Partitions: metadata is re-read every `metadata_refresh_ms`; partitions (and routed topics)
//! that appear later are assigned from their beginning, so nothing produced to them is missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{debug, error, info, warn};

use super::config::KafkaConfig;
use super::consumer::consumer_config;
use super::direct::DirectSink;
use super::produce::KafkaSink;
use super::replay::ReplayBuffer;
use super::routes::{Record, RouteError, Router, Routes};
use super::{IngestStatus, PublishSink};
use crate::config::Config;
use crate::fanout::Publisher;
use crate::metrics::{Counter, Metrics};

/// Records drained per batch before the shards are woken.
pub const BATCH: usize = 4096;
/// How long one poll waits for the first record of a batch.
const POLL_WAIT: Duration = Duration::from_millis(50);
/// Timeout of metadata and watermark requests made by the ingest thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// While the link is down, metadata is probed this often to notice its return.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Starts ingest. Returns the ingest thread (it exits once `shutdown` is set) and the sink
/// behind `POST /v1/publish`.
///
/// - `kafka.mode = "direct"`: no Kafka; the returned sink is a [`DirectSink`] that publishes
///   in process, and the thread only marks ingest assigned and waits for shutdown.
/// - `kafka.brokers` empty: an in-process librdkafka mock cluster is started on the ingest
///   thread (it lives as long as that thread), every routed topic is created with
///   `kafka.partitions` partitions, and its address is logged at INFO.
///
/// Errors: invalid `[kafka]` / `[[route]]` settings, or a consumer/producer that cannot be
/// created (bad librdkafka property). Broker reachability is not an error: ingest starts and
/// reports `degraded` after `ready_grace_ms`.
pub fn spawn_ingest(
    cfg: &Config,
    publisher: Publisher,
    replay: Arc<ReplayBuffer>,
    metrics: Arc<Metrics>,
    status: Arc<IngestStatus>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<(JoinHandle<()>, Arc<dyn PublishSink>)> {
    let kcfg = cfg.kafka.clone();
    kcfg.validate()
        .map_err(|(k, why)| anyhow::anyhow!("invalid setting {k}: {why}"))?;
    let routes = Routes::compile(&cfg.routes, &kcfg.default_topic)
        .map_err(|e| anyhow::anyhow!("invalid route: {e}"))?;
    if kcfg.mode == "direct" {
        let sink: Arc<dyn PublishSink> =
            Arc::new(DirectSink::new(publisher, metrics).with_replay(replay));
        let handle = std::thread::Builder::new()
            .name("fanline-ingest".into())
            .spawn(move || {
                status.assigned.store(true, Ordering::Release);
                while !shutdown.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            })?;
        return Ok((handle, sink));
    }
    let (tx, rx) = mpsc::sync_channel::<Result<String, String>>(1);
    let thread_routes = routes.clone();
    let handle = std::thread::Builder::new()
        .name("fanline-ingest".into())
        .spawn(move || {
            let ingest = Ingest::start(
                kcfg,
                thread_routes,
                publisher,
                replay,
                metrics,
                status,
                shutdown,
                &tx,
            );
            match ingest {
                Ok((mut ingest, cluster)) => {
                    ingest.run();
                    // consumer first, then the embedded cluster it talks to
                    drop(ingest);
                    drop(cluster);
                }
                Err(e) => {
                    error!("kafka ingest failed to start: {e:#}");
                    let _ = tx.send(Err(format!("{e:#}")));
                }
            }
        })?;
    let brokers = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let _ = handle.join();
            anyhow::bail!("kafka ingest: {e}");
        }
        Err(_) => anyhow::bail!("kafka ingest did not start within 30 s"),
    };
    let sink = KafkaSink::new(&brokers, &cfg.kafka, routes).context("kafka producer")?;
    Ok((handle, Arc::new(sink)))
}

/// librdkafka callbacks, served on the ingest thread by `poll`.
struct IngestContext {
    metrics: Arc<Metrics>,
    /// Set by the error callback when every broker is down; cleared by the ingest loop.
    link_down: AtomicBool,
}

impl ClientContext for IngestContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.ingest.errors_kafka.inc();
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.link_down.store(true, Ordering::Release);
            warn!("kafka: all brokers down: {reason}");
        } else {
            debug!("kafka error: {error}: {reason}");
        }
    }

    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, s) in &t.partitions {
                if *p < 0 || !s.desired {
                    continue;
                }
                let pos = if s.app_offset >= 0 {
                    s.app_offset
                } else {
                    s.next_offset
                };
                if s.hi_offset >= 0 && pos >= 0 {
                    self.metrics
                        .ingest
                        .set_lag(topic, *p, (s.hi_offset - pos).max(0));
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {}

/// Per assigned partition.
#[derive(Debug, Clone, Copy)]
struct PartPos {
    /// Records below this offset were read for warm-up: replay buffer only, not published.
    live_from: i64,
}

/// Per routed topic.
struct TopicState {
    ingested: Arc<Counter>,
    parts: HashMap<i32, PartPos>,
}

/// At most `PER_WINDOW` warnings per window; the rest are counted and summarized.
struct LogLimiter {
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    const PER_WINDOW: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(10);

    fn allow(&mut self) -> bool {
        if self.window.elapsed() > Self::WINDOW {
            if self.suppressed > 0 {
                warn!(
                    "{} more bad records in the last {:?} were not logged",
                    self.suppressed,
                    Self::WINDOW
                );
            }
            self.window = Instant::now();
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < Self::PER_WINDOW {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

struct Ingest {
    cfg: KafkaConfig,
    consumer: BaseConsumer<IngestContext>,
    router: Router,
    publisher: Publisher,
    replay: Arc<ReplayBuffer>,
    metrics: Arc<Metrics>,
    status: Arc<IngestStatus>,
    shutdown: Arc<AtomicBool>,
    topics: HashMap<Arc<str>, TopicState>,
    bad_log: LogLimiter,
    down_since: Option<Instant>,
    degraded: bool,
    next_refresh: Instant,
}

impl Ingest {
    /// Creates the (embedded) cluster and the consumer, reports the bootstrap address on `tx`.
    #[allow(clippy::too_many_arguments)]
    fn start(
        cfg: KafkaConfig,
        routes: Routes,
        publisher: Publisher,
        replay: Arc<ReplayBuffer>,
        metrics: Arc<Metrics>,
        status: Arc<IngestStatus>,
        shutdown: Arc<AtomicBool>,
        tx: &mpsc::SyncSender<Result<String, String>>,
    ) -> anyhow::Result<(
        Ingest,
        Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    )> {
        let mut cluster = None;
        let brokers = if cfg.brokers.is_empty() {
            let mc = MockCluster::new(1).context("starting the embedded mock cluster")?;
            for t in routes.topics() {
                mc.create_topic(&t, cfg.partitions, 1)
                    .with_context(|| format!("creating topic {t}"))?;
            }
            let addr = mc.bootstrap_servers();
            info!(
                "embedded Kafka (librdkafka mock cluster) at {addr}; produce with: \
                 echo '{{\"hello\":1}}' | kcat -b {addr} -t {} -H channel=demo -P",
                cfg.default_topic
            );
            cluster = Some(mc);
            addr
        } else {
            cfg.brokers.clone()
        };
        let context = IngestContext {
            metrics: metrics.clone(),
            link_down: AtomicBool::new(false),
        };
        let consumer: BaseConsumer<IngestContext> =
            consumer_config(&brokers, &cfg, cluster.is_some())
                .create_with_context(context)
                .context("creating the kafka consumer")?;
        let _ = tx.send(Ok(brokers));
        let next_refresh = Instant::now();
        Ok((
            Ingest {
                cfg,
                consumer,
                router: Router::new(routes),
                publisher,
                replay,
                metrics,
                status,
                shutdown,
                topics: HashMap::new(),
                bad_log: LogLimiter {
                    window: Instant::now(),
                    logged: 0,
                    suppressed: 0,
                },
                down_since: None,
                degraded: false,
                next_refresh,
            },
            cluster,
        ))
    }

    fn run(&mut self) {
        while !self.shutdown.load(Ordering::Acquire) {
            if Instant::now() >= self.next_refresh {
                self.refresh_assignment();
            }
            // Records are not proof of a live link (they may be prefetched before it broke);
            // only a metadata round trip clears `link_down`.
            self.poll_batch();
            self.check_link();
        }
        self.publisher.flush();
        info!("kafka ingest stopped");
    }

    /// Drains up to [`BATCH`] records (waiting only for the first), then wakes the shards.
    /// Returns how many records and consumer errors were taken.
    fn poll_batch(&mut self) -> usize {
        let mut n = 0;
        let mut wait = POLL_WAIT;
        for _ in 0..BATCH {
            let Some(res) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            n += 1;
            match res {
                Ok(msg) => {
                    let rec = Record {
                        topic: msg.topic(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                        ts_ms: msg.timestamp().to_millis(),
                        key: msg.key(),
                        value: msg.payload(),
                        headers: msg.headers(),
                    };
                    handle_record(
                        &mut self.router,
                        &rec,
                        &mut self.topics,
                        &self.replay,
                        &mut self.publisher,
                        &self.metrics,
                        &mut self.bad_log,
                    );
                }
                Err(e) => {
                    self.metrics.ingest.errors_kafka.inc();
                    if self.bad_log.allow() {
                        warn!("kafka consume error: {e}");
                    }
                }
            }
        }
        if n > 0 {
            self.publisher.flush();
        }
        n
    }

    /// Reads metadata and assigns partitions not yet assigned. The first successful call
    /// assigns every routed partition at the configured `start`; later ones from the beginning.
    fn refresh_assignment(&mut self) {
        let period = Duration::from_millis(self.cfg.metadata_refresh_ms);
        let md = match self.consumer.fetch_metadata(None, REQUEST_TIMEOUT) {
            Ok(md) => md,
            Err(e) => {
                debug!("kafka metadata: {e}");
                self.consumer
                    .context()
                    .link_down
                    .store(true, Ordering::Release);
                self.next_refresh = Instant::now() + PROBE_EVERY.min(period);
                return;
            }
        };
        self.link_ok();
        self.next_refresh = Instant::now() + period;
        let initial = !self.status.assigned.load(Ordering::Acquire);
        let mut tpl = TopicPartitionList::new();
        // (topic, partition, numeric start offset if known, live_from)
        let mut new_parts: Vec<(Arc<str>, i32, Option<i64>, i64)> = Vec::new();
        for t in md.topics() {
            let Some(route) = self.router.routes().get(t.name()) else {
                continue;
            };
            if t.error().is_some() {
                continue;
            }
            let topic = route.topic.clone();
            let known = self.topics.get(&topic);
            for p in t.partitions() {
                if known.is_some_and(|k| k.parts.contains_key(&p.id())) {
                    continue;
                }
                let wm = self
                    .consumer
                    .fetch_watermarks(&topic, p.id(), REQUEST_TIMEOUT)
                    .ok();
                let offset = match (initial, self.cfg.start.as_str(), wm) {
                    (false, _, Some((lo, _))) => Offset::Offset(lo),
                    (false, _, None) => Offset::Beginning,
                    (true, "earliest", Some((lo, _))) => Offset::Offset(lo),
                    (true, "earliest", None) => Offset::Beginning,
                    (true, "warm", Some((lo, hi))) => {
                        Offset::Offset(lo.max(hi - self.cfg.warm_records))
                    }
                    // watermarks unknown: librdkafka resolves the tail, but history cannot be
                    // told from live records, so it is published too
                    (true, "warm", None) => Offset::OffsetTail(self.cfg.warm_records),
                    (true, _, Some((_, hi))) => Offset::Offset(hi),
                    (true, _, None) => Offset::End,
                };
                if let Err(e) = tpl.add_partition_offset(&topic, p.id(), offset) {
                    warn!("kafka: cannot add {topic}/{}: {e}", p.id());
                    continue;
                }
                let live_from = match (initial, self.cfg.start.as_str(), wm) {
                    (true, "warm", Some((_, hi))) => hi,
                    _ => 0,
                };
                new_parts.push((topic.clone(), p.id(), offset_value(offset), live_from));
            }
        }
        if initial {
            for t in self.router.routes().topics() {
                if !md.topics().iter().any(|m| m.name() == &*t) {
                    warn!(
                        "kafka: routed topic {t} does not exist (yet); it is assigned once it appears"
                    );
                }
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.incremental_assign(&tpl) {
                error!("kafka: assigning {} partitions failed: {e}", tpl.count());
                self.metrics.ingest.errors_kafka.inc();
                self.next_refresh = Instant::now() + PROBE_EVERY;
                return;
            }
            for (topic, p, start, live_from) in new_parts {
                if let Some(s) = start.filter(|s| *s >= 0) {
                    self.replay.mark_position(&topic, p, s);
                }
                let ingested = self.metrics.ingest.topic_counter(&topic);
                self.topics
                    .entry(topic.clone())
                    .or_insert_with(|| TopicState {
                        ingested,
                        parts: HashMap::new(),
                    })
                    .parts
                    .insert(p, PartPos { live_from });
                info!("kafka: assigned {topic}/{p} from {start:?}");
            }
        }
        if initial {
            self.status.assigned.store(true, Ordering::Release);
        }
    }

    fn link_ok(&mut self) {
        self.consumer
            .context()
            .link_down
            .store(false, Ordering::Release);
        self.down_since = None;
        if self.degraded {
            self.degraded = false;
            self.status.degraded.store(false, Ordering::Release);
            self.publisher.broadcast_status("ok");
            info!("kafka: broker link restored");
        }
    }

    fn check_link(&mut self) {
        if !self.consumer.context().link_down.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let since = *self.down_since.get_or_insert(now);
        if !self.degraded
            && now.duration_since(since) >= Duration::from_millis(self.cfg.ready_grace_ms)
        {
            self.degraded = true;
            self.status.degraded.store(true, Ordering::Release);
            self.publisher.broadcast_status("degraded");
            warn!(
                "kafka: broker link down for {:?}: degraded",
                now.duration_since(since)
            );
        }
        // Probe for the link's return even when no records arrive.
        if self.next_refresh > now + PROBE_EVERY {
            self.next_refresh = now + PROBE_EVERY;
        }
    }
}

fn offset_value(o: Offset) -> Option<i64> {
    match o {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

/// One record: route → event → replay buffer → fan-out (unless it is warm-up history).
/// Bad records are counted, logged (rate-limited) and skipped.
fn handle_record<H: super::routes::RecordHeaders + ?Sized>(
    router: &mut Router,
    rec: &Record<'_, H>,
    topics: &mut HashMap<Arc<str>, TopicState>,
    replay: &ReplayBuffer,
    publisher: &mut Publisher,
    metrics: &Metrics,
    log: &mut LogLimiter,
) {
    match router.route(rec) {
        Ok(ev) => {
            let ev = Arc::new(ev);
            replay.append(&ev);
            metrics.ingest.events_ingested.inc();
            let live = match topics.get(rec.topic) {
                Some(t) => {
                    t.ingested.inc();
                    t.parts
                        .get(&rec.partition)
                        .is_none_or(|p| rec.offset >= p.live_from)
                }
                None => true,
            };
            if live {
                publisher.publish(ev);
            }
        }
        Err(e) => {
            match e {
                RouteError::NotJson => metrics.ingest.errors_not_json.inc(),
                RouteError::MissingField => metrics.ingest.errors_missing_field.inc(),
                RouteError::NoRoute => metrics.ingest.errors_no_route.inc(),
            }
            if log.allow() {
                warn!(
                    topic = rec.topic,
                    partition = rec.partition,
                    offset = rec.offset,
                    kind = e.kind(),
                    "skipping bad record"
                );
            }
        }
    }
}
