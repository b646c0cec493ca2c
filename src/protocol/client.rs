//! Client → server messages. Parsing never panics; every failure names what was wrong so the
//! `error` frame tells the client how to fix its request.

use serde::Deserialize;
use serde_json::Value;

use super::cursor::Cursor;

/// `since`: last seen offset per `topic/partition` and the epoch, parsed from
/// `{"epoch": "…", "topic/0": 120, …}` (see [`Cursor::from_json`]).
pub type Since = Cursor;

/// A parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Subscribe {
        id: Option<String>,
        channels: Vec<String>,
        filter: Option<Value>,
        since: Option<Since>,
    },
    Unsubscribe {
        id: Option<String>,
        channels: Vec<String>,
    },
    Ping {
        id: Option<String>,
    },
}

/// Why a client message was refused (sent back as `{"type":"error","code":…}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Wire {
    Subscribe {
        #[serde(default)]
        id: Option<String>,
        channels: Vec<String>,
        #[serde(default)]
        filter: Option<Value>,
        #[serde(default)]
        since: Option<serde_json::Map<String, Value>>,
    },
    Unsubscribe {
        #[serde(default)]
        id: Option<String>,
        channels: Vec<String>,
    },
    Ping {
        #[serde(default)]
        id: Option<String>,
    },
}

/// Longest channel name accepted.
pub const MAX_CHANNEL_LEN: usize = 256;

impl ClientMessage {
    /// Parses one text frame's payload.
    pub fn parse(text: &[u8]) -> Result<ClientMessage, ClientError> {
        let wire: Wire = serde_json::from_slice(text).map_err(|e| ClientError {
            id: id_of(text),
            code: "bad_request",
            message: format!("invalid message: {e}"),
        })?;
        let bad = |id: &Option<String>, m: String| ClientError {
            id: id.clone(),
            code: "bad_request",
            message: m,
        };
        let check_channels = |id: &Option<String>, chans: &[String]| {
            if chans.is_empty() {
                return Err(bad(id, "channels must not be empty".into()));
            }
            match chans
                .iter()
                .find(|c| c.is_empty() || c.len() > MAX_CHANNEL_LEN)
            {
                Some(c) => Err(bad(
                    id,
                    format!("invalid channel name {c:?} (1..={MAX_CHANNEL_LEN} bytes)"),
                )),
                None => Ok(()),
            }
        };
        Ok(match wire {
            Wire::Subscribe {
                id,
                channels,
                filter,
                since,
            } => {
                check_channels(&id, &channels)?;
                if let Some(f) = &filter
                    && !f.is_object()
                {
                    return Err(bad(&id, "filter must be an object".into()));
                }
                let since = match since {
                    None => None,
                    Some(m) => Some(Cursor::from_json(&m).map_err(|e| bad(&id, e))?),
                };
                ClientMessage::Subscribe {
                    id,
                    channels,
                    filter,
                    since,
                }
            }
            Wire::Unsubscribe { id, channels } => {
                check_channels(&id, &channels)?;
                ClientMessage::Unsubscribe { id, channels }
            }
            Wire::Ping { id } => ClientMessage::Ping { id },
        })
    }
}

/// Best effort: the `id` of a message that failed to parse, to echo in the error.
fn id_of(text: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(text).ok()?;
    v.get("id")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_with_filter_and_since_parses() {
        let m = ClientMessage::parse(
            br#"{"type":"subscribe","id":"r1","channels":["issues"],"filter":{"severity":["high"]},"since":{"issues.enriched/0":120}}"#,
        )
        .unwrap();
        match m {
            ClientMessage::Subscribe {
                id,
                channels,
                filter,
                since,
            } => {
                assert_eq!(id.as_deref(), Some("r1"));
                assert_eq!(channels, vec!["issues"]);
                assert!(filter.is_some());
                let since = since.unwrap();
                assert_eq!(since.epoch, None);
                assert_eq!(
                    since.positions,
                    vec![super::super::cursor::Position {
                        topic: "issues.enriched".into(),
                        partition: 0,
                        offset: 120
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_echo_the_request_id_and_say_what_is_wrong() {
        let e =
            ClientMessage::parse(br#"{"type":"subscribe","id":"r9","channels":[]}"#).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("r9"));
        assert!(e.message.contains("channels"));
        let e = ClientMessage::parse(br#"{"type":"dance","id":"r2"}"#).unwrap_err();
        assert_eq!((e.code, e.id.as_deref()), ("bad_request", Some("r2")));
        assert!(ClientMessage::parse(b"not json").is_err());
        let e = ClientMessage::parse(br#"{"type":"subscribe","channels":["a"],"since":{"t/x":1}}"#)
            .unwrap_err();
        assert!(e.message.contains("partition"));
    }
}
