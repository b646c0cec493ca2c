use super::*;
use serde_json::json;

fn resolver(topics: &[&str]) -> impl Fn(u32) -> Option<Arc<str>> {
    let topics: Vec<Arc<str>> = topics.iter().map(|t| Arc::from(*t)).collect();
    move |h| topics.iter().find(|t| topic_hash(t) == h).cloned()
}

fn pos(t: &str, p: i32, o: i64) -> Position {
    Position {
        topic: t.into(),
        partition: p,
        offset: o,
    }
}

#[test]
fn websocket_since_with_epoch() {
    let v = json!({"epoch":"00000000000000ff","t/1":7,"t/0":5});
    let c = Cursor::from_json(v.as_object().unwrap()).unwrap();
    assert_eq!(c.epoch, Some(255));
    assert_eq!(c.positions, vec![pos("t", 0, 5), pos("t", 1, 7)]);
    for bad in [
        json!({"t/x":1}),
        json!({"t":1}),
        json!({"t/0":"1"}),
        json!({"epoch":5}),
        json!({"epoch":"zz"}),
        json!({"t/0":-2}),
        json!({"/0":1}),
    ] {
        assert!(
            Cursor::from_json(bad.as_object().unwrap()).is_err(),
            "{bad}"
        );
    }
    let mut big = Map::new();
    for i in 0..=MAX_POSITIONS {
        big.insert(format!("t/{i}"), json!(1));
    }
    let e = Cursor::from_json(&big).unwrap_err();
    assert!(e.contains("more than 1024"), "{e}");
}

#[test]
fn query_form_round_trips_and_is_bounded() {
    let c = Cursor::parse_query("epoch:2a,x.y/2:9,x.y/0:-1").unwrap();
    assert_eq!(c.epoch, Some(42));
    assert_eq!(c.positions, vec![pos("x.y", 0, -1), pos("x.y", 2, 9)]);
    assert_eq!(c.to_query(), "epoch:000000000000002a,x.y/0:-1,x.y/2:9");
    assert_eq!(Cursor::parse_query(&c.to_query()).unwrap(), c);
    assert!(Cursor::parse_query("t:5").is_err());
    assert!(
        Cursor::parse_query("t/0:5,t/0:6")
            .unwrap_err()
            .contains("twice")
    );
    let many: Vec<String> = (0..=MAX_POSITIONS).map(|i| format!("t/{i}:1")).collect();
    assert!(Cursor::parse_query(&many.join(",")).is_err());
}

#[test]
fn token_round_trips_every_partition() {
    let t: Arc<str> = "fanline.events".into();
    let u: Arc<str> = "other".into();
    let mut s = StreamPosition::new(
        0xdead_beef_0123_4567,
        [(t.clone(), 2, 100), (t.clone(), 0, 7), (u.clone(), 5, -1)],
    );
    s.advance(&t, 1, 3);
    s.advance(&t, 0, 6); // older: no change
    s.advance(&t, 2, 1_000_000_000_000);
    let tok = s.token();
    assert!(
        tok.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let mut c = Cursor::parse_event_id(&tok).unwrap();
    assert_eq!(c.unresolved.len(), 4);
    c.resolve(resolver(&["fanline.events", "other"]));
    assert_eq!(c.epoch, Some(0xdead_beef_0123_4567));
    assert_eq!(
        c.positions,
        vec![
            pos("fanline.events", 0, 7),
            pos("fanline.events", 1, 3),
            pos("fanline.events", 2, 1_000_000_000_000),
            pos("other", 5, -1),
        ]
    );
    // a topic not served here is left out; the same token works as ?since=
    let mut c = Cursor::parse_query(&tok).unwrap();
    c.resolve(resolver(&["other"]));
    assert_eq!(c.positions, vec![pos("other", 5, -1)]);
}

#[test]
fn legacy_event_id_is_one_partition() {
    let c = Cursor::parse_event_id("x.y/2/9").unwrap();
    assert_eq!((c.epoch, c.positions), (None, vec![pos("x.y", 2, 9)]));
    assert!(c.unresolved.is_empty());
    assert!(Cursor::parse_event_id("x/y").is_err());
}

#[test]
fn hostile_tokens_are_refused_without_panic() {
    for bad in ["", "nope!", "AQ", "AgAAAAAAAAAA", &"A".repeat(100_000)] {
        assert!(Cursor::parse_event_id(bad).is_err(), "{bad:.20}");
    }
    // every prefix of a valid token, and every single-byte corruption, parses or errs
    let t: Arc<str> = "t".into();
    let tok = StreamPosition::new(1, (0..20).map(|p| (t.clone(), p, 1000 + i64::from(p)))).token();
    let raw = B64.decode(&tok).unwrap();
    for n in 0..raw.len() {
        let _ = decode_token(&B64.encode(&raw[..n]));
        for b in [0u8, 0x7f, 0x80, 0xff] {
            let mut x = raw.clone();
            x[n] = b;
            let _ = decode_token(&B64.encode(&x));
        }
    }
    // a varint that never ends, a partition count past the bound
    let mut raw = vec![TOKEN_VERSION];
    raw.extend_from_slice(&[0; 8]);
    raw.extend_from_slice(&[1, 2, 3, 4]);
    raw.extend_from_slice(&[0xff; 11]);
    assert!(decode_token(&B64.encode(&raw)).is_err());
    let mut raw = vec![TOKEN_VERSION];
    raw.extend_from_slice(&[0; 12]);
    put_varint(&mut raw, MAX_POSITIONS as u64 + 1);
    assert!(decode_token(&B64.encode(&raw)).is_err());
}

/// The sizes README quotes: one topic, offsets around 10^6, spread by up to ~10^4.
#[test]
fn token_sizes() {
    let t: Arc<str> = "issues.enriched".into();
    let size = |n: i32| {
        StreamPosition::new(
            7,
            (0..n).map(|p| (t.clone(), p, 1_000_000 + i64::from((p * 7919) % 10_000))),
        )
        .token()
        .len()
    };
    let (s3, s12, s100) = (size(3), size(12), size(100));
    eprintln!("token sizes: 3 → {s3}, 12 → {s12}, 100 → {s100} characters");
    assert!(s3 <= 40, "{s3}");
    assert!(s12 <= 90, "{s12}");
    assert!(s100 <= 600, "{s100}");
}

#[test]
fn epoch_and_hashes_are_stable() {
    assert_eq!(epoch_str(0xab), "00000000000000ab");
    assert_eq!(parse_epoch("00000000000000ab").unwrap(), 0xab);
    assert!(parse_epoch("").is_err() && parse_epoch("12345678901234567").is_err());
    // FNV-1a reference values
    assert_eq!(topic_hash(""), 0x811c_9dc5);
    assert_eq!(topic_hash("a"), 0xe40c_292c);
    assert_eq!(hash64("a"), 0xaf63_dc4c_8601_ec8c);
}
