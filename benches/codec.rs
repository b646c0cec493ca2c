//! Codec microbenchmarks: server frame encoding, client frame decoding (unmask + UTF-8
//! validation), raw unmask throughput. What a shard pays per message, minus the syscalls.
//!
//! `deflate`: the once-per-event `permessage-deflate` compression of a 1 KiB JSON envelope (what
//! an event costs once, however many sockets negotiated compression), and inflating a client's
//! compressed 1 KiB message.
//!
//! Run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fanline::ws::deflate::compressed_frame;
use fanline::ws::extensions::ContextTakeover;
use fanline::ws::mask::{apply_mask, apply_mask_bytewise};
use fanline::ws::{Decoder, OpCode, frame_header, masked_frame, text_frame};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A JSON-ish text payload of exactly `n` bytes (ASCII, so valid UTF-8).
fn json_payload(n: usize) -> String {
    let unit = r#"{"type":"event","channel":"issues","data":{"severity":"high"}}"#;
    unit.repeat(n / unit.len() + 1)[..n].to_string()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for len in [64usize, 1000, 70_000] {
        g.bench_function(format!("frame_header/{len}"), |b| {
            b.iter(|| frame_header(OpCode::Text, black_box(len)))
        });
    }
    for (name, n) in [("64B", 64usize), ("1KiB", 1024)] {
        let p = json_payload(n);
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("text_frame/{name}"), |b| {
            b.iter(|| text_frame(black_box(&p)))
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let cases = [
        ("text/64B", OpCode::Text, json_payload(64).into_bytes()),
        (
            "text/64KiB",
            OpCode::Text,
            json_payload(64 << 10).into_bytes(),
        ),
        ("binary/64KiB", OpCode::Binary, vec![0xa5u8; 64 << 10]),
    ];
    for (name, op, payload) in cases {
        let wire = masked_frame(true, op, &payload, KEY);
        g.throughput(Throughput::Bytes(payload.len() as u64));
        // Fresh buffer per iteration (decode unmasks in place); the copy is in setup, untimed.
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let mut d = Decoder::new(1 << 20);
                    black_box(d.decode(&mut buf).unwrap().unwrap())
                },
                BatchSize::SmallInput,
            )
        });
    }
    // A 64 KiB text message in 16 fragments (copying reassembly + validation across fragments).
    let payload = json_payload(64 << 10).into_bytes();
    let mut wire = Vec::new();
    for (i, piece) in payload.chunks(4096).enumerate() {
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        wire.extend(masked_frame(i == 15, op, piece, KEY));
    }
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("text/64KiB_in_16_fragments", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut d = Decoder::new(1 << 20);
                black_box(d.decode(&mut buf).unwrap().unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for n in [64usize, 64 << 10] {
        let mut buf = vec![0x5au8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("word/{n}"), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 1))
        });
        g.bench_function(format!("bytewise/{n}"), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), KEY, 1))
        });
    }
    g.finish();
}

/// A 1 KiB-ish event envelope with varied values (less repetitive than `json_payload`).
fn event_json_1k() -> String {
    let mut items = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while items.iter().map(|s: &String| s.len() + 1).sum::<usize>() < 900 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.push(format!(
            r#"{{"id":{},"sev":"{}","ts":{},"host":"api-{}"}}"#,
            x % 100_000,
            ["low", "high", "critical"][(x % 3) as usize],
            1_732_280_000_000u64 + x % 1_000_000,
            x % 97
        ));
    }
    format!(
        r#"{{"type":"event","channel":"issues","id":"issues.enriched/3/123456","ts":1732280000000,"data":[{}]}}"#,
        items.join(",")
    )
}

fn deflate(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate");
    let json = event_json_1k();
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("compress_once/1KiB_event", |b| {
        b.iter(|| compressed_frame(OpCode::Text, black_box(json.as_bytes())))
    });
    let f = compressed_frame(OpCode::Text, json.as_bytes());
    let skip = if f[1] & 0x7f == 126 { 4 } else { 2 };
    let mut wire = masked_frame(true, OpCode::Text, &f[skip..], KEY);
    wire[0] |= 0x40;
    g.bench_function("inflate_client_message/1KiB", |b| {
        let mut d = Decoder::with_deflate(1 << 20, ContextTakeover::Reset);
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| d.decode(&mut buf).map(|m| m.is_some()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, encode, decode, unmask, deflate);
criterion_main!(benches);
