use std::sync::Arc;

use super::*;
use crate::event::EventParts;

fn ev(offset: i64, corr: Option<&str>, channel: &str) -> Event {
    let topic: Arc<str> = "t".into();
    Event::new(
        EventParts {
            channel,
            topic: &topic,
            partition: 2,
            offset,
            ts_ms: 0,
            event_type: None,
            correlation_id: corr,
            data_json: b"1",
        },
        serde_json::Value::Null,
    )
}

fn fail<'a>(e: &'a Event, reason: Reason) -> Failure<'a> {
    Failure {
        connection_id: Some("c-1"),
        identity: Some("alice"),
        event: e,
        reason,
    }
}

#[test]
fn an_entry_carries_every_field() {
    let log = FailedLog::new(2);
    let e = ev(7, Some("corr-7"), "orders");
    log.record(1, fail(&e, Reason::SlowConsumer));
    let p = log.page(0, 10);
    assert_eq!(p.failed.len(), 1);
    let f = &p.failed[0];
    assert_eq!(f["seq"], 1);
    assert_eq!(f["connection_id"], "c-1");
    assert_eq!(f["identity"], "alice");
    assert_eq!(f["channel"], "orders");
    assert_eq!(f["event_id"], "t/2/7");
    assert_eq!(f["correlation_id"], "corr-7");
    assert_eq!(f["reason"], "slow_consumer");
    assert!(f["at"].as_i64().is_some_and(|t| t > 1_600_000_000_000));
    assert_eq!((p.next, p.missed), (1, 0));
}

#[test]
fn ring_full_has_no_connection_and_null_correlation() {
    let log = FailedLog::new(1);
    let e = ev(1, None, "c");
    log.record(
        0,
        Failure {
            connection_id: None,
            identity: None,
            event: &e,
            reason: Reason::RingFull,
        },
    );
    let f = &log.page(0, 1).failed[0];
    assert!(f["connection_id"].is_null() && f["identity"].is_null());
    assert!(f["correlation_id"].is_null());
    assert_eq!(f["reason"], "ring_full");
}

#[test]
fn pages_across_shards_return_each_entry_once_in_order() {
    let log = FailedLog::new(3);
    for i in 0..25 {
        let e = ev(i, Some(&format!("k{i}")), "c");
        log.record((i % 3) as usize, fail(&e, Reason::SlowConsumer));
    }
    let mut seen = Vec::new();
    let mut since = 0;
    for _ in 0..10 {
        let p = log.page(since, 4);
        if p.failed.is_empty() {
            break;
        }
        assert!(p.failed.len() <= 4);
        seen.extend(p.failed.iter().map(|f| f["seq"].as_u64().unwrap_or(0)));
        since = p.next;
    }
    assert_eq!(seen, (1..=25).collect::<Vec<u64>>());
    let end = log.page(since, 4);
    assert_eq!((end.failed.len(), end.next), (0, 25));
}

#[test]
fn size_stays_at_the_cap_and_the_newest_are_kept() {
    let log = FailedLog::new(1);
    let n = PER_SHARD as i64 * 3 + 5;
    for i in 0..n {
        let e = ev(i, None, "c");
        log.record(0, fail(&e, Reason::SlowConsumer));
    }
    assert_eq!(log.len(), PER_SHARD);
    let p = log.page(0, MAX_PAGE);
    let first = p.failed[0]["seq"].as_u64().unwrap_or(0);
    assert_eq!(first, (n as u64) - PER_SHARD as u64 + 1);
    assert_eq!(p.missed, n as u64 - PER_SHARD as u64);
    assert_eq!(
        log.recorded[Reason::SlowConsumer as usize].load(Relaxed),
        n as u64
    );
}

#[test]
fn fields_are_cut_so_memory_is_bounded() {
    let log = FailedLog::new(1);
    let long = "é".repeat(MAX_FIELD); // 2 bytes each
    let e = ev(1, Some(&long), &long);
    log.record(
        0,
        Failure {
            connection_id: Some(&long),
            identity: Some(&long),
            event: &e,
            reason: Reason::Closed,
        },
    );
    let f = &log.page(0, 1).failed[0];
    for k in ["connection_id", "identity", "channel", "correlation_id"] {
        let v = f[k].as_str().unwrap_or("");
        assert_eq!(v.len(), MAX_FIELD, "{k}");
        assert!(long.starts_with(v));
    }
}

#[test]
fn lines_past_the_budget_are_counted() {
    let log = FailedLog::new(1);
    let e = ev(1, None, "c");
    for _ in 0..(LINES_PER_SECOND + 15) {
        log.record(0, fail(&e, Reason::SlowConsumer));
    }
    assert_eq!(log.suppressed.load(Relaxed), 15);
    assert!(log.shards[0].pending_summary.load(Relaxed));
    log.tick(0, Instant::now() + WINDOW);
    assert!(!log.shards[0].pending_summary.load(Relaxed));
    let mut m = String::new();
    log.render_metrics(&mut m);
    assert!(
        m.contains("fanline_failed_delivery_lines_suppressed_total 15\n"),
        "{m}"
    );
    assert!(m.contains("fanline_failed_deliveries_total{reason=\"slow_consumer\"} 25\n"));
}

#[test]
fn a_stale_cursor_from_the_future_resumes_at_the_end() {
    let log = FailedLog::new(1);
    let e = ev(1, None, "c");
    log.record(0, fail(&e, Reason::SlowConsumer));
    let p = log.page(1_000, 10);
    assert_eq!((p.failed.len(), p.next), (0, 1));
}
