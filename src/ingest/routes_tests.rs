//! Unit tests of `routes.rs`: templates, record → event, bad records, raw routes.
use super::*;

fn route_cfg(topic: &str, channel: &str) -> RouteConfig {
    RouteConfig {
        topic: topic.into(),
        channel: channel.into(),
        ..Default::default()
    }
}

fn rec<'a>(
    topic: &'a str,
    value: &'a [u8],
    headers: &'a [(&'a str, &'a [u8])],
) -> Record<'a, [(&'a str, &'a [u8])]> {
    Record {
        topic,
        partition: 2,
        offset: 17,
        ts_ms: Some(1_700_000_000_000),
        key: Some(b"k1"),
        value: Some(value),
        headers: Some(headers),
    }
}

fn json(ev: &Event) -> serde_json::Value {
    serde_json::from_slice(&ev.json()).unwrap()
}

#[test]
fn template_parses_all_part_kinds() {
    let p = parse_template("a:{/x/y}-{key}.{header:h}{{z}}").unwrap();
    assert_eq!(
        p,
        vec![
            Part::Lit("a:".into()),
            Part::Pointer("/x/y".into()),
            Part::Lit("-".into()),
            Part::Key,
            Part::Lit(".".into()),
            Part::Header("h".into()),
            Part::Lit("{z}".into()),
        ]
    );
    for bad in ["", "a{", "a}", "{foo}", "{header:}"] {
        assert!(parse_template(bad).is_err(), "{bad}");
    }
}

#[test]
fn default_route_takes_channel_and_metadata_from_headers() {
    let mut r = Router::new(Routes::compile(&[], "fanline.events").unwrap());
    let h: &[(&str, &[u8])] = &[
        ("channel", b"news"),
        ("event-type", b"created"),
        ("correlation-id", b"c-9"),
    ];
    let ev = r.route(&rec("fanline.events", br#"{"a":1}"#, h)).unwrap();
    assert_eq!(&*ev.channel, "news");
    let v = json(&ev);
    assert_eq!(v["id"], "fanline.events/2/17");
    assert_eq!(v["ts"], 1_700_000_000_000i64);
    assert_eq!(v["event_type"], "created");
    assert_eq!(v["correlation_id"], "c-9");
    assert_eq!(v["data"]["a"], 1);
    assert_eq!(ev.data["a"], 1);
}

#[test]
fn template_from_pointer_key_and_header() {
    let mut cfg = route_cfg("t", "p:{/sym}:{/n}:{key}:{header:x}");
    cfg.event_type = Some("/type".into());
    cfg.correlation_id = Some("header:cid".into());
    let mut r = Router::new(Routes::compile(&[cfg], "fanline.events").unwrap());
    let h: &[(&str, &[u8])] = &[("x", b"hx"), ("cid", b"c1")];
    let ev = r
        .route(&rec("t", br#"{"sym":"AAPL","n":7,"type":"tick"}"#, h))
        .unwrap();
    assert_eq!(&*ev.channel, "p:AAPL:7:k1:hx");
    let v = json(&ev);
    assert_eq!(v["event_type"], "tick");
    assert_eq!(v["correlation_id"], "c1");
}

#[test]
fn bad_records_are_errors_not_panics() {
    let mut r =
        Router::new(Routes::compile(&[route_cfg("t", "c:{/sym}")], "fanline.events").unwrap());
    let h: &[(&str, &[u8])] = &[];
    assert_eq!(
        r.route(&rec("t", b"not json", h)).unwrap_err(),
        RouteError::NotJson
    );
    assert_eq!(
        r.route(&rec("t", br#"{"other":1}"#, h)).unwrap_err(),
        RouteError::MissingField
    );
    assert_eq!(
        r.route(&rec("t", br#"{"sym":{"o":1}}"#, h)).unwrap_err(),
        RouteError::MissingField
    );
    assert_eq!(
        r.route(&rec("nope", b"{}", h)).unwrap_err(),
        RouteError::NoRoute
    );
    // default route without the channel header
    assert_eq!(
        r.route(&rec("fanline.events", b"{}", h)).unwrap_err(),
        RouteError::MissingField
    );
    let mut none = rec("t", b"", h);
    none.value = None;
    assert_eq!(r.route(&none).unwrap_err(), RouteError::NotJson);
    // invalid UTF-8 and truncated JSON
    for v in [&b"\xff\xfe"[..], b"{\"sym\":", b"[1,2", b"\"abc"] {
        assert!(r.route(&rec("t", v, h)).is_err());
    }
}

#[test]
fn raw_route_delivers_non_json_as_a_string() {
    let mut cfg = route_cfg("logs", "logs");
    cfg.raw = true;
    let mut r = Router::new(Routes::compile(&[cfg], "fanline.events").unwrap());
    let h: &[(&str, &[u8])] = &[];
    let ev = r.route(&rec("logs", b"plain \"text\"", h)).unwrap();
    assert_eq!(json(&ev)["data"], "plain \"text\"");
    let ev = r.route(&rec("logs", br#"{"j":true}"#, h)).unwrap();
    assert_eq!(json(&ev)["data"]["j"], true);
}

#[test]
fn publish_target_prefers_fixed_routes() {
    let routes =
        Routes::compile(&[route_cfg("issues.enriched", "issues")], "fanline.events").unwrap();
    assert_eq!(
        routes.publish_target("issues"),
        ("issues.enriched".into(), false)
    );
    assert_eq!(
        routes.publish_target("other"),
        ("fanline.events".into(), true)
    );
    assert_eq!(routes.topics().len(), 2);
    assert!(Routes::compile(&[route_cfg("a", "x"), route_cfg("a", "y")], "d").is_err());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut r = Router::new(
        Routes::compile(
            &[
                route_cfg("t", "c:{/a}:{key}:{header:h}"),
                RouteConfig {
                    raw: true,
                    ..route_cfg("raw", "r:{key}")
                },
            ],
            "fanline.events",
        )
        .unwrap(),
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = br#"{}[]":,a1\ .-e/tu"#;
    for i in 0..20_000 {
        let len = (next() % 40) as usize;
        let v: Vec<u8> = (0..len)
            .map(|_| {
                let n = next();
                if n % 4 == 0 {
                    n as u8
                } else {
                    alphabet[(n >> 8) as usize % alphabet.len()]
                }
            })
            .collect();
        let key: Vec<u8> = (0..(next() % 4)).map(|_| next() as u8).collect();
        let h: &[(&str, &[u8])] = &[("h", &key), ("channel", &v)];
        let topic = ["t", "raw", "fanline.events"][i % 3];
        let rec = Record {
            topic,
            partition: 0,
            offset: i as i64,
            ts_ms: None,
            key: Some(&key),
            value: Some(&v),
            headers: Some(h),
        };
        if let Ok(ev) = r.route(&rec) {
            // whatever got through is a valid envelope
            let _: serde_json::Value = serde_json::from_slice(&ev.json()).unwrap();
        }
    }
}

#[test]
fn channel_patterns_say_which_topics_carry_a_channel() {
    let routes = Routes::compile(
        &[
            route_cfg("issues.enriched", "issues"),
            route_cfg("pred", "predictions:{/symbol}"),
        ],
        "fanline.events",
    )
    .unwrap();
    let pats = routes.channel_patterns();
    let carries = |topic: &str, ch: &str| pats.iter().any(|(t, p)| &**t == topic && p.matches(ch));
    assert!(carries("issues.enriched", "issues"));
    assert!(!carries("issues.enriched", "issues2"));
    assert!(carries("pred", "predictions:AAPL"));
    assert!(!carries("pred", "issues"));
    assert!(
        carries("fanline.events", "anything"),
        "the default route reads a header"
    );
}
