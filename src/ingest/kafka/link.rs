//! Broker link health: librdkafka reports "all brokers down" through [`ClientContext::error`];
//! a failed metadata refresh counts too. Down for `ready_grace_ms` → [`IngestStatus`]
//! `degraded` and `"degraded"` broadcast to every shard; the first successful metadata round
//! trip clears it and broadcasts `"ok"`. Partition lag comes from librdkafka's statistics.
//!
//! [`IngestStatus`]: crate::ingest::IngestStatus

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{debug, info, warn};

use super::{Ingest, PROBE_EVERY};
use crate::metrics::Metrics;

/// librdkafka callbacks, served on the ingest thread by `poll`.
pub(super) struct IngestContext {
    pub(super) metrics: Arc<Metrics>,
    /// Set by the error callback when every broker is down; cleared by the ingest loop.
    pub(super) link_down: AtomicBool,
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

impl Ingest {
    pub(super) fn link_ok(&mut self) {
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

    pub(super) fn check_link(&mut self) {
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
