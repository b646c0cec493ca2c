//! Assignment and start offsets: metadata is read every `metadata_refresh_ms`; every partition
//! of every routed topic not yet assigned is assigned. The first successful round assigns at
//! `kafka.start`; partitions (and routed topics) that appear later are assigned from their
//! beginning, so nothing produced to them is missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::super::routes::{Router, Routes};
use super::{EmbeddedCluster, Ingest, PROBE_EVERY, PartPos, REQUEST_TIMEOUT, TopicState};
use crate::config::KafkaStart;

/// Where a partition starts and from which offset its records are live (below it: warm-up
/// history, replay buffer only). `initial`: the first assignment round; `wm`: the partition's
/// (low, high) watermarks if they could be read.
fn start_offset(
    initial: bool,
    start: KafkaStart,
    warm_records: i64,
    wm: Option<(i64, i64)>,
) -> (Offset, i64) {
    match (initial, start, wm) {
        (false, _, Some((lo, _))) => (Offset::Offset(lo), 0),
        (false, _, None) => (Offset::Beginning, 0),
        (true, KafkaStart::Earliest, Some((lo, _))) => (Offset::Offset(lo), 0),
        (true, KafkaStart::Earliest, None) => (Offset::Beginning, 0),
        (true, KafkaStart::Warm, Some((lo, hi))) => (Offset::Offset(lo.max(hi - warm_records)), hi),
        // watermarks unknown: librdkafka resolves the tail, but history cannot be told from
        // live records, so it is published too
        (true, KafkaStart::Warm, None) => (Offset::OffsetTail(warm_records), 0),
        (true, KafkaStart::Latest, Some((_, hi))) => (Offset::Offset(hi), 0),
        (true, KafkaStart::Latest, None) => (Offset::End, 0),
    }
}

fn offset_value(o: Offset) -> Option<i64> {
    match o {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

impl Ingest {
    /// Reads metadata and assigns partitions not yet assigned. The first successful call
    /// assigns every routed partition at the configured `start`; later ones from the beginning.
    pub(super) fn refresh_assignment(&mut self) {
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
        if self.epoch_pending {
            self.read_epoch();
        }
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
                let (offset, live_from) =
                    start_offset(initial, self.cfg.start, self.cfg.warm_records, wm);
                if let Err(e) = tpl.add_partition_offset(&topic, p.id(), offset) {
                    warn!("kafka: cannot add {topic}/{}: {e}", p.id());
                    continue;
                }
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

    /// A reloaded route table (SIGHUP): topics no longer routed are unassigned and forgotten,
    /// new ones are created in the embedded cluster and assigned from their beginning at the
    /// next metadata round (run at once). Subscriptions and the topics that stay are untouched.
    pub(super) fn apply_routes(&mut self, routes: Routes, cluster: Option<&EmbeddedCluster>) {
        let old = self.router.routes().topics();
        let new = routes.topics();
        let added: Vec<_> = new.iter().filter(|t| !old.contains(t)).cloned().collect();
        let removed: Vec<_> = old.iter().filter(|t| !new.contains(t)).cloned().collect();
        if let Some(mc) = cluster {
            for t in &added {
                if let Err(e) = mc.create_topic(t, self.cfg.partitions, 1) {
                    debug!("kafka: creating topic {t} in the embedded cluster: {e}");
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for t in &removed {
            if let Some(state) = self.topics.get(t) {
                for p in state.parts.keys() {
                    let _ = tpl.add_partition(t, *p);
                }
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.incremental_unassign(&tpl)
        {
            error!("kafka: releasing {} partitions failed: {e}", tpl.count());
            self.metrics.ingest.errors_kafka.inc();
        }
        for t in &removed {
            self.topics.remove(t);
        }
        self.replay.set_channel_topics(routes.channel_patterns());
        self.router = Router::new(routes);
        self.next_refresh = Instant::now();
        info!(added = ?added, removed = ?removed, "kafka: routes reloaded");
    }

    /// The epoch of an external cluster: its cluster id, hashed, so every replica reading it
    /// (and this one after a restart) names its offsets the same way. Read before the first
    /// assignment; without a cluster id (very old brokers) the per-start epoch stays.
    fn read_epoch(&mut self) {
        match self.consumer.client().fetch_cluster_id(REQUEST_TIMEOUT) {
            Some(id) => {
                let epoch = crate::protocol::cursor::hash64(&format!("kafka:{id}"));
                self.replay.set_epoch(epoch);
                info!("kafka: cluster id {id}; resume epoch {epoch:016x}");
                self.epoch_pending = false;
            }
            None if self.status.assigned.load(Ordering::Acquire) => {
                warn!("kafka: no cluster id; resume cursors are valid until this process exits");
                self.epoch_pending = false;
            }
            None => debug!("kafka: cluster id not known yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_round_starts_where_kafka_start_says_later_ones_at_the_beginning() {
        use KafkaStart::*;
        let wm = Some((10, 500));
        let cases = [
            (true, Latest, wm, Offset::Offset(500), 0),
            (true, Latest, None, Offset::End, 0),
            (true, Earliest, wm, Offset::Offset(10), 0),
            (true, Earliest, None, Offset::Beginning, 0),
            (true, Warm, wm, Offset::Offset(400), 500),
            (true, Warm, Some((450, 500)), Offset::Offset(450), 500),
            (true, Warm, None, Offset::OffsetTail(100), 0),
            (false, Latest, wm, Offset::Offset(10), 0),
            (false, Warm, None, Offset::Beginning, 0),
        ];
        for (initial, start, wm, offset, live_from) in cases {
            assert_eq!(
                start_offset(initial, start, 100, wm),
                (offset, live_from),
                "{initial} {start:?} {wm:?}"
            );
        }
    }
}
