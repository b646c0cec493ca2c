use super::*;

fn ev(offset: i64, size: usize) -> Arc<Event> {
    let data = format!("\"{}\"", "x".repeat(size));
    crate::event::test_event(offset, &data, serde_json::Value::Null)
}

fn offsets(o: &Outbox) -> Vec<i64> {
    o.iter()
        .filter_map(|f| match f {
            Frame::Event(e) => Some(e.offset),
            _ => None,
        })
        .collect()
}

fn order(o: &Outbox) -> Vec<String> {
    o.iter()
        .map(|f| match f {
            Frame::Event(e) => format!("e{}", e.offset),
            Frame::Control(b) => String::from_utf8_lossy(&b).into_owned(),
        })
        .collect()
}

#[test]
fn overflow_drops_oldest_events_and_reports_them() {
    let mut o = Outbox::default();
    o.push_control(Bytes::from_static(b"ack"));
    let mut dropped = Vec::new();
    for i in 0..5 {
        o.push_event(&ev(i, 10), 3, 1 << 20, |e| dropped.push(e.offset));
    }
    assert_eq!(dropped, vec![0, 1]);
    assert_eq!(offsets(&o), vec![2, 3, 4]);
    assert!(matches!(o.iter().next(), Some(Frame::Control(_))));
}

#[test]
fn control_goes_ahead_of_queued_events_but_behind_a_torn_one() {
    let mut o = Outbox::default();
    for i in 0..3 {
        o.push_event(&ev(i, 10), 100, 1 << 20, |_| {});
    }
    o.push_control(Bytes::from_static(b"ping"));
    assert_eq!(order(&o), ["ping", "e0", "e1", "e2"]);
    o.consume(4 + 3); // the ping and 3 bytes of e0
    assert_eq!(o.control_written(), 1);
    o.push_control(Bytes::from_static(b"close"));
    assert_eq!(order(&o), ["e0", "close", "e1", "e2"]);
    let mut dropped = Vec::new();
    o.clear_events(|e| dropped.push(e.offset));
    assert_eq!(dropped, vec![1, 2], "the torn head (e0) is kept");
    assert_eq!(order(&o), ["e0", "close"]);
    let all = o.bytes();
    o.consume(all);
    assert!(o.is_empty());
    assert_eq!(
        (o.events_written(), o.control_written(), o.bytes()),
        (1, 2, 0)
    );
}

#[test]
fn replies_are_bounded_server_frames_are_not() {
    let mut o = Outbox::default();
    for _ in 0..CONTROL_MAX_FRAMES {
        assert_eq!(o.push_reply(Bytes::from_static(b"pong")), Ok(()));
    }
    assert_eq!(o.push_reply(Bytes::from_static(b"pong")), Err(ControlFull));
    o.push_close(Bytes::from_static(b"close"));
    o.consume(4);
    assert_eq!(o.push_reply(Bytes::from_static(b"pong")), Ok(()));
    let big = Bytes::from(vec![0u8; CONTROL_MAX_BYTES]);
    assert_eq!(o.push_reply(big), Err(ControlFull));
}

#[test]
fn gaps_merge_while_unwritten_and_stay_ahead_of_close() {
    let mut o = Outbox::default();
    let enc = |c: &str, n: u64| Bytes::from(format!("gap:{c}:{n}"));
    o.push_event(&ev(0, 10), 100, 1 << 20, |_| {});
    assert!(o.push_gap("c".into(), 2, enc));
    o.push_close(Bytes::from_static(b"close"));
    assert!(!o.push_gap("c".into(), 3, enc));
    assert!(o.push_gap("d".into(), 1, enc));
    assert_eq!(order(&o), ["gap:c:5", "gap:d:1", "close", "e0"]);
    let all = o.bytes();
    assert_eq!(all, 7 + 7 + 5 + ev(0, 10).ws_frame.len());
    o.consume(all);
    assert_eq!(o.bytes(), 0);
}

#[test]
fn low_watermark_is_half_of_both_caps() {
    let mut o = Outbox::default();
    for i in 0..4 {
        o.push_event(&ev(i, 10), 4, 1 << 20, |_| {});
    }
    assert!(!o.below_low_watermark(4, 1 << 20));
    let one = ev(0, 10).ws_frame.len();
    o.consume(one);
    assert!(!o.below_low_watermark(4, 1 << 20), "3 of 4 frames");
    o.consume(2 * one);
    assert!(o.below_low_watermark(4, 1 << 20), "1 of 4 frames");
    assert_eq!(o.events_written(), 3);
}

#[test]
fn own_encodings_are_written_as_queued_and_dropped_like_events() {
    let mut o = Outbox::for_transport(Transport::Sse);
    let mut dropped = Vec::new();
    for i in 0..3 {
        let b = Bytes::from(format!("id: {i}\n\n"));
        o.push_event_encoded(&ev(i, 10), b, 2, 1 << 20, |e| dropped.push(e.offset));
    }
    assert_eq!(dropped, vec![0]);
    let first: Vec<u8> = o.slices().next().unwrap().to_vec();
    assert_eq!(first, b"id: 1\n\n");
    o.clear_events(|e| dropped.push(e.offset));
    assert_eq!(dropped, vec![0, 1, 2]);
    assert!(o.is_empty());
}

#[test]
fn sse_outbox_queues_and_counts_sse_frames() {
    let mut o = Outbox::for_transport(Transport::Sse);
    let e = ev(0, 10);
    let cap = e.sse_frame.len() * 2;
    let mut n = 0;
    for i in 0..3 {
        o.push_event(&ev(i, 10), 1000, cap, |_| n += 1);
    }
    assert_eq!(n, 1);
    assert_eq!(o.bytes(), cap);
    let first = o.iter().next().unwrap();
    assert!(first.encoded(Encoding::Sse).starts_with(b"event: c\n"));
    let (l, r) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut iov = IoVecs::default();
    o.consume(4);
    assert_eq!(o.flush(&l, &mut iov).unwrap().1, Flushed::All);
    drop(l);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut &r, &mut out).unwrap();
    assert!(out.starts_with(b"t: c\ndata: {"), "torn head resumes");
    assert_eq!(out.len(), cap - 4);
}

#[test]
fn byte_cap_is_enforced() {
    let mut o = Outbox::default();
    let e = ev(0, 100);
    let cap = e.ws_frame.len() * 2;
    let mut n = 0;
    for i in 0..10 {
        o.push_event(&ev(i, 100), 1000, cap, |_| n += 1);
    }
    assert!(o.bytes() <= cap);
    assert_eq!(n, 8);
}

#[test]
fn partial_writes_resume_and_torn_head_is_never_dropped() {
    let mut o = Outbox::default();
    o.push_event(&ev(0, 10), 2, 1 << 20, |_| {});
    let total = o.bytes();
    o.consume(3);
    assert_eq!(o.bytes(), total - 3);
    o.push_event(&ev(1, 10), 2, 1 << 20, |_| {});
    let mut dropped = Vec::new();
    o.push_event(&ev(2, 10), 2, 1 << 20, |e| dropped.push(e.offset));
    assert_eq!(dropped, vec![1], "the torn head (offset 0) must survive");
    assert_eq!(offsets(&o), vec![0, 2]);
}

#[test]
fn a_ring_full_gap_goes_behind_the_events_queued_before_the_drop() {
    let mut o = Outbox::default();
    let enc: GapEncoder = |c, n| Bytes::from(format!("gap:{c}:{n}"));
    assert!(
        o.push_gap_behind("c".into(), 1, enc),
        "nothing queued: control lane"
    );
    o.push_event(&ev(5, 10), 100, 1 << 20, |_| {});
    o.push_event(&ev(6, 10), 100, 1 << 20, |_| {});
    assert!(o.push_gap_behind("c".into(), 2, enc));
    assert!(o.push_gap_behind("d".into(), 1, enc));
    assert!(
        !o.push_gap_behind("c".into(), 3, enc),
        "merged among the last entries"
    );
    o.push_event(&ev(12, 10), 100, 1 << 20, |_| {});
    assert!(
        o.push_gap_behind("c".into(), 4, enc),
        "a new one behind a later event"
    );
    assert_eq!(
        order(&o),
        [
            "gap:c:1", "e5", "e6", "gap:c:5", "gap:d:1", "e12", "gap:c:4"
        ]
    );
    // A drop of the oldest moves a gap that reaches the front to the control lane (same
    // place in write order, merged there per channel); gaps are never dropped and are not
    // counted as events written.
    let mut dropped = Vec::new();
    for i in 0..2 {
        o.push_event(&ev(20 + i, 10), 4, 1 << 20, |e| dropped.push(e.offset));
    }
    assert_eq!(dropped, [5, 6, 12]);
    o.settle();
    assert_eq!(order(&o), ["gap:c:6", "gap:d:1", "gap:c:4", "e20", "e21"]);
    let all = o.bytes();
    o.consume(all);
    assert_eq!(o.events_written(), 2);
    assert_eq!(o.bytes(), 0);
}

#[test]
fn clearing_events_keeps_their_gaps_ahead_of_the_close() {
    let mut o = Outbox::default();
    let enc: GapEncoder = |c, n| Bytes::from(format!("gap:{c}:{n}"));
    o.push_event(&ev(0, 10), 100, 1 << 20, |_| {});
    o.push_gap_behind("c".into(), 3, enc);
    o.push_event(&ev(4, 10), 100, 1 << 20, |_| {});
    let mut cleared = Vec::new();
    o.clear_events(|e| cleared.push(e.offset));
    o.push_close(Bytes::from_static(b"close"));
    assert_eq!(cleared, [0, 4]);
    assert_eq!(order(&o), ["gap:c:3", "close"]);
}

#[test]
fn deflate_outbox_writes_and_counts_the_shared_compressed_frame() {
    let mut o = Outbox::for_transport(Transport::WebSocket);
    o.set_deflate(Deflated {
        min_bytes: 256,
        max_payload: usize::MAX,
    });
    let (big, small) = (ev(0, 2000), ev(1, 10));
    o.push_event(&big, 1000, 1 << 20, |_| panic!("no drop"));
    o.push_event(&small, 1000, 1 << 20, |_| panic!("no drop"));
    let z = big.ws_frame_deflated(256, usize::MAX).clone();
    assert_eq!(z[0], 0xC1, "RSV1 set");
    assert!(z.len() < big.ws_frame.len() / 10);
    assert_eq!(
        o.bytes(),
        z.len() + small.ws_frame.len(),
        "counted compressed"
    );
    let (l, r) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut iov = IoVecs::default();
    assert_eq!(o.flush(&l, &mut iov).unwrap().1, Flushed::All);
    drop(l);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut &r, &mut out).unwrap();
    assert_eq!(
        out,
        [&z[..], &small.ws_frame[..]].concat(),
        "small events go plain"
    );
}

// Memory policy (docs/tuning.md §6): an idle connection's outbox holds no queue state.

#[test]
fn an_outbox_is_small_inline() {
    assert!(
        std::mem::size_of::<Outbox>() <= 40,
        "{}",
        std::mem::size_of::<Outbox>()
    );
}

#[test]
fn control_frames_alone_leave_no_lanes_once_written() {
    let mut o = Outbox::default();
    assert!(!o.holds_lanes());
    let mark = o.push_control(Bytes::from_static(b"welcome"));
    assert!(o.holds_lanes());
    o.consume(3);
    assert!(o.holds_lanes(), "a torn frame keeps the lanes");
    o.consume(4);
    assert!(!o.holds_lanes(), "drained with no events flowing: freed");
    assert_eq!(o.control_written(), mark);
    assert!(o.is_empty() && o.bytes() == 0 && o.ordered().next().is_none());
}

#[test]
fn flowing_events_keep_their_lanes_until_a_trim_on_empty() {
    let mut o = Outbox::default();
    for i in 0..5 {
        o.push_event(&ev(i, 10), 100, 1 << 20, |_| panic!("no drop"));
        let n = o.bytes();
        o.consume(n);
        assert!(
            o.holds_lanes(),
            "steady deliveries never re-allocate the lanes"
        );
    }
    assert_eq!(o.events_written(), 5);
    // Not empty, or a torn head: trim frees nothing and loses nothing.
    o.push_event(&ev(5, 10), 100, 1 << 20, |_| panic!("no drop"));
    o.trim();
    assert!(o.holds_lanes() && o.event_frames() == 1);
    o.consume(2);
    o.trim();
    assert!(o.holds_lanes() && o.head_offset() == 2);
    let n = o.bytes();
    o.consume(n);
    o.trim();
    assert!(!o.holds_lanes(), "empty at a quiet moment: freed");
    assert_eq!(o.events_written(), 6, "the count survives the lanes");
}

#[test]
fn control_marks_keep_counting_across_freed_lanes() {
    let mut o = Outbox::default();
    let a = o.push_control(Bytes::from_static(b"one"));
    o.consume(3);
    assert!(!o.holds_lanes());
    let b = o.push_control(Bytes::from_static(b"two"));
    assert!(b > a, "a new mark after the lanes were freed: {a} then {b}");
    assert!(o.control_written() < b, "not out yet");
    o.consume(3);
    assert_eq!(o.control_written(), b);
}
