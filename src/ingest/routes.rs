//! Routes: which channel a Kafka record is published on, and the record → [`Event`] step.
//!
//! A [`RouteConfig`] compiles once into a [`Route`] (a parsed channel template plus field
//! sources); [`Router::route`] then turns one record into an `Event` with no I/O and no panic on
//! any input: a value that is not JSON, or lacks a field the channel template needs, is a
//! [`RouteError`] the caller counts and skips (unless the route is `raw`).
//!
//! The record value is parsed once with simd-json ([`super::parse_json`]); the parsed value is
//! kept on the event for subscription filters and the original bytes are copied verbatim into
//! the envelope (they were just proven to be valid JSON).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::RouteConfig;
use crate::event::{Event, EventParts};

/// Header the default route (and `POST /v1/publish`) takes the channel from.
pub const CHANNEL_HEADER: &str = "channel";
/// Header event types come from when a route does not name a source.
pub const EVENT_TYPE_HEADER: &str = "event-type";
/// Header correlation ids come from when a route does not name a source.
pub const CORRELATION_ID_HEADER: &str = "correlation-id";

/// Why a record was skipped. `Copy`, never allocates: it is counted on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The value is absent or not JSON and the route is not `raw`: count, log, skip.
    NotJson,
    /// A field the channel template needs is absent (or not a scalar): count, log, skip.
    MissingField,
    /// No route for the record's topic (should not happen: only routed topics are assigned).
    NoRoute,
}

impl RouteError {
    /// Metric label (`ingest_errors_total{kind=…}`).
    pub fn kind(self) -> &'static str {
        match self {
            RouteError::NotJson => "not_json",
            RouteError::MissingField => "missing_field",
            RouteError::NoRoute => "no_route",
        }
    }
}

/// Header lookup, so the router works on rdkafka headers and on plain test slices alike.
pub trait RecordHeaders {
    /// The value of the first header called `name`, if any.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl RecordHeaders for [(&str, &[u8])] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

#[cfg(feature = "kafka")]
impl RecordHeaders for rdkafka::message::BorrowedHeaders {
    fn header(&self, name: &str) -> Option<&[u8]> {
        use rdkafka::message::Headers;
        self.iter().find(|h| h.key == name).and_then(|h| h.value)
    }
}

#[cfg(feature = "kafka")]
impl RecordHeaders for rdkafka::message::OwnedHeaders {
    fn header(&self, name: &str) -> Option<&[u8]> {
        use rdkafka::message::Headers;
        self.iter().find(|h| h.key == name).and_then(|h| h.value)
    }
}

/// One Kafka record as the router sees it (borrowed from the consumer).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a, H: ?Sized> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp (unix ms) if the record carries one.
    pub ts_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Option<&'a H>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Pointer(String),
    Key,
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Pointer(String),
    Header(String),
}

impl Source {
    fn parse(s: &str, what: &str) -> Result<Source, String> {
        if let Some(h) = s.strip_prefix("header:") {
            if h.is_empty() {
                return Err(format!("{what}: empty header name"));
            }
            Ok(Source::Header(h.into()))
        } else if s.starts_with('/') || s.is_empty() {
            Ok(Source::Pointer(s.into()))
        } else {
            Err(format!(
                "{what}: {s:?} is neither a JSON pointer (\"/a/b\") nor \"header:NAME\""
            ))
        }
    }
}

/// A compiled `[[route]]`.
#[derive(Debug, Clone)]
pub struct Route {
    pub topic: Arc<str>,
    template: Vec<Part>,
    event_type: Source,
    correlation_id: Source,
    raw: bool,
}

impl Route {
    /// Compiles one route; the error names what is wrong.
    pub fn compile(cfg: &RouteConfig) -> Result<Route, String> {
        if cfg.topic.is_empty() {
            return Err("route.topic must not be empty".into());
        }
        let template = parse_template(&cfg.channel)
            .map_err(|e| format!("route {:?} channel: {e}", cfg.topic))?;
        let src = |s: &Option<String>, default: &str, what: &str| match s {
            Some(s) => Source::parse(s, &format!("route {:?} {what}", cfg.topic)),
            None => Ok(Source::Header(default.into())),
        };
        Ok(Route {
            topic: cfg.topic.as_str().into(),
            template,
            event_type: src(&cfg.event_type, EVENT_TYPE_HEADER, "event_type")?,
            correlation_id: src(&cfg.correlation_id, CORRELATION_ID_HEADER, "correlation_id")?,
            raw: cfg.raw,
        })
    }

    /// The default route: `topic`, channel from header `channel`.
    pub fn default_for(topic: &str) -> Route {
        Route {
            topic: topic.into(),
            template: vec![Part::Header(CHANNEL_HEADER.into())],
            event_type: Source::Header(EVENT_TYPE_HEADER.into()),
            correlation_id: Source::Header(CORRELATION_ID_HEADER.into()),
            raw: false,
        }
    }

    /// The channel when the template is a fixed string (no `{…}` parts).
    pub fn fixed_channel(&self) -> Option<&str> {
        match self.template.as_slice() {
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }
}

/// Parses `lit{/ptr}lit{key}{header:x}`. `{{` and `}}` are literal braces.
fn parse_template(t: &str) -> Result<Vec<Part>, String> {
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut it = t.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '{' if it.peek().map(|p| p.1) == Some('{') => {
                it.next();
                lit.push('{');
            }
            '}' if it.peek().map(|p| p.1) == Some('}') => {
                it.next();
                lit.push('}');
            }
            '{' => {
                let rest = &t[i + 1..];
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("unclosed '{{' in {t:?}"))?;
                let inner = &rest[..end];
                let part = if inner == "key" {
                    Part::Key
                } else if let Some(h) = inner.strip_prefix("header:") {
                    if h.is_empty() {
                        return Err(format!("empty header name in {t:?}"));
                    }
                    Part::Header(h.into())
                } else if inner.starts_with('/') {
                    Part::Pointer(inner.into())
                } else {
                    return Err(format!(
                        "unknown part {{{inner}}} in {t:?} (want {{/pointer}}, {{key}}, {{header:NAME}})"
                    ));
                };
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(part);
                // skip the inner text and the closing brace
                for _ in 0..inner.chars().count() + 1 {
                    it.next();
                }
            }
            '}' => return Err(format!("unmatched '}}' in {t:?}")),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

/// All compiled routes, by topic. Immutable once built.
#[derive(Debug, Clone)]
pub struct Routes {
    by_topic: HashMap<Arc<str>, Route>,
    default_topic: Arc<str>,
}

impl Routes {
    /// Compiles `cfgs`. The default route (`default_topic`, channel from header `channel`) is
    /// added unless a configured route already reads that topic, so `POST /v1/publish` to a
    /// channel no route claims always comes back through ingest.
    pub fn compile(cfgs: &[RouteConfig], default_topic: &str) -> Result<Routes, String> {
        let mut by_topic = HashMap::new();
        for c in cfgs {
            let r = Route::compile(c)?;
            if by_topic.insert(r.topic.clone(), r).is_some() {
                return Err(format!("two routes for topic {:?}", c.topic));
            }
        }
        let default_topic: Arc<str> = default_topic.into();
        by_topic
            .entry(default_topic.clone())
            .or_insert_with(|| Route::default_for(&default_topic));
        Ok(Routes {
            by_topic,
            default_topic,
        })
    }

    /// Every routed topic, sorted.
    pub fn topics(&self) -> Vec<Arc<str>> {
        let mut t: Vec<_> = self.by_topic.keys().cloned().collect();
        t.sort();
        t
    }

    pub fn get(&self, topic: &str) -> Option<&Route> {
        self.by_topic.get(topic)
    }

    /// Which channels each topic can carry (for resume: the partitions a channel is read
    /// from). A template's `{…}` parts match any text.
    pub fn channel_patterns(&self) -> Vec<(Arc<str>, super::replay::ChannelPattern)> {
        self.by_topic
            .values()
            .map(|r| {
                let segs = r
                    .template
                    .iter()
                    .map(|p| match p {
                        Part::Lit(l) => Some(l.as_str().into()),
                        Part::Pointer(_) | Part::Key | Part::Header(_) => None,
                    })
                    .collect();
                (r.topic.clone(), super::replay::ChannelPattern::new(segs))
            })
            .collect()
    }

    /// Where `POST /v1/publish` writes `channel`: the topic of a route whose channel is exactly
    /// that fixed string (`false`: no channel header needed), else the default topic (`true`:
    /// write the `channel` header, which the default route reads; a configured route that
    /// reads the default topic with another template is a configuration conflict and wins).
    pub fn publish_target(&self, channel: &str) -> (Arc<str>, bool) {
        let mut fixed: Vec<&Route> = self
            .by_topic
            .values()
            .filter(|r| r.fixed_channel() == Some(channel))
            .collect();
        fixed.sort_by(|a, b| a.topic.cmp(&b.topic));
        match fixed.first() {
            Some(r) => (r.topic.clone(), false),
            None => (self.default_topic.clone(), true),
        }
    }
}

/// Turns records into events. Owns scratch buffers; one per ingest thread.
#[derive(Debug)]
pub struct Router {
    routes: Routes,
    scratch: Vec<u8>,
    channel: String,
    event_type: String,
    correlation_id: String,
    raw_json: Vec<u8>,
}

impl Router {
    pub fn new(routes: Routes) -> Router {
        Router {
            routes,
            scratch: Vec::new(),
            channel: String::new(),
            event_type: String::new(),
            correlation_id: String::new(),
            raw_json: Vec::new(),
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Record → `Event`: parse, fill the channel template, encode the envelope once.
    pub fn route<H: RecordHeaders + ?Sized>(
        &mut self,
        rec: &Record<'_, H>,
    ) -> Result<Event, RouteError> {
        let route = self
            .routes
            .by_topic
            .get(rec.topic)
            .ok_or(RouteError::NoRoute)?;
        let value = rec.value.unwrap_or_default();
        let (data, data_json): (serde_json::Value, &[u8]) =
            match rec.value.map(|v| super::parse_json(v, &mut self.scratch)) {
                Some(Ok(v)) => (v, value),
                _ if route.raw => {
                    let s = String::from_utf8_lossy(value).into_owned();
                    self.raw_json.clear();
                    crate::event::push_json_str(&mut self.raw_json, &s);
                    (serde_json::Value::String(s), &self.raw_json)
                }
                _ => return Err(RouteError::NotJson),
            };
        let header = |name: &str| -> Option<&str> {
            rec.headers
                .and_then(|h| h.header(name))
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        self.channel.clear();
        for part in &route.template {
            match part {
                Part::Lit(s) => self.channel.push_str(s),
                Part::Key => {
                    let k = rec.key.and_then(|k| std::str::from_utf8(k).ok());
                    self.channel.push_str(k.ok_or(RouteError::MissingField)?);
                }
                Part::Header(h) => self
                    .channel
                    .push_str(header(h).ok_or(RouteError::MissingField)?),
                Part::Pointer(p) => {
                    push_scalar(&mut self.channel, data.pointer(p))
                        .ok_or(RouteError::MissingField)?;
                }
            }
        }
        if self.channel.is_empty() {
            return Err(RouteError::MissingField);
        }
        let event_type =
            source_into(&route.event_type, &data, &header, &mut self.event_type).then_some(());
        let correlation_id = source_into(
            &route.correlation_id,
            &data,
            &header,
            &mut self.correlation_id,
        )
        .then_some(());
        let ts_ms = rec.ts_ms.filter(|t| *t >= 0).unwrap_or_else(now_ms);
        Ok(Event::new(
            EventParts {
                channel: &self.channel,
                topic: &route.topic,
                partition: rec.partition,
                offset: rec.offset,
                ts_ms,
                event_type: event_type.map(|()| self.event_type.as_str()),
                correlation_id: correlation_id.map(|()| self.correlation_id.as_str()),
                data_json,
            },
            data,
        ))
    }
}

/// Appends a scalar JSON value as channel text; `None` for absent, null, objects and arrays.
fn push_scalar(out: &mut String, v: Option<&serde_json::Value>) -> Option<()> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => out.push_str(s),
        serde_json::Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        serde_json::Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        _ => return None,
    }
    Some(())
}

/// Writes the source's value into `out`; false when absent or empty (the field is optional).
fn source_into<'h>(
    src: &Source,
    data: &serde_json::Value,
    header: &dyn Fn(&str) -> Option<&'h str>,
    out: &mut String,
) -> bool {
    out.clear();
    match src {
        Source::Header(h) => {
            if let Some(v) = header(h) {
                out.push_str(v);
            }
        }
        Source::Pointer(p) => {
            let _ = push_scalar(out, data.pointer(p));
        }
    }
    !out.is_empty()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
