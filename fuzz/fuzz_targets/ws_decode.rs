//! Fuzz `ws::Decoder`: arbitrary bytes, fed in arbitrary chunk splits, with an arbitrary
//! message limit. Properties: no panic; held memory bounded by the limit; every message obeys
//! the codec's promises (UTF-8 text and close reasons, sizes); the messages and the final error
//! do not depend on how the bytes were split (differential against one whole-input decode).
#![no_main]

use bytes::BytesMut;
use fanline::ws::decode::close_code_is_valid;
use fanline::ws::{DecodeError, Decoder, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, Vec<u8>, &[u8])| {
    let (max, splits, wire) = input;
    let max = max as usize;
    let whole = run(max, wire, &[]);
    let chunked = run(max, wire, &splits);
    assert_eq!(whole, chunked);
});

/// Decodes `wire` fed in chunks of sizes cycling through `splits` (all at once if empty).
fn run(max: usize, wire: &[u8], splits: &[u8]) -> (Vec<Message>, Option<DecodeError>) {
    let mut d = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if splits.is_empty() {
            rest.len()
        } else {
            (splits[i % splits.len()] as usize).max(1)
        };
        i += 1;
        let (now, later) = rest.split_at(n.min(rest.len()));
        rest = later;
        buf.extend_from_slice(now);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => {
                    check(&m, max);
                    out.push(m);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(d.decode(&mut buf), Err(e), "errors are sticky");
                    return (out, Some(e));
                }
            }
            assert!(d.buffered() <= max);
        }
    }
    (out, None)
}

fn check(m: &Message, max: usize) {
    match m {
        Message::Text(t) => {
            assert!(t.len() <= max);
            assert!(std::str::from_utf8(t).is_ok());
        }
        Message::Binary(b) => assert!(b.len() <= max),
        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
        Message::Close(Some(c)) => {
            assert!(close_code_is_valid(c.code));
            assert!(std::str::from_utf8(&c.reason).is_ok());
            assert!(c.reason.len() <= 123);
        }
        Message::Close(None) => {}
    }
}
