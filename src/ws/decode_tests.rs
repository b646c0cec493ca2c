//! Unit tests for `decode.rs`, one per protocol rule, named after the behaviour.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::ws::encode::masked_frame;

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
const MAX: usize = 1 << 16;

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    masked_frame(fin, op, payload, KEY)
}

/// Decodes everything in `bytes` fed at once; returns the messages and the final error.
fn decode_all(bytes: &[u8]) -> (Vec<Message>, Option<DecodeError>) {
    decode_chunked(bytes, bytes.len().max(1), MAX)
}

fn decode_chunked(bytes: &[u8], chunk: usize, max: usize) -> (Vec<Message>, Option<DecodeError>) {
    let mut d = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

#[track_caller]
fn assert_error(bytes: &[u8], want: DecodeError) {
    assert_eq!(decode_all(bytes).1, Some(want));
}

fn text(s: &str) -> Message {
    Message::Text(Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn masked_text_frame_decodes_to_text() {
    let (msgs, err) = decode_all(&frame(true, OpCode::Text, b"Hello"));
    assert_eq!((msgs, err), (vec![text("Hello")], None));
}

#[test]
fn rfc_masked_hello_example_decodes() {
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(decode_all(&wire), (vec![text("Hello")], None));
}

#[test]
fn every_byte_split_yields_the_same_messages() {
    let mut wire = frame(false, OpCode::Text, "héllo ".as_bytes());
    wire.extend(frame(true, OpCode::Ping, b"p"));
    wire.extend(frame(true, OpCode::Continuation, "wörld".as_bytes()));
    wire.extend(frame(true, OpCode::Binary, &[0u8; 300]));
    wire.extend(frame(true, OpCode::Binary, &vec![7u8; 70_000][..MAX - 1]));
    let want = decode_all(&wire);
    assert_eq!(want.1, None);
    assert_eq!(want.0.len(), 4);
    for chunk in [1, 2, 3, 5, 7, 13, 64, 4096] {
        assert_eq!(decode_chunked(&wire, chunk, MAX), want, "chunk {chunk}");
    }
}

#[test]
fn partial_frame_returns_none_and_keeps_bytes() {
    let wire = frame(true, OpCode::Binary, b"abcdef");
    let mut d = Decoder::new(MAX);
    let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&wire[wire.len() - 1..]);
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Message::Binary(Bytes::from_static(b"abcdef"))))
    );
    assert!(buf.is_empty());
}

#[test]
fn decoder_allocates_nothing_for_single_frames() {
    let mut d = Decoder::new(MAX);
    let mut buf = BytesMut::from(&frame(true, OpCode::Text, b"x")[..]);
    d.decode(&mut buf).unwrap();
    assert_eq!(d.buffered(), 0);
}

#[test]
fn unmasked_frame_is_rejected() {
    assert_error(&[0x81, 0x01, b'a'], DecodeError::UnmaskedFrame);
}

#[test]
fn reserved_bits_are_rejected() {
    for rsv in [0x40, 0x20, 0x10] {
        let mut f = frame(true, OpCode::Text, b"a");
        f[0] |= rsv;
        assert_error(&f, DecodeError::ReservedBits);
    }
}

#[test]
fn reserved_opcodes_are_rejected() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_error(&[0x80 | op, 0x80, 1, 2, 3, 4], DecodeError::ReservedOpcode);
    }
}

#[test]
fn control_frame_over_125_bytes_is_rejected() {
    assert_error(
        &frame(true, OpCode::Ping, &[0; 126]),
        DecodeError::ControlTooLong,
    );
}

#[test]
fn control_frame_of_125_bytes_is_accepted() {
    let (msgs, err) = decode_all(&frame(true, OpCode::Ping, &[9; 125]));
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::Ping(Bytes::from(vec![9; 125]))]);
}

#[test]
fn fragmented_control_frame_is_rejected() {
    assert_error(
        &frame(false, OpCode::Ping, b"x"),
        DecodeError::FragmentedControl,
    );
}

#[test]
fn continuation_without_message_is_rejected() {
    assert_error(
        &frame(true, OpCode::Continuation, b"x"),
        DecodeError::UnexpectedContinuation,
    );
}

#[test]
fn new_data_frame_inside_fragmented_message_is_rejected() {
    let mut wire = frame(false, OpCode::Text, b"a");
    wire.extend(frame(true, OpCode::Text, b"b"));
    assert_error(&wire, DecodeError::ExpectedContinuation);
}

#[test]
fn fragments_are_reassembled() {
    let mut wire = frame(false, OpCode::Binary, b"ab");
    wire.extend(frame(false, OpCode::Continuation, b""));
    wire.extend(frame(true, OpCode::Continuation, b"cd"));
    let (msgs, err) = decode_all(&wire);
    assert_eq!(err, None);
    assert_eq!(msgs, vec![Message::Binary(Bytes::from_static(b"abcd"))]);
}

#[test]
fn control_frames_interleave_with_fragments() {
    let mut wire = frame(false, OpCode::Text, b"fr");
    wire.extend(frame(true, OpCode::Ping, b"p1"));
    wire.extend(frame(false, OpCode::Continuation, b"ag"));
    wire.extend(frame(true, OpCode::Pong, b"p2"));
    wire.extend(frame(true, OpCode::Continuation, b"ment"));
    let (msgs, err) = decode_all(&wire);
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        vec![
            Message::Ping(Bytes::from_static(b"p1")),
            Message::Pong(Bytes::from_static(b"p2")),
            text("fragment"),
        ]
    );
}

#[test]
fn invalid_utf8_text_is_rejected() {
    assert_error(
        &frame(true, OpCode::Text, &[0xce, 0xba, 0xff]),
        DecodeError::InvalidUtf8,
    );
}

#[test]
fn text_ending_inside_a_character_is_rejected() {
    assert_error(
        &frame(true, OpCode::Text, &[b'a', 0xe2, 0x82]),
        DecodeError::InvalidUtf8,
    );
}

#[test]
fn utf8_character_split_across_fragments_is_accepted() {
    let euro = "€".as_bytes();
    let mut wire = frame(false, OpCode::Text, &euro[..1]);
    wire.extend(frame(false, OpCode::Continuation, &euro[1..2]));
    wire.extend(frame(true, OpCode::Continuation, &euro[2..]));
    assert_eq!(decode_all(&wire), (vec![text("€")], None));
}

#[test]
fn invalid_utf8_fails_fast_before_the_message_ends() {
    // First fragment is already invalid: error without waiting for the final fragment.
    let wire = frame(false, OpCode::Text, &[b'a', 0xc0, 0xaf]);
    assert_error(&wire, DecodeError::InvalidUtf8);
}

#[test]
fn invalid_utf8_fails_fast_inside_a_partial_frame() {
    // Only the first 8 payload bytes of a 1000-byte frame have arrived.
    let mut payload = vec![b'a'; 1000];
    payload[4] = 0xff;
    let wire = frame(true, OpCode::Text, &payload);
    let mut d = Decoder::new(MAX);
    let mut buf = BytesMut::from(&wire[..8 + 8]);
    assert_eq!(d.decode(&mut buf), Err(DecodeError::InvalidUtf8));
}

#[test]
fn binary_is_not_utf8_validated() {
    let (msgs, err) = decode_all(&frame(true, OpCode::Binary, &[0xff, 0xfe]));
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        vec![Message::Binary(Bytes::from_static(&[0xff, 0xfe]))]
    );
}

#[test]
fn empty_close_is_accepted() {
    assert_eq!(
        decode_all(&frame(true, OpCode::Close, b"")),
        (vec![Message::Close(None)], None)
    );
}

#[test]
fn close_with_code_and_reason_is_decoded() {
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice("bye ✓".as_bytes());
    let (msgs, err) = decode_all(&frame(true, OpCode::Close, &p));
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        vec![Message::Close(Some(CloseFrame {
            code: 1000,
            reason: Bytes::copy_from_slice("bye ✓".as_bytes())
        }))]
    );
}

#[test]
fn one_byte_close_payload_is_rejected() {
    assert_error(
        &frame(true, OpCode::Close, &[3]),
        DecodeError::BadClosePayload,
    );
}

#[test]
fn close_codes_follow_rfc_registry() {
    for ok in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let (msgs, err) = decode_all(&frame(true, OpCode::Close, &ok.to_be_bytes()));
        assert_eq!(err, None, "code {ok}");
        assert_eq!(msgs.len(), 1);
    }
    for bad in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        assert_error(
            &frame(true, OpCode::Close, &bad.to_be_bytes()),
            DecodeError::InvalidCloseCode,
        );
    }
}

#[test]
fn close_reason_with_invalid_utf8_is_rejected() {
    assert_error(
        &frame(true, OpCode::Close, &[0x03, 0xe8, 0xff]),
        DecodeError::InvalidUtf8,
    );
}

#[test]
fn declared_length_over_limit_is_too_big_before_payload_arrives() {
    let wire = frame(true, OpCode::Binary, &[0; 200]);
    let mut d = Decoder::new(100);
    let mut buf = BytesMut::from(&wire[..4]); // header only, no mask key yet
    assert_eq!(d.decode(&mut buf), Err(DecodeError::TooBig));
}

#[test]
fn length_2_pow_63_is_too_big() {
    let mut wire = vec![0x82, 0xFF];
    wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
    wire.extend_from_slice(&KEY);
    assert_error(&wire, DecodeError::TooBig);
    let mut wire = vec![0x82, 0xFF];
    wire.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_error(&wire, DecodeError::TooBig);
}

#[test]
fn fragments_summing_past_limit_are_too_big() {
    let mut wire = frame(false, OpCode::Binary, &[0; 60]);
    wire.extend(frame(false, OpCode::Continuation, &[0; 40]));
    wire.extend(frame(true, OpCode::Continuation, &[0; 1]));
    let (msgs, err) = decode_chunked(&wire, wire.len(), 100);
    assert_eq!((msgs.len(), err), (0, Some(DecodeError::TooBig)));
}

#[test]
fn message_exactly_at_limit_is_accepted() {
    let mut wire = frame(false, OpCode::Binary, &[0; 60]);
    wire.extend(frame(true, OpCode::Continuation, &[0; 40]));
    let (msgs, err) = decode_chunked(&wire, 7, 100);
    assert_eq!((msgs.len(), err), (1, None));
}

#[test]
fn errors_are_sticky() {
    let mut d = Decoder::new(MAX);
    let mut buf = BytesMut::from(&[0x81u8, 0x01, b'a'][..]);
    assert_eq!(d.decode(&mut buf), Err(DecodeError::UnmaskedFrame));
    let mut buf = BytesMut::from(&frame(true, OpCode::Text, b"ok")[..]);
    assert_eq!(d.decode(&mut buf), Err(DecodeError::UnmaskedFrame));
}

#[test]
fn close_codes_map_to_rfc_codes() {
    assert_eq!(DecodeError::InvalidUtf8.close_code(), 1007);
    assert_eq!(DecodeError::TooBig.close_code(), 1009);
    assert_eq!(DecodeError::UnmaskedFrame.close_code(), 1002);
    assert_eq!(DecodeError::InvalidCloseCode.close_code(), 1002);
}

#[test]
fn control_frames_do_not_count_against_a_small_message_limit() {
    let wire = frame(true, OpCode::Ping, &[1; 100]);
    for chunk in [1, 2, 3, wire.len()] {
        let (msgs, err) = decode_chunked(&wire, chunk, 10);
        assert_eq!((msgs.len(), err), (1, None), "chunk {chunk}");
    }
}

// ---- permessage-deflate (RSV1) ----

use crate::ws::deflate::compressed_frame;
use crate::ws::extensions::ContextTakeover;

/// The raw DEFLATE body of `payload` as the server compressor makes it.
fn deflated(payload: &[u8]) -> Vec<u8> {
    let f = compressed_frame(OpCode::Binary, payload);
    let skip = match f[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    f[skip..].to_vec()
}

/// A masked client frame with RSV1 set when `rsv1`.
fn rsv_frame(fin: bool, rsv1: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(fin, op, payload);
    if rsv1 {
        f[0] |= 0x40;
    }
    f
}

fn decode_deflate(bytes: &[u8], chunk: usize, max: usize) -> (Vec<Message>, Option<DecodeError>) {
    let mut d = Decoder::with_deflate(max, ContextTakeover::Keep);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

#[test]
fn compressed_text_message_is_inflated_in_every_chunking() {
    let text = "héllo compressed world ".repeat(40);
    let body = deflated(text.as_bytes());
    let mut wire = rsv_frame(true, true, OpCode::Text, &body);
    wire.extend(frame(true, OpCode::Text, b"plain too"));
    for chunk in [1, 3, 64, wire.len()] {
        let (msgs, err) = decode_deflate(&wire, chunk, MAX);
        assert_eq!(err, None, "chunk {chunk}");
        assert_eq!(
            msgs,
            vec![
                Message::Text(Bytes::from(text.clone())),
                Message::Text(Bytes::from_static(b"plain too"))
            ]
        );
    }
}

#[test]
fn compressed_message_across_continuation_frames() {
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let body = deflated(&data);
    let (a, rest) = body.split_at(body.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut wire = rsv_frame(false, true, OpCode::Binary, a);
    wire.extend(frame(true, OpCode::Ping, b"p"));
    wire.extend(frame(false, OpCode::Continuation, b));
    wire.extend(frame(true, OpCode::Continuation, c));
    let (msgs, err) = decode_deflate(&wire, 5, MAX);
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        vec![
            Message::Ping(Bytes::from_static(b"p")),
            Message::Binary(Bytes::from(data))
        ]
    );
}

#[test]
fn rsv1_is_a_protocol_error_without_the_extension_or_off_the_first_frame() {
    let body = deflated(b"x");
    assert_error(
        &rsv_frame(true, true, OpCode::Text, &body),
        DecodeError::ReservedBits,
    );
    let ping = rsv_frame(true, true, OpCode::Ping, b"");
    assert_eq!(
        decode_deflate(&ping, 64, MAX).1,
        Some(DecodeError::ReservedBits)
    );
    let mut cont = rsv_frame(false, true, OpCode::Text, &body);
    cont.extend(rsv_frame(true, true, OpCode::Continuation, b""));
    assert_eq!(
        decode_deflate(&cont, 64, MAX).1,
        Some(DecodeError::ReservedBits)
    );
    let mut rsv2 = frame(true, OpCode::Text, b"a");
    rsv2[0] |= 0x20;
    assert_eq!(
        decode_deflate(&rsv2, 64, MAX).1,
        Some(DecodeError::ReservedBits)
    );
}

#[test]
fn decompression_bomb_is_too_big_after_inflation() {
    let body = deflated(&vec![b'a'; 4 << 20]);
    assert!(body.len() < 8 << 10);
    let wire = rsv_frame(true, true, OpCode::Text, &body);
    let (msgs, err) = decode_deflate(&wire, 4096, MAX);
    assert!(msgs.is_empty());
    assert_eq!(err, Some(DecodeError::TooBig));
    assert_eq!(DecodeError::TooBig.close_code(), 1009);
    // Exactly at the limit is fine.
    let ok = rsv_frame(true, true, OpCode::Text, &deflated(&vec![b'a'; MAX]));
    assert_eq!(decode_deflate(&ok, 4096, MAX).0.len(), 1);
}

#[test]
fn invalid_utf8_or_corrupt_deflate_in_a_compressed_message() {
    let bad = rsv_frame(true, true, OpCode::Text, &deflated(&[b'a', 0xff, b'b']));
    assert_eq!(
        decode_deflate(&bad, 64, MAX).1,
        Some(DecodeError::InvalidUtf8)
    );
    let corrupt = rsv_frame(true, true, OpCode::Binary, &[0xff; 10]);
    assert_eq!(
        decode_deflate(&corrupt, 64, MAX).1,
        Some(DecodeError::BadDeflate)
    );
    assert_eq!(DecodeError::BadDeflate.close_code(), 1007);
}

#[test]
fn an_idle_deflate_decoder_holds_no_inflater() {
    // The inflate state is ~43 KiB: a socket that never sends a compressed message must not
    // pay for it, and with client_no_context_takeover it is given back after each message.
    let text = "inflate me once ".repeat(20);
    let wire = rsv_frame(true, true, OpCode::Text, &deflated(text.as_bytes()));
    for (context, kept) in [
        (ContextTakeover::Reset, false),
        (ContextTakeover::Keep, true),
    ] {
        let mut d = Decoder::with_deflate(MAX, context);
        let mut buf = BytesMut::from(&frame(true, OpCode::Text, b"plain")[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Message::Text(Bytes::from_static(b"plain"))))
        );
        assert!(
            d.inflater.is_none(),
            "{context:?}: none before a compressed message"
        );
        buf.extend_from_slice(&wire);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Message::Text(Bytes::from(text.clone()))))
        );
        assert_eq!(d.inflater.is_some(), kept, "{context:?} after a message");
    }
}
