//! The publishing interface behind `POST /v1/publish`: where an event enters the log.
//!
//! [`PublishSink`] hides whether the log is Kafka (produce, then the ingest thread consumes it
//! like any record) or the in-process [`super::direct::DirectSink`]. Either way the answer
//! carries the event's `topic/partition/offset`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Body of `POST /v1/publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub channel: String,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Partitioning key; defaults to the channel so one channel keeps its order.
    #[serde(default)]
    pub key: Option<String>,
    pub data: Box<RawValue>,
}

/// Where the event landed: `202 {"topic":…,"partition":…,"offset":…}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublishAck {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a publish failed; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The request is malformed (400): fix the request.
    #[error("{0}")]
    BadRequest(String),
    /// The log is unavailable (503): retry later.
    #[error("log unavailable: {0}")]
    Unavailable(String),
}

impl PublishError {
    pub fn http_status(&self) -> u16 {
        match self {
            PublishError::BadRequest(_) => 400,
            PublishError::Unavailable(_) => 503,
        }
    }
}

/// Appends a published event to the log. Called from admin threads.
pub trait PublishSink: Send + Sync + std::fmt::Debug {
    fn publish(&self, req: PublishRequest) -> Result<PublishAck, PublishError>;

    /// A reloaded route table (SIGHUP): publishes pick their topic from it from now on.
    /// Sinks that do not route (direct mode) ignore it.
    fn set_routes(&self, _routes: &super::routes::Routes) {}
}
