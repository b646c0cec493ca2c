//! The in-process log: publishes go straight to the fan-out with offsets assigned here.
//!
//! Used when Kafka is switched off (`kafka.mode = "direct"`) and by tests of the core. Same
//! contract as Kafka: pseudo-topic `fanline.events`, 3 partitions chosen by key (or channel),
//! offsets that only grow per partition.
//!
//! [`spawn`] starts the direct mode's ingest thread: it has no records to poll, but it is the
//! ring-full `gap` timer (as the Kafka thread's poll loop is): every [`GAP_TICK`] it delivers
//! pending `gap` notices, so a burst that filled a shard's ring and then went quiet still shows
//! its drop within 100 ms.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{IngestStatus, PublishAck, PublishError, PublishRequest, PublishSink};
use crate::event::{Event, EventParts};
use crate::fanout::Publisher;
use crate::metrics::Metrics;

/// How often the direct ingest thread delivers pending ring-full `gap` notices.
pub const GAP_TICK: Duration = Duration::from_millis(20);

/// Starts the direct mode's ingest thread (marks ingest assigned, then runs the `gap` timer
/// until `shutdown`) and returns it with the sink behind `POST /v1/publish`.
pub fn spawn(
    publisher: Publisher,
    metrics: Arc<Metrics>,
    replay: Arc<super::ReplayBuffer>,
    status: Arc<IngestStatus>,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<(JoinHandle<()>, Arc<dyn PublishSink>)> {
    let sink = Arc::new(DirectSink::new(publisher, metrics).with_replay(replay));
    let timer = sink.clone();
    let handle = std::thread::Builder::new()
        .name("fanline-ingest".into())
        .spawn(move || {
            status.assigned.store(true, Ordering::Release);
            while !shutdown.load(Ordering::Acquire) {
                std::thread::sleep(GAP_TICK);
                timer.flush_gaps();
            }
        })?;
    Ok((handle, sink))
}

/// Partitions of the direct log.
pub const PARTITIONS: i32 = 3;
/// Topic name the direct log reports.
pub const TOPIC: &str = "fanline.events";

#[derive(Debug)]
struct State {
    publisher: Publisher,
    next_offset: [i64; PARTITIONS as usize],
    scratch: Vec<u8>,
}

/// See the module doc. The mutex makes the caller (an admin thread) the single ingest writer.
#[derive(Debug)]
pub struct DirectSink {
    state: Mutex<State>,
    topic: Arc<str>,
    metrics: Arc<Metrics>,
    replay: Option<Arc<super::ReplayBuffer>>,
}

impl DirectSink {
    pub fn new(publisher: Publisher, metrics: Arc<Metrics>) -> DirectSink {
        DirectSink {
            state: Mutex::new(State {
                publisher,
                next_offset: [0; PARTITIONS as usize],
                scratch: Vec::new(),
            }),
            topic: TOPIC.into(),
            metrics,
            replay: None,
        }
    }

    /// Also appends every event to `replay` (so `since` resume works without Kafka).
    pub fn with_replay(mut self, replay: Arc<super::ReplayBuffer>) -> DirectSink {
        for p in 0..PARTITIONS {
            replay.mark_position(&self.topic, p, 0);
        }
        self.replay = Some(replay);
        self
    }

    /// Delivers pending ring-full `gap` notices that fit now (see [`Publisher::flush_gaps`]).
    pub fn flush_gaps(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.publisher.flush_gaps();
    }
}

impl PublishSink for DirectSink {
    fn publish(&self, req: PublishRequest) -> Result<PublishAck, PublishError> {
        if req.channel.is_empty() {
            return Err(PublishError::BadRequest("channel must not be empty".into()));
        }
        let key = req.key.as_deref().unwrap_or(&req.channel);
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let partition = (h.finish() % PARTITIONS as u64) as i32;
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let data = super::parse_json(req.data.get().as_bytes(), &mut st.scratch)
            .map_err(|e| PublishError::BadRequest(format!("data: {e}")))?;
        let offset = st.next_offset[partition as usize];
        st.next_offset[partition as usize] += 1;
        let ev = Arc::new(Event::new(
            EventParts {
                channel: &req.channel,
                topic: &self.topic,
                partition,
                offset,
                ts_ms: ts_ms.unwrap_or(0),
                event_type: req.event_type.as_deref(),
                correlation_id: req.correlation_id.as_deref(),
                data_json: req.data.get().as_bytes(),
            },
            data,
        ));
        self.metrics.ingest.events_ingested.inc();
        if let Some(r) = &self.replay {
            r.append(&ev);
        }
        st.publisher.publish(ev);
        st.publisher.flush();
        Ok(PublishAck {
            topic: TOPIC.into(),
            partition,
            offset,
        })
    }
}
