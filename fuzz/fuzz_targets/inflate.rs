//! The `permessage-deflate` inbound path: arbitrary bytes as client frames through
//! `Decoder::with_deflate` (first byte: context takeover and chunk size), plus a round trip of
//! the same bytes through the per-event compressor and the inflater. Properties: no panic; a
//! message never exceeds the limit after inflation (memory stays bounded: `-malloc_limit_mb`);
//! whatever the server compresses inflates back to itself.
#![no_main]

use bytes::BytesMut;
use fanline::ws::deflate::{Inflater, compressed_frame};
use fanline::ws::extensions::ContextTakeover;
use fanline::ws::{Decoder, Message, OpCode};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let context = if mode & 1 == 0 { ContextTakeover::Keep } else { ContextTakeover::Reset };
    let chunk = usize::from(mode >> 1).max(1);
    let mut d = Decoder::with_deflate(MAX, context);
    let mut buf = BytesMut::new();
    'feed: for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(Message::Text(m) | Message::Binary(m))) => assert!(m.len() <= MAX),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }

    let f = compressed_frame(OpCode::Binary, rest);
    let skip = match f[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut inf = Inflater::new(context);
    let mut out = Vec::new();
    inf.frame(&f[skip..], &mut out, rest.len()).expect("own output inflates");
    inf.finish(&mut out, rest.len()).expect("own output inflates");
    assert_eq!(out, rest);
});
