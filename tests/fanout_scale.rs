//! Fan-out at scale: 1,000 real WebSocket clients each receive all 10,000 published events,
//! complete and in order, with no gap.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use util::*;

const CLIENTS: usize = 1_000;
const EVENTS: usize = 10_000;
/// Publisher runs at most this far ahead of the slowest client (below the outbox cap).
const WINDOW: usize = 400;

/// `"seq":N` out of an event envelope without a full JSON parse (the clients are the
/// bottleneck of this test, not the server).
fn seq_of(text: &str) -> Option<usize> {
    let at = text.rfind("\"seq\":")? + 6;
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_clients_each_receive_ten_thousand_events_in_order() {
    let s = start(|_| {});
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let mut tasks = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut ws = connect(&s).await;
        subscribe(&mut ws, &["ticks"], None).await;
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut expected = 0usize;
            while expected < EVENTS {
                let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
                    .await
                    .expect("an event within 30 s")
                    .expect("open")
                    .expect("no error");
                let Message::Text(t) = m else { continue };
                assert!(
                    t.starts_with("{\"type\":\"event\""),
                    "client {i}: unexpected {t}"
                );
                let seq = seq_of(&t).expect("seq in event");
                assert_eq!(seq, expected, "client {i}: events complete and in order");
                expected += 1;
                if expected.is_multiple_of(64) || expected == EVENTS {
                    progress[i].store(expected, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut published = 0usize;
    while published < EVENTS {
        let slowest = progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if published - slowest >= WINDOW {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for _ in 0..64.min(EVENTS - published) {
            publish(&s, "ticks", json!({"seq": published}));
            published += 1;
        }
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let deliveries = metric(&s, "fanline_deliveries_total");
    assert_eq!(deliveries as usize, CLIENTS * EVENTS);
    assert_eq!(metric(&s, "fanline_dropped_total"), 0.0);
    let writevs = metric(&s, "fanline_writev_calls_total");
    eprintln!(
        "deliveries {deliveries}, writev calls {writevs}, frames per writev {:.1}",
        deliveries / writevs
    );
}
