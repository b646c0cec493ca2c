//! [`KafkaSink`]: `POST /v1/publish` as a Kafka produce, answered with the record's offset.
//!
//! The record goes to the topic of a route whose channel is exactly the requested (fixed)
//! channel, else to `kafka.default_topic` with a `channel` header (which the default route reads
//! back). Key: `req.key`, else the channel, so one channel keeps its order. `event-type` and
//! `correlation-id` headers carry the metadata. The caller (an admin thread) blocks until the
//! delivery report arrives or [`DELIVERY_TIMEOUT`] passes; there is no async runtime here: a
//! `ThreadedProducer` polls delivery reports on its own thread and hands each one back through
//! a one-slot channel carried as the delivery opaque.

use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};

use super::routes::{CHANNEL_HEADER, CORRELATION_ID_HEADER, EVENT_TYPE_HEADER, Routes};
use super::{PublishAck, PublishError, PublishRequest, PublishSink};
use crate::config::KafkaConfig;

/// librdkafka gives up on a record after this (`message.timeout.ms`).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// A publish waits at most this long for its delivery report (then 503).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(6);

type Delivery = Result<(i32, i64), String>;

/// Delivery reports go back to the waiting publisher.
pub(crate) struct ProduceContext;

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = Box<Sender<Delivery>>;

    fn delivery(&self, r: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let res = match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        // The publisher may have timed out and gone; nothing to do then.
        let _ = tx.try_send(res);
    }
}

/// See the module doc. `Send + Sync`: many admin threads may publish at once.
pub struct KafkaSink {
    producer: ThreadedProducer<ProduceContext>,
    /// Swapped whole on SIGHUP (see [`PublishSink::set_routes`]).
    routes: arc_swap::ArcSwap<Routes>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A producer on `brokers` with fanline's defaults, then `cfg.properties`.
    pub fn new(brokers: &str, cfg: &KafkaConfig, routes: Routes) -> anyhow::Result<KafkaSink> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("linger.ms", "0")
            .set("acks", "all")
            // retries never reorder one key's records (one channel keeps its order)
            .set("enable.idempotence", "true")
            .set("socket.nagle.disable", "true")
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        for (k, v) in &cfg.properties {
            // Consumer-only properties would only produce librdkafka warnings here.
            if !is_consumer_only(k) {
                c.set(k, v);
            }
        }
        let producer: ThreadedProducer<ProduceContext> = c.create_with_context(ProduceContext)?;
        Ok(KafkaSink {
            producer,
            routes: arc_swap::ArcSwap::from_pointee(routes),
        })
    }
}

fn is_consumer_only(k: &str) -> bool {
    k.starts_with("fetch.")
        || k.starts_with("queued.")
        || k.starts_with("enable.auto.")
        || k.starts_with("auto.")
        || k == "group.id"
        || k == "enable.partition.eof"
        || k == "isolation.level"
}

impl PublishSink for KafkaSink {
    fn set_routes(&self, routes: &Routes) {
        self.routes.store(std::sync::Arc::new(routes.clone()));
    }

    fn publish(&self, req: PublishRequest) -> Result<PublishAck, PublishError> {
        if req.channel.is_empty() {
            return Err(PublishError::BadRequest("channel must not be empty".into()));
        }
        let (topic, with_channel_header) = self.routes.load().publish_target(&req.channel);
        let mut headers = OwnedHeaders::new();
        if with_channel_header {
            headers = headers.insert(Header {
                key: CHANNEL_HEADER,
                value: Some(req.channel.as_str()),
            });
        }
        if let Some(t) = &req.event_type {
            headers = headers.insert(Header {
                key: EVENT_TYPE_HEADER,
                value: Some(t.as_str()),
            });
        }
        if let Some(c) = &req.correlation_id {
            headers = headers.insert(Header {
                key: CORRELATION_ID_HEADER,
                value: Some(c.as_str()),
            });
        }
        let key = req.key.as_deref().unwrap_or(&req.channel);
        let (tx, rx) = bounded::<Delivery>(1);
        let record = BaseRecord::with_opaque_to(&topic, Box::new(tx))
            .key(key)
            .payload(req.data.get())
            .headers(headers);
        if let Err((e, _)) = self.producer.send(record) {
            return Err(PublishError::Unavailable(e.to_string()));
        }
        match rx.recv_timeout(DELIVERY_TIMEOUT) {
            Ok(Ok((partition, offset))) => Ok(PublishAck {
                topic: topic.to_string(),
                partition,
                offset,
            }),
            Ok(Err(e)) => Err(PublishError::Unavailable(e)),
            Err(_) => Err(PublishError::Unavailable(
                "no delivery report within the timeout".into(),
            )),
        }
    }
}
