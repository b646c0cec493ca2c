use super::super::tests::{cfg, ev};
use super::*;
use crate::protocol::cursor::Position;

fn t() -> Arc<str> {
    "t".into()
}

fn cursor(epoch: Option<u64>, pos: &[(&str, i32, i64)]) -> Cursor {
    let mut positions: Vec<Position> = pos
        .iter()
        .map(|(t, p, o)| Position {
            topic: t.to_string(),
            partition: *p,
            offset: *o,
        })
        .collect();
    positions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Cursor {
        epoch,
        positions,
        unresolved: Vec::new(),
    }
}

fn ids(r: &Resume) -> Vec<(i32, i64)> {
    r.events.iter().map(|e| (e.partition, e.offset)).collect()
}

/// Three partitions, offsets 0..n each; channel "a" on even offsets, "b" on odd ones.
fn three(records: usize, n: i64) -> ReplayBuffer {
    let b = ReplayBuffer::new(&cfg(records, 1 << 20, 60));
    for p in 0..3 {
        b.mark_position(&t(), p, 0);
        for o in 0..n {
            b.append(&ev(&t(), p, o, if o % 2 == 0 { "a" } else { "b" }, 0));
        }
    }
    b
}

#[test]
fn full_cursor_replays_every_partition_after_its_position() {
    let b = three(100, 6);
    let c = cursor(Some(b.epoch()), &[("t", 0, 1), ("t", 1, 3), ("t", 2, 5)]);
    let r = b.resume(&["a"], Start::Cursor(&c));
    assert_eq!(r.lost, None);
    assert_eq!(ids(&r), vec![(0, 2), (0, 4), (1, 4)]);
    assert_eq!(r.parts.len(), 3);
    assert_eq!(r.parts[0].events, 0..2);
    assert_eq!(r.parts[2].events, 3..3);
    assert_eq!(
        r.watermarks(),
        vec![(t(), 0, 5), (t(), 1, 5), (t(), 2, 5)],
        "watermark = the tail read under the lock"
    );
    let start: Vec<_> = r.start_positions().map(|(_, p, o)| (p, o)).collect();
    assert_eq!(start, vec![(0, 1), (1, 3), (2, 5)]);
}

#[test]
fn repeated_and_several_channels_replay_once_in_offset_order() {
    let b = three(100, 4);
    let c = cursor(None, &[("t", 0, 0), ("t", 1, 3), ("t", 2, 3)]);
    let r = b.resume(&["a", "b", "a"], Start::Cursor(&c));
    assert_eq!(r.lost, None);
    assert_eq!(ids(&r), vec![(0, 1), (0, 2), (0, 3)]);
}

#[test]
fn missing_partition_is_partial_unless_held_from_offset_zero() {
    // nothing evicted, every partition held from offset 0: provably complete
    let b = three(100, 6);
    let c = cursor(None, &[("t", 0, 3)]);
    let r = b.resume(&["a"], Start::Cursor(&c));
    assert_eq!(r.lost, None);
    assert_eq!(
        ids(&r),
        vec![(0, 4), (1, 0), (1, 2), (1, 4), (2, 0), (2, 2), (2, 4)]
    );
    // evictions on partitions 1 and 2: their absence cannot be proven harmless
    let b = three(4, 6);
    let r = b.resume(&["a"], Start::Cursor(&c));
    let (reason, detail) = r.lost.clone().unwrap();
    assert_eq!(reason, Reason::PartialCursor);
    assert!(detail.contains("t/1"), "{detail}");
    assert_eq!(
        ids(&r),
        vec![(0, 4)],
        "the given partition is still replayed"
    );
    assert_eq!(
        r.watermarks(),
        vec![(t(), 0, 5)],
        "no watermark where not resumed"
    );
    let start: Vec<_> = r.start_positions().map(|(_, p, o)| (p, o)).collect();
    assert_eq!(start, vec![(0, 3), (1, 5), (2, 5)]);
}

#[test]
fn a_partition_started_later_than_zero_is_not_provable() {
    let b = ReplayBuffer::new(&cfg(100, 1 << 20, 60));
    b.mark_position(&t(), 0, 0);
    b.mark_position(&t(), 1, 50); // ingest started reading here (kafka.start = latest)
    b.append(&ev(&t(), 0, 0, "a", 0));
    let r = b.resume(&["a"], Start::Cursor(&cursor(None, &[("t", 0, 0)])));
    assert_eq!(r.lost.map(|l| l.0), Some(Reason::PartialCursor));
    assert_eq!(r.parts[1].tail, 49);
}

#[test]
fn older_than_the_buffer_is_too_old() {
    let b = three(3, 10); // offsets 7..9 retained
    let ok = cursor(None, &[("t", 0, 6), ("t", 1, 9), ("t", 2, 9)]);
    assert_eq!(b.resume(&["a", "b"], Start::Cursor(&ok)).lost, None);
    let old = cursor(None, &[("t", 0, 5), ("t", 1, 9), ("t", 2, 9)]);
    let r = b.resume(&["a", "b"], Start::Cursor(&old));
    let (reason, detail) = r.lost.clone().unwrap();
    assert_eq!(reason, Reason::TooOld);
    assert!(detail.contains("older than the replay buffer"), "{detail}");
    assert_eq!(ids(&r), vec![(0, 7), (0, 8), (0, 9)]);
}

#[test]
fn another_epoch_replays_nothing_and_sets_no_watermark() {
    let b = three(100, 6);
    let c = cursor(
        Some(b.epoch() ^ 1),
        &[("t", 0, 20), ("t", 1, 20), ("t", 2, 20)],
    );
    let r = b.resume(&["a"], Start::Cursor(&c));
    assert_eq!(r.lost.as_ref().map(|l| l.0), Some(Reason::EpochChanged));
    assert!(r.events.is_empty());
    assert!(
        r.watermarks().is_empty(),
        "old offsets would drop new events"
    );
    let start: Vec<_> = r.start_positions().map(|(_, p, o)| (p, o)).collect();
    assert_eq!(start, vec![(0, 5), (1, 5), (2, 5)]);
}

#[test]
fn a_cursor_ahead_of_this_replica_keeps_its_position_as_watermark() {
    let b = three(100, 6); // tails at 5; the client saw up to 8 on another replica
    let c = cursor(Some(b.epoch()), &[("t", 0, 8), ("t", 1, 5), ("t", 2, 5)]);
    let r = b.resume(&["a"], Start::Cursor(&c));
    assert_eq!(r.lost, None);
    assert!(r.events.is_empty());
    assert_eq!(r.watermarks()[0], (t(), 0, 8));
}

#[test]
fn live_and_retained_starts() {
    let b = three(4, 6); // offsets 2..5 retained
    let r = b.resume(&["a"], Start::Live);
    assert_eq!((r.lost.clone(), r.events.len()), (None, 0));
    assert!(r.watermarks().is_empty());
    let r = b.resume(&["a"], Start::Retained);
    assert_eq!(r.lost, None);
    assert_eq!(
        ids(&r),
        vec![(0, 2), (0, 4), (1, 2), (1, 4), (2, 2), (2, 4)]
    );
}

#[test]
fn only_topics_that_can_carry_the_channel_count() {
    let b = three(4, 6);
    let u: Arc<str> = "u".into();
    b.mark_position(&u, 0, 10);
    b.append(&ev(&u, 0, 10, "pred:x", 0));
    let c = cursor(None, &[("t", 0, 5), ("t", 1, 5), ("t", 2, 5)]);
    // unset: any topic may carry any channel, so u/0 is missing from the cursor
    assert_eq!(
        b.resume(&["a"], Start::Cursor(&c)).lost.map(|l| l.0),
        Some(Reason::PartialCursor)
    );
    b.set_channel_topics(vec![
        (t(), ChannelPattern::new(vec![Some("a".into())])),
        (
            u.clone(),
            ChannelPattern::new(vec![Some("pred:".into()), None]),
        ),
    ]);
    let r = b.resume(&["a"], Start::Cursor(&c));
    assert_eq!((r.lost, r.parts.len()), (None, 3));
    let r = b.resume(&["pred:x"], Start::Cursor(&c));
    assert_eq!(r.parts.len(), 1);
    assert_eq!(r.lost.map(|l| l.0), Some(Reason::PartialCursor));
}

#[test]
fn channel_patterns() {
    let p = ChannelPattern::new(vec![Some("a:".into()), None, Some(":z".into()), None]);
    assert!(p.matches("a::z") && p.matches("a:x:y:z") && p.matches("a:1:z:2"));
    assert!(!p.matches("a:x") && !p.matches("b:x:z"));
    assert!(ChannelPattern::any().matches("") && ChannelPattern::any().matches("é"));
    let fixed = ChannelPattern::new(vec![Some("issues".into())]);
    assert!(fixed.matches("issues") && !fixed.matches("issues2"));
}

#[test]
fn topic_hash_resolution_and_latest_matching() {
    let b = three(100, 6);
    assert_eq!(b.topic_for_hash(topic_hash("t")), Some(t()));
    assert_eq!(b.topic_for_hash(topic_hash("nope")), None);
    // newest "a" event overall is on partition 2 (appended last); newest with p < 2 is 1/4
    assert_eq!(
        b.latest_matching("a", |_| true).map(|e| e.partition),
        Some(2)
    );
    let e = b.latest_matching("a", |e| e.partition < 2).unwrap();
    assert_eq!((e.partition, e.offset), (1, 4));
    assert!(b.latest_matching("a", |_| false).is_none());
}
