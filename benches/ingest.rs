//! Record → `Event` cost on the ingest thread: route lookup, simd-json parse, channel template,
//! envelope encode (one `Bytes` frame). No Kafka I/O: see `examples/ingest_throughput.rs` for
//! the whole thread against a mock cluster.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fanline::ingest::RouteConfig;
use fanline::ingest::routes::{Record, Router, Routes};

fn payload(target: usize) -> Vec<u8> {
    let mut v = br#"{"type":"tick","symbol":"AAPL","price":187.25,"seq":123456,"note":""#.to_vec();
    while v.len() + 2 < target {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

fn bench(c: &mut Criterion) {
    let routes = Routes::compile(
        &[RouteConfig {
            topic: "prices".into(),
            channel: "prices:{/symbol}".into(),
            event_type: Some("/type".into()),
            correlation_id: Some("header:correlation-id".into()),
            raw: false,
        }],
        "fanline.events",
    )
    .expect("routes");
    let mut router = Router::new(routes);
    let headers: &[(&str, &[u8])] = &[("correlation-id", b"c-42"), ("channel", b"demo")];
    let mut g = c.benchmark_group("record_to_event");
    for (name, size) in [("small_100B", 100), ("1KiB", 1024)] {
        let value = payload(size);
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            let mut offset = 0i64;
            b.iter(|| {
                offset += 1;
                let rec = Record {
                    topic: "prices",
                    partition: 1,
                    offset,
                    ts_ms: Some(1_732_280_000_000),
                    key: Some(b"AAPL"),
                    value: Some(&value),
                    headers: Some(headers),
                };
                black_box(router.route(black_box(&rec)).expect("routes"))
            })
        });
        g.bench_function(format!("{name}_parse_json_only"), |b| {
            let mut scratch = Vec::new();
            b.iter(|| black_box(fanline::ingest::parse_json(black_box(&value), &mut scratch)))
        });
        g.bench_function(format!("{name}_serde_json_from_slice_only"), |b| {
            b.iter(|| {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(
                    &value,
                )))
            })
        });
        let value = payload(size);
        g.bench_function(format!("{name}_default_route_header_channel"), |b| {
            let mut offset = 0i64;
            b.iter(|| {
                offset += 1;
                let rec = Record {
                    topic: "fanline.events",
                    partition: 0,
                    offset,
                    ts_ms: Some(1_732_280_000_000),
                    key: None,
                    value: Some(&value),
                    headers: Some(headers),
                };
                black_box(router.route(black_box(&rec)).expect("routes"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
