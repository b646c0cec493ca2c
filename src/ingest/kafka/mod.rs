//! The ingest thread: one rdkafka `BaseConsumer` that assigns every partition of every routed
//! topic itself (no consumer group is joined, so every gateway instance reads everything), and
//! turns each record into an event: route → `Event` → replay buffer → fan-out.
//!
//! By role: this file is the thread and its records; `assign.rs` the assignment and start
//! offsets; `link.rs` the broker link's health.
//!
//! Threading contract: [`spawn`] starts exactly one thread that owns the consumer and the
//! [`Publisher`]; nothing else touches them. Per poll batch it drains what librdkafka has
//! already fetched (up to [`BATCH`] records, no waiting), then calls [`Publisher::flush`] once,
//! so shards are woken once per batch, not once per record.
//!
//! Broker health: librdkafka reports "all brokers down" through `ClientContext::error`; a
//! failed metadata refresh counts too. When the link has been down for `ready_grace_ms` the
//! thread sets [`IngestStatus::degraded`] and broadcasts `"degraded"` to every shard. While the
//! link is down, metadata is probed every 500 ms; the first successful round trip clears it
//! and broadcasts `"ok"` (records alone do not: they may have been prefetched before the break).
//!
//! Partitions: metadata is re-read every `metadata_refresh_ms`; partitions (and routed topics)
//! that appear later are assigned from their beginning, so nothing produced to them is missed.

mod assign;
mod link;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use tracing::{error, info, warn};

use super::consumer::consumer_config;
use super::produce::KafkaSink;
use super::replay::ReplayBuffer;
use super::routes::{Record, RouteError, Router, Routes};
use super::{IngestStatus, PublishSink};
use crate::config::KafkaConfig;
use crate::fanout::Publisher;
use crate::metrics::{Counter, Metrics};
use link::IngestContext;

/// The in-process mock cluster run when `kafka.brokers` is empty.
type EmbeddedCluster = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// Records drained per batch before the shards are woken.
pub const BATCH: usize = 4096;
/// How long one poll waits for the first record of a batch.
const POLL_WAIT: Duration = Duration::from_millis(50);
/// Timeout of metadata and watermark requests made by the ingest thread.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// While the link is down, metadata is probed this often to notice its return.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Starts the Kafka ingest thread (settings and routes already validated by
/// [`super::spawn_ingest`]). With `kafka.brokers` empty an in-process librdkafka mock cluster
/// is started on the ingest thread (it lives as long as that thread), every routed topic is
/// created with `kafka.partitions` partitions, and its address is logged at INFO. Returns once
/// the consumer exists, with the producer-backed sink behind `POST /v1/publish`.
pub(super) fn spawn(
    kcfg: KafkaConfig,
    routes: Routes,
    publisher: Publisher,
    replay: Arc<ReplayBuffer>,
    metrics: Arc<Metrics>,
    status: Arc<IngestStatus>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<(JoinHandle<()>, Arc<dyn PublishSink>)> {
    replay.set_channel_topics(routes.channel_patterns());
    let (tx, rx) = mpsc::sync_channel::<Result<String, String>>(1);
    let thread_routes = routes.clone();
    let kcfg_producer = kcfg.clone();
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
                    ingest.run(cluster.as_ref());
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
    let sink = KafkaSink::new(&brokers, &kcfg_producer, routes).context("kafka producer")?;
    Ok((handle, Arc::new(sink)))
}

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
    /// An external cluster whose id has not been read yet (the epoch comes from it).
    epoch_pending: bool,
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
    ) -> anyhow::Result<(Ingest, Option<EmbeddedCluster>)> {
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
        let epoch_pending = cluster.is_none();
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
                epoch_pending,
            },
            cluster,
        ))
    }

    fn run(&mut self, cluster: Option<&EmbeddedCluster>) {
        while !self.shutdown.load(Ordering::Acquire) {
            if let Some(routes) = self.status.route_update.take() {
                self.apply_routes(routes, cluster);
            }
            if Instant::now() >= self.next_refresh {
                self.refresh_assignment();
            }
            // Records are not proof of a live link (they may be prefetched before it broke);
            // only a metadata round trip clears `link_down`.
            self.poll_batch();
            self.publisher.flush_gaps();
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
