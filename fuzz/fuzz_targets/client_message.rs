//! `protocol::ClientMessage::parse` on arbitrary bytes; a subscribe's filter is compiled with
//! `Filter::parse` and, when valid, matched against a fixed event. Property: no panic, and the
//! parsed message obeys the documented limits.
#![no_main]

use fanline::protocol::client::MAX_CHANNEL_LEN;
use fanline::protocol::filter::MAX_CLAUSES;
use fanline::protocol::{ClientMessage, Filter};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::LazyLock;

static EVENT: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "severity": "high",
        "count": 3,
        "ok": true,
        "none": null,
        "tags": ["a", "b"],
        "a/b": "slash",
        "m~n": "tilde",
        "meta": {"component": "api", "region": "eu", "n": [1, 2.5, -3]},
    })
});

fuzz_target!(|data: &[u8]| {
    let channels = match ClientMessage::parse(data) {
        Ok(ClientMessage::Subscribe { channels, filter, .. }) => {
            if let Some(f) = filter {
                assert!(f.is_object());
                if let Ok(filter) = Filter::parse(&f) {
                    assert!(f.as_object().unwrap().len() <= MAX_CLAUSES);
                    let _ = filter.matches(&EVENT);
                    let both = filter.clone().and(&filter);
                    assert_eq!(both.matches(&EVENT), filter.matches(&EVENT));
                }
            }
            channels
        }
        Ok(ClientMessage::Unsubscribe { channels, .. }) => channels,
        Ok(ClientMessage::Ping { .. }) | Err(_) => return,
    };
    assert!(!channels.is_empty());
    assert!(channels.iter().all(|c| !c.is_empty() && c.len() <= MAX_CHANNEL_LEN));
});
